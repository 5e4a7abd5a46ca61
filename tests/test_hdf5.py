"""HDF5 result files: layout, round trip, and what an interrupted run leaves."""

from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import redoxfield as rf
import redoxfield.simulation as simulation_module

from .conftest import needs_core


def _b1_small(model):
    lat = rf.Lattice((8, 4, 4), spacing=0.1)
    lat.region("source", "x < 0.2")
    sim = rf.Simulation(model, lat, seed=5)
    sim.set_concentration("Prx", 20.0)
    sim.set_count("H2O2", 50, region="source")
    return sim


class FakeCoreError(Exception):
    pass


class FakeEngine:
    """Implements the _core.pyi API; moves one molecule of species 0 per advance and
    raises ``fail_with`` at the advance numbered ``fail_at``."""

    fail_at: int | None = None
    fail_with: type[BaseException] = KeyboardInterrupt

    def __init__(self, *, counts, seed, replicate, **kwargs):
        self._counts = counts.astype(np.uint32).copy()
        self._time = 0.0
        self._calls = 0
        self._diff = np.zeros(counts.shape[1], dtype=np.uint64)
        self._reac = np.zeros(kwargs["reactants"].shape[0], dtype=np.uint64)

    @property
    def time(self):
        return self._time

    def advance(self, t_stop, progress=None):
        self._calls += 1
        if self.fail_at is not None and self._calls == self.fail_at:
            self._time = (self._time + t_stop) / 2
            self._diff[0] += 1000
            raise self.fail_with("stop")
        n = self._counts[:, 0]
        i = int(np.argmax(n))
        if n[i] > 0:
            n[i] -= 1
            n[(i + 1) % n.size] += 1
            self._diff[0] += 1
        self._time = t_stop

    def counts_into(self, out):
        out[...] = self._counts

    def totals(self):
        return self._counts.sum(axis=0, dtype=np.int64)

    def diffusion_events(self):
        return self._diff.copy()

    def reaction_events(self):
        return self._reac.copy()


@pytest.fixture
def fake_core(monkeypatch):
    engine = type("Engine", (FakeEngine,), {})
    core = SimpleNamespace(NsmEngine=engine, CoreError=FakeCoreError, __version__="fake")
    monkeypatch.setattr(simulation_module, "_load_core", lambda: core)
    return engine


def _no_part_files(path):
    return not any(p.name.endswith(".part") for p in path.iterdir())


def test_layout_with_fake_engine(b1_model, tmp_path, fake_core):
    sim = _b1_small(b1_model)
    sim.scenario_text = "# a scenario\n"
    out = tmp_path / "run.h5"
    res = sim.run(0.05, 0.01, output=out)
    res.close()
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["format"] == "redoxfield-result" and a["format_version"] == 1
        assert a["complete"] and a["stop_reason"] == "finished"
        assert a["seed"] == 5 and a["replicate"] == 0 and a["solver"] == "nsm"
        assert a["core_version"] == "fake" and a["n_samples"] == 6
        assert list(f["model/species/name"].asstr()[()]) == ["H2O2", "Prx", "PrxOx"]
        np.testing.assert_array_equal(f["model/species/D"][()], [1000.0, 0, 0])
        assert f["model/reactions/k_unit"].asstr()[()].tolist() == ["1/(M*s)", "1/s", "uM/s"]
        assert f["model/reactions/region"].asstr()[()].tolist() == ["", "", "source"]
        assert f["model/compiled/reactants"][()].tolist() == [[0, 1], [2, -1], [-1, -1]]
        assert f["geometry"].attrs["kind"] == "lattice"
        assert f["geometry"].attrs["shape"].tolist() == [8, 4, 4]
        assert f["geometry/centers"].shape == (128, 3)
        assert f["geometry/regions/source"][()].sum() == 32
        ds = f["samples/counts/Prx"]
        assert ds.shape == (6, 128) and ds.dtype == np.uint32
        assert ds.compression == "gzip" and ds.chunks == (1, 128)
        assert f["samples/totals"].shape == (6, 3)
        assert f["samples/reaction_events"].shape == (6, 3)
        assert f["scenario"].asstr()[()] == "# a scenario\n"
        assert f["events/diffusion"][()].tolist() == [5, 0, 0]
    assert _no_part_files(tmp_path)


def test_interrupted_run_keeps_samples_and_reraises(b1_model, tmp_path, fake_core):
    fake_core.fail_at = 3  # the advance to t = 0.03
    sim = _b1_small(b1_model)
    out = tmp_path / "run.h5"
    out.write_bytes(b"old")  # replaced only when the new file is consistent
    with pytest.raises(KeyboardInterrupt):
        sim.run(0.05, 0.01, output=out)
    with rf.Result.load(out) as res:
        assert not res.complete
        assert res.attrs["stop_reason"] == "interrupted (KeyboardInterrupt)"
        np.testing.assert_allclose(res.times, [0, 0.01, 0.02])
        assert res.counts("H2O2").shape == (3, 128)
        assert res.attrs["time_reached"] == pytest.approx(0.025)
        assert res.events["diffusion:H2O2"] == 1002  # counters at the stop
    assert _no_part_files(tmp_path)


