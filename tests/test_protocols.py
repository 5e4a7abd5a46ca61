"""Exercise protocols and rate schedules: exact switching in the core, the
Poisson statistics of a switched source, persistence in HDF5 and checkpoints,
scenario and ensemble plumbing, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import redoxfield as rf
from redoxfield import protocols as P
from redoxfield.errors import ScenarioError, SimulationError
from redoxfield.scenario import parse_scenario

N_A = 6.02214076e23  # /mol (SI 2019), written out so the check is independent
K_SOURCE = 2.0  # uM/s
SHAPE, H = (3, 3, 3), 0.2


def _model() -> rf.Model:
    m = rf.Model()
    m.species("A", D=1.0)
    m.reaction("-> A", k=K_SOURCE, name="contraction source", activity=(0.0, 1.0))
    return m


def _expected_births(duration_at_full: float) -> float:
    volume_l = np.prod(SHAPE) * H**3 * 1e-15
    return K_SOURCE * 1e-6 * N_A * volume_l * duration_at_full


def test_protocol_breakpoints_and_activity() -> None:
    p = P.sequence(P.rest(0.1), P.hiit(3, 0.02, 0.01, rest_intensity=0.2), P.recovery(0.05))
    times, levels = p.breakpoints()
    np.testing.assert_allclose(times, [0, 0.1, 0.12, 0.13, 0.15, 0.16, 0.18])
    np.testing.assert_allclose(levels, [0, 1, 0.2, 1, 0.2, 1, 0])
    assert p.duration == pytest.approx(0.23)
    np.testing.assert_allclose(p.activity([0.05, 0.11, 0.125, 1.0]), [0, 1, 0.2, 0])
    trains = P.eccentric_trains(3, 0.01, 0.05)
    assert trains.duration == pytest.approx(0.11)
    assert P.stimulation_train(4, 100.0, 0.002).breakpoints()[0].size == 8
    assert P.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: P.rest(-1.0), "rest duration"),
        (lambda: P.continuous(1.0, intensity=1.5), "intensity"),
        (lambda: P.hiit(0, 1.0, 1.0), "hiit intervals"),
        (lambda: P.stimulation_train(3, 100.0, 0.02), "longer than the period"),
        (lambda: P.eccentric_trains(2, 1.0, 0.5), "shorter than train_duration"),
        (lambda: P.from_dict({"phases": [{"kind": "sprint", "duration": 1}]}), "sprint"),
        (lambda: P.from_dict({"phases": [{"kind": "rest", "length": 1}]}), "length"),
        (lambda: P.from_dict({"phases": []}), "non-empty"),
    ],
)
def test_bad_protocols_name_the_problem(make, fragment) -> None:
    with pytest.raises(SimulationError, match=fragment):
        make()


def test_switches_are_exact_and_births_are_poisson() -> None:
    """Source on only during [0.1, 0.2) (activity 1) and at half rate during
    [0.3, 0.4): no birth outside those windows (exact switching), and the count
    is Poisson with the integrated rate (60 replicates, mean within 4 se)."""
    protocol = P.sequence(
        P.rest(0.1), P.continuous(0.1, intensity=1.0), P.rest(0.1), P.continuous(0.1, 0.5)
    )
    totals = []
    for rep in range(60):
        sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=5, replicate=rep)
        sim.set_protocol(protocol)
        res = sim.run(0.5, 0.05)
        tot = res.total("A")
        t = res.times
        assert np.all(tot[t <= 0.1 + 1e-12] == 0)
        np.testing.assert_array_equal(tot[(t >= 0.2) & (t <= 0.3)], tot[np.isclose(t, 0.2)][0])
        assert tot[-1] == tot[np.isclose(t, 0.4)][0]
        totals.append(tot[-1])
    mean = _expected_births(0.1 + 0.05)
    se = np.sqrt(mean / len(totals))
    assert abs(np.mean(totals) - mean) < 4 * se, (np.mean(totals), mean)


def test_schedule_is_saved_and_read_back(tmp_path) -> None:
    sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=1)
    protocol = P.sequence(P.rest(0.05), P.continuous(0.05, 0.5))
    sim.set_protocol(protocol)
    res = sim.run(0.2, 0.05, output=tmp_path / "p.h5")
    back = rf.Result.load(tmp_path / "p.h5")
    times, factors = back.rate_schedule
    np.testing.assert_allclose(times, [0.0, 0.05, 0.1])
    np.testing.assert_allclose(factors["contraction source"], [0.0, 0.5, 0.0])
    assert back.protocol == protocol
    np.testing.assert_allclose(back.activity(), protocol.activity(res.times))


def test_resume_with_schedule_is_bitwise_identical(tmp_path) -> None:
    """Checkpoint in the middle of a protocol and restore: same trajectory."""
    sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=3)
    sim.set_protocol(P.hiit(4, 0.02, 0.02))
    ref = sim.make_engine()
    ref.advance(0.2)
    want = ref.counts()
    for cut in (0.01, 0.03, 0.05):
        e = sim.make_engine()
        e.advance(cut)
        from redoxfield.simulation import _load_core

        back = _load_core().NsmEngine.restore(**sim.engine_arrays(), state=e.checkpoint())
        back.advance(0.2)
        np.testing.assert_array_equal(back.counts(), want)


def test_scenario_protocol_and_schedule_tables(tmp_path) -> None:
    base = """
