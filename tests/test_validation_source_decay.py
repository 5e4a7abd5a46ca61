r"""Validation (c): planar source with first-order decay in a box.

Continuous problem on 0 < x < L with reflecting (zero-flux) walls:

    D C'' - k C + q 1[x < a] = 0,   C'(0) = C'(L) = 0,

``q`` in µM/s, ``k`` in 1/s, decay length ``lam = sqrt(D / k)``. On each side of
``x = a`` the solution is a constant plus a cosh that satisfies its wall condition:
``C = q/k + A cosh(x/lam)`` for x < a and ``C = B cosh((L - x)/lam)`` for x > a.
Continuity of C and C' at ``x = a`` gives
``A sinh(a/lam) = -B sinh((L - a)/lam)`` and
``q/k = B [cosh((L-a)/lam) sinh(a/lam) + sinh((L-a)/lam) cosh(a/lam)] / sinh(a/lam)
= B sinh(L/lam) / sinh(a/lam)``, hence

    C(x) = (q/k) [1 - sinh((L-a)/lam) cosh(x/lam) / sinh(L/lam)],     x <= a
    C(x) = (q/k) sinh(a/lam) cosh((L-x)/lam) / sinh(L/lam),            x >= a

(flux balance: the integral of k C over the box equals q a). The lattice holds
voxel counts, so the comparison is with the average of C over each voxel,
computed from the antiderivative (``integral cosh(x/lam) dx = lam sinh(x/lam)``).

Set-up: lam = 1 µm (D = 1 µm²/s, k = 1/s), h = 0.1 µm, L = 6 µm, a = 0.5 µm, a
(60, 1, 1) lattice; q = 2000 µM/s, i.e. 1204 molecules/s per source voxel, about
6000 molecules in the box; burn-in 10/k (the slowest relaxation rate of the
lattice is k, so the start from zero leaves a relative deficit e^-10); then the
counts are averaged over 1000 samples 0.05 s apart (50 s).

Checks:

1. Acceptance: time-averaged voxel concentrations within 5 % of the analytic voxel
   averages for every voxel with centre x < a + 3 lam.
2. Statistics: the mean of the NSM obeys the lattice ODE exactly (the network is
   linear), so the voxel means must match its steady state ``n*`` within 4 standard
   errors (35 voxels: Bonferroni false-alarm rate <= 35 x 6.3e-5 = 0.2 %). The
   standard errors are exact, not estimated: for independent molecules with
   immigration the stationary law is product Poisson and
   ``Cov(n_i(0), n_i(m Delta)) = n*_i (P^m)_ii`` with ``P = expm(G Delta)``, G the
   one-molecule generator (jumps D/h², death k), so
   ``Var(mean of n samples) <= (n*_i / n) [1 + 2 (P (I - P)^-1)_ii]``.
   The relative standard error is <= 1.2 % over the checked voxels (asserted, so
   that the 5 % test has power: 5 % is > 4 se).
3. The discretisation error alone (lattice steady state vs analytic voxel average)
   is < 1 % there (deterministic).

The stochastic checks run with both exact solvers ("nsm" and "molecules": A is
the one moving species), same seed and tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

import redoxfield as rf

from .conftest import needs_core

pytestmark = needs_core

MOLECULES_PER_UM_UM3 = 6.02214076e23 * 1e-21

D, K = 1.0, 1.0
LAM = math.sqrt(D / K)
H, NX = 0.1, 60
L = NX * H
A_SRC = 0.5
Q = 2000.0  # µM/s


def analytic_profile(x):
    """C(x) in µM (module docstring)."""
    x = np.asarray(x, dtype=float)
    c0 = Q / K
    inside = c0 * (1 - np.sinh((L - A_SRC) / LAM) * np.cosh(x / LAM) / np.sinh(L / LAM))
    outside = c0 * np.sinh(A_SRC / LAM) * np.cosh((L - x) / LAM) / np.sinh(L / LAM)
    return np.where(x <= A_SRC, inside, outside)


def analytic_antiderivative(x):
    """Integral of C from 0 to x (µM µm)."""
    x = np.asarray(x, dtype=float)
    c0 = Q / K
    s = np.sinh(L / LAM)

    def left(u):
        return c0 * (u - np.sinh((L - A_SRC) / LAM) * LAM * np.sinh(u / LAM) / s)

    def right(u):  # integral from a to u of the outer branch
        amp = c0 * np.sinh(A_SRC / LAM) / s
        return amp * LAM * (np.sinh((L - A_SRC) / LAM) - np.sinh((L - u) / LAM))

    return np.where(x <= A_SRC, left(np.minimum(x, A_SRC)), left(A_SRC) + right(x))


def voxel_averages():
    edges = np.arange(NX + 1) * H
    return np.diff(analytic_antiderivative(edges)) / H


def lattice_generator():
    """One-molecule generator on the 60 voxels: jump D/h² to each neighbour, death k."""
    g = np.zeros((NX, NX))
    for i in range(NX):
        for j in (i - 1, i + 1):
            if 0 <= j < NX:
                g[i, j] = D / H**2
        g[i, i] = -g[i].sum() - K
    return g


def test_analytic_solution_satisfies_the_equation():
    """The closed form solves the ODE (finite differences), the walls and the flux
    balance; its voxel averages integrate to q a / k."""
    x = np.linspace(0.0, L, 60001)
    c = analytic_profile(x)
    dx = x[1] - x[0]
    c2 = np.gradient(np.gradient(c, dx), dx)
    resid = D * c2 - K * c + Q * (x < A_SRC)
    away = np.abs(x - A_SRC) > 0.01
    away &= (x > 0.01) & (x < L - 0.01)
    assert np.max(np.abs(resid[away])) < 1e-3 * Q
    assert abs(c[1] - c[0]) < 1e-6 * c[0]  # C'(0) = 0
    assert abs(c[-1] - c[-2]) < 1e-6 * c[0]  # C'(L) = 0
    assert math.isclose(voxel_averages().sum() * H, Q * A_SRC / K, rel_tol=1e-12)


@pytest.mark.parametrize("solver", ["nsm", "molecules"])
def test_stationary_profile_matches_cosh_solution(solver):
    space = rf.Lattice(shape=(NX, 1, 1), spacing=H)
    space.region("source", lambda x, y, z: x < A_SRC)
    assert space.regions["source"].sum() == round(A_SRC / H)
    m = rf.Model()
    m.species("A", D=D)
    m.reaction("-> A", k=Q, region="source")
    m.reaction("A ->", k=K)
    sim = rf.Simulation(m, space, seed=314159, solver=solver)
    dt, t_burn, n = 0.05, 10.0 / K, 1000
    res = sim.run(t_end=t_burn + n * dt, dt_sample=dt)
    assert res.solver == solver
    keep = res.times > t_burn + 1e-9
    assert keep.sum() == n
    counts = res.counts("A")[keep].astype(float)  # (n, 60)
    mean = counts.mean(axis=0)

    v = H**3
    conc = mean / (v * MOLECULES_PER_UM_UM3)  # µM
    exact_avg = voxel_averages()
    x = np.asarray(space.centers)[:, 0]
    checked = x < A_SRC + 3 * LAM

    # Exact lattice steady state n* (molecules per voxel) and the exact se.
    g = lattice_generator()
    birth = np.where(x < A_SRC, Q * v * MOLECULES_PER_UM_UM3, 0.0)
    n_star = np.linalg.solve(-g.T, birth)
    p = expm(g * dt)
    tail = p @ np.linalg.inv(np.eye(NX) - p)
    se = np.sqrt(n_star * (1 + 2 * np.diag(tail)) / n)
    disc_conc = n_star / (v * MOLECULES_PER_UM_UM3)

    rel = conc / exact_avg - 1
    z = (mean - n_star) / se
    rel_se = se / n_star
    report = dict(
        solver=solver,
        max_rel_dev=float(np.max(np.abs(rel[checked]))),
        max_rel_se=float(np.max(rel_se[checked])),
        max_abs_z=float(np.max(np.abs(z[checked]))),
        disc_vs_analytic=float(np.max(np.abs(disc_conc / exact_avg - 1)[checked])),
        total_mean=float(counts.sum(axis=1).mean()),
        total_expected=float(birth.sum() / K),
    )
    print("source-decay", report)
    print("x", np.round(x[checked][::3], 2).tolist())
    print("measured", np.round(conc[checked][::3], 1).tolist())
    print("analytic", np.round(exact_avg[checked][::3], 1).tolist())
    assert np.all(4 * rel_se[checked] < 0.05), report  # the 5 % test has power
    assert np.all(np.abs(disc_conc / exact_avg - 1)[checked] < 0.01), report
    assert np.all(np.abs(rel[checked]) < 0.05), report
    assert np.all(np.abs(z[checked]) < 4), report
    # The total is an immigration-death process (autocorrelation e^{-k tau}).
    rho = math.exp(-K * dt)
    lam_tot = birth.sum() / K
    se_tot = math.sqrt(lam_tot * (1 + rho) / (1 - rho) / n)
    assert abs(counts.sum(axis=1).mean() - lam_tot) < 3 * se_tot, report
