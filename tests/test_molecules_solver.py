"""The exact "molecules" solver (one next-event clock per molecule of the one
moving species): what it refuses, what it writes, and agreement with the NSM.

It simulates the NSM's Markov chain with a different use of random numbers, so
trajectories differ but every statistic must agree. The analytic validations
(test_validation_*.py), the reference kernel and the property tests run it too;
here:

- bad input: not exactly one moving species, or a reaction with two molecules of
  the moving one, is a SimulationError naming the species / the reaction;
- output: a complete HDF5 file with ``solver = "molecules"`` and no checkpoint,
  and ``Simulation.resume`` refuses it (interrupted or complete);
- statistics: NSM and molecules on a small lattice with a regional source, binding
  to an immobile partner, release, decay and a rate switch. Tolerance: every mean
  within 4 standard errors of the difference (Welch, 40 seeds per solver);
- a tet mesh stored along its Morton curve still reads back in the mesh's order;
- rf.ensemble_totals runs molecules replicates, bitwise as one-by-one runs, and
  refuses an opsplit simulation;
- regression cases for two engine bugs these tests found (conftest marks).
"""

from __future__ import annotations

import numpy as np
import pytest

import redoxfield as rf
from redoxfield.errors import SimulationError

from .conftest import assert_ensemble_is_one_by_one, needs_core, tiny_scenario

pytestmark = needs_core

H = 0.1  # µm


def _lattice(shape=(4, 3, 3)) -> rf.Lattice:
    space = rf.Lattice(shape=shape, spacing=H)
    space.region("src", lambda x, y, z: x < 2 * H)
    return space


# -- bad input ----------------------------------------------------------------------


def test_two_moving_species_are_refused_naming_both():
    m = rf.Model()
    m.species("H2O2", D=100.0)
    m.species("Prx", D=0.5)
    m.species("PrxOx")
    m.reaction("H2O2 + Prx -> PrxOx", k=1e7)
    with pytest.raises(SimulationError) as info:
        rf.Simulation(m, _lattice(), seed=1, solver="molecules")
    msg = str(info.value)
    assert msg.startswith("solver 'molecules' needs exactly one species that moves"), msg
    assert "H2O2" in msg and "Prx" in msg and "PrxOx" not in msg, msg
    assert "2" in msg and "nsm" in msg, msg
    rf.Simulation(m, _lattice(), seed=1)  # the NSM takes it


@pytest.mark.parametrize("shape", [(4, 3, 3), (1, 1, 1)])
def test_no_moving_species_is_refused(shape):
    """Nothing moves (a single voxel too): nothing to hang clocks on."""
    m = rf.Model()
    m.species("A")
    m.species("B")
    m.reaction("A -> B", k=1.0)
    with pytest.raises(SimulationError, match="^solver 'molecules' needs exactly one species"):
        rf.Simulation(m, rf.Lattice(shape=shape, spacing=H), seed=1, solver="molecules")


def test_a_species_with_D_counts_as_moving_on_one_voxel():
    """D > 0 makes a species moving even where it has nowhere to go."""
    m = rf.Model()
    m.species("A", D=1.0)
    m.species("B", D=1.0)
    m.reaction("A -> B", k=1.0)
    with pytest.raises(SimulationError, match=r"needs exactly one species that moves.*A, B"):
        rf.Simulation(m, rf.Lattice(shape=(1, 1, 1), spacing=H), seed=1, solver="molecules")


@pytest.mark.parametrize("equation", ["A + A -> B", "2 A -> B", "A + A -> A"])
def test_two_of_the_moving_species_are_refused_naming_the_reaction(equation):
    m = rf.Model()
    m.species("A", D=5.0)
    m.species("B")
    m.reaction("-> A", k=10.0)
    m.reaction("A + B -> B", k=1e6, name="fine")  # one A: allowed
    m.reaction(equation, k=1e6, name="pairing")
    with pytest.raises(SimulationError) as info:
        rf.Simulation(m, _lattice(), seed=1, solver="molecules")
    msg = str(info.value)
    assert msg.startswith("solver 'molecules' cannot run reaction 'pairing'"), msg
    assert "'A'" in msg and "nsm" in msg, msg


