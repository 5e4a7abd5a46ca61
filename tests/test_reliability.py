"""Reliability (docs/reliability.md): resource guards refuse before any work,
a SIGKILLed run leaves an openable file marked incomplete with every flushed
sample, checkpoints resume bitwise, malformed files give clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import redoxfield as rf
from redoxfield.errors import SimulationError
from redoxfield.guards import estimate_resources, record_bytes

from .conftest import needs_core

# -- resource guards -------------------------------------------------------------------


def _model(n_species: int = 1) -> rf.Model:
    m = rf.Model()
    m.species("A", D=10.0)
    for k in range(1, n_species):
        m.species(f"B{k}")
    m.reaction("-> A", k=20.0)
    m.reaction("A ->", k=1.0)
    return m


def test_impossible_geometry_is_refused_before_any_work():
    """4e9 voxels (below the lattice limit of 2**32): refused in Simulation()
    before the graph is built, and fast,
    with the memory needed and the memory available in the message."""
    space = rf.Lattice(shape=(2000, 2000, 1000), spacing=0.1)
    t0 = time.perf_counter()
    with pytest.raises(SimulationError) as info:
        rf.Simulation(_model(), space, seed=1)
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert "4000000000 subvolumes" in msg and "GiB" in msg and "available" in msg


def test_memory_guard_uses_the_available_memory(monkeypatch):
    monkeypatch.setenv("REDOXFIELD_AVAILABLE_MEMORY", str(10 * 2**20))  # 10 MiB
    with pytest.raises(SimulationError, match=r"only 0\.00977 GiB \(10485760 bytes\)"):
        rf.Simulation(_model(), rf.Lattice(shape=(100, 100, 100), spacing=0.1), seed=1)


@needs_core
def test_output_over_the_cap_is_refused_before_any_work(tmp_path, monkeypatch):
    sim = rf.Simulation(_model(2), rf.Lattice(shape=(10, 10, 10), spacing=0.1), seed=1)
    out = tmp_path / "big.h5"

    def no_engine():  # pragma: no cover - must not be reached
        raise AssertionError("an engine was built")

    monkeypatch.setattr(sim, "make_engine", no_engine)
    # 1001 samples x 1000 subvolumes x 2 species x 4 B = 8_008_000 B of counts.
    with pytest.raises(SimulationError) as info:
        sim.run(t_end=1.0, dt_sample=0.001, output=out, max_output_bytes=1_000_000)
    msg = str(info.value)
    assert "1001 samples x 1000 subvolumes x 2 species" in msg
    assert "max_output_bytes" in msg and "1000000 bytes" in msg
    assert not out.exists()


@needs_core
def test_memory_model_bounds_the_engine():
    """The estimate is an upper bound of what the engine reports holding."""
    for shape, n_species in (((16, 16, 16), 1), ((16, 16, 16), 4), ((20, 10, 10), 9)):
        sim = rf.Simulation(_model(n_species), rf.Lattice(shape=shape, spacing=0.2), seed=2)
        sim.set_count("A", 5000)
        eng = sim.make_engine()
        eng.advance(0.2)
        g = sim.graph
        est = estimate_resources(g.n_subvolumes, n_species, g.edge_targets.size, 0)
        assert eng.bytes_per_subvolume * g.n_subvolumes <= est.engine_bytes
        assert record_bytes(n_species) <= eng.bytes_per_subvolume


@needs_core
def test_memory_model_bounds_the_engine_on_a_mesh():
    """On a tet mesh (a site and a rate class per tet: B3) too."""
    sc = rf.load_scenario("h2o2-burst-tets")
    sim = rf.Simulation(sc.model, sc.space, seed=1)
    for entry in sc.initial:
        sim.apply_initial(entry)
    eng = sim.make_engine()
    g = sim.graph
    est = estimate_resources(
        g.n_subvolumes,
        len(sc.model.species_names),
        g.edge_targets.size,
        0,
        lattice=False,
        n_reactions=len(sc.model.reactions),
    )
    assert eng.bytes_per_subvolume * g.n_subvolumes <= est.engine_bytes, (
        eng.bytes_per_subvolume,
        est.engine_bytes / g.n_subvolumes,
    )


@needs_core
def test_propensity_overflow_is_refused_at_build():
    m = rf.Model()
    m.species("A")
    m.reaction("A + A -> A", k=1e300)
    sim = rf.Simulation(m, rf.Lattice(shape=(2, 1, 1), spacing=0.1), seed=1)
    with pytest.raises(ValueError, match="propensity overflow.*reaction 0"):
        sim.make_engine()


# -- checkpoints and bitwise resume ---------------------------------------------------


def _busy_sim(seed: int = 7, shape=(12, 12, 12)) -> rf.Simulation:
    m = rf.Model()
    m.species("H2O2", D=100.0)
    m.species("Prx", D=0.5)
    m.species("PrxOx")
    m.reaction("H2O2 + Prx -> PrxOx", k=1e7)
    m.reaction("PrxOx -> Prx", k=10.0)
    m.reaction("-> H2O2", k=200.0, region="source")
    m.reaction("H2O2 ->", k=2.0)
    sp = rf.Lattice(shape=shape, spacing=0.1)
    sp.region("source", lambda x, y, z: x < 0.3)
    sim = rf.Simulation(m, sp, seed=seed)
    sim.set_concentration("Prx", 50.0)
    return sim


def _same(a: rf.Result, b: rf.Result, n: int | None = None) -> None:
    n = a.n_samples if n is None else n
    np.testing.assert_array_equal(a.times[:n], b.times[:n])
    for sp in a.species:
        np.testing.assert_array_equal(a.counts(sp)[:n], b.counts(sp)[:n])
    np.testing.assert_array_equal(a.file["samples/totals"][:n], b.file["samples/totals"][:n])
    np.testing.assert_array_equal(
        a.file["samples/reaction_events"][:n], b.file["samples/reaction_events"][:n]
    )
    np.testing.assert_array_equal(
        a.file["samples/diffusion_events"][:n], b.file["samples/diffusion_events"][:n]
    )


@needs_core
def test_engine_checkpoint_at_random_times_resumes_bitwise():
    rng = np.random.default_rng(2024)
    sim = _busy_sim(shape=(6, 6, 6))
    ref = sim.make_engine()
    grid = np.linspace(0.0, 0.3, 7)[1:]
    expect = []
    for t in grid:
        ref.advance(float(t))
        expect.append((ref.counts(), ref.total_events))
    kwargs = dict(sim.problem.engine_kwargs(), counts=sim.counts)
    for _ in range(5):
        cut = float(rng.uniform(0.0, 0.3))
        a = sim.make_engine()
        a.advance(cut)
        state = a.checkpoint()
        b = type(a).restore(**kwargs, state=state)
        assert b.time == cut and b.total_events == a.total_events
        for t, (counts, events) in zip(grid, expect, strict=True):
            if t > cut:
                b.advance(float(t))
                np.testing.assert_array_equal(b.counts(), counts)
                assert b.total_events == events
        np.testing.assert_array_equal(b.reaction_events(), ref.reaction_events())
        np.testing.assert_array_equal(b.diffusion_events(), ref.diffusion_events())
        bad = bytearray(state)
        bad[len(bad) // 2] ^= 0x10
        with pytest.raises(ValueError, match="checksum"):
            type(a).restore(**kwargs, state=bytes(bad))


@needs_core
@pytest.mark.parametrize("stop_after_calls", [1, 3])
def test_interrupted_run_resumes_bitwise(tmp_path, stop_after_calls):
    """Ctrl-C (raised from the progress callback, i.e. after a 2**20-event slice,
    mid-interval) writes a checkpoint; Simulation.resume finishes the run and
    every sample and counter equals the uninterrupted run's."""
    ref = _busy_sim().run(t_end=0.4, dt_sample=0.02)
    calls = []

    def stop(t, events):
        calls.append((t, events))
        if len(calls) == stop_after_calls:
            raise KeyboardInterrupt

    out = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        _busy_sim().run(t_end=0.4, dt_sample=0.02, output=out, progress=stop)
    with rf.Result.load(out) as part:
        assert not part.complete and part.n_samples < ref.n_samples
        assert "checkpoint" in part.file
    res = rf.Simulation.resume(out)
    assert res.complete and res.attrs["resumed"] == 1
    assert "checkpoint" not in res.file
    _same(ref, res)
    assert res.events == ref.events
    np.testing.assert_array_equal(
        res.file["analysis/regions/source/total"][()], ref.file["analysis/regions/source/total"][()]
    )
    with pytest.raises(SimulationError, match="complete"):
        rf.Simulation.resume(out)


