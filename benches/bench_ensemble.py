"""Ensemble throughput on a local Dask cluster: 2 worker processes vs 1.

Each trajectory is a birth-death-diffusion run of more than a second of CPU
(t_end = 10 s by default); the sweep is ``--trajectories`` of them. The clusters are started
and warmed up (redoxfield imported on every worker) before the clock starts, so
the figure is trajectories per wall-second of the sweep itself, shard writing
and joining included. Goal: 2 workers >= 1.8x 1 worker on an idle 2-core
machine; print the load average, since other processes share the cores.

    python benches/bench_ensemble.py [--trajectories 12] [--t-end 10.0]

Measured on an idle 2-core machine (load 1.0): 1.83x with 12 trajectories of
about 1.6 s each (t_end = 10 s); 1.61x with 8 trajectories of 0.64 s, where the
fixed cost of the sweep (scheduling, shard writing, joining) weighs more.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import redoxfield as rf


def make_ensemble(n: int, t_end: float) -> rf.Ensemble:
    m = rf.Model()
    m.species("A", D=50.0)
    m.reaction("0 -> A", flux=2000.0, name="birth")
    m.reaction("A -> 0", k=1.0, name="death")
    space = rf.Lattice(shape=(8, 8, 1), spacing=0.5)
    sim = rf.Simulation(m, space, seed=2026)
    sim.set_count("A", 2000)
    return rf.Ensemble(sim, replicates=n, t_end=t_end, dt_sample=t_end / 10)


def _warm() -> int:
    import redoxfield  # noqa: F401

    return os.getpid()


def sweep_on(workers: int, ens: rf.Ensemble, out: Path) -> tuple[float, float]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(workers)
        client.run(_warm)
        t0 = time.perf_counter()
        res = ens.run(out, client=client)
        wall = time.perf_counter() - t0
    cpu = float(res.file["ensemble/wall_seconds"][()].mean())
    res.close()
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", type=int, default=12)
    p.add_argument("--t-end", type=float, default=10.0, help="simulated s per trajectory")
    args = p.parse_args()
    ens = make_ensemble(args.trajectories, args.t_end)
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as d:
        results = {}
        for w in (1, 2):
            wall, per = sweep_on(w, ens, Path(d) / f"w{w}.h5")
            results[w] = args.trajectories / wall
            print(
                f"{w} worker(s): {args.trajectories} trajectories in {wall:.2f} s wall "
                f"({per:.2f} s per trajectory in run()), {results[w]:.3f} trajectories/s"
            )
    print(f"load average after: {os.getloadavg()}")
    print(f"speed-up 2 vs 1 workers: {results[2] / results[1]:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
