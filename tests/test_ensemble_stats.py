r"""Ensemble statistics.

1. Welford + Chan merge: any split of the replicates into partial aggregates,
   merged in any order, gives numpy's mean and unbiased variance (relative 1e-12).
2. Birth-death with diffusion (``0 -> A`` at F molecules/s, ``A ->`` at k = 1/s,
   D = 1 µm²/s on a 2x2x1 lattice), started from n0 = lambda = F/k molecules:
   the total at time t is Binomial(n0, e^{-kt}) + Poisson(lambda (1 - e^{-kt})),
   so ``mean = lambda`` and ``var = n0 e^{-kt}(1 - e^{-kt}) + lambda (1 - e^{-kt})``
   exactly (an M/M/inf queue whatever the diffusion does); each voxel's
   stationary law is Poisson(lambda/4). Ensemble of 2 arms (lambda = 20, 60) x
   R = 200 replicates at t = 8 s. Tolerances: 4.5 standard errors,
   ``sqrt(var/R)`` for the mean and ``var sqrt(2/(R-1) + 1/(lambda R))`` for the
   variance (Poisson excess kurtosis 1/lambda); fixed seed.
3. Welch comparison of the two arms: the 95 % interval of the difference of the
   mean totals contains the exact 40, and its half-width is t_{0.975,dof} * se.
4. Exact quantiles equal numpy's over the raw replicates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from redoxfield.stats import Moments, merge_all, welch

from .conftest import needs_core

R = 200
T_END = 8.0


def test_welford_chan_merge_matches_numpy():
    rng = np.random.default_rng(7)
    x = rng.poisson(30.0, size=(157, 4, 3)).astype(float) + rng.normal(0, 1e3, size=(157, 4, 3))
    ref_mean, ref_var = x.mean(axis=0), x.var(axis=0, ddof=1)
    one = Moments.empty(x.shape[1:])
    for row in x:
        one.add(row)
    cuts = np.sort(rng.choice(np.arange(1, 157), size=9, replace=False))
    parts = []
    for chunk in np.split(x, cuts):
        m = Moments.of(chunk[0])
        for row in chunk[1:]:
            m.add(row)
        parts.append(m)
    rng.shuffle(parts)
    merged = merge_all(parts)
    for agg in (one, merged):
        assert agg.n == 157
        np.testing.assert_allclose(agg.mean, ref_mean, rtol=1e-12)
        np.testing.assert_allclose(agg.var, ref_var, rtol=1e-12)
    assert Moments.empty((2,)).merge(Moments.of([1.0, 2.0])).n == 1


def test_welch_against_scipy():
    from scipy import stats as st

    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 12), rng.normal(1, 3, 30)
    w = welch(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    ref = st.ttest_ind(b, a, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic, rel=1e-10)
    assert w["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (w["ci_low"], w["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)


@pytest.fixture(scope="module")
def birth_death(tmp_path_factory):
    import redoxfield as rf

    m = rf.Model()
    m.species("A", D=1.0)
    m.reaction("0 -> A", flux=20.0, name="birth")
    m.reaction("A -> 0", k=1.0, name="death")
    space = rf.Lattice(shape=(2, 2, 1), spacing=0.5)
    space.region("half", "x < 0.5")
    sim = rf.Simulation(m, space, seed=424242)
    sim.set_count("A", 20)
    ens = rf.Ensemble(
        sim,
        replicates=R,
        arms=[
            {"reactions/birth/flux": 20.0, "initial/A/count": 20},
            {"reactions/birth/flux": 60.0, "initial/A/count": 60},
        ],
        t_end=T_END,
        dt_sample=T_END / 2,
    )
    res = ens.run(tmp_path_factory.mktemp("bd") / "bd.h5", serial=True)
    yield res
    res.close()


@needs_core
def test_birth_death_mean_variance_match_poisson(birth_death):
    res = birth_death
    st = res.stats(by="region")
    e = math.exp(-T_END)
    for arm, lam in ((0, 20.0), (1, 60.0)):
        mean = float(st["mean"].sel(arm=arm, region="all", species="A").isel(time=-1))
        var = float(st["var"].sel(arm=arm, region="all", species="A").isel(time=-1))
        exact_var = lam * e * (1 - e) + lam * (1 - e)
        se_mean = math.sqrt(exact_var / R)
        se_var = exact_var * math.sqrt(2 / (R - 1) + 1 / (lam * R))
        print(
            f"lambda {lam:g}: mean {mean:.3f} (se {se_mean:.3f}), var {var:.2f} (se {se_var:.2f})"
        )
        assert abs(mean - lam) < 4.5 * se_mean
        assert abs(var - exact_var) < 4.5 * se_var
        # half of the lattice: Poisson(lambda / 2); each voxel Poisson(lambda / 4)
        half = st.sel(arm=arm, region="half", species="A").isel(time=-1)
        assert abs(float(half["mean"]) - lam / 2) < 4.5 * math.sqrt(lam / 2 / R)
        sub = res.stats(by="subvolume").sel(arm=arm, species="A").isel(time=-1)
        lv = lam / 4
        assert np.all(np.abs(sub["mean"].values - lv) < 4.5 * math.sqrt(lv / R))
        sv = lv * math.sqrt(2 / (R - 1) + 1 / (lv * R))
        assert np.all(np.abs(sub["var"].values - lv) < 4.5 * sv)
        assert int(st["n"].sel(arm=arm)) == R


@needs_core
def test_compare_arms_welch_interval(birth_death):
    from scipy import stats as sst

    cmp = birth_death.compare(0, 1, species="A").sel(region="all", species="A").isel(time=-1)
    assert float(cmp["ci_low"]) < 40.0 < float(cmp["ci_high"])
    half = (float(cmp["ci_high"]) - float(cmp["ci_low"])) / 2
    expect = sst.t.ppf(0.975, float(cmp["dof"])) * float(cmp["se"])
    assert half == pytest.approx(expect, rel=1e-12)
    assert float(cmp["p_value"]) < 1e-10
    # by parameter values instead of arm indices
    same = birth_death.compare({"reactions/birth/flux": 20.0}, {"reactions/birth/flux": 60.0})
    assert float(same["diff"].sel(region="all", species="A").isel(time=-1)) == float(cmp["diff"])


@needs_core
def test_exact_quantiles(birth_death):
    res = birth_death
    q = res.quantiles([0.1, 0.5, 0.9], species="A", by="subvolume", max_bytes=64)
    raw = np.stack([res.counts("A", 1, i) for i in range(R)])  # (R, T, N)
    np.testing.assert_array_equal(
        q.sel(arm=1, species="A").values, np.quantile(raw.astype(float), [0.1, 0.5, 0.9], axis=0)
    )
    qr = res.quantiles(0.5, species="A", by="region").sel(arm=1, region="all", species="A")
    tot = np.stack([raw[i].sum(axis=1) for i in range(R)])
    np.testing.assert_array_equal(qr.values[0], np.quantile(tot.astype(float), 0.5, axis=0))