@needs_core
def test_periodic_checkpoints_resume_bitwise(tmp_path):
    """Checkpoints by wall time (every 0.05 s) in the middle of long intervals;
    a resume from the last one continues identically."""
    ref = _busy_sim().run(t_end=0.4, dt_sample=0.1)
    calls = []

    def stop(t, events):
        calls.append(t)
        if len(calls) == 4:
            raise KeyboardInterrupt

    out = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        _busy_sim().run(
            t_end=0.4, dt_sample=0.1, output=out, progress=stop, checkpoint_interval=0.05
        )
    res = rf.Simulation.resume(out)
    _same(ref, res)
    assert res.events == ref.events


# -- crash safety: SIGKILL ----------------------------------------------------------------

_KILL_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from tests.test_reliability import _busy_sim
sim = _busy_sim(shape=(16, 16, 16))
print("started", flush=True)
sim.run(t_end=2.0, dt_sample=0.005, output={out!r}, checkpoint_interval=0.3)
"""


@needs_core
def test_sigkill_leaves_an_incomplete_file_with_every_flushed_sample(tmp_path):
    out = tmp_path / "killed.h5"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _KILL_SCRIPT.format(paths=[root, *sys.path], out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with rf.Result.load(out) as res:
        assert not res.complete and res.attrs["stop_reason"] == "running"
        summary = res.summary()  # `redoxfield info` on a killed file
        assert "killed or crashed" in summary and "redoxfield resume" in summary
        assert res.events["total"] == int(
            res.file["samples/diffusion_events"][-1].sum()
            + res.file["samples/reaction_events"][-1].sum()
        )
        n = res.n_samples
        assert n >= 2, "nothing was flushed in 3 s"
        ref = _busy_sim(shape=(16, 16, 16)).run(t_end=float(res.times[n - 1]), dt_sample=0.005)
        assert ref.n_samples == n
        _same(ref, res, n)
    # The same file resumes to the end, identical to an uninterrupted run.
    full = _busy_sim(shape=(16, 16, 16)).run(t_end=2.0, dt_sample=0.005)
    res = rf.Simulation.resume(out)
    _same(full, res)
    assert res.events == full.events


# -- malformed files ------------------------------------------------------------------


def test_malformed_result_files_give_clear_errors(tmp_path):
    rng = np.random.default_rng(1)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(rng.bytes(4096))
    with pytest.raises(ValueError, match="not an HDF5 file"):
        rf.Result.load(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w"):
        pass
    with pytest.raises(ValueError, match="not a redoxfield result file"):
        rf.Result.load(empty)
    nogroups = tmp_path / "nogroups.h5"
    with h5py.File(nogroups, "w") as f:
        f.attrs["format"] = "redoxfield-result"
    with pytest.raises(ValueError, match="missing"):
        rf.Result.load(nogroups)


@needs_core
def test_truncated_result_file_gives_a_clear_error(tmp_path):
    out = tmp_path / "run.h5"
    _busy_sim(shape=(4, 4, 4)).run(t_end=0.05, dt_sample=0.01, output=out).close()
    data = out.read_bytes()
    for frac in (0.1, 0.5, 0.9):
        cut = tmp_path / f"cut{frac}.h5"
        cut.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ValueError):
            rf.Result.load(cut)


@needs_core
def test_cli_resume_and_max_output(tmp_path, capsys):
    from redoxfield.cli import main

    out = tmp_path / "run.h5"
    assert main(["run", "h2o2-burst", "-o", str(out), "--max-output", "1e-6", "-q"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "max_output_bytes" in err
    assert not out.exists()
    assert main(["resume", str(tmp_path / "nope.h5")]) == 2
    assert "no such result file" in capsys.readouterr().err
