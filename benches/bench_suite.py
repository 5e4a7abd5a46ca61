"""One command for the speed figures of every solver on B1, B2 and B3
(shared BENCHMARKS.md), printed as tables:

1. events per CPU-second, wall seconds, bytes per subvolume, for the exact NSM,
   the exact SSA with one clock per H2O2 molecule (molecules) and the
   approximate operator-splitting solver (opsplit: its events are the
   NSM-equivalent count, reaction events plus the hops its walks represent);
2. opsplit's error against the NSM: final totals of H2O2 and PrxOx, the H2O2
   x-profile in 0.5 µm bins (time-averaged over the second half of the run) and
   its decay length (log-linear fit beyond the source), each as the relative
   difference of the means with the NSM's standard error over its seeds;
   on B1 also the independent textbook NSM of benches/reference_nsm.rs
   (binary heaps; built with rustc), on the same seeds, and the engine's
   rate as a ratio to it;
3. opsplit's speed-up from 1 to 2 threads on B2 (same seed: identical output),
   the median of 5 interleaved pairs of ``advance`` calls;
4. ensemble throughput (rf.ensemble_totals, 16 exact replicates, NSM and
   molecules) on 1 and 2 threads, the median of 3 interleaved pairs;
5. peers, when importable (optional extra ``bench``): ReaDDy on B1's chemistry,
   as a ratio to our wall time per simulated second; Smoldyn's PyPI wheel is
   skipped when it does not import.

    python benches/bench_suite.py            # ~5-8 min on 2 cores
    python benches/bench_suite.py --quick    # ~1-2 min: B1 and short B2/B3 runs

Timings on a shared machine are noisy: compare the ratios measured in the same
run (docs/performance.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import redoxfield as rf
from _reference import build_reference, run_reference
from redoxfield.scenario import load_scenario
from redoxfield.simulation import sample_times


@dataclass
class Problem:
    name: str
    t_end: float
    dt: float
    make: Any  # (solver, seed, options) -> Simulation
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _b1_model() -> rf.Model:
    """B1's chemistry as the built-in scenario defines it (its source needs a
    region named "source" in the geometry)."""
    return load_scenario("h2o2-burst").model


def lattice_problem(name: str, shape: tuple[int, int, int], t_end: float, dt: float) -> Problem:
    space = rf.Lattice(shape=shape, spacing=0.1)
    space.region("source", lambda x, y, z: x < 0.5)
    model = _b1_model()

    def make(solver: str, seed: int, options: dict[str, Any]) -> rf.Simulation:
        sim = rf.Simulation(model, space, seed=seed, solver=solver, solver_options=options)
        sim.set_concentration("Prx", 20.0)
        return sim

    return Problem(name, t_end, dt, make, np.asarray(space.centers)[:, 0])


def mesh_problem(t_end: float) -> Problem:
    sc = load_scenario("h2o2-burst-tets")

    def make(solver: str, seed: int, options: dict[str, Any]) -> rf.Simulation:
        sim = rf.Simulation(sc.model, sc.space, seed=seed, solver=solver, solver_options=options)
        for ic in sc.initial:
            sim.apply_initial(ic)
        return sim

    x = np.asarray(make("nsm", 1, {}).graph.centers)[:, 0]
    return Problem("B3", t_end, sc.run_settings.dt_sample, make, x)


def run(p: Problem, solver: str, seed: int, **options: Any) -> dict[str, Any]:
    sim = p.make(solver, seed, options)
    eng = sim.make_engine()
    # Profile samples every 1 ms over the second half (the samples are step
    # boundaries for opsplit, as sample times are in any run).
    times = sample_times(p.t_end, min(0.001, p.t_end))
    bins = np.floor(p.x / 0.5).astype(int)
    prof = np.zeros(bins.max() + 1)
    n_prof = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for t in times[1:]:
        eng.advance(float(t))
        if t >= p.t_end / 2 - 1e-12:
            prof += np.bincount(bins, weights=eng.counts()[:, 0], minlength=prof.size)
            n_prof += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    tot = eng.totals()
    out = {
        "events": int(eng.total_events),
        "cpu": cpu,
        "wall": wall,
        "bytes": float(eng.bytes_per_subvolume),
        "H2O2": float(tot[0]),
        "PrxOx": float(tot[2]),
        "profile": prof / max(n_prof, 1),
    }
    if solver == "opsplit":
        out["tau"] = eng.tau_used[1]
        out["threads"] = eng.threads
        out["steps"] = eng.steps
    return out


def decay_length(profile: np.ndarray) -> float:
    """-1/slope of log(profile) against bin centre over bins beyond the source
    (x > 0.75 µm) holding at least 2 % of the peak."""
    xc = (np.arange(profile.size) + 0.5) * 0.5
    keep = (xc > 0.75) & (profile > 0.02 * profile.max())
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(xc[keep], np.log(profile[keep]), 1)[0]
    return -1.0 / slope


def bin_var(rs: list[dict[str, Any]], n_samples: float) -> np.ndarray:
    """Variance of the mean profile per bin from the seeds; for a single seed a
    Poisson-like count / n_samples (an underestimate: samples 1 ms apart are
    correlated)."""
    if len(rs) > 1:
        return np.var([r["profile"] for r in rs], axis=0, ddof=1) / len(rs)
    return np.mean([r["profile"] for r in rs], axis=0) / n_samples


def mean_se(values: list[float]) -> tuple[float, float]:
    m = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return m, se


def _pair_summary(walls_1: list[float], walls_2: list[float]) -> dict[str, Any]:
    """Speed-ups of interleaved (1 thread, 2 threads) pairs: each pair runs
    back to back, so a slow phase of a shared VM hits both; the median of the
    pairs is the figure, the range shows the noise."""
    ratios = [a / b for a, b in zip(walls_1, walls_2, strict=True)]
    return {
        "ratio": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "pairs": len(ratios),
        "wall_1": statistics.median(walls_1),
        "wall_2": statistics.median(walls_2),
    }


def opsplit_thread_scaling(p: Problem, pairs: int) -> dict[str, Any]:
    """opsplit on ``p`` (seed 7) with 1 and 2 threads, timing ``advance`` to
    t_end alone (the step loop; no Python sampling between steps), in
    interleaved pairs; the counts must be identical for every thread count."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    counts: dict[int, np.ndarray] = {}
    steps = 0
    for _ in range(pairs):
        for threads in (1, 2):
            eng = p.make("opsplit", 7, {"threads": threads}).make_engine()
            w0 = time.perf_counter()
            eng.advance(p.t_end)
            walls[threads].append(time.perf_counter() - w0)
            counts[threads] = eng.counts()
            steps = eng.steps
    out = _pair_summary(walls[1], walls[2])
    out["identical"] = bool(np.array_equal(counts[1], counts[2]))
    out["steps"] = steps
    return out


