"""Running a trajectory: :class:`Simulation`.

Initial conditions (both *replace* the counts of one species in the chosen
subvolumes and leave the others alone):

- :meth:`Simulation.set_concentration`: ``rint(C · V · N_A · 1e-21)`` molecules
  in each subvolume (nearest integer, ties to even; docs/units.md).
- :meth:`Simulation.set_count`: ``n`` molecules in total, each placed
  independently in subvolume ``i`` of the region with probability
  ``V_i / sum(V)`` -- one multinomial draw from numpy's PCG64 generator seeded
  with ``(seed, replicate)``, so the same seed and the same sequence of calls
  always give the same placement, and the total is exactly ``n``.

:meth:`Simulation.run` always starts from these initial counts at t = 0, so
calling it twice with the same seed reproduces the same trajectory.
"""

from __future__ import annotations

import importlib
import math
import os
import time as _time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import units
from ._version import __version__
from .compile import CoreProblem, _species_mask, compile_problem
from .errors import SimulationError
from .geometry import as_graph
from .geometry.graph import SubvolumeGraph
from .io.hdf5 import ResultWriter
from .model import Model
from .result import Result

__all__ = ["SOLVERS", "Simulation", "sample_times"]

#: Solvers that exist, by name.
SOLVERS = ("nsm",)
#: In-memory results larger than this many bytes of raw counts are refused.
MAX_IN_MEMORY_BYTES = 8 * 2**30
_SEED_STREAM_INITIAL = 0x1A17  # tags the numpy stream used for set_count placement


def _load_core() -> ModuleType:
    """The compiled extension (imported lazily so that the pure-Python parts work
    without it)."""
    try:
        return importlib.import_module("redoxfield._core")
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "the compiled core redoxfield._core is not built; run "
            "`maturin develop --release` (or `pip install .`) in the repository"
        ) from exc


