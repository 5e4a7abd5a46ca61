r"""The approximate operator-splitting solver (``solver="opsplit"``) against
independent results and against the exact NSM (docs/performance.md).

What the splitting changes: reactions see molecules at the positions the
diffusion phase left them, once per step of length tau (first order in tau);
the walk itself and the per-subvolume SSA are exact. So:

- birth-death with uniform decay: the total is an immigration-death process
  whatever the positions, and births get uniform times inside the step, so the
  total's law is exact (Poisson(b / k1)); asserted within 3 standard errors
  (formulas in test_validation_birth_death.py).
- point release: no reactions, one step per interval; the walk is the exact
  lattice walk, so the variance is 2 D t per axis (3 standard errors, as for the
  NSM in test_validation_diffusion.py), also on anisotropic voxels.
- planar source with decay: the voxel profile is within 5 % of the analytic
  cosh solution (the NSM's tolerance); the splitting bias at the default
  tolerance is about k tau / 2 = 0.5 % here.
- the B1 chemistry on a small box against the exact NSM: mean totals of H2O2
  and PrxOx, and the H2O2 x-profile in 0.5 µm bins, agree within 4 standard
  errors of the difference of the two means (both estimated from replicates).
- the trajectory is bitwise the same on 1 and 2 threads.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import redoxfield as rf

from .conftest import assert_ensemble_is_one_by_one, needs_core, tiny_scenario
from .test_validation_birth_death import MOLECULES_PER_UM_UM3, _check_mean_and_variance

pytestmark = needs_core


def test_birth_death_total_is_poisson():
    """``-> A`` in a slab, ``A -> `` everywhere, D = 5 µm²/s on 5x5x5 voxels of
    0.2 µm: total ~ Poisson(40); 1000 samples every 2/k1 after 6/k1. A coarse
    tolerance (5 %, tau = 5 ms) on purpose: the total's law does not depend on it."""
    k1, lam, h = 10.0, 40.0, 0.2
    space = rf.Lattice(shape=(5, 5, 5), spacing=h)
    space.region("src", lambda x, y, z: x < 2 * h)
    v_src = float(space.volumes[space.regions["src"]].sum())
    m = rf.Model()
    m.species("A", D=5.0)
    m.reaction("-> A", k=lam * k1 / (v_src * MOLECULES_PER_UM_UM3), region="src")
    m.reaction("A ->", k=k1)
    opts = {"threads": 1, "tolerance": 0.05}
    sim = rf.Simulation(m, space, seed=71, solver="opsplit", solver_options=opts)
    eng = sim.make_engine()
    assert eng.lattice_walk(0)
    dt, n = 2.0 / k1, 1000
    eng.advance(6.0 / k1)
    totals = np.empty(n, dtype=np.int64)
    for i in range(n):
        eng.advance(6.0 / k1 + (i + 1) * dt)
        totals[i] = eng.totals()[0]
    # tau from the tolerance: -ln(1 - 0.05) / k1.
    assert math.isclose(eng.tau_bound, -math.log(0.95) / k1, rel_tol=1e-12)
    _check_mean_and_variance(totals, lam, math.exp(-k1 * dt))