def test_scenario_simulation_selects_the_solver():
    from redoxfield.scenario import parse_scenario

    opsplit = "{ tolerance = 0.05, threads = 1 }"
    text = tiny_scenario("[4, 3, 3]", "opsplit", opsplit)
    sc = parse_scenario(text)
    sim = sc.simulation(seed=3, solver="molecules")
    assert sim.solver == "molecules" and sim.solver_options == {} and sim.seed == 3
    assert sc.simulation().solver == "opsplit"
    res = sim.run(t_end=0.02, dt_sample=0.01)
    assert res.solver == "molecules" and res.complete
    forced = parse_scenario(
        tiny_scenario("[4, 3, 3]", "molecules", '{ method = "clocks" }')
    ).simulation()
    assert forced.solver_options == {"method": "clocks"}
    assert forced.make_engine().method == "clocks"
    with pytest.raises(rf.ScenarioError, match="method"):
        parse_scenario(tiny_scenario("[4, 3, 3]", "molecules", '{ method = "fastest" }'))


# -- output file, no checkpoints, no resume -------------------------------------------


def _source_binding_model(
    d: float, birth: float, bind: float, release: float, decay: float
) -> rf.Model:
    """A (moving, D = d) born in region "src" at ``birth`` µM/s, A + B -> C at
    ``bind`` /(M s), C -> B at ``release`` /s, A -> at ``decay`` /s."""
    m = rf.Model()
    m.species("A", D=d)
    m.species("B")
    m.species("C")
    m.reaction("-> A", k=birth, region="src", name="birth")
    m.reaction("A + B -> C", k=bind, name="bind")
    m.reaction("C -> B", k=release, name="release")
    m.reaction("A ->", k=decay, name="decay")
    return m


def _busy_model() -> rf.Model:
    return _source_binding_model(100.0, 2000.0, 1e6, 5.0, 1.0)


def test_writes_a_complete_file_without_checkpoints(tmp_path):
    out = tmp_path / "m.h5"
    sim = rf.Simulation(_busy_model(), _lattice(), seed=11, solver="molecules")
    sim.set_concentration("B", 20.0)
    sim.set_rate_schedule([0.01], {"release": [2.0]})
    ref = sim.run(t_end=0.02, dt_sample=0.005)  # in memory
    res = sim.run(t_end=0.02, dt_sample=0.005, output=out, checkpoint_interval=1e-3)
    with rf.Result.load(out) as back:
        assert back.complete
        assert back.attrs["solver"] == "molecules" and back.solver == "molecules"
        assert "checkpoint" not in back.file
        np.testing.assert_allclose(back.times, np.arange(5) * 0.005)
        for sp in ("A", "B", "C"):  # the same (seed, replicate): the same trajectory
            np.testing.assert_array_equal(back.counts(sp), ref.counts(sp))
        assert back.events == ref.events == res.events
        assert back.events["reaction:birth"] > 0 and back.events["diffusion:A"] > 0
        assert back.events["diffusion"] == back.events["diffusion:A"]
        b, c = back.total("B"), back.total("C")
        np.testing.assert_array_equal(b + c, b[0] + c[0])
    with pytest.raises(SimulationError, match="complete"):
        rf.Simulation.resume(out)


def test_an_interrupted_run_is_marked_incomplete_and_not_resumed(tmp_path):
    """Ctrl-C from the progress callback (called about every 2**20 events): the
    file keeps its samples, is marked incomplete, holds no checkpoint, and resume
    refuses it like an opsplit file ("only the NSM" has checkpoints)."""
    m = rf.Model()
    m.species("A", D=100.0)  # 6 D / h² = 6e4 hops/s per molecule
    m.reaction("A ->", k=0.1)
    sim = rf.Simulation(m, rf.Lattice(shape=(8, 8, 8), spacing=H), seed=5, solver="molecules")
    sim.set_count("A", 3000)  # ~1.8e8 events/s of simulated time

    def stop(t, events):
        raise KeyboardInterrupt

    out = tmp_path / "cut.h5"
    with pytest.raises(KeyboardInterrupt):
        sim.run(t_end=0.1, dt_sample=0.001, output=out, progress=stop, checkpoint_interval=1e-3)
    with rf.Result.load(out) as part:
        assert not part.complete
        assert part.attrs["solver"] == "molecules"
        assert "checkpoint" not in part.file
        assert part.n_samples < 101
    with pytest.raises(SimulationError, match="no checkpoints.*only the NSM") as info:
        rf.Simulation.resume(out)
    assert "'molecules'" in str(info.value)


# -- agreement with the NSM -------------------------------------------------------------

SHAPE = (5, 4, 4)
T_SWITCH, T_END = 0.1, 0.2
SEEDS = 40
STATS = (
    "A",
    "B",
    "C",
    "A in src",
    "births",
    "bindings",
    "releases",
    "decays",
    "hops",
)


