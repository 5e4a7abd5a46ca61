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

import contextlib
import importlib
import json
import math
import os
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import units
from ._version import __version__
from .checkpointing import Checkpointer
from .compile import CoreProblem, _species_mask, compile_problem
from .errors import SimulationError
from .geometry import as_graph
from .geometry.graph import SubvolumeGraph
from .guards import DEFAULT_MAX_OUTPUT_BYTES, check_resources, estimate_resources
from .io.hdf5 import FORMAT_NAME, ResultWriter
from .model import Model
from .result import Result

__all__ = ["SOLVERS", "SOLVER_OPTIONS", "Simulation", "sample_times"]

#: Solvers that exist, by name: "nsm" the exact next-subvolume method, "molecules"
#: the exact SSA with one clock per molecule of the lone moving species (faster
#: where it applies: exactly one species moves and no reaction takes two of it),
#: "opsplit" the approximate multithreaded operator-splitting solver
#: (docs/performance.md).
SOLVERS = ("nsm", "molecules", "opsplit")
#: Options each solver accepts in ``solver_options``.
SOLVER_OPTIONS: dict[str, tuple[str, ...]] = {
    "nsm": (),
    "molecules": ("method",),
    "opsplit": ("tolerance", "tau", "threads"),
}
#: How the molecules solver draws events (solver option ``method``): "thinning"
#: (one candidate stream thinned per molecule), "clocks" (one clock per molecule)
#: or "auto" (thinning when most candidates would be accepted at the start).
MOLECULES_METHODS = ("auto", "clocks", "thinning")
#: In-memory results larger than this many bytes of raw counts are refused.
MAX_IN_MEMORY_BYTES = 8 * 2**30
#: Default wall time between two checkpoints of a run into its file, seconds.
CHECKPOINT_INTERVAL_S = 60.0
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


def _guard_geometry(space: Any, n_species: int) -> None:
    """Refuse, before the geometry is compiled, one whose graph, counts and
    engine cannot fit in the available memory (redoxfield.guards)."""
    if isinstance(space, SubvolumeGraph):
        return
    n = getattr(space, "n_subvolumes", None)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        return
    lattice = hasattr(space, "shape") and hasattr(space, "spacing")
    est = estimate_resources(
        int(n),
        max(n_species, 1),
        6 * int(n) if lattice else 4 * int(n),
        0,
        lattice=lattice,
        graph_built=False,
    )
    check_resources(est, check_output=False)