@pytest.mark.parametrize(
    ("D", "spacing", "sigma", "seed"),
    [(10.0, 0.1, 0.5, 201), (2.0, (0.1, 0.2, 0.25), 0.75, 203)],
)
def test_point_release_variance_is_2Dt(D, spacing, sigma, seed):
    n_mol = 20_000
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    t = sigma**2 / (2 * D)
    half = [math.ceil(6 * sigma / h) for h in spacing]
    shape = tuple(2 * k + 1 for k in half)
    space = rf.Lattice(shape=shape, spacing=tuple(spacing))
    start = np.asarray(half) * spacing + 0.5 * spacing
    space.region(
        "start",
        lambda x, y, z: (
            (np.abs(x - start[0]) < 0.5 * spacing[0])
            & (np.abs(y - start[1]) < 0.5 * spacing[1])
            & (np.abs(z - start[2]) < 0.5 * spacing[2])
        ),
    )
    m = rf.Model()
    m.species("A", D=D)
    sim = rf.Simulation(m, space, seed=seed, solver="opsplit")
    sim.set_count("A", n_mol, region="start")
    res = sim.run(t_end=t, dt_sample=t)
    n = res.counts("A", sample=-1).astype(float)
    assert n.sum() == n_mol
    x = np.asarray(space.centers) - start
    mean = n @ x / n_mol
    var = n @ (x - mean) ** 2 / (n_mol - 1)
    target = 2 * D * t
    se_var = target * np.sqrt((2 + spacing**2 / target) / n_mol)
    report = dict(var=var.tolist(), target=target, se=se_var.tolist())
    print("opsplit diffusion", report)
    assert np.all(np.abs(var - target) < 3 * se_var), report
    assert np.all(np.abs(mean) < 3 * math.sqrt(target / n_mol)), report
    # No reactions: one step of the whole interval.
    assert res.attrs["solver_steps"] == 1


def test_planar_source_decay_profile():
    from .test_validation_source_decay import A_SRC, LAM, NX, H, K, Q, voxel_averages

    space = rf.Lattice(shape=(NX, 1, 1), spacing=H)
    space.region("source", lambda x, y, z: x < A_SRC)
    m = rf.Model()
    m.species("A", D=1.0)
    m.reaction("-> A", k=Q, region="source")
    m.reaction("A ->", k=K)
    sim = rf.Simulation(m, space, seed=2718, solver="opsplit")
    eng = sim.make_engine()
    dt, t_burn, n = 0.05, 10.0 / K, 600
    eng.advance(t_burn)
    acc = np.zeros(NX)
    for i in range(n):
        eng.advance(t_burn + (i + 1) * dt)
        acc += eng.counts()[:, 0]
    conc = acc / n / (H**3 * MOLECULES_PER_UM_UM3)
    x = np.asarray(space.centers)[:, 0]
    checked = x < A_SRC + 3 * LAM
    rel = conc / voxel_averages() - 1
    print("opsplit source-decay max rel dev", float(np.max(np.abs(rel[checked]))))
    assert np.all(np.abs(rel[checked]) < 0.05), rel[checked]


def _small_b1(b1_model, solver, seed, **options):
    space = rf.Lattice(shape=(20, 10, 10), spacing=0.1)
    space.region("source", lambda x, y, z: x < 0.5)
    sim = rf.Simulation(b1_model, space, seed=seed, solver=solver, solver_options=options)
    sim.set_concentration("Prx", 20.0)
    return sim