name = "p"
[geometry]
kind = "lattice"
shape = [3, 3, 3]
spacing = 0.2
[[species]]
name = "A"
D = 1.0
[[reactions]]
name = "src"
equation = "-> A"
k = 2.0
activity = [0.0, 1.0]
[run]
t_end = 0.2
dt_sample = 0.05
"""
    sc = parse_scenario(
        base
        + """
[protocol]
phases = [{kind = "rest", duration = 0.1}, {kind = "continuous", duration = 0.05, intensity = 1.0}]
"""
    )
    sim = sc.simulation()
    assert sim.protocol is not None and sim.protocol.duration == pytest.approx(0.15)
    res = sc.run(tmp_path / "s.h5")
    assert res.total("A")[2] == 0 and res.rate_schedule is not None
    raw = parse_scenario(base + "[schedule]\ntimes = [0.0, 0.1]\nfactors = {src = [0.0, 3.0]}\n")
    times, factors = raw.simulation().rate_schedule
    np.testing.assert_allclose(factors["src"], [0.0, 3.0])
    with pytest.raises(ScenarioError, match="unknown reaction 'nope'"):
        parse_scenario(base + "[schedule]\ntimes = [0.0]\nfactors = {nope = [1.0]}\n")
    with pytest.raises(ScenarioError, match="activity"):
        parse_scenario(base.replace("activity = [0.0, 1.0]", "activity = [1.0]"))


def test_ensembles_carry_the_protocol() -> None:
    sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=2)
    sim.set_protocol(P.sequence(P.rest(0.05), P.continuous(0.05)))
    ens = rf.Ensemble(sim, replicates=2, t_end=0.1, dt_sample=0.05)
    one = ens.simulation(0, 1)
    assert one.protocol == sim.protocol
    times, factors = one.rate_schedule
    np.testing.assert_allclose(factors["contraction source"], [0.0, 0.5, 0.0])


@pytest.mark.parametrize(
    "times, factors, fragment",
    [
        ([0.1, 0.1], {"contraction source": [1, 2]}, "increase strictly"),
        ([-1.0], {"contraction source": [1]}, ">= 0"),
        ([0.1], {"nope": [1]}, "unknown reaction 'nope'"),
        ([0.1, 0.2], {"contraction source": [1]}, "2 numbers"),
        ([0.1], {"contraction source": [-2]}, "finite and >= 0"),
        ("abc", {"contraction source": [1]}, "1-D sequence"),
        ([0.1], {}, "non-empty mapping"),
    ],
)
def test_bad_schedules_name_the_problem(times, factors, fragment) -> None:
    sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H))
    with pytest.raises(SimulationError, match=fragment):
        sim.set_rate_schedule(times, factors)


def test_protocol_needs_a_coupled_reaction() -> None:
    m = rf.Model()
    m.species("A")
    m.reaction("-> A", k=1.0)
    sim = rf.Simulation(m, rf.Lattice(shape=SHAPE, spacing=H))
    with pytest.raises(SimulationError, match="activity"):
        sim.set_protocol(P.rest(1.0))
    with pytest.raises(rf.ModelError, match="activity"):
        m.reaction("-> A", k=1.0, activity=(1.0,))


def test_opsplit_honours_the_protocol_exactly() -> None:
    """The approximate solver ends its steps on the switch times: no birth while
    the source is off, and the births match the integrated rate (Poisson, 40
    replicates, 4 se)."""
    protocol = P.sequence(P.rest(0.1), P.continuous(0.1, intensity=1.0))
    totals = []
    for rep in range(40):
        sim = rf.Simulation(
            _model(), rf.Lattice(shape=SHAPE, spacing=H), seed=9, replicate=rep, solver="opsplit"
        )
        sim.set_protocol(protocol)
        res = sim.run(0.3, 0.05)
        tot = res.total("A")
        assert np.all(tot[res.times <= 0.1 + 1e-12] == 0)
        assert tot[-1] == tot[np.isclose(res.times, 0.2)][0]
        totals.append(tot[-1])
    mean = _expected_births(0.1)
    assert abs(np.mean(totals) - mean) < 4 * np.sqrt(mean / len(totals))


def test_fast_ensemble_carries_the_schedule() -> None:
    """rf.ensemble_totals runs the same switched trajectories as one-by-one runs."""
    sim = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=4)
    sim.set_protocol(P.sequence(P.rest(0.05), P.continuous(0.05, intensity=1.0)))
    times = np.array([0.05, 0.1, 0.15])
    ens = rf.ensemble_totals(sim, times, replicates=3, threads=1)
    assert np.all(ens.totals[:, 0, 0] == 0)
    for r in range(3):
        one = rf.Simulation(_model(), rf.Lattice(shape=SHAPE, spacing=H), seed=4, replicate=r)
        one.set_protocol(sim.protocol)
        engine = one.make_engine()
        for k, t in enumerate(times):
            engine.advance(t)
            assert engine.totals()[0] == ens.totals[r, k, 0]
