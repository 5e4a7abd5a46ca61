r"""Validation (a): birth-death with diffusion on a lattice.

Model: ``-> A`` (zeroth order, ``k0`` in µM/s over a scope of volume ``V_s``, or a
total flux ``F`` in molecules/s), ``A ->`` (``k1`` in 1/s everywhere), diffusion
``D`` on a small cubic lattice with reflecting walls.

Independent result: every molecule is born at total rate
``b = k0 · V_s · N_A · 1e-21`` (molecules/s; or ``b = F``) and dies independently
at rate ``k1`` wherever it is, so the total count is an M/M/inf queue
(immigration-death process) whatever the diffusion does. Its stationary law is
Poisson with ``mean = variance = lambda = b / k1`` and its autocorrelation is
exactly ``exp(-k1 tau)``. With a source spread uniformly over the lattice the
stationary law of the whole field is a product of Poissons, each voxel
``Poisson(lambda V_i / V)`` (a linear network with immigration; equivalently a
multinomial thinning of the Poisson total).

Standard errors. From ``n`` samples spaced ``Delta`` with
``rho = exp(-k1 Delta)`` (large ``n``):

- sample mean: ``Var = (lambda / n) (1 + rho) / (1 - rho)``;
- sample variance: ``Var = (1/n) [lambda (1 + rho)/(1 - rho)
  + 2 lambda^2 (1 + rho^2)/(1 - rho^2)]``, from the bivariate Poisson law of
  ``(N(0), N(tau))`` (common part ``Poisson(lambda rho)``): ``Cov((N_0 - lambda)^2,
  (N_tau - lambda)^2) = lambda rho + 2 lambda^2 rho^2``.

Tolerance: 3 standard errors (two-sided, ~0.3 % false alarm per check for a
correct engine at a given seed; the seeds are fixed, so the outcome is
deterministic). Per-voxel laws: chi-square with p > 1e-3.

Every case runs with both exact solvers, "nsm" and "molecules" (A is the one
moving species), same seeds and tolerances: they simulate the same Markov chain
with different random-number use, so each must pass on its own.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import redoxfield as rf

from ._stats import P_MIN, chi_square_pvalue, poisson_pmf_with_tail
from .conftest import needs_core

pytestmark = needs_core

#: Molecules in 1 µm³ at 1 µM: N_A · 1e-6 mol/L · 1e-15 L/µm³ (exact SI value of N_A).
MOLECULES_PER_UM_UM3 = 6.02214076e23 * 1e-21

#: The exact solvers; every problem here has one moving species (A), so both apply.
EXACT_SOLVERS = ("nsm", "molecules")


def _standard_errors(lam: float, n: int, rho: float) -> tuple[float, float]:
    se_mean = math.sqrt(lam / n * (1 + rho) / (1 - rho))
    se_var = math.sqrt((lam * (1 + rho) / (1 - rho) + 2 * lam**2 * (1 + rho**2) / (1 - rho**2)) / n)
    return se_mean, se_var


def _sample_totals_engine(sim: rf.Simulation, t_burn: float, dt: float, n: int) -> np.ndarray:
    """Totals of species 0 at ``t_burn + dt, ..., t_burn + n dt`` straight from the
    engine (Simulation.run writes every sample to HDF5, which costs ~3 ms a sample;
    the run() path is exercised by the first case)."""
    eng = sim.make_engine()
    eng.advance(t_burn)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        eng.advance(t_burn + (i + 1) * dt)
        out[i] = eng.totals()[0]
    return out


def _check_mean_and_variance(totals: np.ndarray, lam: float, rho: float) -> dict:
    n = totals.size
    mean = float(totals.mean())
    var = float(totals.var(ddof=1))
    se_mean, se_var = _standard_errors(lam, n, rho)
    report = dict(lam=lam, n=n, mean=mean, se_mean=se_mean, var=var, se_var=se_var)
    print("birth-death", report)
    assert abs(mean - lam) < 3 * se_mean, report
    assert abs(var - lam) < 3 * se_var, report
    return report


@pytest.mark.parametrize("solver", EXACT_SOLVERS)
def test_whole_lattice_source_poisson_total_and_voxels(solver):
    """``-> A`` with k0 in µM/s in every voxel, D = 1 µm²/s, 5x5x5 voxels of 0.2 µm.

    lambda = k0 V N_A 1e-21 / k1 = 40 molecules; per voxel Poisson(40/125).
    Samples every 2/k1 = 0.4 s (rho = e^-2) after a burn-in of 6/k1.
    """
    k1, lam, D, h = 5.0, 40.0, 1.0, 0.2
    space = rf.Lattice(shape=(5, 5, 5), spacing=h)
    v_total = float(space.volumes.sum())  # 1 µm³
    k0 = lam * k1 / (v_total * MOLECULES_PER_UM_UM3)  # µM/s
    m = rf.Model()
    m.species("A", D=D)
    m.reaction("-> A", k=k0)
    m.reaction("A ->", k=k1)
    dt, n_burn, n = 2.0 / k1, 3, 2500
    sim = rf.Simulation(m, space, seed=20240601, solver=solver)
    res = sim.run(t_end=dt * (n_burn + n), dt_sample=dt)
    assert res.solver == solver
    assert res.times.size == n_burn + n + 1
    totals = res.total("A")[n_burn + 1 :]
    counts = res.counts("A")[n_burn + 1 :]  # (n, 125)
    np.testing.assert_array_equal(counts.sum(axis=1), totals)
    _check_mean_and_variance(totals, lam, math.exp(-k1 * dt))

    # Per voxel: Poisson(lam / 125). Use every third sample (spacing 6/k1: the
    # correlation of a voxel with any voxel 6/k1 later sums to e^-6 = 0.0025), all
    # voxels (independent at a given time in the product-Poisson law).
    sub = counts[::3]
    mu = lam / space.n_subvolumes
    kmax = 6
    chi2, p, dof = chi_square_pvalue(np.minimum(sub.ravel(), kmax), poisson_pmf_with_tail(mu, kmax))
    print("birth-death voxel Poisson", solver, dict(chi2=chi2, dof=dof, p=p))
    assert p > P_MIN, (chi2, dof, p)
    # Uniformity of the source over voxels: the per-voxel sums over the sub-samples
    # are independent Poisson(n_sub mu), so given their total they are multinomial
    # with equal cells.
    per_voxel = sub.sum(axis=0)
    chi2u, pu = stats.chisquare(per_voxel)
    print("birth-death voxel uniformity", solver, dict(chi2=chi2u, dof=per_voxel.size - 1, p=pu))
    assert pu > P_MIN, (chi2u, pu)


@pytest.mark.parametrize("solver", EXACT_SOLVERS)
@pytest.mark.parametrize(
    ("D", "h", "k1", "seed", "use_flux"),
    [
        # k0 in µM/s inside a region (2 of 5 layers), D = 5 µm²/s
        (5.0, 0.2, 10.0, 7, False),
        # total flux in molecules/s over the region, D = 100 µm²/s on 1 µm voxels
        (100.0, 1.0, 10.0, 8, True),
    ],
)
def test_region_source_poisson_total(D, h, k1, seed, use_flux, solver):
    """Source only in the slab x < 2h (50 of 125 voxels), decay everywhere: the total
    is still Poisson(lambda) with lambda = birth rate / k1 = 40. Samples every 2/k1
    after a burn-in of 6/k1."""
    lam = 40.0
    space = rf.Lattice(shape=(5, 5, 5), spacing=h)
    space.region("src", lambda x, y, z: x < 2 * h)
    v_src = float(space.volumes[space.regions["src"]].sum())
    assert space.regions["src"].sum() == 50
    m = rf.Model()
    m.species("A", D=D)
    if use_flux:
        m.reaction("-> A", flux=lam * k1, region="src")  # molecules/s
    else:
        m.reaction("-> A", k=lam * k1 / (v_src * MOLECULES_PER_UM_UM3), region="src")
    m.reaction("A ->", k=k1)
    sim = rf.Simulation(m, space, seed=seed, solver=solver)
    dt, n = 2.0 / k1, 2500
    totals = _sample_totals_engine(sim, t_burn=6.0 / k1, dt=dt, n=n)
    _check_mean_and_variance(totals, lam, math.exp(-k1 * dt))
