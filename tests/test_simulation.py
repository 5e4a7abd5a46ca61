"""Initial conditions, run settings and runs on the real core (small problems)."""

import numpy as np
import pytest

import redoxfield as rf
from redoxfield.simulation import sample_times

from .conftest import needs_core


def _sim(seed=1, shape=(10, 4, 4)):
    m = rf.Model()
    m.species("A", D=10.0)
    m.species("B")
    m.reaction("A -> B", k=5.0)
    lat = rf.Lattice(shape, spacing=0.1)
    lat.region("left", "x < 0.3")
    return rf.Simulation(m, lat, seed=seed)


def test_set_concentration_rounds_per_voxel():
    sim = _sim()
    sim.set_concentration("A", 20.0)
    assert np.all(sim.initial_counts("A") == 12)  # 12.04 -> 12 (BENCHMARKS.md B1)
    sim.set_concentration("B", 20.9, region="left")  # 12.59 -> 13
    b = sim.initial_counts("B")
    left = sim.graph.regions["left"]
    assert np.all(b[left] == 13) and np.all(b[~left] == 0)
    sim.set_concentration("A", 0.0, region="left")  # replaces, only in the region
    a = sim.initial_counts("A")
    assert np.all(a[left] == 0) and np.all(a[~left] == 12)


def test_set_count_exact_total_in_region_and_deterministic():
    a = _sim(seed=7)
    a.set_count("A", 500, region="left")
    n = a.initial_counts("A")
    left = a.graph.regions["left"]
    assert n.sum() == 500 and n[~left].sum() == 0
    b = _sim(seed=7)
    b.set_count("A", 500, region="left")
    np.testing.assert_array_equal(b.initial_counts("A"), n)
    c = _sim(seed=8)
    c.set_count("A", 500, region="left")
    assert not np.array_equal(c.initial_counts("A"), n)
    # spread by volume: every voxel of the region is used for a large count
    a.set_count("B", 100_000, region="left")
    nb = a.initial_counts("B")[left]
    assert nb.sum() == 100_000 and nb.min() > 0


def test_initial_condition_errors_name_the_bad_thing():
    sim = _sim()
    with pytest.raises(ValueError, match="unknown species 'H2O3'"):
        sim.set_concentration("H2O3", 1.0)
    with pytest.raises(ValueError, match="unknown species 'C'"):
        sim.set_count("C", 1)
    with pytest.raises(ValueError, match="unknown region 'right'"):
        sim.set_count("A", 1, region="right")
    with pytest.raises(ValueError, match="count of 'A' = -1 must not be negative"):
        sim.set_count("A", -1)
    with pytest.raises(ValueError, match="count of 'A' .* overflows"):
        sim.set_count("A", 2**32 * 160)
    with pytest.raises(ValueError, match="count of 'A' must be an integer"):
        sim.set_count("A", 2.5)
    with pytest.raises(ValueError, match="concentration of 'B' = -1.0"):
        sim.set_concentration("B", -1.0)
    with pytest.raises(ValueError, match="concentration of 'B' = nan"):
        sim.set_concentration("B", float("nan"))
    with pytest.raises(ValueError, match="concentration of 'B' = inf"):
        sim.set_concentration("B", float("inf"))
    with pytest.raises(ValueError, match="'B' gives .* more than the limit"):
        sim.set_concentration("B", 1e10)


def test_count_overflow_in_one_voxel():
    m = rf.Model()
    m.species("A")
    sim = rf.Simulation(m, rf.Lattice((1, 1, 1), spacing=1.0))
    sim.set_count("A", 2**32 - 1)
    assert sim.initial_counts("A")[0] == 2**32 - 1
    with pytest.raises(ValueError, match="count of 'A' = 4294967296 overflows"):
        sim.set_count("A", 2**32)


def test_bad_simulation_settings():
    m = rf.Model()
    m.species("A")
    lat = rf.Lattice((2, 2, 2), spacing=1.0)
    with pytest.raises(ValueError, match="unknown solver 'ode'"):
        rf.Simulation(m, lat, solver="ode")
    with pytest.raises(ValueError, match="seed = -1"):
        rf.Simulation(m, lat, seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer"):
        rf.Simulation(m, lat, seed=1.5)
    with pytest.raises(ValueError, match="not a geometry"):
        rf.Simulation(m, "lattice")
    m.reaction("-> A", k=1.0, region="nowhere")
    with pytest.raises(ValueError, match="unknown region 'nowhere'"):
        rf.Simulation(m, lat)


def test_model_snapshot():
    m = rf.Model()
    m.species("A")
    sim = rf.Simulation(m, rf.Lattice((2, 2, 2), spacing=1.0))
    m.species("B")
    assert sim.species == ("A",)


def test_sample_times():
    np.testing.assert_allclose(sample_times(0.05, 0.01), [0, 0.01, 0.02, 0.03, 0.04, 0.05])
    assert sample_times(0.05, 0.01)[-1] == 0.05
    np.testing.assert_allclose(sample_times(1.0, 0.4), [0, 0.4, 0.8, 1.0])
    np.testing.assert_allclose(sample_times(0.3, 0.1), [0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(sample_times(0.1, 1.0), [0, 0.1])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="t_end"):
            sample_times(bad, 0.1)
        with pytest.raises(ValueError, match="dt_sample"):
            sample_times(1.0, bad)


@needs_core
def test_run_in_memory_matches_file(tmp_path):
    sim = _sim(seed=11)
    sim.set_count("A", 300)
    mem = sim.run(0.2, 0.05)
    disk = sim.run(0.2, 0.05, output=tmp_path / "r.h5")
    assert mem.path is None and disk.path == tmp_path / "r.h5"
    np.testing.assert_array_equal(mem.times, [0, 0.05, 0.1, 0.15, 0.2])
    for sp in ("A", "B"):
        np.testing.assert_array_equal(mem.counts(sp), disk.counts(sp))
    assert mem.events == disk.events
    # conservation A + B and the sample at t=0 is the initial state
    tot = mem.total("A") + mem.total("B")
    assert np.all(tot == 300)
    np.testing.assert_array_equal(mem.counts("A")[0], sim.initial_counts("A"))
    assert mem.events["reaction:A -> B"] == mem.total("B")[-1]
    assert mem.events["diffusion:B"] == 0 and mem.events["diffusion:A"] > 0
    assert mem.complete and disk.complete
    saved = mem.save(tmp_path / "copy.h5")
    with rf.Result.load(saved) as again:
        np.testing.assert_array_equal(again.counts("A"), mem.counts("A"))
    mem.close()
    disk.close()
