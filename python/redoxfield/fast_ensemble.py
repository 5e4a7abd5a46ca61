"""Ensembles of totals on all cores in one call, without Dask (docs/ensembles.md).

:func:`ensemble_totals` runs many exact replicates of one
:class:`~redoxfield.Simulation` (with its solver, ``"nsm"`` or ``"molecules"``)
in the Rust core, in parallel threads with the
GIL released, and keeps only species totals (and region totals) at the sample
times: no HDF5 shards, no per-subvolume fields. Use it for statistics of totals
over many replicates on one machine; use :class:`~redoxfield.Ensemble` (Dask)
for sweeps, clusters and full fields.

Streams: replicate ``r`` runs with the core stream ``(sim.seed, r)``, as
``Simulation(..., seed=sim.seed, replicate=r)`` does; all replicates start from
``sim``'s initial counts. The output is bitwise the same as running the
replicates one by one, on any number of threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import SimulationError
from .simulation import Simulation, _load_core

__all__ = ["EXACT_SOLVERS", "EnsembleTotals", "ensemble_totals"]

#: The solvers whose replicates ``ensemble_totals`` runs in the core.
EXACT_SOLVERS = ("nsm", "molecules")


@dataclass(frozen=True)
class EnsembleTotals:
    """Totals of an ensemble: ``totals[r, t, s]`` molecules of species ``s`` at
    ``times[t]`` in replicate ``replicates[r]``; ``region_totals[r, t, g, s]`` the
    same summed over region ``regions[g]`` (None without regions)."""

    times: NDArray[np.float64]
    species: tuple[str, ...]
    replicates: NDArray[np.uint64]
    totals: NDArray[np.int64]
    regions: tuple[str, ...]
    region_totals: NDArray[np.int64] | None
    events: NDArray[np.uint64]

    def mean(self, species: str) -> NDArray[np.float64]:
        """(T,) mean total of ``species`` over replicates."""
        return self.totals[:, :, self._index(species)].mean(axis=0)

    def var(self, species: str) -> NDArray[np.float64]:
        """(T,) sample variance (ddof = 1) of the total of ``species``."""
        return self.totals[:, :, self._index(species)].var(axis=0, ddof=1)

    def _index(self, species: str) -> int:
        if species not in self.species:
            raise SimulationError(
                f"unknown species {species!r} (the model has: {', '.join(self.species)})"
            )
        return self.species.index(species)


def ensemble_totals(
    sim: Simulation,
    times: ArrayLike,
    replicates: int | Sequence[int] = 10,
    *,
    regions: bool | Sequence[str] = False,
    threads: int = 0,
) -> EnsembleTotals:
    """Run ``replicates`` (a count, for streams 0..n-1, or a list of stream
    numbers) of ``sim`` with its exact solver (``sim.solver``: ``"nsm"``, or
    ``"molecules"``, the same statistics faster where it applies) and sample
    totals at ``times`` (s, non-decreasing, >= 0). ``regions``: True for every
    region of the geometry, or a list of region names. ``threads``: worker
    threads, 0 for one per core. A simulation set up for the approximate
    ``"opsplit"`` solver is refused: the replicates here are exact. Ctrl-C stops
    the run (KeyboardInterrupt)."""
    if not isinstance(sim, Simulation):
        raise SimulationError(f"sim must be a redoxfield.Simulation, got {type(sim).__name__}")
    if sim.solver not in EXACT_SOLVERS:
        raise SimulationError(
            f"ensemble_totals runs exact replicates ({' or '.join(map(repr, EXACT_SOLVERS))}); "
            f"this simulation uses solver {sim.solver!r}: make it with solver='nsm' or "
            "'molecules', or use rf.Ensemble for opsplit replicates"
        )
    t = np.ascontiguousarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise SimulationError("times must be a non-empty 1-D array of seconds")
    if isinstance(replicates, bool):
        raise SimulationError("replicates must be a count or a list of stream numbers")
    if isinstance(replicates, (int, np.integer)):
        if replicates < 1:
            raise SimulationError(f"replicates = {replicates} must be at least 1")
        reps = list(range(int(replicates)))
    else:
        reps = [int(r) for r in replicates]
        if not reps or any(r < 0 or r >= 2**64 for r in reps):
            raise SimulationError("replicates must be stream numbers in 0..2**64-1")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise SimulationError(f"threads = {threads!r} must be an integer >= 0")
    if regions is True:
        names = tuple(sim.graph.regions)
    elif regions is False:
        names = ()
    else:
        names = tuple(regions)
        for name in names:
            if name not in sim.graph.regions:
                known = ", ".join(sim.graph.regions) or "none"
                raise SimulationError(f"unknown region {name!r} (the geometry defines: {known})")
    members = [np.flatnonzero(np.asarray(sim.graph.regions[g])).astype(np.int64) for g in names]
    core = _load_core()
    try:
        totals, by_region, events = core.run_ensemble_totals(
            **sim.engine_arrays(),
            seed=sim.seed,
            replicates=reps,
            times=t,
            regions=members if names else None,
            threads=int(threads),
            solver=sim.solver,
            method=sim.solver_options.get("method", "auto"),
        )
    except ValueError as exc:
        raise SimulationError(str(exc)) from None
    return EnsembleTotals(
        times=t,
        species=tuple(sim.species),
        replicates=np.asarray(reps, dtype=np.uint64),
        totals=totals,
        regions=names,
        region_totals=by_region,
        events=events,
    )