def test_core_error_closes_file_incomplete(b1_model, tmp_path, fake_core):
    fake_core.fail_at = 2
    fake_core.fail_with = FakeCoreError
    out = tmp_path / "run.h5"
    with pytest.raises(FakeCoreError):
        _b1_small(b1_model).run(0.05, 0.01, output=out)
    with rf.Result.load(out) as res:
        assert not res.complete and res.attrs["stop_reason"].startswith("core error")
        assert res.n_samples == 2  # t = 0 and 0.01; the advance to 0.02 failed


def test_failure_after_the_header_leaves_an_incomplete_file(
    b1_model, tmp_path, fake_core, monkeypatch
):
    """A failure mid-run (here a broken sample copy) keeps the file, marked
    incomplete with the reason; never a file that looks complete (reliability.md)."""

    def broken(self, out):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fake_core, "counts_into", broken)
    out = tmp_path / "run.h5"
    with pytest.raises(RuntimeError, match="disk on fire"):
        _b1_small(b1_model).run(0.05, 0.01, output=out)
    with rf.Result.load(out) as res:
        assert not res.complete
        assert "disk on fire" in res.attrs["stop_reason"]
    assert _no_part_files(tmp_path)


def test_header_failure_leaves_nothing(b1_model, tmp_path, fake_core, monkeypatch):
    from redoxfield.io import hdf5

    def broken(self, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(hdf5.ResultWriter, "write_header", broken)
    out = tmp_path / "run.h5"
    with pytest.raises(RuntimeError, match="disk on fire"):
        _b1_small(b1_model).run(0.05, 0.01, output=out)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory(b1_model, tmp_path, fake_core):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _b1_small(b1_model).run(0.05, 0.01, output=tmp_path / "no" / "run.h5")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        rf.Result.load(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        rf.Result.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a redoxfield result file"):
        rf.Result.load(tmp_path / "other.h5")


@needs_core
def test_round_trip_real_core(b1_model, tmp_path):
    sim = _b1_small(b1_model)
    out = tmp_path / "run.h5"
    res = sim.run(0.02, 0.005, output=out)
    times, events = res.times, res.events
    counts = {s: res.counts(s) for s in res.species}
    totals = res.totals
    res.close()
    with rf.Result.load(out) as back:
        np.testing.assert_array_equal(back.times, times)
        assert back.times.shape == (5,)
        for s in back.species:
            c = back.counts(s)
            assert c.dtype == np.int64 and c.shape == (5, 128)
            np.testing.assert_array_equal(c, counts[s])
            np.testing.assert_array_equal(back.total(s), c.sum(axis=1))
            np.testing.assert_array_equal(back.counts(s, sample=-1), c[-1])
        np.testing.assert_array_equal(back.totals, totals)
        assert back.events == events
        assert events["total"] == events["diffusion"] + events["reaction"]
        ev = back.events_at_samples()
        np.testing.assert_array_equal(
            ev["reaction"][-1], [events[f"reaction:{r}"] for r in back.reactions]
        )
        assert back.model == b1_model
        np.testing.assert_allclose(back.centers, sim.graph.centers)
        np.testing.assert_allclose(back.volumes, sim.graph.volumes)
        np.testing.assert_allclose(
            back.concentration("Prx")[0], counts["Prx"][0] / (0.1**3 * 602.214076)
        )
        assert set(back.regions) == {"source"}
        assert back.seed == 5 and back.solver == "nsm" and back.complete
        assert back.version == rf.__version__
        assert "H2O2 + Prx -> PrxOx" in back.summary()
        with pytest.raises(ValueError, match="unknown species 'X'"):
            back.counts("X")


@needs_core
def test_real_core_interrupt_from_progress_callback(tmp_path):
    m = rf.Model()
    m.species("A", D=1000.0)
    sim = rf.Simulation(m, rf.Lattice((10, 10, 10), spacing=0.1), seed=3)
    sim.set_count("A", 1000)
    seen = []

    def stop(t, events):
        seen.append((t, events))
        raise KeyboardInterrupt

    out = tmp_path / "int.h5"
    with pytest.raises(KeyboardInterrupt):
        sim.run(0.01, 0.001, output=out, progress=stop)
    assert seen
    with rf.Result.load(out) as res:
        assert not res.complete
        assert res.n_samples >= 1 and np.all(res.total("A") == 1000)
        assert res.events["total"] > 0
    assert _no_part_files(tmp_path)