def _nonnegative_number(value: object, what: str, unit: str) -> float:
    """``value`` as a float, or a SimulationError naming ``what`` if it is not a
    finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise SimulationError(f"{what} must be a number ({unit}), got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise SimulationError(f"{what} = {x!r} {unit} must be finite and non-negative")
    return x


def check_solver_options(solver: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for ``solver`` as a plain dict, or a SimulationError naming the bad
    option: ``tolerance`` in (0, 1), ``tau`` a positive number of seconds or None,
    ``threads`` an integer >= 0 (0: one per core)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise SimulationError(f"solver_options must be a mapping, got {type(options).__name__}")
    allowed = SOLVER_OPTIONS[solver]
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise SimulationError(
                f"unknown option {key!r} for solver {solver!r} (it accepts: {known})"
            )
        if key == "tolerance":
            x = _nonnegative_number(value, "solver option 'tolerance'", "")
            if not 0 < x < 1:
                raise SimulationError(
                    f"solver option 'tolerance' = {x!r} must lie strictly between 0 and 1"
                )
            out[key] = x
        elif key == "tau":
            if value is None:
                continue
            x = _nonnegative_number(value, "solver option 'tau'", "s")
            if x <= 0:
                raise SimulationError("solver option 'tau' must be positive (s)")
            out[key] = x
        elif key == "threads":
            out[key] = _check_int(value, "solver option 'threads'", 0, 1024)
        elif key == "method":
            if value not in MOLECULES_METHODS:
                raise SimulationError(
                    f"solver option 'method' = {value!r} must be one of "
                    f"{', '.join(map(repr, MOLECULES_METHODS))}"
                )
            out[key] = value
    return out


def _check_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SimulationError(f"{what} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise SimulationError(f"{what} = {v} must be between {lo} and {hi}")
    return v


def _check_molecules_applies(problem: CoreProblem) -> None:
    """SimulationError unless the molecules solver can split this problem over
    molecules: exactly one species moves, and no reaction takes two of it."""
    species = problem.network.species
    moving = [species[k] for k in np.flatnonzero((problem.transport_coefficients > 0).any(axis=0))]
    if len(moving) != 1:
        which = ", ".join(moving) if moving else "none"
        raise SimulationError(
            f"solver 'molecules' needs exactly one species that moves; this model has "
            f"{len(moving)} ({which}): use solver 'nsm'"
        )
    m = species.index(moving[0])
    for name, row in zip(problem.network.reaction_names, problem.network.reactants, strict=True):
        if int(np.count_nonzero(row == m)) > 1:
            raise SimulationError(
                f"solver 'molecules' cannot run reaction {name!r}: it takes two molecules of "
                f"the moving species {moving[0]!r} (use solver 'nsm')"
            )


class Simulation:
    """One stochastic trajectory of ``model`` on ``space``.

    ``space``: a :class:`~redoxfield.geometry.Lattice`, a
    :class:`~redoxfield.geometry.SubvolumeGraph` or anything with ``to_graph()``.
    The model and geometry are compiled here (errors such as an unknown region in
    a reaction surface now); later changes to them do not affect this Simulation.
    ``seed`` and ``replicate`` (integers in 0..2**64-1) select the random stream.
    ``solver``: ``"nsm"`` (exact, default), ``"molecules"`` (exact, one clock per
    molecule of the lone moving species: faster where exactly one species moves and
    no reaction takes two of it, SimulationError otherwise; ``solver_options``:
    ``method``, one of ``"auto"`` (default), ``"thinning"``, ``"clocks"``, the
    same statistics) or ``"opsplit"``
    (approximate, multithreaded); ``solver_options`` for ``"opsplit"``: ``tolerance`` (largest
    per-molecule reaction probability per step, default 0.01), ``tau`` (a fixed
    largest step, s) and ``threads`` (0: one per core). The opsplit trajectory for
    a seed is the same on any number of threads.
    """

    def __init__(
        self,
        model: Model,
        space: Any,
        seed: int = 1,
        solver: str = "nsm",
        replicate: int = 0,
        solver_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, Model):
            raise SimulationError(f"model must be a redoxfield.Model, got {type(model).__name__}")
        if solver not in SOLVERS:
            raise SimulationError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
        self.seed = _check_int(seed, "seed", 0, 2**64 - 1)
        self.replicate = _check_int(replicate, "replicate", 0, 2**64 - 1)
        self.solver = solver
        self.solver_options: dict[str, Any] = check_solver_options(solver, solver_options)
        self.model = Model.from_dict(model.to_dict())  # a snapshot
        _guard_geometry(space, len(self.model._species))
        self.graph: SubvolumeGraph = as_graph(space)
        self.problem: CoreProblem = compile_problem(self.model, self.graph)
        self.species: tuple[str, ...] = self.problem.network.species
        if solver == "molecules":
            _check_molecules_applies(self.problem)
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
        self._schedule: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        self._protocol: Any = None

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
        c = _nonnegative_number(value_uM, f"concentration of {species!r}", "uM")
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
        rho = _nonnegative_number(density, f"surface density of {species!r}", "molecules/um^2")
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

    # -- time schedules ---------------------------------------------------------------
    def set_rate_schedule(
        self, times: Sequence[float] | NDArray[np.float64], factors: Mapping[str, Any]
    ) -> None:
        """Switch rate constants in time, exactly (the solver stops at each time).

        ``times``: strictly increasing switch times (s, >= 0). ``factors``: reaction
        name -> sequence of ``len(times)`` non-negative multipliers; from
        ``times[k]`` until ``times[k + 1]`` the reaction runs at ``factors[k]``
        times its constant (1 before ``times[0]``; reactions not named keep 1).
        Replaces any earlier schedule or protocol."""
        t = np.asarray(times, dtype=np.float64) if _is_numeric_seq(times) else None
        if t is None or t.ndim != 1 or t.size == 0:
            raise SimulationError(
                f"schedule times must be a non-empty 1-D sequence of numbers, got {times!r}"
            )
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise SimulationError(f"schedule times must be finite and >= 0, got {t.tolist()}")
        if np.any(np.diff(t) <= 0):
            raise SimulationError(f"schedule times must increase strictly, got {t.tolist()}")
        if not isinstance(factors, Mapping) or not factors:
            raise SimulationError(
                "schedule factors must be a non-empty mapping reaction name -> factors"
            )
        names = self.problem.network.reaction_names
        table = np.ones((t.size, len(names)), dtype=np.float64)
        for name, vals in factors.items():
            if name not in names:
                raise SimulationError(
                    f"schedule: unknown reaction {name!r} (the model has: {', '.join(names)})"
                )
            v = np.asarray(vals, dtype=np.float64) if _is_numeric_seq(vals) else None
            if v is None or v.shape != t.shape:
                raise SimulationError(
                    f"schedule factors of reaction {name!r} must be {t.size} numbers (one per "
                    f"switch time), got {vals!r}"
                )
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise SimulationError(
                    f"schedule factors of reaction {name!r} must be finite and >= 0, "
                    f"got {v.tolist()}"
                )
            table[:, names.index(name)] = v
        self._schedule = (t, table)
        self._protocol = None

    def set_protocol(self, protocol: Any) -> None:
        """Drive every reaction declared with ``activity=(rest, active)`` by the
        contraction activity of ``protocol`` (a :class:`redoxfield.protocols.Protocol`
        or its dict/TOML form), switched exactly at the phase boundaries."""
        from . import protocols

        if not isinstance(protocol, protocols.Protocol):
            protocol = protocols.from_dict(protocol)
        couplings = {r.name: r.activity for r in self.model.reactions if r.activity is not None}
        if not couplings:
            raise SimulationError(
                "set_protocol: no reaction of the model is coupled to contraction activity "
                "(declare one with Model.reaction(..., activity=(rest, active)))"
            )
        times, factors = protocol.schedule(couplings)  # type: ignore[arg-type]
        self.set_rate_schedule(times, factors)
        self._protocol = protocol

    @property
    def rate_schedule(self) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]] | None:
        """(switch times, reaction name -> factors) or None without a schedule."""
        if self._schedule is None:
            return None
        t, table = self._schedule
        names = self.problem.network.reaction_names
        return t.copy(), {n: table[:, k].copy() for k, n in enumerate(names)}

    @property
    def protocol(self) -> Any:
        """The protocol set with ``set_protocol`` (None otherwise)."""
        return self._protocol

    def engine_arrays(self) -> dict[str, Any]:
        """Every array an engine of this simulation is built from: the compiled
        problem, the rate schedule (if any) and the initial counts (the keyword
        arguments of ``_core.NsmEngine`` but the seed; also what checkpoints store)."""
        arrays = dict(self.problem.engine_kwargs())
        if self._schedule is not None:
            t, table = self._schedule
            arrays["schedule_times"] = np.ascontiguousarray(t)
            arrays["schedule_factors"] = np.ascontiguousarray(table)
        arrays["counts"] = np.ascontiguousarray(self._counts, dtype=np.int64)
        return arrays

    # -- running ------------------------------------------------------------------------
    def make_engine(self) -> Any:
        """A fresh engine of the chosen solver (``_core.NsmEngine``,
        ``_core.MoleculesEngine`` or ``_core.OpSplitEngine``) at t = 0 with the
        initial counts."""
        core = _load_core()
        kwargs = dict(**self.engine_arrays(), seed=self.seed, replicate=self.replicate)
        if self.solver == "opsplit":
            return core.OpSplitEngine(**kwargs, **self.solver_options)
        if self.solver == "molecules":
            return core.MoleculesEngine(**kwargs, **self.solver_options)
        return core.NsmEngine(**kwargs)

    def run(
        self,
        t_end: float,
        dt_sample: float,
        output: str | os.PathLike[str] | None = None,
        progress: bool | Callable[[float, int], None] = False,
        *,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL_S,
    ) -> Result:
        """Run from t = 0 to ``t_end`` (s), sampling every ``dt_sample`` (s).

        ``output``: HDF5 path, written under that name from the start with
        ``complete = False`` (an existing file of that name is replaced), or
        ``None`` for an in-memory HDF5 result with the same layout
        (``Result.save`` writes it out).
        ``progress``: ``True`` for a tqdm bar (simulated time, events/s) on stderr,
        or a callable ``f(time, events)`` called about every 2**20 events.
        ``max_output_bytes``: refuse (before any work) a run whose output would
        exceed this many bytes before compression (None: no cap); a run that
        will not fit in the available memory is refused too (redoxfield.guards).
        ``checkpoint_interval``: seconds of wall time between two checkpoints of
        the solver state into the file (None: none; file output only). A
        checkpoint is also written on Ctrl-C, so ``Simulation.resume(output)``
        continues the run, bitwise identical to an uninterrupted one.

        Ctrl-C (KeyboardInterrupt) or a core error stops the run: the file is closed
        with ``complete = False`` and the samples taken so far, and the exception
        is re-raised. A run killed outright (SIGKILL) leaves the file marked
        incomplete with every sample flushed before the kill.
        """
        times = sample_times(t_end, dt_sample)
        n, s = self._counts.shape
        if output is None and times.size * n * s * 4 > MAX_IN_MEMORY_BYTES:
            raise SimulationError(
                f"{times.size} samples of {n} subvolumes x {s} species are too large to keep "
                "in memory; give output='file.h5'"
            )
        est = estimate_resources(
            n,
            s,
            int(self.graph.edge_targets.size),
            int(times.size),
            lattice=self.graph.kind == "lattice",
            n_reactions=len(self.problem.network.reaction_names),
        )
        if output is None:  # the result itself lives in memory too
            est = replace(est, memory_bytes=est.memory_bytes + est.output_bytes)
        check_resources(est, max_output_bytes=max_output_bytes)
        if checkpoint_interval is not None and not (
            isinstance(checkpoint_interval, (int, float)) and checkpoint_interval > 0
        ):
            raise SimulationError(
                f"checkpoint_interval = {checkpoint_interval!r} must be a positive number of "
                "seconds or None"
            )
        if output is not None:
            output = Path(output)
        core = _load_core()
        engine = self.make_engine()
        writer = ResultWriter(output)
        ckpt = None
        try:
            writer.write_header(
                model=self.model,
                problem=self.problem,
                graph=self.graph,
                attrs={
                    "redoxfield_version": __version__,
                    "core_version": str(getattr(core, "__version__", "unknown")),
                    "solver": self.solver,
                    "solver_options": json.dumps(self.solver_options, sort_keys=True),
                    "seed": np.uint64(self.seed),
                    "replicate": np.uint64(self.replicate),
                    "t_end": float(times[-1]),
                    "dt_sample": float(dt_sample),
                    "n_samples_requested": int(times.size),
                    **self.metadata,
                },
                scenario_text=self.scenario_text,
                schedule=self._schedule,
                protocol=None if self._protocol is None else self._protocol.to_dict(),
            )
            if output is not None and hasattr(engine, "checkpoint"):
                ckpt = Checkpointer(
                    writer.file, engine, self.engine_arrays(), times, checkpoint_interval
                )
                writer.file.flush()
        except BaseException:
            writer.abort()
            raise
        region_masks = {k: np.asarray(v) for k, v in self.graph.regions.items()}
        return _drive(
            core,
            engine,
            writer,
            ckpt,
            times,
            0,
            progress,
            region_masks,
            [],
            tuple(self.species),
            np.asarray(self.graph.volumes),
        )

    @staticmethod
    def resume(
        path: str | os.PathLike[str],
        progress: bool | Callable[[float, int], None] = False,
        *,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL_S,
    ) -> Result:
        """Continue the incomplete run in ``path`` from its last checkpoint to its
        ``t_end``, appending to the same file. Samples written after that
        checkpoint are dropped and taken again (identically: the resumed
        trajectory is bitwise the one an uninterrupted run gives)."""
        return resume(path, progress, checkpoint_interval=checkpoint_interval)

    def __repr__(self) -> str:
        opts = f", solver_options={self.solver_options!r}" if self.solver_options else ""
        return (
            f"Simulation(species={list(self.species)}, subvolumes={self.graph.n_subvolumes}, "
            f"solver={self.solver!r}{opts}, seed={self.seed}, replicate={self.replicate})"
        )


def _is_numeric_seq(x: object) -> bool:
    if isinstance(x, (str, bytes, Mapping)):
        return False
    try:
        a = np.asarray(x)
    except Exception:
        return False
    return a.dtype.kind in "iuf" and a.ndim >= 1


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


def _region_rows(counts: NDArray[np.uint32], masks: dict[str, NDArray[np.bool_]]) -> NDArray:
    s = counts.shape[1]
    return np.array(
        [counts[m].sum(axis=0, dtype=np.int64) for m in masks.values()], dtype=np.int64
    ).reshape(len(masks), s)


def _write_region_analysis(f, masks, rows, species, volumes) -> None:
    """``/analysis/regions/<name>/{total, mean_uM}`` (T, S) and the region volume."""
    if not masks:
        return
    ag = f.require_group("analysis/regions")
    ag.attrs["species"] = np.array(list(species), dtype=object)
    ag.attrs["note"] = "per-region totals (molecules) and means (uM) at each sample"
    table = np.stack(rows, axis=0) if rows else np.zeros((0, len(masks), len(species)))
    for r, (name, mask) in enumerate(masks.items()):
        g = ag.create_group(name)
        vol = float(volumes[mask].sum())
        g.attrs["volume_um3"] = vol
        g.attrs["n_subvolumes"] = int(mask.sum())
        tot = g.create_dataset("total", data=table[:, r, :].astype(np.int64))
        tot.attrs["units"] = "molecules"
        mean = g.create_dataset(
            "mean_uM", data=units.molecules_to_concentration(table[:, r, :], vol)
        )
        mean.attrs["units"] = "uM (total / region volume)"


def _drive(
    core, engine, writer, ckpt, times, start, progress, region_masks, region_rows, species, volumes
) -> Result:
    """Take samples ``start..`` of ``times`` with ``engine`` into ``writer``;
    checkpoints every ``ckpt.interval_s`` of wall time and on Ctrl-C."""
    n, s = len(volumes), len(species)
    wall0, cpu0 = _time.perf_counter(), _time.process_time()
    bar = None
    callback: Callable[[float, int], None] | None = None
    try:
        if progress is True:
            bar, callback = _progress_bar(float(times[-1]), wall0)
        elif callable(progress):
            callback = progress
    except BaseException:
        writer.abort()
        raise
    interval = None if ckpt is None else ckpt.interval_s
    next_ckpt = _time.monotonic() + (interval or 0.0)
    buf = np.empty((n, s), dtype=np.uint32)
    k = start

    def checkpoint_now() -> None:
        if ckpt is not None:
            writer.flush()
            ckpt.write(k)

    def stop(exc: BaseException) -> None:
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = "interrupted (KeyboardInterrupt)" if interrupted else f"core error: {exc}"
        if interrupted:
            # The samples matter more than the checkpoint.
            with contextlib.suppress(Exception):
                checkpoint_now()
        _finish(writer, engine, False, reason, wall0, cpu0)

    try:
        while k < times.size:
            t = float(times[k])
            try:
                if t > engine.time:
                    if interval is None:
                        engine.advance(t, callback)
                    else:
                        left = max(next_ckpt - _time.monotonic(), 0.0)
                        if not engine.advance(t, callback, max_seconds=left):
                            checkpoint_now()
                            next_ckpt = _time.monotonic() + interval
                            continue
                engine.counts_into(buf)
                sample = (engine.totals(), engine.diffusion_events(), engine.reaction_events())
            except (KeyboardInterrupt, core.CoreError) as exc:
                stop(exc)
                raise
            writer.append(t, buf, *sample)
            region_rows.append(_region_rows(buf, region_masks))
            k += 1
            if interval is not None and _time.monotonic() >= next_ckpt:
                checkpoint_now()
                next_ckpt = _time.monotonic() + interval
            if bar is not None:
                bar.update(t - bar.n)
    except KeyboardInterrupt:
        # Ctrl-C while Python code (e.g. the writer) ran: the writer only counts
        # fully written samples, so the file can still be closed consistently.
        if writer.file.id.valid and writer.file.attrs.get("stop_reason") == "running":
            _finish(writer, engine, False, "interrupted (KeyboardInterrupt)", wall0, cpu0)
        raise
    except BaseException as exc:
        if writer.file.id.valid:
            writer.abort(f"error: {type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()

    def analysis(f) -> None:
        _write_region_analysis(f, region_masks, region_rows, species, volumes)
        if "checkpoint" in f:  # a finished run needs no checkpoint
            del f["checkpoint"]

    done = _finish(writer, engine, True, "finished", wall0, cpu0, analysis)
    if isinstance(done, Path):
        return Result.load(done)
    return Result(done, None)


def solver_attrs(engine: Any) -> dict[str, Any]:
    """What an approximate engine actually did, for the output file's root
    attributes: threads, steps, the step lengths taken and the last step bound."""
    if not hasattr(engine, "tau_used"):
        return {}
    tau_min, tau_max = engine.tau_used
    return {
        "solver_threads": int(engine.threads),
        "solver_steps": int(engine.steps),
        "solver_tolerance": float(engine.tolerance),
        "solver_tau_min": float(tau_min) if engine.steps else float("nan"),
        "solver_tau_max": float(tau_max) if engine.steps else float("nan"),
        "solver_tau_bound": float(engine.tau_bound),
    }


def _finish(writer, engine, complete, reason, wall0, cpu0, before_complete=None):
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
                **solver_attrs(engine),
            },
            before_complete=before_complete,
        )
    except BaseException:
        writer.abort("error while closing the file")
        raise


def resume(
    path: str | os.PathLike[str],
    progress: bool | Callable[[float, int], None] = False,
    *,
    checkpoint_interval: float | None = CHECKPOINT_INTERVAL_S,
) -> Result:
    """See :meth:`Simulation.resume`."""
    import h5py

    from .checkpointing import read_latest, read_problem

    p = Path(path)
    if not p.exists():
        raise SimulationError(f"no such result file: {str(p)!r}")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise SimulationError(
            f"cannot resume {str(p)!r}: not a readable HDF5 file ({exc})"
        ) from None
    with f:
        if f.attrs.get("format") != FORMAT_NAME:
            raise SimulationError(f"cannot resume {str(p)!r}: not a redoxfield result file")
        if bool(f.attrs.get("complete", False)):
            raise SimulationError(f"{str(p)!r} is complete: there is nothing to resume")
        if str(f.attrs.get("solver", "nsm")) != "nsm":
            raise SimulationError(
                f"cannot resume {str(p)!r}: it was run with solver "
                f"{str(f.attrs.get('solver'))!r}, which has no checkpoints (only the NSM does)"
            )
        latest = read_latest(f)
        if latest is None:
            raise SimulationError(
                f"cannot resume {str(p)!r}: it holds no valid checkpoint (the run stopped "
                "before its first one, or was started with checkpoint_interval=None)"
            )
        _, sample_index, state = latest
        arrays, times = read_problem(f)
        species = tuple(str(x) for x in f["model/species/name"].asstr()[()])
        volumes = np.asarray(f["geometry/volumes"][()])
        masks = {name: np.asarray(ds[()], dtype=bool) for name, ds in f["geometry/regions"].items()}
        if sample_index > f["samples/time"].shape[0]:
            raise SimulationError(
                f"cannot resume {str(p)!r}: its checkpoint is after sample {sample_index} but "
                f"the file holds only {f['samples/time'].shape[0]} samples"
            )
        rows = []
        if masks:
            cnt = [f["samples/counts"][sp] for sp in species]
            for j in range(sample_index):
                sample = np.stack([ds[j] for ds in cnt], axis=1)
                rows.append(_region_rows(sample, masks))
    core = _load_core()
    engine = core.NsmEngine.restore(**arrays, state=state, species_names=list(species))
    writer = ResultWriter.reopen(p, sample_index)
    from .checkpointing import Checkpointer

    try:
        ckpt = Checkpointer(writer.file, engine, arrays, times, checkpoint_interval)
        writer.file.attrs["resumed"] = int(writer.file.attrs.get("resumed", 0)) + 1
        writer.file.flush()
    except BaseException:
        writer.abort("error while resuming")
        raise
    return _drive(
        core, engine, writer, ckpt, times, sample_index, progress, masks, rows, species, volumes
    )
