r"""Validation (d): small well-mixed systems against the exact chemical master equation.

One voxel of side h = 0.1 µm (V = 1e-3 µm³ = 1e-18 L), so that
``Omega = N_A V = 6.02214076e5`` molecules per mol/L. The CME generator is built
here from the *macroscopic* rate constants and the textbook (Gillespie 1976/1977)
propensities, independently of redoxfield.units:

- ``A + B -> C``, k in 1/(M s): propensity ``k nA nB / Omega``;
- ``2 A -> B`` with the convention of docs/units.md, macroscopic *reaction* rate
  ``v = k [A]²`` (so ``d[A]/dt = -2 k [A]²``): events per second in V are
  ``v Omega = k nA² / Omega`` in the macroscopic limit, and the exact propensity
  counts ordered pairs of distinct molecules, ``k nA (nA - 1) / Omega``;
- first order ``X -> ...``, k in 1/s: ``k nX``.

Each system is closed, so one count determines the state (a few dozen states);
``p(t) = p0 expm(Q t)`` with scipy. 20000 independent replicates (same seed,
replicate = 0..19999) are compared with p(t) by a chi-square goodness-of-fit test,
bins with expected count < 5 pooled; pass when p > 1e-3. The means are also
checked against the exact mean within 4 standard errors (se from the exact
variance / sqrt(20000)). Replicates use Simulation.make_engine (a fresh core engine
per replicate); one replicate is also run through Simulation.run and must give
identical counts.

The system with a moving species (mobile A, B and C immobile, no A + A) runs with
both exact solvers, "nsm" and "molecules", same seed and tolerances; the others
have no moving species, or take two of it (2 A), and are refused by "molecules"
(checked below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

import redoxfield as rf

from ._stats import P_MIN, chi_square_pvalue
from .conftest import needs_core

pytestmark = needs_core

H = 0.1  # µm
OMEGA = 6.02214076e23 * (H**3) * 1e-15  # molecules per (mol/L) in the voxel
N_REPLICATES = 20000


def exact_distribution(rates_up, rates_down, p0, t):
    """Birth-death chain on states 0..S: ``rates_up[s]`` is s -> s+1, ``rates_down[s]``
    is s -> s-1. Returns p(t) = p0 expm(Q t)."""
    n = len(p0)
    q = np.zeros((n, n))
    for s in range(n):
        if s + 1 < n:
            q[s, s + 1] = rates_up[s]
        if s > 0:
            q[s, s - 1] = rates_down[s]
        q[s, s] = -q[s].sum()
    p = np.asarray(p0, dtype=float) @ expm(q * t)
    assert abs(p.sum() - 1) < 1e-9 and p.min() > -1e-12
    return np.clip(p, 0, None)


def binding_chain(a0: int, b0: int, k_on: float, k_off: float):
    """A + B <-> C from (a0, b0, 0) as a chain on nC = 0..b0: (up, down, p0)."""
    c = np.arange(b0 + 1)
    up = k_on * (a0 - c) * (b0 - c) / OMEGA
    down = k_off * c
    p0 = np.zeros(b0 + 1)
    p0[0] = 1
    return up, down, p0


def sample_replicates(sim: rf.Simulation, species: str, t: float) -> np.ndarray:
    idx = sim.species.index(species)
    out = np.empty(N_REPLICATES, dtype=np.int64)
    for r in range(N_REPLICATES):
        sim.replicate = r
        eng = sim.make_engine()
        eng.advance(t)
        out[r] = eng.totals()[idx]
    # The public run() path gives the same trajectory for the same (seed, replicate).
    sim.replicate = 0
    res = sim.run(t_end=t, dt_sample=t)
    assert res.total(species)[-1] == out[0]
    return out


def check_against(samples: np.ndarray, p: np.ndarray, label: str) -> dict:
    chi2, pval, dof = chi_square_pvalue(samples, p)
    states = np.arange(p.size)
    mean = float(p @ states)
    sd = math.sqrt(float(p @ (states - mean) ** 2))
    se = sd / math.sqrt(samples.size)
    report = dict(
        system=label,
        chi2=chi2,
        dof=dof,
        p_value=pval,
        mean=float(samples.mean()),
        exact_mean=mean,
        se=se,
    )
    print("cme", report)
    assert pval > P_MIN, report
    assert abs(samples.mean() - mean) < 4 * se, report
    return report


@pytest.mark.parametrize("t", [0.3, 2.0])
def test_heterodimer_binding(t):
    """A + B <-> C from nA = 12, nB = 8, nC = 0; k_on = 3e4 /(M s) (0.0498 /s per
    pair in this voxel), k_off = 1 /s. t = 0.3 s (transient) and 2 s (near
    equilibrium). State: nC in 0..8."""
    a0, b0 = 12, 8
    k_on, k_off = 3.0e4, 1.0
    m = rf.Model()
    for s in ("A", "B", "C"):
        m.species(s)
    m.reaction("A + B -> C", k=k_on)
    m.reaction("C -> A + B", k=k_off)
    sim = rf.Simulation(m, rf.Lattice(shape=(1, 1, 1), spacing=H), seed=4242)
    sim.set_count("A", a0)
    sim.set_count("B", b0)

    up, down, p0 = binding_chain(a0, b0, k_on, k_off)
    p = exact_distribution(up, down, p0, t)
    samples = sample_replicates(sim, "C", t)
    check_against(samples, p, f"A+B<->C t={t}")


@pytest.mark.parametrize("t", [0.5, 3.0])
def test_homodimerisation(t):
    """2 A <-> B from nA = 30, nB = 0; k_dim = 2e4 /(M s) (v = k [A]²), k_split =
    0.5 /s. State: nB in 0..15. A factor 2 error in the A + A convention moves the
    t = 0.5 s mean by ~3 molecules (tens of standard errors)."""
    a0 = 30
    k_dim, k_split = 2.0e4, 0.5
    m = rf.Model()
    m.species("A")
    m.species("B")
    m.reaction("2 A -> B", k=k_dim)
    m.reaction("B -> 2 A", k=k_split)
    sim = rf.Simulation(m, rf.Lattice(shape=(1, 1, 1), spacing=H), seed=777)
    sim.set_count("A", a0)

    nb = np.arange(a0 // 2 + 1)
    na = a0 - 2 * nb
    up = k_dim * na * (na - 1) / OMEGA
    down = k_split * nb
    p0 = np.zeros(nb.size)
    p0[0] = 1
    p = exact_distribution(up, down, p0, t)
    samples = sample_replicates(sim, "B", t)
    check_against(samples, p, f"2A<->B t={t}")
    # Cross-check: the other convention (propensity k nA (nA - 1) / (2 Omega)) is
    # clearly rejected by the same data, so this test can fail on that error.
    p_wrong = exact_distribution(up / 2, down, p0, t)
    assert chi_square_pvalue(samples, p_wrong)[1] < 1e-6


def test_homodimerisation_is_refused_by_the_molecules_solver():
    """2 A -> B with A moving takes two molecules of the moving species: the
    molecules solver refuses it, naming the reaction (and sends to "nsm")."""
    m = rf.Model()
    m.species("A", D=10.0)
    m.species("B")
    m.reaction("2 A -> B", k=2.0e4, name="dimerise")
    m.reaction("B -> 2 A", k=0.5, name="split")
    space = rf.Lattice(shape=(1, 1, 1), spacing=H)
    with pytest.raises(rf.SimulationError, match="cannot run reaction 'dimerise'") as info:
        rf.Simulation(m, space, seed=777, solver="molecules")
    assert str(info.value).startswith("solver 'molecules' cannot run reaction 'dimerise'")
    assert "nsm" in str(info.value)
    rf.Simulation(m, space, seed=777)  # the NSM runs it (test_homodimerisation)


@pytest.mark.parametrize("solver", ["nsm", "molecules"])
@pytest.mark.parametrize("t", [0.3, 1.2])
def test_binding_across_fast_and_static_groups_with_a_rate_switch(t, solver):
    """A + B <-> C as above, but A is mobile (D > 0; alone in the voxel it never
    moves) and B, C are not: the NSM files ``A + B -> C`` in the subvolume's fast
    group and ``C -> A + B`` (no mobile reactant) in its static group, each event of
    one group rescaling the other's pending time. k_on triples at t = 0.15 s (an
    exact rate switch of both queues). Exact: p(t) = p0 expm(Q1 0.15) expm(Q3 (t -
    0.15)). A lost or unscaled update in either direction shifts the mean by many
    standard errors."""
    a0, b0 = 12, 8
    k_on, k_off, t_switch = 3.0e4, 1.0, 0.15
    m = rf.Model()
    m.species("A", D=100.0)
    m.species("B")
    m.species("C")
    m.reaction("A + B -> C", k=k_on, name="bind")
    m.reaction("C -> A + B", k=k_off, name="unbind")
    sim = rf.Simulation(m, rf.Lattice(shape=(1, 1, 1), spacing=H), seed=515, solver=solver)
    sim.set_count("A", a0)
    sim.set_count("B", b0)
    sim.set_rate_schedule([t_switch], {"bind": [3.0]})

    up, down, p0 = binding_chain(a0, b0, k_on, k_off)
    p_switch = exact_distribution(up, down, p0, t_switch)
    p = exact_distribution(3 * up, down, p_switch, t - t_switch)
    samples = sample_replicates(sim, "C", t)
    check_against(samples, p, f"A+B<->C, mobile A, switch, t={t}, {solver}")
    # Without the switch the same data are clearly rejected.
    assert chi_square_pvalue(samples, exact_distribution(up, down, p0, t))[1] < 1e-6