def test_b1_chemistry_matches_the_exact_nsm(b1_model):
    """B1's chemistry on a 2 x 1 x 1 µm box (2000 voxels), t = 0.03 s: 16 NSM and
    16 opsplit replicates; totals at 0.03 s and the time-averaged H2O2 x-profile
    over 0.01..0.03 s in four 0.5 µm bins. (With 40 replicates each at t = 0.02 s:
    H2O2 61.75 +- 1.2 (NSM) vs 63.0 +- 1.1 (opsplit, tolerance 0.01), 62.0 at
    tolerance 0.001, 60.0 at 0.2; mean field 61.5.)"""
    times = np.linspace(0.0, 0.03, 7)

    def sample(solver, seed):
        eng = _small_b1(b1_model, solver, seed).make_engine()
        x = np.arange(2000) % 20  # voxel x index (x fastest)
        prof = np.zeros(4)
        for t in times[1:]:
            eng.advance(float(t))
            if t >= 0.01 - 1e-12:
                c = eng.counts()[:, 0].astype(float)
                prof += np.bincount(x // 5, weights=c, minlength=4)
        return np.concatenate([eng.totals()[[0, 2]].astype(float), prof / 5])

    reps = 16
    nsm = np.array([sample("nsm", 100 + s) for s in range(reps)])
    ops = np.array([sample("opsplit", 200 + s) for s in range(reps)])
    diff = ops.mean(axis=0) - nsm.mean(axis=0)
    se = np.sqrt((nsm.var(axis=0, ddof=1) + ops.var(axis=0, ddof=1)) / reps)
    report = dict(
        nsm=nsm.mean(axis=0).round(1).tolist(), opsplit=ops.mean(axis=0).round(1).tolist()
    )
    print("opsplit vs nsm (H2O2, PrxOx, profile bins)", report)
    assert np.all(np.abs(diff) < 4 * se + 1e-9), (report, se.tolist())


def test_thread_count_does_not_change_the_trajectory(b1_model):
    def run(threads):
        sim = _small_b1(b1_model, "opsplit", 9, threads=threads)
        res = sim.run(t_end=0.01, dt_sample=0.005)
        return res.counts("H2O2"), res.counts("PrxOx"), res.events

    one, two = run(1), run(2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert one[2] == two[2]
    assert one[0][-1].sum() > 0


def test_output_records_solver_and_options(b1_model, tmp_path):
    sim = _small_b1(b1_model, "opsplit", 3, tolerance=0.02, threads=2)
    res = sim.run(t_end=0.004, dt_sample=0.002, output=tmp_path / "o.h5")
    a = rf.Result.load(tmp_path / "o.h5").attrs
    assert res.solver == "opsplit"
    assert json.loads(a["solver_options"]) == {"threads": 2, "tolerance": 0.02}
    assert a["solver_threads"] == 2
    assert a["solver_steps"] > 0
    assert 0 < a["solver_tau_min"] <= a["solver_tau_max"] <= a["solver_tau_bound"] * (1 + 1e-9)


def test_bad_solver_options_name_the_option(b1_model):
    space = rf.Lattice(shape=(4, 4, 4), spacing=0.1)
    space.region("source", lambda x, y, z: x < 0.2)
    for opts, word in [
        ({"tolerance": 1.5}, "tolerance"),
        ({"tolerance": "a"}, "tolerance"),
        ({"tau": -1.0}, "tau"),
        ({"threads": -1}, "threads"),
        ({"speed": 3}, "speed"),
    ]:
        with pytest.raises(rf.SimulationError, match=word):
            rf.Simulation(b1_model, space, solver="opsplit", solver_options=opts)
    with pytest.raises(rf.SimulationError, match="tolerance"):
        rf.Simulation(b1_model, space, solver="nsm", solver_options={"tolerance": 0.1})


def test_scenario_selects_opsplit():
    text = tiny_scenario("[6, 4, 4]", "opsplit", "{ tolerance = 0.05, threads = 1 }")
    from redoxfield.scenario import parse_scenario

    sc = parse_scenario(text)
    assert sc.run_settings.solver == "opsplit"
    res = sc.run()
    assert res.solver == "opsplit"
    assert res.times[-1] == 0.02
    bad = text.replace("tolerance = 0.05", "tolerance = 5.0")
    with pytest.raises(rf.ScenarioError, match="tolerance"):
        parse_scenario(bad)


def test_ensemble_totals_equal_one_by_one_runs(b1_model):
    sim = _small_b1(b1_model, "nsm", 5)
    times = np.array([0.0, 0.004, 0.008])
    par = rf.ensemble_totals(sim, times, replicates=[0, 3, 4], regions=True, threads=2)
    assert par.totals.shape == (3, 3, 3)
    assert par.region_totals is not None and par.region_totals.shape == (3, 3, 1, 3)

    def alone(rep: int):
        one = rf.Simulation(b1_model, sim.graph, seed=5, replicate=rep)
        one.set_counts(sim.counts)
        return one.make_engine()

    assert_ensemble_is_one_by_one(par, alone, np.asarray(sim.graph.regions["source"]))
    single = rf.ensemble_totals(sim, times, replicates=[0, 3, 4], threads=1)
    np.testing.assert_array_equal(single.totals, par.totals)
    assert single.mean("H2O2").shape == (3,)
    with pytest.raises(rf.SimulationError, match="times"):
        rf.ensemble_totals(sim, [0.01, 0.0], replicates=2)
    with pytest.raises(rf.SimulationError, match="region"):
        rf.ensemble_totals(sim, times, replicates=2, regions=["nowhere"])