def ensemble_scaling(replicates: int, pairs: int, solver: str) -> dict[str, Any]:
    """rf.ensemble_totals of B1's chemistry on a 20x10x10 box, ``replicates``
    exact trajectories of ``solver`` on 1 and 2 threads, in interleaved pairs."""
    space = rf.Lattice(shape=(20, 10, 10), spacing=0.1)
    space.region("source", lambda x, y, z: x < 0.5)
    sim = rf.Simulation(_b1_model(), space, seed=3, solver=solver)
    sim.set_concentration("Prx", 20.0)
    times = np.linspace(0.0, 0.05, 6)
    walls: dict[int, list[float]] = {1: [], 2: []}
    outs = {}
    for _ in range(pairs):
        for threads in (1, 2):
            w0 = time.perf_counter()
            outs[threads] = rf.ensemble_totals(sim, times, replicates, threads=threads)
            walls[threads].append(time.perf_counter() - w0)
    assert np.array_equal(outs[1].totals, outs[2].totals)
    out = _pair_summary(walls[1], walls[2])
    cpu_per_rep = out["wall_1"] / replicates
    out.update(
        solver=solver,
        events_per_cpu_s=float(outs[1].events.mean()) / cpu_per_rep,
        replicates=replicates,
        per_s_1=replicates / out["wall_1"],
        per_s_2=replicates / out["wall_2"],
        events_per_rep=float(outs[1].events.mean()),
    )
    return out


