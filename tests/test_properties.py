"""Property tests (hypothesis) of the engine foundation.

Random small networks (1-4 species, 0-5 mass-action reactions of order 0-2, random
D, some reactions scoped to a random region) on random small lattices (1-4 voxels
per axis, random spacing) with random initial counts. Properties, each exact (no
statistical tolerance):

- valid input never crashes: the run finishes with a complete result; counts are
  non-negative; per-sample counts sum to the stored totals;
- bookkeeping: at every sample, totals(t) - totals(0) equals the stoichiometry
  matrix times the cumulative reaction-event counters (computed here from the
  reaction lists we generated, not from redoxfield);
- conserved moieties: A + B <-> C keeps A + C and B + C, 2 A <-> B keeps A + 2 B,
  exactly, in every sample and every voxel sum;
- diffusion alone conserves every species' total and fires no reaction;
- the same (seed, replicate) gives identical counts and event counters; another
  seed gives different counts (for systems with hundreds of events);
- bad numbers (NaN, inf, negative) for k or D are refused with a ValueError naming
  the value; good ones are accepted.

Rates are bounded so that an example has at most a few thousand events (order 0 as
a flux of <= 200 molecules/s; order 1 <= 20 /s; order 2 <= 10 /s per pair in the
smallest voxel), t_end = 0.05 s.

The exact "molecules" solver gets its own variants (networks drawn
with one moving species 3 times in 4): where the network qualifies (exactly one
species with D > 0, no reaction taking two of it; decided here from the generated
lists) the same properties hold; where it does not, Simulation(...) must refuse
it with a SimulationError saying why.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redoxfield as rf

from .conftest import needs_core

pytestmark = needs_core

NAMES = ("A", "B", "C", "D")
OMEGA_MIN = 6.02214076e23 * 0.1**3 * 1e-15  # N_A V for the smallest voxel (h = 0.1 µm)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # a fixed sequence of examples: the suite is reproducible
)
MOLECULES_SETTINGS = settings(SETTINGS, max_examples=40)


@st.composite
def lattices(draw, min_voxels=1):
    shape = tuple(draw(st.integers(1, 4)) for _ in range(3))
    if math.prod(shape) < min_voxels:
        shape = (max(shape[0], min_voxels), shape[1], shape[2])
    h = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))
    space = rf.Lattice(shape=shape, spacing=h)
    mask = np.array(
        draw(st.lists(st.booleans(), min_size=space.n_subvolumes, max_size=space.n_subvolumes))
    )
    if not mask.any():
        mask[0] = True
    space.region("R", mask)
    return space


@st.composite
def networks(draw, one_mover=False):
    """A random network; ``one_mover``: 3 times in 4 exactly one species moves
    (so that the molecules solver applies more often than by chance)."""
    n_species = draw(st.integers(1, 4))
    names = NAMES[:n_species]
    diffusion = [draw(st.sampled_from([0.0, 0.1, 1.0, 5.0])) for _ in names]
    if one_mover and draw(st.integers(0, 3)) > 0:
        j = draw(st.integers(0, n_species - 1))
        diffusion = [0.0] * n_species
        diffusion[j] = draw(st.sampled_from([0.1, 1.0, 5.0]))
    reactions = []
    for _ in range(draw(st.integers(0, 5))):
        order = draw(st.integers(0, 2))
        reactants = [draw(st.sampled_from(names)) for _ in range(order)]
        products = [draw(st.sampled_from(names)) for _ in range(draw(st.integers(0, 2)))]
        if not reactants and not products:
            products = [names[0]]
        scoped = draw(st.booleans())
        if order == 0:
            rate = {"flux": draw(st.floats(0.0, 200.0))}
        elif order == 1:
            rate = {"k": draw(st.floats(0.0, 20.0))}
        else:
            rate = {"k": draw(st.floats(0.0, 10.0)) * OMEGA_MIN / 2}  # <= 10 /s per pair
        reactions.append((reactants, products, rate, "R" if scoped else None))
    counts = [draw(st.integers(0, 60)) for _ in names]
    return names, diffusion, reactions, counts


def equation(reactants, products):
    return f"{' + '.join(reactants)} -> {' + '.join(products) or '0'}"


def model(names, diffusion, reactions):
    m = rf.Model()
    for s, d in zip(names, diffusion, strict=True):
        m.species(s, D=d)
    for i, (reac, prod, rate, region) in enumerate(reactions):
        m.reaction(equation(reac, prod), region=region, name=f"r{i}", **rate)
    return m


def build(names, diffusion, reactions, counts, space, seed=1, replicate=0, solver="nsm"):
    m = model(names, diffusion, reactions)
    sim = rf.Simulation(m, space, seed=seed, replicate=replicate, solver=solver)
    for s, n in zip(names, counts, strict=True):
        sim.set_count(s, n)
    return sim


def molecules_refusal(names, diffusion, reactions):
    """Why solver "molecules" must refuse this network, as (start of the message,
    names it must contain), or None when it applies: exactly one species with
    D > 0 (on any lattice, one voxel too) and no reaction with two of it."""
    moving = [s for s, d in zip(names, diffusion, strict=True) if d > 0]
    if len(moving) != 1:
        return "solver 'molecules' needs exactly one species that moves", moving
    for i, (reac, _, _, _) in enumerate(reactions):
        if reac.count(moving[0]) > 1:
            return f"solver 'molecules' cannot run reaction 'r{i}'", [moving[0]]
    return None


def check_refused(why, names, diffusion, reactions, space):
    start, named = why
    event("refused: " + ("two of the mover" if "cannot run" in start else "not one mover"))
    with pytest.raises(rf.SimulationError) as info:
        rf.Simulation(model(names, diffusion, reactions), space, seed=1, solver="molecules")
    msg = str(info.value)
    assert msg.startswith(start), msg
    for s in named:
        assert re.search(rf"\b{s}\b", msg), (s, msg)


def stoichiometry(names, reactions):
    """(R, S) net change of each species by each reaction."""
    nu = np.zeros((len(reactions), len(names)), dtype=np.int64)
    for r, (reac, prod, _, _) in enumerate(reactions):
        for s in reac:
            nu[r, names.index(s)] -= 1
        for s in prod:
            nu[r, names.index(s)] += 1
    return nu


def all_counts(res, names):
    return np.stack([res.counts(s) for s in names], axis=-1)  # (T, N, S)


@SETTINGS
@given(net=networks(), space=lattices(), seed=st.integers(0, 2**64 - 1))
def test_random_networks_run_and_keep_their_books(net, space, seed):
    run_and_check_books(net, space, seed, "nsm")


@MOLECULES_SETTINGS
@given(net=networks(one_mover=True), space=lattices(), seed=st.integers(0, 2**64 - 1))
def test_molecules_random_networks_run_and_keep_their_books_or_are_refused(net, space, seed):
    names, diffusion, reactions, _ = net
    why = molecules_refusal(names, diffusion, reactions)
    if why is not None:
        check_refused(why, names, diffusion, reactions, space)
        return
    event("ran")
    diff_events = run_and_check_books(net, space, seed, "molecules")
    # Only the one moving species is transported.
    for s, d in enumerate(diffusion):
        if d == 0.0:
            assert diff_events[s] == 0


def run_and_check_books(net, space, seed, solver):
    """Run one random network; check the exact bookkeeping; the final diffusion
    event counters per species."""
    names, diffusion, reactions, counts = net
    sim = build(names, diffusion, reactions, counts, space, seed=seed, solver=solver)
    res = sim.run(t_end=0.05, dt_sample=0.01)
    assert res.complete
    assert res.solver == solver
    assert list(res.species) == list(names)
    c = all_counts(res, names)
    assert c.shape == (6, space.n_subvolumes, len(names))
    assert c.min() >= 0
    totals = np.stack([res.total(s) for s in names], axis=-1)
    np.testing.assert_array_equal(c.sum(axis=1), totals)
    np.testing.assert_array_equal(totals[0], counts)
    ev = res.events_at_samples()
    reaction_events = np.asarray(ev["reaction"], dtype=np.int64).reshape(6, len(reactions))
    nu = stoichiometry(names, reactions)
    np.testing.assert_array_equal(totals - totals[0], reaction_events @ nu)
    # No transport of immobile species, and none at all on a single voxel.
    diff_events = np.asarray(ev["diffusion"], dtype=np.int64)[-1]
    for s, d in enumerate(diffusion):
        if d == 0.0 or space.n_subvolumes == 1:
            assert diff_events[s] == 0
    assert res.events["total"] == int(diff_events.sum() + reaction_events[-1].sum())
    return diff_events


@SETTINGS
@given(
    space=lattices(),
    rates=st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 20.0), st.floats(0.0, 10.0)),
    diffusion=st.tuples(*[st.sampled_from([0.0, 0.5, 5.0])] * 3),
    counts=st.tuples(*[st.integers(0, 80)] * 3),
    seed=st.integers(0, 2**32),
)
def test_conserved_moieties(space, rates, diffusion, counts, seed):
    """A + B <-> C (unbinding only in region R) keeps A + C and B + C; 2 A <-> B
    keeps A + 2 B; exactly, at every sample."""
    check_binding_moieties(space, rates, diffusion, counts, seed, "nsm")
    check_dimer_moiety(space, rates, diffusion, counts, seed, "nsm")


BINDING = ("A", "B", "C")
DIMER = ("A", "B")


def binding_reactions(rates):
    """A + B <-> C, unbinding only in region R."""
    return [
        (["A", "B"], ["C"], {"k": rates[0] * OMEGA_MIN}, None),
        (["C"], ["A", "B"], {"k": rates[1]}, "R"),
    ]


def dimer_reactions(rates):
    """2 A <-> B."""
    return [
        (["A", "A"], ["B"], {"k": rates[2] * OMEGA_MIN / 2}, None),
        (["B"], ["A", "A"], {"k": rates[1]}, None),
    ]


def check_binding_moieties(space, rates, diffusion, counts, seed, solver):
    """A + B <-> C keeps A + C and B + C at every sample."""
    sim = build(
        BINDING, diffusion, binding_reactions(rates), counts, space, seed=seed, solver=solver
    )
    res = sim.run(t_end=0.1, dt_sample=0.01)
    c = all_counts(res, BINDING).sum(axis=1)  # (T, 3) totals from the voxel counts
    a, b, cc = c[:, 0], c[:, 1], c[:, 2]
    assert np.all(a + cc == counts[0] + counts[2])
    assert np.all(b + cc == counts[1] + counts[2])


def check_dimer_moiety(space, rates, diffusion, counts, seed, solver):
    """2 A <-> B keeps A + 2 B at every sample."""
    sim = build(
        DIMER, diffusion[:2], dimer_reactions(rates), counts[:2], space, seed=seed, solver=solver
    )
    res = sim.run(t_end=0.1, dt_sample=0.01)
    c = all_counts(res, DIMER).sum(axis=1)
    assert np.all(c[:, 0] + 2 * c[:, 1] == counts[0] + 2 * counts[1])


@MOLECULES_SETTINGS
@given(
    space=lattices(),
    rates=st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 20.0), st.floats(0.0, 10.0)),
    mover=st.integers(0, 2),
    d=st.sampled_from([0.5, 5.0]),
    counts=st.tuples(*[st.integers(0, 80)] * 3),
    seed=st.integers(0, 2**32),
)
def test_molecules_conserved_moieties(space, rates, mover, d, counts, seed):
    """As test_conserved_moieties with exactly one of A, B, C moving. A + B <-> C
    always qualifies; 2 A <-> B (species A, B only) runs when B moves, is refused
    naming the dimerisation when A moves, and for want of a moving species when
    C (absent there) does."""
    diffusion = [0.0, 0.0, 0.0]
    diffusion[mover] = d
    assert molecules_refusal(BINDING, diffusion, binding_reactions(rates)) is None
    check_binding_moieties(space, rates, diffusion, counts, seed, "molecules")

    why = molecules_refusal(DIMER, diffusion[:2], dimer_reactions(rates))
    assert (why is None) == (mover == 1)
    if why is not None:
        assert why[0].endswith("'r0'" if mover == 0 else "moves")
        check_refused(why, DIMER, diffusion[:2], dimer_reactions(rates), space)
        return
    check_dimer_moiety(space, rates, diffusion, counts, seed, "molecules")


@SETTINGS
@given(
    space=lattices(),
    diffusion=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=4),
    counts=st.lists(st.integers(0, 200), min_size=4, max_size=4),
    seed=st.integers(0, 2**64 - 1),
)
def test_diffusion_alone_conserves_each_total(space, diffusion, counts, seed):
    names = NAMES[: len(diffusion)]
    sim = build(names, diffusion, [], counts[: len(names)], space, seed=seed)
    res = sim.run(t_end=0.05, dt_sample=0.005)
    c = all_counts(res, names)
    for s in range(len(names)):
        assert np.all(c[:, :, s].sum(axis=1) == counts[s])
    assert res.events["reaction"] == 0


@MOLECULES_SETTINGS
@given(
    space=lattices(),
    mover=st.integers(0, 3),
    d=st.floats(0.01, 20.0),
    counts=st.lists(st.integers(0, 200), min_size=4, max_size=4),
    seed=st.integers(0, 2**64 - 1),
)
def test_molecules_diffusion_alone_conserves_each_total(space, mover, d, counts, seed):
    """One of up to four species moves, the others sit still: every total is kept,
    the immobile counts stay where they were, no reaction fires."""
    n_species = max(mover + 1, 1 + seed % 4)
    names = NAMES[:n_species]
    diffusion = [0.0] * n_species
    diffusion[mover] = d
    sim = build(names, diffusion, [], counts[:n_species], space, seed=seed, solver="molecules")
    start = sim.counts.copy()
    res = sim.run(t_end=0.05, dt_sample=0.005)
    c = all_counts(res, names)
    for s in range(n_species):
        assert np.all(c[:, :, s].sum(axis=1) == counts[s])
        if s != mover:
            assert np.all(c[:, :, s] == start[:, s])
    assert res.events["reaction"] == 0


@SETTINGS
@given(net=networks(), space=lattices(), seed=st.integers(0, 2**64 - 1))
def test_same_seed_same_result(net, space, seed):
    check_same_seed_same_result(net, space, seed, "nsm")


def check_same_seed_same_result(net, space, seed, solver):
    names, diffusion, reactions, counts = net
    r1 = build(names, diffusion, reactions, counts, space, seed=seed, solver=solver)
    r2 = build(names, diffusion, reactions, counts, space, seed=seed, solver=solver)
    r1, r2 = r1.run(0.05, 0.01), r2.run(0.05, 0.01)
    np.testing.assert_array_equal(all_counts(r1, names), all_counts(r2, names))
    assert r1.events == r2.events


@MOLECULES_SETTINGS
@given(net=networks(one_mover=True), space=lattices(), seed=st.integers(0, 2**64 - 1))
def test_molecules_same_seed_same_result(net, space, seed):
    names, diffusion, reactions, counts = net
    why = molecules_refusal(names, diffusion, reactions)
    if why is not None:
        check_refused(why, names, diffusion, reactions, space)
        return
    event("ran")
    check_same_seed_same_result(net, space, seed, "molecules")


@settings(SETTINGS, max_examples=15)
@given(
    space=lattices(min_voxels=2),
    d=st.sampled_from([1.0, 10.0]),
    n=st.integers(20, 100),
    seeds=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).filter(
        lambda s: s[0] != s[1]
    ),
)
def test_different_seed_different_result(space, d, n, seeds):
    """n >= 20 molecules diffusing on >= 2 voxels, 20 samples each 2 h²/D apart (each
    molecule attempts >= 2 jumps between samples): two streams give identical
    (20, N) arrays with probability < 0.5**20 ~ 1e-6 even in the worst case (2 voxels,
    20 molecules: P(equal count in voxel 0) ~ 0.18 per well-mixed sample)."""
    check_different_seed_different_result(space, d, n, seeds, "nsm")


def check_different_seed_different_result(space, d, n, seeds, solver):
    h = space.spacing[0]
    dt = 2 * h**2 / d
    res = []
    for seed in seeds:
        sim = build(("A",), (d,), [], (n,), space, seed=seed, solver=solver)
        res.append(sim.run(t_end=20 * dt, dt_sample=dt).counts("A")[1:])
    assert not np.array_equal(res[0], res[1])
    # Replicates of one seed are different streams too.
    sim = build(("A",), (d,), [], (n,), space, seed=seeds[0], replicate=1, solver=solver)
    other = sim.run(t_end=20 * dt, dt_sample=dt).counts("A")[1:]
    assert not np.array_equal(res[0], other)


@settings(SETTINGS, max_examples=10)
@given(
    space=lattices(min_voxels=2),
    d=st.sampled_from([1.0, 10.0]),
    n=st.integers(20, 100),
    seeds=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).filter(
        lambda s: s[0] != s[1]
    ),
)
def test_molecules_different_seed_different_result(space, d, n, seeds):
    """As test_different_seed_different_result, with the molecules solver."""
    check_different_seed_different_result(space, d, n, seeds, "molecules")


_any_float = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(k=_any_float, d=_any_float)
def test_rates_and_D_are_validated(k, d):
    m = rf.Model()
    good_d = math.isfinite(d) and d >= 0
    if good_d:
        m.species("A", D=d)
    else:
        with pytest.raises(ValueError, match="D"):
            m.species("A", D=d)
        m.species("A")
    good_k = math.isfinite(k) and k >= 0
    if good_k:
        m.reaction("A ->", k=k)
    else:
        with pytest.raises(ValueError, match="A ->"):
            m.reaction("A ->", k=k)
