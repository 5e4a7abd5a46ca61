"""Figures of the validation problems (docs/validation.md): measured vs analytic.

    python benches/validation_figures.py [--out docs/img]

Writes four PNGs (about 30 s on one core), with the same parameters and seeds as
the tests in tests/test_validation_*.py:

- validation_birth_death.png: histogram of the stationary total vs Poisson(40);
- validation_diffusion.png: per-axis variance vs 2 D t over time, and the
  x-marginal at the end vs the exact lattice law (Skellam: difference of two
  Poisson(D t / h²) jump counts);
- validation_source_decay.png: time-averaged profile vs the cosh solution;
- validation_cme.png: distribution at t vs the exact master equation.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.linalg import expm  # noqa: E402

import redoxfield as rf  # noqa: E402

MOLECULES_PER_UM_UM3 = 6.02214076e23 * 1e-21


def birth_death(out: Path) -> None:
    k1, lam, d, h = 5.0, 40.0, 1.0, 0.2
    space = rf.Lattice(shape=(5, 5, 5), spacing=h)
    m = rf.Model()
    m.species("A", D=d)
    m.reaction("-> A", k=lam * k1 / (float(space.volumes.sum()) * MOLECULES_PER_UM_UM3))
    m.reaction("A ->", k=k1)
    eng = rf.Simulation(m, space, seed=20240601).make_engine()
    eng.advance(6 / k1)
    totals = []
    for i in range(2500):
        eng.advance(6 / k1 + (i + 1) * 2 / k1)
        totals.append(int(eng.totals()[0]))
    totals = np.array(totals)
    k = np.arange(10, 75)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(totals, bins=np.arange(9.5, 75.5), density=True, alpha=0.6, label="NSM, 2500 samples")
    ax.plot(k, stats.poisson.pmf(k, lam), "k.-", label=r"Poisson($\lambda$ = 40)")
    ax.set_xlabel("total molecules of A")
    ax.set_ylabel("probability")
    ax.set_title(
        f"birth-death + diffusion: mean {totals.mean():.2f}, variance {totals.var(ddof=1):.2f}"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "validation_birth_death.png", dpi=120)
    plt.close(fig)


def diffusion(out: Path) -> None:
    d, h, sigma, n_mol = 10.0, 0.1, 0.5, 20_000
    t_end = sigma**2 / (2 * d)
    half = math.ceil(6 * sigma / h)
    nx = 2 * half + 1
    space = rf.Lattice(shape=(nx, nx, nx), spacing=h)
    start = (half + 0.5) * h
    space.region(
        "start",
        lambda x, y, z: (
            (np.abs(x - start) < h / 2) & (np.abs(y - start) < h / 2) & (np.abs(z - start) < h / 2)
        ),
    )
    m = rf.Model()
    m.species("A", D=d)
    sim = rf.Simulation(m, space, seed=101)
    sim.set_count("A", n_mol, region="start")
    res = sim.run(t_end=t_end, dt_sample=t_end / 10)
    x = np.asarray(space.centers) - start
    var = []
    for s in range(res.n_samples):
        w = res.counts("A", sample=s).astype(float)
        var.append(w @ x**2 / n_mol - (w @ x / n_mol) ** 2)
    var = np.array(var)
    t = res.times
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, mk in zip("xyz", "os^", strict=True):
        a1.plot(t * 1e3, var[:, "xyz".index(axis)], mk, label=f"NSM, {axis}")
    a1.plot(t * 1e3, 2 * d * t, "k-", label=r"$2Dt$")
    a1.fill_between(t * 1e3, 2 * d * t * 0.97, 2 * d * t * 1.03, color="0.85", label="± 3 %")
    a1.set_xlabel("t (ms)")
    a1.set_ylabel(r"per-axis variance (µm²)")
    a1.set_title(f"point release of {n_mol} molecules, D = {d} µm²/s, h = {h} µm")
    a1.legend()
    # x-marginal at t_end vs the exact lattice law.
    w = res.counts("A", sample=-1).astype(float)
    ix = np.rint(x[:, 0] / h).astype(int)
    marg = np.bincount(ix + half, weights=w, minlength=nx) / n_mol
    mvals = np.arange(-half, half + 1)
    mu = d * t_end / h**2
    a2.semilogy(mvals * h, marg, "o", label="NSM")
    a2.semilogy(mvals * h, stats.skellam.pmf(mvals, mu, mu), "k-", label="exact (Skellam)")
    a2.semilogy(
        mvals * h,
        h / math.sqrt(2 * math.pi * sigma**2) * np.exp(-((mvals * h) ** 2) / (2 * sigma**2)),
        "r--",
        lw=1,
        label="Gaussian, var 2Dt",
    )
    a2.set_ylim(1e-5, 0.2)
    a2.set_xlabel("x displacement (µm)")
    a2.set_ylabel("fraction of molecules")
    a2.set_title(f"x-marginal at t = {t_end * 1e3:.1f} ms")
    a2.legend()
    fig.tight_layout()
    fig.savefig(out / "validation_diffusion.png", dpi=120)
    plt.close(fig)


def source_decay(out: Path) -> None:
    d, k, h, nx, a, q = 1.0, 1.0, 0.1, 60, 0.5, 2000.0
    lam, length = math.sqrt(d / k), nx * h
    space = rf.Lattice(shape=(nx, 1, 1), spacing=h)
    space.region("source", lambda x, y, z: x < a)
    m = rf.Model()
    m.species("A", D=d)
    m.reaction("-> A", k=q, region="source")
    m.reaction("A ->", k=k)
    res = rf.Simulation(m, space, seed=314159).run(t_end=60.0, dt_sample=0.05)
    keep = res.times > 10.0 + 1e-9
    conc = res.counts("A")[keep].mean(axis=0) / (h**3 * MOLECULES_PER_UM_UM3)
    xs = np.linspace(0, length, 1200)
    s = np.sinh(length / lam)
    c = np.where(
        xs <= a,
        q / k * (1 - np.sinh((length - a) / lam) * np.cosh(xs / lam) / s),
        q / k * np.sinh(a / lam) * np.cosh((length - xs) / lam) / s,
    )
    xc = np.asarray(space.centers)[:, 0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for ax in (a1, a2):
        ax.plot(xs, c, "k-", label="analytic (cosh form)")
        ax.plot(xc, conc, "o", ms=3, label="NSM, time average 50 s")
        ax.axvspan(0, a, color="orange", alpha=0.15, label="source slab")
        ax.axvline(a + 3 * lam, color="0.5", ls=":", label=r"$a + 3\lambda$")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("[A] (µM)")
    a2.set_yscale("log")
    a1.set_title(rf"source $q$ = {q:g} µM/s in x < {a} µm, decay k = {k:g}/s, $\lambda$ = 1 µm")
    a1.legend()
    fig.tight_layout()
    fig.savefig(out / "validation_source_decay.png", dpi=120)
    plt.close(fig)


def cme(out: Path) -> None:
    h = 0.1
    omega = 6.02214076e23 * h**3 * 1e-15
    a0, k_dim, k_split, t = 30, 2.0e4, 0.5, 0.5
    m = rf.Model()
    m.species("A")
    m.species("B")
    m.reaction("2 A -> B", k=k_dim)
    m.reaction("B -> 2 A", k=k_split)
    sim = rf.Simulation(m, rf.Lattice(shape=(1, 1, 1), spacing=h), seed=777)
    sim.set_count("A", a0)
    n = 20_000
    samples = np.empty(n, dtype=int)
    for r in range(n):
        sim.replicate = r
        eng = sim.make_engine()
        eng.advance(t)
        samples[r] = eng.totals()[1]
    nb = np.arange(a0 // 2 + 1)
    na = a0 - 2 * nb

    def exact(factor: float) -> np.ndarray:
        """p(t) for the propensity factor * k nA (nA - 1) / Omega of 2 A -> B."""
        gen = np.zeros((nb.size, nb.size))
        for i in range(nb.size):
            if i + 1 < nb.size:
                gen[i, i + 1] = factor * k_dim * na[i] * (na[i] - 1) / omega
            if i > 0:
                gen[i, i - 1] = k_split * nb[i]
            gen[i, i] = -gen[i].sum()
        return np.eye(nb.size)[0] @ expm(gen * t)

    p, p_wrong = exact(1.0), exact(0.5)
    fig, ax = plt.subplots(figsize=(6, 4))
    emp = np.bincount(samples, minlength=nb.size) / n
    ax.bar(nb, emp, alpha=0.6, label=f"NSM, {n} replicates")
    ax.plot(nb, p, "k.-", label="exact CME (expm)")
    ax.plot(nb, p_wrong, "r:", label="CME with k n(n-1)/(2Ω) (wrong A + A convention)")
    ax.set_xlabel("molecules of B")
    ax.set_ylabel("probability")
    ax.set_title(f"2 A <-> B in one voxel, t = {t} s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "validation_cme.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in (birth_death, diffusion, source_decay, cme):
        f(out)
        print(f"wrote {out}/validation_{f.__name__}.png")


if __name__ == "__main__":
    main()