def _agreement_sim(
    solver: str, seed: int, options: dict | None = None
) -> tuple[rf.Simulation, np.ndarray]:
    m = _source_binding_model(1.0, 500.0, 1e7, 10.0, 20.0)
    space = rf.Lattice(shape=SHAPE, spacing=H)
    space.region("src", lambda x, y, z: x < 2 * H)
    sim = rf.Simulation(m, space, seed=seed, solver=solver, solver_options=options)
    sim.set_concentration("B", 10.0)
    sim.set_rate_schedule([T_SWITCH], {"decay": [3.0]})
    return sim, np.asarray(space.regions["src"])


def _agreement_run(solver: str, seed: int, options: dict | None = None) -> np.ndarray:
    """A (D = 1 µm²/s) born at 500 µM/s in the 2 layers x < 0.2 µm (~9700 /s),
    binds immobile B (10 µM, ~6 per voxel) at 1e7 /(M s) into C, C releases B
    at 10 /s, A decays at 20 /s tripled at t = 0.1 s; ~15000 events to t = 0.2 s."""
    sim, src = _agreement_sim(solver, seed, options)
    engine = sim.make_engine()
    engine.advance(T_END)
    return np.array(
        [
            *engine.totals(),
            engine.counts()[src, 0].sum(),
            *engine.reaction_events(),
            engine.diffusion_events()[0],
        ],
        dtype=np.float64,
    )


@pytest.mark.parametrize("method", ["clocks", "thinning"])
def test_molecules_agrees_with_nsm_in_distribution(method):
    """Means of the final totals, of A in the source region and of every event
    counter: |difference| < 4 se of the difference (Welch; 9 statistics, a
    correct pair fails with probability < 9 x 6.3e-5 = 6e-4). Relative se of the
    difference: 0.5-2 %. Also: B + C is conserved in every run and the two
    solvers' runs are not copies of one another."""
    nsm = np.array([_agreement_run("nsm", 100 + s) for s in range(SEEDS)])
    mol = np.array([_agreement_run("molecules", 200 + s, {"method": method}) for s in range(SEEDS)])
    for runs in (nsm, mol):
        np.testing.assert_array_equal(runs[:, 1] + runs[:, 2], runs[0, 1] + runs[0, 2])
        assert np.unique(runs, axis=0).shape[0] == SEEDS  # different seeds, different runs
    diff = mol.mean(axis=0) - nsm.mean(axis=0)
    se = np.sqrt((mol.var(axis=0, ddof=1) + nsm.var(axis=0, ddof=1)) / SEEDS)
    z = diff / se
    report = {
        k: (round(float(a), 1), round(float(b), 1), round(float(zk), 2))
        for k, a, b, zk in zip(STATS, nsm.mean(axis=0), mol.mean(axis=0), z, strict=True)
    }
    print("nsm mean, molecules mean, z:", report)
    assert np.all(np.abs(z) < 4), report


# -- regression: a problem without reactions ------------------------------------------


def test_pure_diffusion_without_reactions_runs():
    """No reactions at all, one moving species (the diffusion validation's
    problem; it once indexed past the rate classes). Runs; the total is kept;
    every event is a hop. (A rate switch that speeds clocks up is covered by the
    Rust test switch_that_speeds_clocks_up_loses_no_event and the CME test.)"""
    m = rf.Model()
    m.species("A", D=1.0)
    sim = rf.Simulation(m, rf.Lattice(shape=(2, 1, 1), spacing=H), seed=1, solver="molecules")
    sim.set_count("A", 10)
    res = sim.run(t_end=0.01, dt_sample=0.005)
    np.testing.assert_array_equal(res.total("A"), 10)
    assert res.events["reaction"] == 0 and res.events["diffusion"] > 0


# -- tet mesh stored along a Morton curve ----------------------------------------------


