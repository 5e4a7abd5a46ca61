"""Ensembles and parameter sweeps on Dask (docs/ensembles.md).

>>> ens = rf.Ensemble("birth-death.toml", replicates=100,
...                   parameters={"reactions/birth/flux": [50, 100]})
>>> res = ens.run("sweep.h5")                 # a LocalCluster, one process per core
>>> res.stats(by="region")                      # Welford mean/var over replicates
>>> res.compare(0, 1, species="A")              # Welch CI of the difference of means

**Parameters** are named by paths that mirror the scenario TOML tables (``/``
cannot occur in a reaction or species name, so the path is unambiguous):

=====================================  ==============================================
``reactions/<name>/k``                 rate constant of reaction ``<name>`` (its k_unit)
``reactions/<name>/flux``              total source (molecules/s) of an order-0 reaction
``species/<name>/D``                   diffusion coefficient, µm²/s, in every compartment
``permeabilities/<sp>/<membrane>/P``   permeability, µm/s
``initial/<sp>/concentration``         initial concentration, µM (``set_concentration``)
``initial/<sp>/count``                 initial molecule count (``set_count``)
``initial/<sp>/surface_density``       molecules/µm² (``set_surface_density``)
=====================================  ==============================================

``initial/<sp>@<region>/...`` (``@<membrane>`` for surface densities) restricts an
initial condition to a region. Scenario ensembles change the matching
``[[initial]]`` entries (or add one); Simulation ensembles apply the setter to
the Simulation's initial counts. ``interventions/...`` and ``protocols/...``
are reserved for the model transforms of DESIGN.md and refused until they exist.

**Arms** are the Cartesian product of the value lists (the last parameter varies
fastest), or an explicit list of dicts. **Streams**: replicate ``i`` of arm ``j``
runs with the core's ``(seed, replicate_key(j, i))``, ``replicate_key(j, i) =
j * 2**32 + i`` (one-to-one for j, i < 2**32). **Output**: one HDF5 shard per
trajectory, ``<out>.shards/a<j>_r<i>.h5`` (written by the worker under a temporary
name and renamed, so a shard under its final name is whole), joined by an HDF5
virtual dataset file ``<out>`` (docs/ensembles.md).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import os
import pickle
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import EnsembleError, RedoxfieldError
from .geometry.graph import SubvolumeGraph
from .io import shards as _shards
from .model import Model
from .simulation import Simulation

__all__ = [
    "Ensemble",
    "EnsembleError",
    "ParameterPath",
    "parse_parameter",
    "parse_set_option",
    "replicate_key",
]

logger = logging.getLogger(__name__)

#: Largest arm index and replicate count (the key packs both into 64 bits).
MAX_INDEX = 2**32
#: Default time (s) to wait for a scheduler given by address.
DEFAULT_CONNECT_TIMEOUT = 10.0

_SECTIONS = ("reactions", "species", "permeabilities", "initial")
_RESERVED = ("interventions", "protocols")
_FORMS = (
    "reactions/<name>/k, reactions/<name>/flux, species/<name>/D, "
    "permeabilities/<species>/<membrane>/P, initial/<species>[@<region>]/concentration, "
    "initial/<species>[@<region>]/count, initial/<species>[@<membrane>]/surface_density"
)


def replicate_key(arm: int, replicate: int) -> int:
    """The core's ``replicate`` for replicate ``replicate`` of arm ``arm``:
    ``arm * 2**32 + replicate`` -- distinct pairs give distinct keys."""
    for what, v in (("arm", arm), ("replicate", replicate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < MAX_INDEX:
            raise EnsembleError(f"{what} index {v!r} must be an integer in [0, 2**32)")
    return (int(arm) << 32) | int(replicate)


# -- parameter names ------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterPath:
    """A parsed parameter name (see the module docstring)."""

    name: str
    section: str  # reactions | species | permeabilities | initial
    target: tuple[str, ...]  # (reaction,) (species,) (species, membrane) (species, where|None)
    field: str  # k | flux | D | P | concentration | count | surface_density

    @property
    def integer(self) -> bool:
        return self.field == "count"


def parse_parameter(name: str) -> ParameterPath:
    """Parse a parameter path; :class:`EnsembleError` naming the accepted forms."""
    if not isinstance(name, str) or not name:
        raise EnsembleError(f"sweep parameter name must be a non-empty string, got {name!r}")
    parts = name.split("/")
    head = parts[0]
    if head in _RESERVED:
        raise EnsembleError(
            f"sweep parameter {name!r}: {head} are not part of the model yet, so they cannot "
            f"be swept (sweepable today: {_FORMS})"
        )
    bad = EnsembleError(f"unknown sweep parameter {name!r} (the forms are: {_FORMS})")
    if head == "reactions" and len(parts) == 3 and parts[2] in ("k", "flux") and parts[1]:
        return ParameterPath(name, head, (parts[1],), parts[2])
    if head == "species" and len(parts) == 3 and parts[2] == "D" and parts[1]:
        return ParameterPath(name, head, (parts[1],), "D")
    if head == "permeabilities" and len(parts) == 4 and parts[3] == "P" and parts[1] and parts[2]:
        return ParameterPath(name, head, (parts[1], parts[2]), "P")
    if (
        head == "initial"
        and len(parts) == 3
        and parts[2] in ("concentration", "count", "surface_density")
        and parts[1]
    ):
        sp, _, where = parts[1].partition("@")
        if not sp or (parts[1].endswith("@")):
            raise bad
        return ParameterPath(name, head, (sp, where or None), parts[2])  # type: ignore[arg-type]
    raise bad


def _check_value(p: ParameterPath, v: object) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise EnsembleError(f"sweep parameter {p.name!r}: value {v!r} is not a number")
    x = float(v)
    if not math.isfinite(x) or x < 0:
        raise EnsembleError(
            f"sweep parameter {p.name!r}: value {v!r} must be finite and non-negative"
        )
    if p.integer:
        if x != math.floor(x) or x >= 2**63:
            raise EnsembleError(
                f"sweep parameter {p.name!r}: a count must be an integer, got {v!r}"
            )
        return int(x)
    return x


def _parse_number(text: str, where: str) -> float | int:
    t = text.strip()
    if not t:
        raise EnsembleError(f"{where}: empty value in the list")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise EnsembleError(f"{where}: {t!r} is not a number") from None


def parse_set_option(text: str) -> tuple[str, list[float | int]]:
    """``NAME=v1,v2,...`` (the CLI's ``--set``) -> (name, values). The name may
    contain ``=``-free text with spaces (reaction names); values split at commas."""
    name, eq, values = text.rpartition("=")
    if not eq or not name.strip():
        raise EnsembleError(f"--set {text!r}: expected NAME=v1,v2,...")
    name = name.strip()
    if not values.strip():
        raise EnsembleError(f"--set {name}: the value list is empty (expected NAME=v1,v2,...)")
    where = f"--set {name}"
    return name, [_parse_number(v, where) for v in values.split(",")]


# -- the picklable description of a sweep -----------------------------------------------
@dataclass
class _Base:
    """Everything a worker needs to build any trajectory of the sweep."""

    model: dict[str, Any]
    graph: SubvolumeGraph
    counts: NDArray[np.int64] | None  # Simulation ensembles: fixed initial counts
    initial: list[dict[str, Any]] | None  # scenario ensembles: initial entries
    t_end: float
    dt_sample: float
    seed: int
    solver: str
    scenario_text: str | None
    metadata: dict[str, Any]
    fingerprint: str = ""
    #: Rate schedule {"times": [...], "factors": {reaction: [...]}} or None.
    schedule: dict[str, Any] | None = None
    #: Protocol (redoxfield.protocols dict form) or None; applied after schedule.
    protocol: dict[str, Any] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # In-band pickling: Dask's out-of-band buffers would come back as
        # read-only, non-owning arrays, which the core's constructor refuses.
        state = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return (_Base._from_bytes, (pickle.dumps(state, protocol=4),))

    @staticmethod
    def _from_bytes(data: bytes) -> _Base:
        return _Base(**pickle.loads(data))

    def compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.model, sort_keys=True).encode())
        g = self.graph
        for a in (
            g.volumes,
            g.centers,
            g.edge_offsets,
            g.edge_targets,
            g.edge_coupling,
            g.edge_membrane,
            g.compartments,
            g.membrane_areas,
        ):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr((g.compartment_names, g.membrane_names, g.kind)).encode())
        for name in sorted(g.regions):
            h.update(name.encode())
            h.update(np.ascontiguousarray(g.regions[name], dtype=np.uint8).tobytes())
        if self.counts is not None:
            h.update(np.ascontiguousarray(self.counts).tobytes())
        h.update(json.dumps(self.initial, sort_keys=True).encode())
        h.update(repr((self.t_end, self.dt_sample, self.seed, self.solver)).encode())
        if self.schedule is not None or self.protocol is not None:
            h.update(json.dumps([self.schedule, self.protocol], sort_keys=True).encode())
        h.update(b"redoxfield-ensemble-1")
        return h.hexdigest()

    # applying one arm's values
    def model_for(self, values: Mapping[str, float | int]) -> Model:
        d = copy.deepcopy(self.model)
        for name, v in values.items():
            p = parse_parameter(name)
            if p.section == "reactions":
                rx = next((r for r in d["reactions"] if r["name"] == p.target[0]), None)
                if rx is None:
                    known = ", ".join(repr(r["name"]) for r in d["reactions"]) or "none"
                    raise EnsembleError(
                        f"sweep parameter {name!r}: no reaction named {p.target[0]!r} "
                        f"(the model has: {known})"
                    )
                given = "k" if rx.get("k") is not None else "flux"
                if given != p.field:
                    raise EnsembleError(
                        f"sweep parameter {name!r}: reaction {p.target[0]!r} is given by "
                        f"{given}, sweep reactions/{p.target[0]}/{given} instead"
                    )
                rx[p.field] = float(v)
            elif p.section == "species":
                sp = next((s for s in d["species"] if s["name"] == p.target[0]), None)
                if sp is None:
                    known = ", ".join(s["name"] for s in d["species"])
                    raise EnsembleError(
                        f"sweep parameter {name!r}: unknown species {p.target[0]!r} "
                        f"(the model has: {known})"
                    )
                if sp.get("membranes"):
                    raise EnsembleError(
                        f"sweep parameter {name!r}: {p.target[0]!r} is membrane-bound (D = 0)"
                    )
                sp["D"] = float(v)
                sp.pop("D_in", None)
            elif p.section == "permeabilities":
                perms = d.setdefault("permeabilities", [])
                pm = next(
                    (
                        q
                        for q in perms
                        if q["species"] == p.target[0] and q["membrane"] == p.target[1]
                    ),
                    None,
                )
                if pm is None:
                    perms.append({"species": p.target[0], "membrane": p.target[1], "P": float(v)})
                else:
                    pm["P"] = float(v)
        try:
            return Model.from_dict(d)
        except RedoxfieldError as exc:
            raise EnsembleError(f"sweep values {dict(values)!r}: {exc}") from None

    def initial_for(self, values: Mapping[str, float | int]) -> list[dict[str, Any]]:
        """Scenario ensembles: the [[initial]] entries with the arm's values."""
        entries = copy.deepcopy(self.initial or [])
        for name, v in values.items():
            p = parse_parameter(name)
            if p.section != "initial":
                continue
            sp, where = p.target
            scope_key = "membrane" if p.field == "surface_density" else "region"
            hits = [
                e
                for e in entries
                if e["species"] == sp
                and p.field in e
                and (where is None or e.get(scope_key) == where)
            ]
            if hits:
                for e in hits:
                    e[p.field] = v
            else:
                e = {"species": sp, p.field: v}
                if where is not None:
                    e[scope_key] = where
                entries.append(e)
        return entries

    def simulation(self, values: Mapping[str, float | int], key: int) -> Simulation:
        """The Simulation of one trajectory, initial conditions applied."""
        sim = Simulation(
            self.model_for(values), self.graph, seed=self.seed, solver=self.solver, replicate=key
        )
        if self.counts is not None:
            # A Simulation ensemble: the given initial counts, then the swept setters.
            sim.set_counts(self.counts)
            setters = [
                (parse_parameter(n), v) for n, v in values.items() if n.startswith("initial/")
            ]
            entries = []
            for p, v in setters:
                e = {"species": p.target[0], p.field: v}
                if p.target[1] is not None:
                    e["membrane" if p.field == "surface_density" else "region"] = p.target[1]
                entries.append(e)
        else:
            entries = self.initial_for(values)
        for k, e in enumerate(entries):
            try:
                sim.apply_initial(e)
            except RedoxfieldError as exc:
                raise EnsembleError(f"initial condition {k} ({e}): {exc}") from None
        try:
            if self.protocol is not None:
                sim.set_protocol(self.protocol)
            elif self.schedule is not None:
                sim.set_rate_schedule(self.schedule["times"], self.schedule["factors"])
        except RedoxfieldError as exc:
            raise EnsembleError(f"sweep values {dict(values)!r}: {exc}") from None
        sim.scenario_text = self.scenario_text
        sim.metadata.update(self.metadata)
        return sim


def _schedule_fields(sim: Simulation) -> dict[str, Any]:
    """The schedule or protocol of ``sim`` in the picklable form of _Base."""
    if sim.protocol is not None:
        return {"protocol": sim.protocol.to_dict()}
    sched = sim.rate_schedule
    if sched is None:
        return {}
    times, factors = sched
    return {
        "schedule": {
            "times": times.tolist(),
            "factors": {k: v.tolist() for k, v in factors.items() if np.any(v != 1.0)},
        }
    }


@dataclass(frozen=True)
class _Task:
    arm: int
    replicate: int
    key: int
    values: tuple[tuple[str, float | int], ...]
    shard: str  # file name inside the shard directory
    token: str  # identifies this trajectory of this sweep (resume check)


def _run_task(base: _Base, task: _Task, shard_dir: str) -> dict[str, Any]:
    """Run one trajectory into its shard (the Dask task; pure and idempotent).

    A shard that already holds this very trajectory, complete, is reused;
    anything else under that name is replaced. The writer renames a whole file
    into place, so concurrent duplicates of this task cannot leave a torn file.
    """
    path = Path(shard_dir) / task.shard
    info = _shards.shard_info(path, task.token)
    if info is not None and info["complete"]:
        info["reused"] = True
        return info
    sim = base.simulation(dict(task.values), task.key)
    sim.metadata.update(
        {
            "ensemble_task": task.token,
            "ensemble_fingerprint": base.fingerprint,
            "ensemble_arm": task.arm,
            "ensemble_replicate": task.replicate,
            "ensemble_parameters": json.dumps(dict(task.values)),
            "ensemble_host": socket.gethostname(),
            "ensemble_pid": os.getpid(),
        }
    )
    res = sim.run(base.t_end, base.dt_sample, output=path)
    res.close()
    info = _shards.shard_info(path, task.token)
    if info is None:  # pragma: no cover - the file was just written
        raise EnsembleError(f"shard {path} vanished after writing")
    info["reused"] = False
    return info


# -- the public class -----------------------------------------------------------------------
@dataclass
class _Outcome:
    infos: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    errors: dict[tuple[int, int], str] = field(default_factory=dict)


class Ensemble:
    """Replicates of a Simulation or a scenario, over arms of swept parameters.

    ``source``: a :class:`~redoxfield.Simulation` (its model, geometry and
    initial counts; ``t_end`` and ``dt_sample`` required), a
    :class:`~redoxfield.scenario.Scenario`, or a scenario file / built-in name
    (run settings from ``[run]``, overridable here; initial conditions are
    re-applied for every trajectory, so ``count`` placements are drawn from each
    replicate's own stream). ``seed`` defaults to the source's.

    ``parameters``: ``{name: [values]}``, arms = the Cartesian product; or
    ``arms``: an explicit list of ``{name: value}`` dicts (all with the same
    names). Neither: a single arm (plain replicates).
    """

    def __init__(
        self,
        source: Any,
        replicates: int,
        parameters: Mapping[str, Sequence[float | int]] | None = None,
        *,
        arms: Sequence[Mapping[str, float | int]] | None = None,
        t_end: float | None = None,
        dt_sample: float | None = None,
        seed: int | None = None,
    ) -> None:
        from .scenario import Scenario, load_scenario

        if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)):
            raise EnsembleError(f"replicates must be an integer, got {replicates!r}")
        if not 1 <= int(replicates) < MAX_INDEX:
            raise EnsembleError(f"replicates = {replicates} must be between 1 and 2**32 - 1")
        self.replicates = int(replicates)
        if isinstance(source, (str, os.PathLike)):
            source = load_scenario(source)
        if isinstance(source, Scenario):
            rs = source.run_settings
            sim = source.simulation(seed=seed)
            self.source_name = source.name
            base = _Base(
                model=source.model.to_dict(),
                graph=sim.graph,
                counts=None,
                initial=copy.deepcopy(list(source.initial)),
                t_end=float(rs.t_end if t_end is None else t_end),
                dt_sample=float(rs.dt_sample if dt_sample is None else dt_sample),
                seed=sim.seed,
                solver=sim.solver,
                scenario_text=source.text,
                metadata=dict(sim.metadata),
                **_schedule_fields(sim),
            )
        elif isinstance(source, Simulation):
            if t_end is None or dt_sample is None:
                raise EnsembleError("an Ensemble of a Simulation needs t_end and dt_sample")
            self.source_name = str(source.metadata.get("scenario_name", "simulation"))
            base = _Base(
                model=source.model.to_dict(),
                graph=source.graph,
                counts=source.counts,
                initial=None,
                t_end=float(t_end),
                dt_sample=float(dt_sample),
                seed=source.seed if seed is None else int(seed),
                solver=source.solver,
                scenario_text=source.scenario_text,
                metadata=dict(source.metadata),
                **_schedule_fields(source),
            )
        else:
            raise EnsembleError(
                "an Ensemble is built from a Simulation, a Scenario or a scenario file/name, "
                f"got {type(source).__name__}"
            )
        from .simulation import sample_times

        try:
            self.times = sample_times(base.t_end, base.dt_sample)
        except RedoxfieldError as exc:
            raise EnsembleError(str(exc)) from None
        if not 0 <= base.seed < 2**64:
            raise EnsembleError(f"seed = {base.seed} must be between 0 and 2**64 - 1")
        base.fingerprint = base.compute_fingerprint()
        self._base = base
        self.parameter_names, self.arms = self._make_arms(parameters, arms)
        for values in self.arms:
            self._validate(values)

    # -- arms ----------------------------------------------------------------------------
    def _make_arms(
        self,
        parameters: Mapping[str, Sequence[float | int]] | None,
        arms: Sequence[Mapping[str, float | int]] | None,
    ) -> tuple[tuple[str, ...], list[dict[str, float | int]]]:
        if parameters is not None and arms is not None:
            raise EnsembleError("give either parameters (a grid) or arms (a list), not both")
        if arms is not None:
            arms = list(arms)
            if not arms:
                raise EnsembleError("arms is an empty list")
            names = tuple(arms[0])
            out = []
            for k, a in enumerate(arms):
                if tuple(a) != names:
                    raise EnsembleError(
                        f"arm {k} sets {sorted(a)}, arm 0 sets {sorted(names)}: every arm "
                        "must set the same parameters"
                    )
                paths = [parse_parameter(n) for n in names]
                out.append({p.name: _check_value(p, a[p.name]) for p in paths})
        else:
            parameters = dict(parameters or {})
            names = tuple(parameters)
            lists = []
            for n in names:
                p = parse_parameter(n)
                vals = parameters[n]
                if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence | np.ndarray):
                    vals = [vals]  # type: ignore[list-item]
                vals = list(vals)
                if not vals:
                    raise EnsembleError(f"sweep parameter {n!r}: the value list is empty")
                checked = [_check_value(p, v) for v in vals]
                if len(set(checked)) != len(checked):
                    raise EnsembleError(f"sweep parameter {n!r}: repeated values {vals!r}")
                lists.append(checked)
            out = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
        if len(out) >= MAX_INDEX:
            raise EnsembleError(f"{len(out)} arms are too many")
        return names, out

    def _validate(self, values: Mapping[str, float | int]) -> None:
        """Raise now (client side) for anything a worker would refuse."""
        self._base.model_for(values)
        m = Model.from_dict(self._base.model)
        for name in values:
            p = parse_parameter(name)
            if p.section == "initial":
                sp, where = p.target
                if sp not in m.species_names:
                    raise EnsembleError(
                        f"sweep parameter {name!r}: unknown species {sp!r} "
                        f"(the model has: {', '.join(m.species_names)})"
                    )
                g = self._base.graph
                scope = g.membrane_names if p.field == "surface_density" else tuple(g.regions)
                if where is not None and where not in scope:
                    what = "membrane" if p.field == "surface_density" else "region"
                    raise EnsembleError(
                        f"sweep parameter {name!r}: unknown {what} {where!r} "
                        f"(the geometry defines: {', '.join(scope) or 'none'})"
                    )
        if any(n.startswith("initial/") for n in values):
            try:  # the setters' own checks (membrane-bound species, overflow, ...)
                self._base.simulation(values, 0)
            except RedoxfieldError as exc:
                raise EnsembleError(str(exc)) from None

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def seed(self) -> int:
        return self._base.seed

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that determines the trajectories (not the replicate count)."""
        return self._base.fingerprint

    def tasks(self) -> list[_Task]:
        """One task per (arm, replicate), arm-major."""
        out = []
        for j, values in enumerate(self.arms):
            items = tuple(values.items())
            for i in range(self.replicates):
                key = replicate_key(j, i)
                token = hashlib.sha256(
                    f"{self.fingerprint}|{json.dumps(items)}|{key}".encode()
                ).hexdigest()[:32]
                out.append(_Task(j, i, key, items, _shards.shard_name(j, i), token))
        return out

    def simulation(self, arm: int, replicate: int) -> Simulation:
        """The Simulation of replicate ``replicate`` of arm ``arm`` (to rerun one
        trajectory alone, e.g. ``ens.simulation(1, 7).run(...)``)."""
        if not 0 <= arm < self.n_arms or not 0 <= replicate < self.replicates:
            raise EnsembleError(f"no trajectory (arm {arm}, replicate {replicate})")
        return self._base.simulation(self.arms[arm], replicate_key(arm, replicate))

    def __repr__(self) -> str:
        return (
            f"Ensemble({self.source_name!r}, arms={self.n_arms}, replicates={self.replicates}, "
            f"parameters={list(self.parameter_names)}, seed={self.seed})"
        )

    # -- running ----------------------------------------------------------------------
    def run(
        self,
        out: str | os.PathLike[str],
        *,
        client: Any = None,
        scheduler: str | None = None,
        workers: int | None = None,
        serial: bool = False,
        progress: bool = False,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        on_task_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Run every trajectory and join the shards into ``out``; an
        :class:`~redoxfield.ensemble_result.EnsembleResult`.

        Where: ``client`` (an existing ``distributed.Client``), else ``scheduler``
        (a scheduler address, e.g. ``"tcp://10.0.0.5:8786"``; ``timeout`` s to
        connect), else a new ``LocalCluster`` on 127.0.0.1 with ``workers``
        processes (default: one per core), one thread each. ``serial=True`` runs
        in this process without Dask (same files, same numbers).

        Shards go to ``<out>.shards/``; a shard already holding the same
        trajectory of the same sweep, complete, is reused (so rerunning after a
        crash computes only what is missing). If trajectories fail, the joined
        file is still written -- its ``/ensemble/complete`` says which are there,
        root ``complete = False`` -- and :class:`EnsembleError` is raised.
        """
        out = Path(out)
        if not out.parent.is_dir():
            raise EnsembleError(f"output directory {str(out.parent)!r} does not exist")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise EnsembleError(f"workers = {workers!r} must be a positive integer")
        if sum(x is not None and x is not False for x in (client, scheduler, serial or None)) > 1:
            raise EnsembleError("give at most one of client, scheduler and serial=True")
        if workers is not None and (client is not None or scheduler is not None or serial):
            raise EnsembleError("workers sets the size of the local cluster only")
        tasks = self.tasks()
        shard_dir = _shards.shard_dir_for(out.absolute())
        executor = "serial"
        owned: list[Any] = []
        if not serial:
            client, owned, executor = _connect(client, scheduler, workers, timeout)
        try:
            shard_dir.mkdir(exist_ok=True)
            outcome = _Outcome()
            interrupted = False
            try:
                if serial:
                    _run_serial(self._base, tasks, shard_dir, outcome, progress, on_task_done)
                else:
                    _run_dask(client, self._base, tasks, shard_dir, outcome, progress, on_task_done)
            except KeyboardInterrupt:
                interrupted = True
            _shards.remove_stale_parts(shard_dir)
            path = _shards.join(
                out,
                shard_dir,
                tasks,
                outcome.infos,
                outcome.errors,
                n_arms=self.n_arms,
                n_replicates=self.replicates,
                parameter_names=self.parameter_names,
                arms=self.arms,
                attrs={
                    "seed": np.uint64(self.seed),
                    "t_end": self._base.t_end,
                    "dt_sample": self._base.dt_sample,
                    "solver": self._base.solver,
                    "fingerprint": self.fingerprint,
                    "executor": executor,
                    "source": self.source_name,
                    "replicate_key": "arm * 2**32 + replicate",
                },
                base_model=self._base.model,
                scenario_text=self._base.scenario_text,
            )
        finally:
            for obj in reversed(owned):
                try:
                    obj.close()
                except Exception:  # pragma: no cover - best effort
                    logger.debug("closing %r failed", obj, exc_info=True)
        if interrupted:
            raise KeyboardInterrupt
        if outcome.errors:
            (j, i), msg = next(iter(sorted(outcome.errors.items())))
            raise EnsembleError(
                f"{len(outcome.errors)} of {len(tasks)} trajectories failed (first: arm {j}, "
                f"replicate {i}: {msg}); {path} marks them missing (complete = false); "
                "rerun the same sweep to compute only those"
            )
        from .ensemble_result import EnsembleResult

        return EnsembleResult.load(path)


