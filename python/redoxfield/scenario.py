"""TOML scenario files: a declarative form of the Python API (docs/scenarios.md).

Each table maps onto one call::

    [geometry]            -> rf.Lattice(shape=..., spacing=..., origin=...)
                             or kind = "fiber": rf.fiber.segment(**keys)
                             or kind = "mesh": rf.TetMesh.load(path, scale=, ...)
    [compartments] c = .. -> space.compartment(c, "x > 1")
    [[membranes]]         -> space.membrane(name, between=(inner, outer), ...)
    [[permeabilities]]    -> m.permeability(species, membrane, P)
    [regions] name = ...  -> space.region(name, "x < 0.5")   (or a box)
    [[species]]           -> m.species(name, D=...)
    [[reactions]]         -> m.reaction(equation, k=... | flux=..., region=, compartment=, name=)
    [[initial]]           -> sim.set_concentration(...) | sim.set_count(...)
    [run]                 -> rf.Simulation(m, space, seed=, solver=, replicate=,
                                           solver_options=)
                             sim.run(t_end=..., dt_sample=...)
    [output]              -> picture species for the CLI's PNG

Region selectors are data, never code: an expression string over x, y, z
(:class:`~redoxfield.geometry.selectors.Where`) or a box with ``lo``/``hi``.
Unknown keys and wrong types are errors that name the key and its table.
Built-in scenarios live in ``redoxfield/scenarios/*.toml``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import RedoxfieldError, ScenarioError
from .geometry import Box, Lattice, Where
from .model import Model
from .result import Result
from .simulation import SOLVERS, Simulation, check_solver_options

__all__ = ["RunSettings", "Scenario", "builtin_scenarios", "load_scenario", "parse_scenario"]

_MISSING = object()


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenario name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files("redoxfield.scenarios").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            text = entry.read_text(encoding="utf-8")
            try:
                desc = str(tomllib.loads(text).get("description", ""))
            except tomllib.TOMLDecodeError:
                desc = "(unreadable)"
            out[entry.name[: -len(".toml")]] = desc
    return out


def _builtin_text(name: str) -> str | None:
    entry = resources.files("redoxfield.scenarios").joinpath(f"{name}.toml")
    return entry.read_text(encoding="utf-8") if entry.is_file() else None


@dataclass(frozen=True)
class RunSettings:
    t_end: float
    dt_sample: float
    seed: int = 1
    solver: str = "nsm"
    replicate: int = 0
    solver_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    """A parsed scenario: the model, the geometry, initial conditions, run settings."""

    name: str
    description: str
    model: Model
    space: Lattice
    initial: list[dict[str, Any]]
    run_settings: RunSettings
    picture_species: str | None = None
    text: str | None = field(default=None, repr=False)
    #: ``[protocol]`` table (redoxfield.protocols.from_dict form) or None.
    protocol: dict[str, Any] | None = None
    #: ``[schedule]`` table: ``times`` and ``factors`` (reaction name -> list), or None.
    schedule: dict[str, Any] | None = None
    #: ``[biology]`` table built (redoxfield.biology.BioModel) or None.
    biology: Any = None

    def simulation(self, seed: int | None = None, solver: str | None = None) -> Simulation:
        """A Simulation with the initial conditions applied (``seed`` and ``solver``
        override [run]; another solver than [run]'s starts without its options)."""
        rs = self.run_settings
        same = solver is None or solver == rs.solver
        sim = Simulation(
            self.model,
            self.space,
            seed=rs.seed if seed is None else seed,
            solver=rs.solver if solver is None else solver,
            replicate=rs.replicate,
            solver_options=rs.solver_options if same else None,
        )
        for k, ic in enumerate(self.initial):
            try:
                sim.apply_initial(ic)
            except RedoxfieldError as exc:
                raise ScenarioError(f"initial[{k}]: {exc}") from None
        try:
            if self.schedule is not None:
                sim.set_rate_schedule(self.schedule["times"], self.schedule["factors"])
            if self.protocol is not None:
                sim.set_protocol(self.protocol)
        except RedoxfieldError as exc:
            which = "[protocol]" if self.protocol is not None else "[schedule]"
            raise ScenarioError(f"{which}: {exc}") from None
        if self.biology is not None:
            self.biology.annotate(sim)
        sim.scenario_text = self.text
        sim.metadata["scenario_name"] = self.name
        return sim

    def run(
        self,
        output: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> Result:
        sim = self.simulation(seed)
        return sim.run(
            self.run_settings.t_end, self.run_settings.dt_sample, output=output, progress=progress
        )


# -- small typed accessors that name the key on error -----------------------------------
def _get(table: dict, key: str, where: str, kinds: tuple[type, ...], default: Any = _MISSING):
    if key not in table:
        if default is _MISSING:
            raise ScenarioError(f"missing key {key!r} in {where}")
        return default
    value = table[key]
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(
            {
                int: "an integer",
                float: "a number",
                str: "a string",
                list: "an array",
                dict: "a table",
                bool: "true/false",
            }[k]
            for k in kinds
        )
        raise ScenarioError(f"{where}.{key} must be {names}, got {value!r}")
    return value


def _number(table: dict, key: str, where: str, default: Any = _MISSING) -> float:
    value = _get(table, key, where, (int, float), default)
    return value if value is None else float(value)


def _no_extra(table: dict, allowed: set[str], where: str) -> None:
    extra = [k for k in table if k not in allowed]
    if extra:
        raise ScenarioError(
            f"unknown key {extra[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})"
        )


def _list_of_tables(doc: dict, key: str) -> list[dict]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ScenarioError(f"{key} must be an array of tables ([[{key}]])")
    return value


def _selector(sel: Any, where: str) -> Any:
    """A selector from TOML: an expression string, {where = ...} or {box = {lo, hi}}."""
    if isinstance(sel, str):
        return Where(sel)
    if isinstance(sel, dict):
        _no_extra(sel, {"where", "box"}, where)
        if ("where" in sel) == ("box" in sel):
            raise ScenarioError(f"{where} needs exactly one of 'where' and 'box'")
        if "where" in sel:
            return Where(_get(sel, "where", where, (str,)))
        box = _get(sel, "box", where, (dict,))
        _no_extra(box, {"lo", "hi"}, f"{where}.box")
        return Box(
            _get(box, "lo", f"{where}.box", (list,)), _get(box, "hi", f"{where}.box", (list,))
        )
    raise ScenarioError(f"{where} must be an expression string or a table, got {sel!r}")


def parse_scenario(text: str, origin: str = "<string>") -> Scenario:
    """Parse scenario TOML text (``origin`` names it in error messages)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return _build(doc, text, origin)
    except ScenarioError as exc:
        raise ScenarioError(f"{origin}: {exc}") from None
    except RedoxfieldError as exc:
        raise ScenarioError(f"{origin}: {exc}") from None


def _build(doc: dict, text: str, origin: str) -> Scenario:
    _no_extra(
        doc,
        {
            "name",
            "description",
            "geometry",
            "regions",
            "compartments",
            "membranes",
            "species",
            "reactions",
            "permeabilities",
            "initial",
            "run",
            "output",
            "protocol",
            "schedule",
            "biology",
        },
        "the top level",
    )
    default_name = Path(origin).stem if origin != "<string>" else "scenario"
    name = _get(doc, "name", "the top level", (str,), default_name)
    description = _get(doc, "description", "the top level", (str,), "")

    # geometry
    geo = _get(doc, "geometry", "the top level", (dict,))
    kind = _get(geo, "kind", "[geometry]", (str,), "lattice")
    if kind == "fiber":
        from . import fiber

        fields = fiber.FiberParameters.__dataclass_fields__
        _no_extra(geo, {"kind", *fields}, "[geometry]")
        params = {
            k: (
                tuple(tuple(x) if isinstance(x, list) else x for x in v)
                if isinstance(v, list)
                else v
            )
            for k, v in geo.items()
            if k != "kind"
        }
        space: Lattice = fiber.segment(**params)
    elif kind == "lattice":
        _no_extra(geo, {"kind", "shape", "spacing", "origin"}, "[geometry]")
        shape = _get(geo, "shape", "[geometry]", (list,))
        spacing = _get(geo, "spacing", "[geometry]", (int, float, list))
        origin_xyz = _get(geo, "origin", "[geometry]", (list,), [0.0, 0.0, 0.0])
        space = Lattice(shape=shape, spacing=spacing, origin=origin_xyz)
    elif kind == "mesh":
        space = _mesh_geometry(geo, origin)
    else:
        raise ScenarioError(
            f"[geometry].kind {kind!r} is not supported (available: lattice, fiber, mesh)"
        )

    # compartments and membranes (lattice geometries; a fiber brings its own)
    compartments = _get(doc, "compartments", "the top level", (dict,), {})
    for cname, sel in compartments.items():
        space.compartment(cname, _selector(sel, f"[compartments].{cname}"))
    for k, mem in enumerate(_list_of_tables(doc, "membranes")):
        where = f"membranes[{k}]"
        if kind == "mesh":
            raise ScenarioError(
                f"{where}: a mesh's membranes are its surface physical groups; name them in "
                "[geometry].membranes"
            )
        _no_extra(mem, {"name", "between", "area_factor", "where"}, where)
        between = _get(mem, "between", where, (list,))
        if len(between) == 2 and all(isinstance(c, str) for c in between):
            pairs: Any = tuple(between)
        else:
            pairs = [tuple(pair) for pair in between]
        sel = mem.get("where")
        space.membrane(
            _get(mem, "name", where, (str,)),
            pairs,
            area_factor=_number(mem, "area_factor", where, 1.0),
            where=None if sel is None else _selector(sel, f"{where}.where"),
        )

    # regions
    regions = _get(doc, "regions", "the top level", (dict,), {})
    for rname, sel in regions.items():
        space.region(rname, _selector(sel, f"[regions].{rname}"))

    # species and reactions
    biology = None
    if "biology" in doc:  # docs/biology.md: the model starts from the biology modules
        from .biology.table import from_table

        biology = from_table(doc["biology"], space)
    model = biology.model if biology is not None else Model()
    for k, sp in enumerate(_list_of_tables(doc, "species")):
        where = f"species[{k}]"
        _no_extra(sp, {"name", "D", "compartments", "membrane"}, where)
        d = sp.get("D", 0.0)
        if isinstance(d, dict):
            d_val: Any = {c: _number(d, c, f"{where}.D") for c in d}
        else:
            d_val = _number(sp, "D", where, 0.0)
        model.species(
            _get(sp, "name", where, (str,)),
            D=d_val,
            compartments=_get(sp, "compartments", where, (str, list), None),
            membrane=_get(sp, "membrane", where, (str, list), None),
        )
    for k, rx in enumerate(_list_of_tables(doc, "reactions")):
        where = f"reactions[{k}]"
        _no_extra(
            rx,
            {"equation", "k", "flux", "region", "compartment", "membrane", "name", "activity"},
            where,
        )
        activity = _get(rx, "activity", where, (list,), None)
        if activity is not None and len(activity) != 2:
            raise ScenarioError(
                f"{where}.activity must be [factor at rest, factor at full activity], "
                f"got {activity!r}"
            )
        model.reaction(
            _get(rx, "equation", where, (str,)),
            k=_number(rx, "k", where, None),
            flux=_number(rx, "flux", where, None),
            region=_get(rx, "region", where, (str,), None),
            compartment=_get(rx, "compartment", where, (str,), None),
            membrane=_get(rx, "membrane", where, (str,), None),
            name=_get(rx, "name", where, (str,), None),
            activity=None if activity is None else tuple(activity),
        )
    for k, pm in enumerate(_list_of_tables(doc, "permeabilities")):
        where = f"permeabilities[{k}]"
        _no_extra(pm, {"species", "membrane", "P"}, where)
        model.permeability(
            _get(pm, "species", where, (str,)),
            _get(pm, "membrane", where, (str,)),
            _number(pm, "P", where),
        )
    if not model.species_names:
        raise ScenarioError("the scenario declares no species ([[species]])")

    # initial conditions (checked against the model now, applied in simulation())
    # the biology's initial amounts first, so that [[initial]] entries replace them
    initial: list[dict[str, Any]] = [] if biology is None else biology.entries(space)
    for k, ic in enumerate(_list_of_tables(doc, "initial")):
        where = f"initial[{k}]"
        _no_extra(
            ic,
            {"species", "concentration", "count", "surface_density", "membrane", "region"},
            where,
        )
        entry: dict[str, Any] = {"species": _get(ic, "species", where, (str,))}
        if entry["species"] not in model.species_names:
            raise ScenarioError(f"{where}: unknown species {entry['species']!r}")
        given = [k for k in ("concentration", "count", "surface_density") if k in ic]
        if len(given) != 1:
            raise ScenarioError(
                f"{where} needs exactly one of 'concentration', 'count' and 'surface_density'"
            )
        if "concentration" in ic:
            entry["concentration"] = _number(ic, "concentration", where)
        elif "count" in ic:
            entry["count"] = _get(ic, "count", where, (int,))
        else:
            entry["surface_density"] = _number(ic, "surface_density", where)
            entry["membrane"] = _get(ic, "membrane", where, (str,), None)
        if "membrane" in ic and "surface_density" not in ic:
            raise ScenarioError(f"{where}: 'membrane' goes with 'surface_density'")
        region = _get(ic, "region", where, (str,), None)
        if region is not None:
            if region not in space.regions:
                known = ", ".join(space.regions) or "none"
                raise ScenarioError(f"{where}: unknown region {region!r} (defined: {known})")
            entry["region"] = region
        initial.append(entry)

    # run settings
    run = _get(doc, "run", "the top level", (dict,))
    _no_extra(run, {"t_end", "dt_sample", "seed", "solver", "replicate", "solver_options"}, "[run]")
    t_end = _number(run, "t_end", "[run]")
    dt = _number(run, "dt_sample", "[run]")
    for key, v in (("t_end", t_end), ("dt_sample", dt)):
        if not math.isfinite(v) or v <= 0:
            raise ScenarioError(f"[run].{key} = {v!r} must be finite and positive")
    solver = _get(run, "solver", "[run]", (str,), "nsm")
    if solver not in SOLVERS:
        raise ScenarioError(f"[run].solver {solver!r} is unknown (available: {', '.join(SOLVERS)})")
    seed = _get(run, "seed", "[run]", (int,), 1)
    replicate = _get(run, "replicate", "[run]", (int,), 0)
    for key, v in (("seed", seed), ("replicate", replicate)):
        if v < 0:
            raise ScenarioError(f"[run].{key} = {v} must not be negative")
    solver_options = _get(run, "solver_options", "[run]", (dict,), {})
    try:
        solver_options = check_solver_options(solver, solver_options)
    except RedoxfieldError as exc:
        raise ScenarioError(f"[run].solver_options: {exc}") from None
    settings = RunSettings(t_end, dt, seed, solver, replicate, solver_options)

    out = _get(doc, "output", "the top level", (dict,), {})
    _no_extra(out, {"picture"}, "[output]")
    picture = _get(out, "picture", "[output]", (str,), None)
    if picture is not None and picture not in model.species_names:
        raise ScenarioError(f"[output].picture: unknown species {picture!r}")

    protocol = _get(doc, "protocol", "the top level", (dict,), None)
    if protocol is not None:
        _no_extra(protocol, {"phases"}, "[protocol]")
    schedule = _get(doc, "schedule", "the top level", (dict,), None)
    if schedule is not None:
        _no_extra(schedule, {"times", "factors"}, "[schedule]")
        _get(schedule, "times", "[schedule]", (list,))
        _get(schedule, "factors", "[schedule]", (dict,))
    if protocol is not None and schedule is not None:
        raise ScenarioError("give either [protocol] or [schedule], not both")

    scenario = Scenario(
        name,
        description,
        model,
        space,
        initial,
        settings,
        picture,
        text,
        protocol=protocol,
        schedule=schedule,
        biology=biology,
    )
    # Build it once now, so that compile errors (unknown region in a reaction) and bad
    # initial conditions (negative or overflowing counts) surface at load time.
    scenario.simulation()
    return scenario


#: Meshes shipped inside the package (package data, so installed wheels have them).
SHIPPED_MESHES = Path(__file__).resolve().parent / "meshes"


def _find_mesh(path: str, origin: str) -> Path:
    """A mesh path: absolute; else relative to the scenario file, the working
    directory, each directory of $REDOXFIELD_MESH_PATH, the meshes shipped in the
    package (redoxfield/meshes, made by meshes/make_meshes.py)."""
    p = Path(path)
    if p.is_absolute():
        return p
    bases = []
    if origin != "<string>":
        bases.append(Path(origin).parent)
    bases.append(Path.cwd())
    bases += [Path(d) for d in os.environ.get("REDOXFIELD_MESH_PATH", "").split(os.pathsep) if d]
    bases.append(SHIPPED_MESHES)
    for b in bases:
        if (b / p).is_file():
            return b / p
        if (b / p.name).is_file():
            return b / p.name
    raise ScenarioError(
        f"[geometry].path: mesh file {path!r} not found (looked in: "
        f"{', '.join(str(b) for b in bases)}; set REDOXFIELD_MESH_PATH, or regenerate the "
        "shipped meshes with python meshes/make_meshes.py)"
    )


def _mesh_geometry(geo: dict, origin: str) -> Any:
    from .geometry.tetmesh import TetMesh

    keys = {"kind", "path", "scale", "compartments", "membranes", "inner", "coupling", "check"}
    _no_extra(geo, keys, "[geometry]")
    path = _find_mesh(_get(geo, "path", "[geometry]", (str,)), origin)
    scale = _get(geo, "scale", "[geometry]", (int, float, str), 1.0)
    try:
        return TetMesh.load(
            path,
            scale=scale,
            compartments=_get(geo, "compartments", "[geometry]", (list, dict), None),
            membranes=_get(geo, "membranes", "[geometry]", (list, dict), None),
            inner=_get(geo, "inner", "[geometry]", (dict,), None),
            coupling=_get(geo, "coupling", "[geometry]", (str,), "barycentric"),
            check=_get(geo, "check", "[geometry]", (str,), "error"),
        )
    except RedoxfieldError as exc:
        raise ScenarioError(f"[geometry]: {exc}") from None


def load_scenario(source: str | os.PathLike[str]) -> Scenario:
    """A scenario from a TOML file path, or a built-in scenario by name."""
    p = Path(source)
    if p.is_file():
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot read scenario file {str(p)!r}: {exc}") from None
        return parse_scenario(text, origin=str(p))
    text = _builtin_text(str(source)) if isinstance(source, str) and "/" not in source else None
    if text is None:
        names = ", ".join(builtin_scenarios())
        raise ScenarioError(
            f"no scenario file or built-in scenario named {str(source)!r} (built-ins: {names})"
        )
    return parse_scenario(text, origin=f"{source}.toml")