def sample_times(t_end: float, dt_sample: float) -> NDArray[np.float64]:
    """Sample times ``0, dt, 2 dt, ...`` up to ``t_end``, computed as ``k · dt``
    (no accumulated rounding) and rounded to 15 significant digits, so that
    ``3 · 0.05`` is stored as 0.15, not 0.15000000000000002. ``t_end`` itself is
    always the last sample (after a last step shorter than dt if ``t_end`` is not
    a multiple of dt, up to a relative tolerance of 1e-9)."""
    for name, v in (("t_end", t_end), ("dt_sample", dt_sample)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise SimulationError(f"{name} must be a number, got {v!r}")
        if not math.isfinite(v) or v <= 0:
            raise SimulationError(f"{name} = {v!r} must be finite and positive")
    t_end, dt_sample = float(t_end), float(dt_sample)
    n_steps = t_end / dt_sample
    if n_steps > 1e8:
        raise SimulationError(
            f"t_end / dt_sample = {n_steps:.3g} samples is too many; use a larger dt_sample"
        )
    k = int(math.floor(n_steps * (1 + 1e-9)))
    times = np.array([float(f"{i * dt_sample:.15g}") for i in range(k + 1)], dtype=np.float64)
    if abs(times[-1] - t_end) <= 1e-9 * t_end:
        times[-1] = t_end
    else:
        times = np.append(times, t_end)
    return times


def _check_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SimulationError(f"{what} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise SimulationError(f"{what} = {v} must be between {lo} and {hi}")
    return v


class Simulation:
    """One stochastic trajectory of ``model`` on ``space``.

    ``space``: a :class:`~redoxfield.geometry.Lattice`, a
    :class:`~redoxfield.geometry.SubvolumeGraph` or anything with ``to_graph()``.
    The model and geometry are compiled here (errors such as an unknown region in
    a reaction surface now); later changes to them do not affect this Simulation.
    ``seed`` and ``replicate`` (integers in 0..2**64-1) select the random stream.
    """

    def __init__(
        self,
        model: Model,
        space: Any,
        seed: int = 1,
        solver: str = "nsm",
        replicate: int = 0,
    ) -> None:
        if not isinstance(model, Model):
            raise SimulationError(f"model must be a redoxfield.Model, got {type(model).__name__}")
        if solver not in SOLVERS:
            raise SimulationError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
        self.seed = _check_int(seed, "seed", 0, 2**64 - 1)
        self.replicate = _check_int(replicate, "replicate", 0, 2**64 - 1)
        self.solver = solver
        self.model = Model.from_dict(model.to_dict())  # a snapshot
        self.graph: SubvolumeGraph = as_graph(space)
        self.problem: CoreProblem = compile_problem(self.model, self.graph)
        self.species: tuple[str, ...] = self.problem.network.species
        n, s = self.graph.n_subvolumes, len(self.species)
        self._counts = np.zeros((n, s), dtype=np.int64)
        self._surface_parts: dict[tuple[int, str], NDArray[np.int64]] = {}
        self._placement_rng = np.random.Generator(
            np.random.PCG64([self.seed, self.replicate, _SEED_STREAM_INITIAL])
        )
        #: TOML text of the scenario this simulation came from (stored in the output).
        self.scenario_text: str | None = None
        #: Extra root attributes written to the output file (e.g. scenario_name).
        self.metadata: dict[str, Any] = {}

    # -- initial conditions --------------------------------------------------------
    def _species_index(self, species: str) -> int:
        if species not in self.species:
            known = ", ".join(self.species)
            raise SimulationError(f"unknown species {species!r} (the model has: {known})")
        return self.species.index(species)

    def _scope(self, region: str | None) -> NDArray[np.bool_]:
        if region is None:
            return np.ones(self.graph.n_subvolumes, dtype=bool)
        if region not in self.graph.regions:
            known = ", ".join(self.graph.regions) or "none"
            raise SimulationError(f"unknown region {region!r} (the geometry defines: {known})")
        return np.asarray(self.graph.regions[region])

    def _lives(self, species: str, how: str) -> NDArray[np.bool_]:
        """Where ``species`` may exist; membrane-bound species only via surface density."""
        sp = self.model.get_species(species)
        if sp.membrane_bound:
            raise SimulationError(
                f"species {species!r} is membrane-bound: set it with "
                f"set_surface_density(), not {how}"
            )
        m = _species_mask(self.model, species, self.graph)
        return np.ones(self.graph.n_subvolumes, dtype=bool) if m is None else m

    def set_concentration(self, species: str, value_uM: float, region: str | None = None) -> None:
        """Set ``species`` to ``value_uM`` µM in every subvolume of ``region`` (default:
        everywhere) that lies in a compartment the species lives in:
        ``rint(C · V · N_A · 1e-21)`` molecules per subvolume."""
        s = self._species_index(species)
        mask = self._scope(region) & self._lives(species, "set_concentration()")
        if not mask.any():
            raise SimulationError(
                f"set_concentration of {species!r}: region {region!r} contains no subvolume "
                "of the compartments it lives in"
            )
        if isinstance(value_uM, bool) or not isinstance(value_uM, (int, float, np.number)):
            raise SimulationError(
                f"concentration of {species!r} must be a number (uM), got {value_uM!r}"
            )
        c = float(value_uM)
        if not math.isfinite(c) or c < 0:
            raise SimulationError(
                f"concentration of {species!r} = {c!r} uM must be finite and non-negative"
            )
        n = np.rint(units.concentration_to_molecules(c, self.graph.volumes[mask]))
        if n.size and n.max() > units.MAX_COUNT:
            raise SimulationError(
                f"concentration {c:g} uM of {species!r} gives {int(n.max())} molecules in one "
                f"subvolume, more than the limit of {units.MAX_COUNT}"
            )
        self._counts[mask, s] = n.astype(np.int64)

    def set_count(self, species: str, n: int, region: str | None = None) -> None:
        """Put ``n`` molecules of ``species`` in ``region`` (default: everywhere),
        spread over its subvolumes by volume (a seeded multinomial draw)."""
        s = self._species_index(species)
        mask = self._scope(region) & self._lives(species, "set_count()")
        if not mask.any():
            raise SimulationError(
                f"set_count of {species!r}: region {region!r} contains no subvolume "
                "of the compartments it lives in"
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise SimulationError(f"count of {species!r} must be an integer, got {n!r}")
        total = int(n)
        if total < 0:
            raise SimulationError(f"count of {species!r} = {total} must not be negative")
        if total > units.MAX_COUNT * int(mask.sum()) or total >= 2**63:
            raise SimulationError(
                f"count of {species!r} = {total} overflows: a subvolume holds at most "
                f"{units.MAX_COUNT} molecules"
            )
        vol = self.graph.volumes[mask]
        placed = self._placement_rng.multinomial(total, vol / vol.sum())
        if placed.max() > units.MAX_COUNT:
            raise SimulationError(
                f"count of {species!r} = {total} puts {int(placed.max())} molecules in one "
                f"subvolume, more than the limit of {units.MAX_COUNT}"
            )
        self._counts[mask, s] = placed

    def set_surface_density(
        self, species: str, density: float, membrane: str | None = None
    ) -> None:
        """Membrane-bound ``species`` at ``density`` molecules/µm² on ``membrane``
        (default: every membrane the species sits in).

        The expected count in subvolume i is ``density · a_i[m]``; the total,
        ``rint(density · Σ a_i[m])``, is placed by one seeded multinomial draw with
        probabilities ``a_i / Σ a`` (exact total, no per-voxel rounding loss on
        sub-voxel areas). Replaces this species' counts on that membrane's
        subvolumes; densities on several membranes add up where they share one.
        """
        s = self._species_index(species)
        sp = self.model.get_species(species)
        if not sp.membrane_bound:
            raise SimulationError(
                f"set_surface_density: species {species!r} is not membrane-bound "
                "(declare it with membrane=...)"
            )
        if isinstance(density, bool) or not isinstance(density, (int, float, np.number)):
            raise SimulationError(
                f"surface density of {species!r} must be a number (molecules/um^2), got {density!r}"
            )
        rho = float(density)
        if not math.isfinite(rho) or rho < 0:
            raise SimulationError(
                f"surface density of {species!r} = {rho!r} molecules/um^2 must be finite and "
                "non-negative"
            )
        targets = sp.membranes if membrane is None else (membrane,)
        for mem in targets:
            if mem not in self.graph.membrane_names:
                known = ", ".join(self.graph.membrane_names) or "none"
                raise SimulationError(
                    f"surface density of {species!r} on membrane {mem!r}: the geometry has no "
                    f"such membrane (it defines: {known})"
                )
            if mem not in sp.membranes:
                raise SimulationError(
                    f"surface density of {species!r} on membrane {mem!r}: the species sits in "
                    f"{', '.join(sp.membranes)}, not {mem!r}"
                )
        assert self.graph.membrane_areas is not None
        for mem in targets:
            a = self.graph.membrane_areas[:, self.graph.membrane_names.index(mem)]
            total = int(np.rint(rho * a.sum()))
            if total > units.MAX_COUNT * int((a > 0).sum()):
                raise SimulationError(
                    f"surface density {rho:g} of {species!r} on {mem!r} overflows the counts"
                )
            self._surface_parts[(s, mem)] = self._placement_rng.multinomial(total, a / a.sum())
        parts = [v for (si, _), v in self._surface_parts.items() if si == s]
        col = np.sum(parts, axis=0)
        if col.max() > units.MAX_COUNT:
            raise SimulationError(f"surface density of {species!r} overflows one subvolume")
        self._counts[:, s] = col

    @property
    def counts(self) -> NDArray[np.int64]:
        """(N, S) initial counts (a copy)."""
        return self._counts.copy()

    def initial_counts(self, species: str) -> NDArray[np.int64]:
        """(N,) initial counts of one species (a copy)."""
        return self._counts[:, self._species_index(species)].copy()

    def set_counts(self, counts: NDArray[np.integer]) -> None:
        """Replace all initial counts with an (N, S) integer array."""
        a = np.asarray(counts)
        if a.shape != self._counts.shape or not np.issubdtype(a.dtype, np.integer):
            raise SimulationError(
                f"set_counts needs an integer array of shape {self._counts.shape}, "
                f"got {a.dtype} {a.shape}"
            )
        if a.size and (a.min() < 0 or a.max() > units.MAX_COUNT):
            raise SimulationError(
                f"set_counts: counts must lie in 0..{units.MAX_COUNT}, "
                f"got {int(a.min())}..{int(a.max())}"
            )
        self._counts[...] = a

    def apply_initial(self, entry: Mapping[str, Any]) -> None:
        """Apply one initial condition given as a mapping, as in a scenario's
        ``[[initial]]`` table: ``species`` plus one of ``concentration`` (with
        optional ``region``), ``count`` (optional ``region``) or
        ``surface_density`` (optional ``membrane``)."""
        species = entry["species"]
        if "concentration" in entry:
            self.set_concentration(species, entry["concentration"], entry.get("region"))
        elif "surface_density" in entry:
            self.set_surface_density(species, entry["surface_density"], entry.get("membrane"))
        elif "count" in entry:
            self.set_count(species, entry["count"], entry.get("region"))
        else:
            raise SimulationError(
                f"initial condition for {species!r} needs concentration, count or surface_density"
            )

    # -- running ------------------------------------------------------------------------
    def make_engine(self) -> Any:
        """A fresh ``_core.NsmEngine`` at t = 0 with the initial counts."""
        core = _load_core()
        return core.NsmEngine(
            **self.problem.engine_kwargs(),
            counts=np.ascontiguousarray(self._counts, dtype=np.int64),
            seed=self.seed,
            replicate=self.replicate,
        )

    def run(
        self,
        t_end: float,
        dt_sample: float,
        output: str | os.PathLike[str] | None = None,
        progress: bool | Callable[[float, int], None] = False,
    ) -> Result:
        """Run from t = 0 to ``t_end`` (s), sampling every ``dt_sample`` (s).

        ``output``: HDF5 path (written as ``.NAME.<pid>.part`` and renamed at the
        end; an existing file of that name is replaced), or ``None`` for an
        in-memory HDF5 result with the same layout (``Result.save`` writes it out).
        ``progress``: ``True`` for a tqdm bar (simulated time, events/s) on stderr,
        or a callable ``f(time, events)`` called about every 2**20 events.

        Ctrl-C (KeyboardInterrupt) or a core error stops the run: the file is closed
        with ``complete = False`` and the samples taken so far, renamed to
        ``output``, and the exception is re-raised.
        """
        times = sample_times(t_end, dt_sample)
        n, s = self._counts.shape
        if output is None and times.size * n * s * 4 > MAX_IN_MEMORY_BYTES:
            raise SimulationError(
                f"{times.size} samples of {n} subvolumes x {s} species are too large to keep "
                "in memory; give output='file.h5'"
            )
        if output is not None:
            output = Path(output)
        core = _load_core()
        engine = self.make_engine()
        writer = ResultWriter(output)
        wall0, cpu0 = _time.perf_counter(), _time.process_time()
        bar = None
        callback: Callable[[float, int], None] | None = None
        try:
            writer.write_header(
                model=self.model,
                problem=self.problem,
                graph=self.graph,
                attrs={
                    "redoxfield_version": __version__,
                    "core_version": str(getattr(core, "__version__", "unknown")),
                    "solver": self.solver,
                    "seed": np.uint64(self.seed),
                    "replicate": np.uint64(self.replicate),
                    "t_end": float(times[-1]),
                    "dt_sample": float(dt_sample),
                    "n_samples_requested": int(times.size),
                    **self.metadata,
                },
                scenario_text=self.scenario_text,
            )
            if progress is True:
                bar, callback = _progress_bar(float(times[-1]), wall0)
            elif callable(progress):
                callback = progress
        except BaseException:
            writer.abort()
            raise
        buf = np.empty((n, s), dtype=np.uint32)
        region_masks = {k: np.asarray(v) for k, v in self.graph.regions.items()}
        region_rows: list[NDArray[np.int64]] = []
        try:
            for t in times:
                try:
                    if t > engine.time:
                        engine.advance(float(t), callback)
                    engine.counts_into(buf)
                    sample = (engine.totals(), engine.diffusion_events(), engine.reaction_events())
                except (KeyboardInterrupt, core.CoreError) as exc:
                    reason = (
                        "interrupted (KeyboardInterrupt)"
                        if isinstance(exc, KeyboardInterrupt)
                        else f"core error: {exc}"
                    )
                    self._finish(writer, engine, False, reason, wall0, cpu0)
                    raise
                writer.append(float(t), buf, *sample)
                region_rows.append(
                    np.array(
                        [buf[m].sum(axis=0, dtype=np.int64) for m in region_masks.values()],
                        dtype=np.int64,
                    ).reshape(len(region_masks), s)
                )
                if bar is not None:
                    bar.update(float(t) - bar.n)
        except KeyboardInterrupt:
            # Ctrl-C while Python code (e.g. the writer) ran: the writer only counts
            # fully written samples, so the file can still be closed consistently.
            if writer.file.id.valid and writer.file.attrs.get("stop_reason") == "running":
                self._finish(writer, engine, False, "interrupted (KeyboardInterrupt)", wall0, cpu0)
            raise
        except BaseException:
            if writer.file.id.valid:
                writer.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
        done = self._finish(writer, engine, True, "finished", wall0, cpu0)
        self._write_region_analysis(done, region_masks, region_rows)
        if isinstance(done, Path):
            return Result.load(done)
        return Result(done, None)

    def _write_region_analysis(self, done, masks, rows) -> None:
        """``/analysis/regions/<name>/{total, mean_uM}`` (T, S) and the region volume."""
        if not masks:
            return
        import h5py

        f = h5py.File(done, "r+") if isinstance(done, Path) else done
        try:
            ag = f.require_group("analysis/regions")
            ag.attrs["species"] = np.array(list(self.species), dtype=object)
            ag.attrs["note"] = "per-region totals (molecules) and means (uM) at each sample"
            table = np.stack(rows, axis=0) if rows else np.zeros((0, len(masks), len(self.species)))
            for r, (name, mask) in enumerate(masks.items()):
                g = ag.create_group(name)
                vol = float(self.graph.volumes[mask].sum())
                g.attrs["volume_um3"] = vol
                g.attrs["n_subvolumes"] = int(mask.sum())
                tot = g.create_dataset("total", data=table[:, r, :].astype(np.int64))
                tot.attrs["units"] = "molecules"
                mean = g.create_dataset(
                    "mean_uM", data=units.molecules_to_concentration(table[:, r, :], vol)
                )
                mean.attrs["units"] = "uM (total / region volume)"
        finally:
            if isinstance(done, Path):
                f.close()

    @staticmethod
    def _finish(writer, engine, complete, reason, wall0, cpu0):
        try:
            return writer.finish(
                complete=complete,
                stop_reason=reason,
                time_reached=float(engine.time),
                diffusion_events=engine.diffusion_events(),
                reaction_events=engine.reaction_events(),
                attrs={
                    "wall_seconds": _time.perf_counter() - wall0,
                    "cpu_seconds": _time.process_time() - cpu0,
                },
            )
        except BaseException:
            writer.abort()
            raise

    def __repr__(self) -> str:
        return (
            f"Simulation(species={list(self.species)}, subvolumes={self.graph.n_subvolumes}, "
            f"solver={self.solver!r}, seed={self.seed}, replicate={self.replicate})"
        )


def _progress_bar(t_end: float, wall0: float):
    from tqdm.auto import tqdm

    bar = tqdm(
        total=t_end,
        unit="s",
        desc="simulating",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| t = {n:.4g}/{total:.4g} s "
        "[{elapsed}<{remaining}{postfix}]",
        leave=True,
    )

    def callback(t: float, events: int) -> None:
        elapsed = _time.perf_counter() - wall0
        if elapsed > 0:
            bar.set_postfix_str(f"{events / elapsed:.3g} events/s", refresh=False)
        bar.update(min(t, t_end) - bar.n)

    return bar, callback