def readdy_b1(sim_time: float, ours_wall_per_s: float) -> str:
    """ReaDDy (Brownian dynamics of particles) on B1's box and chemistry, run for
    ``sim_time`` and reported as wall seconds per simulated second relative to ours.

    Particles: Prx immobile at 20 µM (770k particles in 64 µm³), H2O2 (D = 1000
    µm²/s) started at its B1 steady state (~1000 in the slab; ReaDDy has no
    zero-order source, so none is added), PrxOx -> Prx at 10 /s. The bimolecular
    step is ReaDDy's Doi fusion with radius R = 50 nm (about the Prx spacing, 44 nm;
    a smaller radius makes its neighbour-list grid explode) and rate
    lambda = k / (4/3 pi R³) (reaction-limited, k = 1e7 /M/s = 0.0166 µm³/s);
    time step dt = R² / (2 D) = 1.25e-6 s so that one step's displacement stays
    at the reaction radius.
    """
    try:
        import readdy
    except Exception as exc:  # pragma: no cover - optional
        return f"ReaDDy not importable ({type(exc).__name__}); skipped"
    rng = np.random.default_rng(1)
    box = 4.0
    system = readdy.ReactionDiffusionSystem(
        box_size=[box, box, box],
        periodic_boundary_conditions=[False, False, False],
        unit_system=None,
    )
    system.add_species("H2O2", 1000.0)
    system.add_species("Prx", 0.0)
    system.add_species("PrxOx", 0.0)
    r = 0.05
    lam = 1e7 / (6.02214076e23 * 1e-15) / (4.0 / 3.0 * math.pi * r**3)
    system.reactions.add(f"ox: H2O2 +({r}) Prx -> PrxOx", rate=lam)
    system.reactions.add("red: PrxOx -> Prx", rate=10.0)
    system.potentials.add_box("H2O2", 100.0, [-box / 2 + 0.01] * 3, [box - 0.02] * 3)
    sim = system.simulation(kernel="CPU")
    n_prx = int(round(20e-6 * 6.02214076e23 * 64e-15))
    sim.add_particles("Prx", rng.uniform(-box / 2 + 0.02, box / 2 - 0.02, (n_prx, 3)))
    h = rng.uniform(-box / 2 + 0.02, box / 2 - 0.02, (1000, 3))
    h[:, 0] = rng.uniform(-box / 2 + 0.02, -box / 2 + 0.5, 1000)
    sim.add_particles("H2O2", h)
    dt = r**2 / (2 * 1000.0)
    steps = max(int(sim_time / dt), 1)
    sim.show_progress = False
    sim.output_file = ""
    w0 = time.perf_counter()
    sim.run(n_steps=steps, timestep=dt)
    wall = time.perf_counter() - w0
    per_s = wall / (steps * dt)
    return (
        f"ReaDDy {readdy.__version__}: {steps} steps of {dt:.3g} s ({n_prx:,} Prx particles) "
        f"in {wall:.2f} s (including its set-up) -> {per_s:.3g} wall-s per simulated s; "
        f"ours (opsplit, B1) {ours_wall_per_s:.3g}: "
        f"ReaDDy / opsplit = {per_s / ours_wall_per_s:.3g}"
    )