# -- executors ------------------------------------------------------------------------------
def _connect(client: Any, scheduler: str | None, workers: int | None, timeout: float):
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency
        raise EnsembleError(
            "dask.distributed is not installed: pip install 'dask[distributed]'"
        ) from exc
    if client is not None:
        return client, [], f"dask client {client.scheduler.address}"
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise EnsembleError(f"scheduler address must be a string, got {scheduler!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise EnsembleError(f"timeout = {timeout!r} must be positive")
        try:
            c = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise EnsembleError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        except ValueError as exc:
            raise EnsembleError(f"bad scheduler address {scheduler!r}: {exc}") from None
        return c, [c], f"dask scheduler {scheduler}"
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        c = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return c, [cluster, c], f"dask LocalCluster ({n} processes)"


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="traj", desc="trajectories")


def _record(outcome: _Outcome, task: _Task, info: dict[str, Any], bar, cb) -> None:
    outcome.infos[(task.arm, task.replicate)] = info
    if bar is not None:
        bar.update(1)
    if cb is not None:
        cb(info)


def _run_serial(base, tasks, shard_dir, outcome, progress, cb) -> None:
    base = pickle.loads(pickle.dumps(base))  # exactly what a worker would get
    bar = _bar(len(tasks), progress)
    try:
        for t in tasks:
            try:
                info = _run_task(base, t, str(shard_dir))
            except Exception as exc:
                outcome.errors[(t.arm, t.replicate)] = f"{type(exc).__name__}: {exc}"
                continue
            _record(outcome, t, info, bar, cb)
    finally:
        if bar is not None:
            bar.close()


_LOCK = threading.Lock()


def _run_dask(client, base, tasks, shard_dir, outcome, progress, cb) -> None:
    from distributed import as_completed

    fp = base.fingerprint[:16]
    # Scattered, not submitted: the base (geometry arrays, possibly tens of MB)
    # goes to the workers as data instead of inside the task graph, which the
    # scheduler would otherwise copy and warn about ("Sending large graph").
    base_f = client.scatter(base, hash=False)
    futures = {}
    for t in tasks:
        f = client.submit(
            _run_task,
            base_f,
            t,
            str(shard_dir),
            key=f"redoxfield-traj-{fp}-{t.token[:16]}",
            pure=True,
            retries=0,
        )
        futures[f.key] = (f, t)
    bar = _bar(len(tasks), progress)
    try:
        for f in as_completed([f for f, _ in futures.values()], loop=client.loop):
            _, t = futures[f.key]
            try:
                info = f.result()
            except Exception as exc:
                with _LOCK:
                    outcome.errors[(t.arm, t.replicate)] = (
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    )
                continue
            with _LOCK:
                _record(outcome, t, info, bar, cb)
    except BaseException:
        client.cancel([f for f, _ in futures.values()])
        raise
    finally:
        if bar is not None:
            bar.close()
        del base_f
