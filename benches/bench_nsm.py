"""Benchmark B1 `h2o2-burst` (shared BENCHMARKS.md) on the exact solvers.

Runs the built-in scenario through the public Python API for several seeds and
prints, per seed and as medians: events per CPU-second (CPU time of this
process while the core runs, so other load on the machine matters less than
for wall time), diffusion and reaction event counts, final totals and the
solver's bytes per subvolume. Reference values (BENCHMARKS.md / issue 2): about
26.5 million events, final H2O2 about 1010 and PrxOx about 7290 molecules
(means over seeds); target >= 1e7 events per CPU-second.

Both exact solvers run, interleaved seed by seed: the NSM (``nsm``) and the
SSA with one clock per H2O2 molecule (``molecules``); ``--solvers nsm`` runs
one. Their same-run ratio is printed too.

With ``--reference`` it also builds ``benches/reference_nsm.rs`` (a textbook
NSM with binary heaps, independent of redoxfield's code) with ``rustc -O`` and
runs it on the same seeds, interleaved with the engine, and prints the ratio
of the two rates: a figure that this machine's slow and fast phases move much
less than the rates themselves.

    python benches/bench_nsm.py [--seeds 1 2 3] [--scenario h2o2-burst]
        [--solvers nsm molecules] [--reference]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _reference import build_reference, run_reference
from redoxfield.scenario import load_scenario
from redoxfield.simulation import sample_times


def run_once(scenario: str, seed: int, solver: str) -> dict[str, float]:
    sc = load_scenario(scenario)
    sim = sc.simulation(seed=seed, solver=solver)
    engine = sim.make_engine()
    times = sample_times(sc.run_settings.t_end, sc.run_settings.dt_sample)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for t in times[1:]:
        engine.advance(float(t))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    totals = engine.totals()
    names = sim.model.species_names
    diffusion = int(engine.diffusion_events().sum())
    reactions = engine.reaction_events()
    return {
        "seed": seed,
        "events": engine.total_events,
        "diffusion": diffusion,
        "reaction": int(reactions.sum()),
        "cpu_s": cpu,
        "wall_s": wall,
        "events_per_cpu_s": engine.total_events / cpu,
        "bytes_per_subvolume": engine.bytes_per_subvolume,
        **{f"final_{n}": int(v) for n, v in zip(names, totals, strict=True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="h2o2-burst")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--solvers", nargs="+", choices=["nsm", "molecules"], default=["nsm", "molecules"]
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also run benches/reference_nsm.rs (B1 only) and print the ratio",
    )
    args = parser.parse_args()
    if args.reference and args.scenario != "h2o2-burst":
        parser.error("--reference knows only B1 (h2o2-burst)")
    workdir = tempfile.TemporaryDirectory()
    reference = build_reference(Path(workdir.name)) if args.reference else None
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in args.solvers}
    ref_rates = []
    for seed in args.seeds:
        if reference is not None:
            ref = run_reference(reference, seed)
            ref_rates.append(ref["events_per_cpu_s"])
            print(
                f"seed {seed} reference: {int(ref['events']):,} events in "
                f"{ref['cpu_s']:.2f} CPU-s -> {ref['events_per_cpu_s']:.3e} events/CPU-s; "
                f"H2O2 {int(ref['H2O2'])}, PrxOx {int(ref['PrxOx'])}"
            )
        for solver in args.solvers:
            row = run_once(args.scenario, seed, solver)
            rows[solver].append(row)
            print(
                f"seed {seed} {solver}: {row['events']:,} events ({row['diffusion']:,} "
                f"diffusion, {row['reaction']:,} reaction) in {row['cpu_s']:.2f} CPU-s "
                f"-> {row['events_per_cpu_s']:.3e} events/CPU-s; "
                + ", ".join(f"{k[6:]} {v}" for k, v in row.items() if k.startswith("final_"))
            )
    for solver, rs in rows.items():
        keys = [k for k in rs[0] if k != "seed"]
        print(f"\n{args.scenario}, {solver}: medians over seeds {args.seeds}")
        for k in keys:
            med = statistics.median(r[k] for r in rs)
            mean = float(np.mean([r[k] for r in rs]))
            print(f"  {k:24s} median {med:14.6g}   mean {mean:14.6g}")
        if ref_rates:
            ratios = [r["events_per_cpu_s"] / f for r, f in zip(rs, ref_rates, strict=True)]
            print(
                f"  {solver} / reference rate   median {statistics.median(ratios):14.3g}"
                f"   per seed {[round(r, 2) for r in ratios]}"
            )
    if len(rows) == 2:
        ratios = [
            m["events_per_cpu_s"] / n["events_per_cpu_s"]
            for m, n in zip(rows["molecules"], rows["nsm"], strict=True)
        ]
        print(
            f"\nmolecules / nsm events per CPU-second: median {statistics.median(ratios):.3g}, "
            f"per seed {[round(r, 2) for r in ratios]}"
        )
    workdir.cleanup()


if __name__ == "__main__":
    main()