def smoldyn_status() -> str:
    try:
        import smoldyn  # noqa: F401
    except Exception as exc:  # pragma: no cover - optional
        return f"Smoldyn not importable here ({type(exc).__name__}: {exc}); skipped"
    return "Smoldyn importable, but no B1 model is wired yet; skipped"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (~1-2 min)")
    ap.add_argument("--no-peers", action="store_true", help="skip ReaDDy/Smoldyn")
    args = ap.parse_args()
    q = args.quick
    problems = [
        (lattice_problem("B1", (40, 40, 40), 0.05, 0.01), 1 if q else 3, 3 if q else 6),
        (lattice_problem("B2", (160, 160, 40), 0.005 if q else 0.02, 0.005), 1 if q else 2, 3),
        (mesh_problem(0.01 if q else 0.05), 1 if q else 2, 3),
    ]
    rows = []
    errors = []
    opsplit_b1_wall_per_s = math.nan
    t_start = time.perf_counter()
    workdir = tempfile.TemporaryDirectory()
    reference = build_reference(Path(workdir.name))
    ref_rates: list[float] = []
    mol_ratio: dict[str, float] = {}
    for p, n_nsm, n_ops in problems:
        if p.name == "B1":
            for k in range(n_nsm):
                r = run_reference(reference, 1 + k)
                ref_rates.append(r["events_per_cpu_s"])
                rows.append(
                    ("B1", "textbook NSM", r["events_per_cpu_s"], r["wall_s"], math.nan)
                    + (r["events"], math.nan)
                )
        nsm, mol = [], []
        for k in range(n_nsm):  # the exact solvers interleaved, same seeds
            nsm.append(run(p, "nsm", 1 + k))
            mol.append(run(p, "molecules", 1 + k))
        ops = [run(p, "opsplit", 101 + k) for k in range(n_ops)]
        rate = [r["events"] / r["cpu"] for r in nsm]
        mol_ratio[p.name] = statistics.median(
            m["events"] / m["cpu"] / r for m, r in zip(mol, rate, strict=True)
        )
        for label, rs in (("nsm", nsm), ("molecules", mol), ("opsplit", ops)):
            rows.append(
                (
                    p.name,
                    label,
                    statistics.median(r["events"] / r["cpu"] for r in rs),
                    statistics.median(r["wall"] for r in rs),
                    statistics.median(r["bytes"] for r in rs),
                    statistics.median(r["events"] for r in rs),
                    ops[0]["tau"] if label == "opsplit" else math.nan,
                )
            )
        if p.name == "B1":
            opsplit_b1_wall_per_s = statistics.median(r["wall"] for r in ops) / p.t_end
        err = {"problem": p.name, "seeds": (n_nsm, n_ops)}
        for key in ("H2O2", "PrxOx"):
            m_n, se_n = mean_se([r[key] for r in nsm])
            m_o, se_o = mean_se([r[key] for r in ops])
            se = math.sqrt(np.nan_to_num(se_n) ** 2 + np.nan_to_num(se_o) ** 2)
            if math.isnan(se_n):  # one NSM seed: a Poisson-like estimate
                se = math.sqrt(m_n / len(nsm) + (se_o if not math.isnan(se_o) else 0.0) ** 2)
            err[key] = (m_o / m_n - 1, se / m_n, m_n, m_o)
        pn = np.mean([r["profile"] for r in nsm], axis=0)
        po = np.mean([r["profile"] for r in ops], axis=0)
        main_bins = pn >= 0.1 * pn.max()
        err["profile"] = float(np.max(np.abs(po[main_bins] / pn[main_bins] - 1)))
        err["profile_bins"] = int(main_bins.sum())
        # Standard error of the difference per bin from the seeds (Poisson-like
        # count / n_samples for a single seed, an underestimate: samples 1 ms
        # apart are correlated).
        n_samples = p.t_end / 2 / 0.001
        se_bins = np.sqrt(bin_var(nsm, n_samples) + bin_var(ops, n_samples))[main_bins]
        err["profile_z"] = float(np.max(np.abs(po - pn)[main_bins] / se_bins))
        err["decay"] = (decay_length(pn), decay_length(po))
        errors.append(err)
        print(f"[{time.perf_counter() - t_start:6.1f} s] {p.name} done", flush=True)

    b2 = problems[1][0]
    thr = opsplit_thread_scaling(b2, 2 if q else 5)
    ens = [ensemble_scaling(8 if q else 16, 2 if q else 3, sv) for sv in ("nsm", "molecules")]

    print("\n## Solvers (events per CPU-second: CPU time of all threads)")
    print("| problem | solver | events/CPU-s | wall s | bytes/subvolume | events | tau (s) |")
    print("|---|---|---|---|---|---|---|")
    ref_rows = [r for r in rows if r[1] == "textbook NSM"]
    rows = [r for r in rows if r[1] != "textbook NSM"]
    if ref_rows:
        rows.insert(
            1,
            ("B1", "textbook NSM", statistics.median(ref_rates))
            + tuple(statistics.median(r[k] for r in ref_rows) for k in (3, 4, 5, 6)),
        )
    for name, label, eps, wall, byt, ev, tau in rows:
        tau_s = "" if math.isnan(tau) else f"{tau:.3g}"
        byt_s = "" if math.isnan(byt) else f"{byt:.0f}"
        print(f"| {name} | {label} | {eps:.3g} | {wall:.3g} | {byt_s} | {ev:.3g} | {tau_s} |")
    for name, ratio in mol_ratio.items():
        print(f"{name}: molecules / NSM events per CPU-second, same seeds: {ratio:.2f}x")
    b1_nsm = next(r[2] for r in rows if r[:2] == ("B1", "nsm"))
    print(
        f"B1: the exact NSM runs {b1_nsm / statistics.median(ref_rates):.1f}x the events per "
        "CPU-second of the textbook NSM (benches/reference_nsm.rs), same seeds, same run"
    )
    for name in ("B1", "B2", "B3"):
        w = {r[1]: r[3] for r in rows if r[0] == name}
        print(f"{name}: opsplit wall-time speed-up over the NSM: {w['nsm'] / w['opsplit']:.1f}x")

    print("\n## opsplit error against the NSM (relative difference of means +- se)")
    print("| problem | seeds nsm/ops | H2O2 | PrxOx | x-profile max | decay length nsm/ops µm |")
    print("|---|---|---|---|---|---|")
    for e in errors:
        h, px = e["H2O2"], e["PrxOx"]
        print(
            f"| {e['problem']} | {e['seeds'][0]}/{e['seeds'][1]} | {h[0]:+.1%} +- {h[1]:.1%} "
            f"({h[2]:.0f} vs {h[3]:.0f}) | {px[0]:+.1%} +- {px[1]:.1%} | "
            f"{e['profile']:.1%} over {e['profile_bins']} bins (max z {e['profile_z']:.1f}) | "
            f"{e['decay'][0]:.3g} / {e['decay'][1]:.3g} |"
        )

    print("\n## opsplit threads on B2 (same seed; advance alone, interleaved pairs)")
    print(
        f"{thr['steps']} steps: 1 thread {thr['wall_1']:.3f} s, 2 threads {thr['wall_2']:.3f} s "
        f"(medians): speed-up {thr['ratio']:.2f}x, median of {thr['pairs']} pairs "
        f"(range {thr['min']:.2f}-{thr['max']:.2f}x); identical counts: {thr['identical']}"
    )
    print("\n## Ensemble throughput (exact replicates, rf.ensemble_totals; interleaved pairs)")
    for e in ens:
        print(
            f"{e['solver']}: {e['replicates']} replicates of {e['events_per_rep']:.3g} events "
            f"({e['events_per_cpu_s']:.3g} events/s on 1 thread): 1 thread {e['per_s_1']:.3g}/s, "
            f"2 threads {e['per_s_2']:.3g}/s: {e['ratio']:.2f}x, median of {e['pairs']} pairs "
            f"(range {e['min']:.2f}-{e['max']:.2f}x)"
        )
    if not args.no_peers:
        print("\n## Peers")
        print(smoldyn_status())
        try:
            print(readdy_b1(2e-6 if q else 1e-5, opsplit_b1_wall_per_s))
        except Exception as exc:  # pragma: no cover - optional
            print(f"ReaDDy run failed ({type(exc).__name__}: {exc}); skipped")
    workdir.cleanup()
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