def test_mesh_counts_come_back_in_the_mesh_order():
    """test_tetmesh's Morton-curve test with the molecules solver: per-tet initial
    counts, region-scoped sources and sampled counts stay in the mesh's order."""
    pytest.importorskip("gmsh")  # as test_tetmesh.py, whose kuhn_cube this uses
    from redoxfield.geometry import Box

    from .test_tetmesh import kuhn_cube

    pts, tets = kuhn_cube(6, 0.25)
    tets = tets[np.random.default_rng(3).permutation(len(tets))]  # neighbours far apart
    mesh = rf.TetMesh.from_arrays(pts, tets)
    mesh.region("left", Box(lo=(0.0, 0.0, 0.0), hi=(0.3, 1.5, 1.5)))
    g = mesh.to_graph()
    n = g.n_subvolumes
    order = g.storage_order()
    assert order is not None and not np.array_equal(order, np.arange(n))

    model = rf.Model()
    model.species("Tag")  # immobile, never reacts: each tet keeps its own count
    model.species("A")  # immobile: made only where the source is
    model.species("H2O2", D=0.5)  # the one moving species
    model.reaction("-> A", k=50.0, region="left")
    model.reaction("-> H2O2", k=50.0, region="left")
    model.reaction("H2O2 ->", k=20.0)
    sim = rf.Simulation(model, mesh, seed=5, solver="molecules")
    tag = np.arange(n, dtype=np.int64) * 3 + 1
    counts = np.zeros((n, 3), dtype=np.int64)
    counts[:, 0] = tag
    counts[::7, 2] = 2  # H2O2 placed per tet, in the mesh's order
    sim.set_counts(counts)
    assert np.array_equal(sim.engine_arrays()["layout"], order)
    engine = sim.make_engine()
    np.testing.assert_array_equal(engine.counts(), counts)  # before any event
    res = sim.run(0.2, 0.1)
    np.testing.assert_array_equal(res.counts("H2O2", 0), counts[:, 2])
    left = g.regions["left"]
    assert np.array_equal(res.counts("Tag", -1), tag)
    a = res.counts("A", -1)
    assert a[left].sum() > 100 and a[~left].sum() == 0
    h2o2 = res.counts("H2O2", -1)
    assert h2o2[left].sum() > h2o2[~left].sum() / (~left).sum() * left.sum()


# -- ensembles in the core ------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "clocks"])
def test_ensemble_totals_runs_molecules_replicates_as_one_by_one_runs(method):
    """rf.ensemble_totals of a molecules simulation: bitwise the replicates run
    one by one with the molecules solver (totals, region totals, events), on 2
    threads; the NSM ensemble of the same seed is another set of trajectories."""
    sim, src = _agreement_sim("molecules", 9, {"method": method})
    times = np.array([0.05, T_SWITCH, T_END])
    reps = [0, 3, 5]
    ens = rf.ensemble_totals(sim, times, replicates=reps, regions=["src"], threads=2)

    def alone(rep: int):
        one = rf.Simulation(
            sim.model,
            sim.graph,
            seed=9,
            solver="molecules",
            replicate=rep,
            solver_options={"method": method},
        )
        one.set_counts(sim.counts)
        one.set_rate_schedule([T_SWITCH], {"decay": [3.0]})
        return one.make_engine()

    assert_ensemble_is_one_by_one(ens, alone, src)
    nsm_sim, _ = _agreement_sim("nsm", 9)
    nsm = rf.ensemble_totals(nsm_sim, times, replicates=reps, threads=1)
    assert not np.array_equal(nsm.totals, ens.totals)


def test_ensemble_totals_refuses_an_opsplit_simulation():
    sim = rf.Simulation(_busy_model(), _lattice(), seed=1, solver="opsplit")
    with pytest.raises(SimulationError, match="exact replicates.*'opsplit'.*rf.Ensemble"):
        rf.ensemble_totals(sim, [0.01], replicates=2)


# -- thinning or clocks -----------------------------------------------------------------


def test_method_option_chooses_how_events_are_drawn():
    """ "auto" thins on this lattice (the hop rate dominates every voxel's rate);
    each method can be forced; the two draw other random numbers (different
    runs of one seed); a bad name is a SimulationError naming the option."""
    runs = {}
    for method in ("auto", "clocks", "thinning"):
        sim, _ = _agreement_sim("molecules", 5, {"method": method})
        engine = sim.make_engine()
        assert engine.method == ("thinning" if method == "auto" else method)
        engine.advance(0.05)
        runs[method] = engine.totals()
        if engine.method == "thinning":
            assert 0 < engine.rejected_candidates < 0.5 * engine.total_events
        else:
            assert engine.rejected_candidates == 0
    np.testing.assert_array_equal(runs["auto"], runs["thinning"])
    assert not np.array_equal(runs["clocks"], runs["thinning"])
    with pytest.raises(SimulationError, match="solver option 'method' = 'fast'"):
        _agreement_sim("molecules", 5, {"method": "fast"})
