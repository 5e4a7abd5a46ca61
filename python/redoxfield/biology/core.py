"""The machinery the modules share: build context, initial conditions, the built
:class:`BioModel` and the :class:`Recipe` that composes modules, sensors and
interventions into one.

A module only declares what the geometry has room for: a species in compartments
the geometry lacks is declared in the ones it has (or not at all), a reaction whose
species or scope is missing is skipped, a membrane-bound species sits only on
membranes that exist. So the same recipe builds on the full fibre segment, on a
one-sarcomere test segment and on a three-voxel lattice with a mitochondrion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any, Protocol

import numpy as np

from .. import units
from ..errors import ModelError
from ..geometry import as_graph
from ..model import Model

__all__ = ["BioModel", "Context", "Init", "Module", "Recipe"]

#: Aqueous compartments of the fibre builder (redoxfield.fiber.COMPARTMENTS).
AQUEOUS = (
    "cytosol",
    "extracellular",
    "nucleus",
    "mito_ims",
    "mito_matrix",
    "sr_lumen",
    "nerve_terminal",
)
#: A concentration stays a ``concentration`` entry (rounded per subvolume) when
#: rounding changes the amount of a typical subvolume of its scope by at most this
#: fraction; otherwise it becomes a ``count`` entry of the exact total.
ROUNDING = 0.05


@dataclass(frozen=True)
class Init:
    """An initial condition: ``concentration`` (µM) of a volume species in the
    compartments it lives in, optionally only in ``region``; or
    ``surface_density`` (molecules/µm²) of a membrane-bound species on
    ``membrane`` (:meth:`BioModel.entries` turns them into ``[[initial]]``
    entries)."""

    species: str
    concentration: float | None = None
    surface_density: float | None = None
    membrane: str | None = None
    region: str | None = None


class Module(Protocol):
    """What a module, a sensor or an intervention's build step provides."""

    def build(self, ctx: Context) -> None: ...


@dataclass
class Context:
    """What a module sees of the geometry, and what it adds to the model."""

    compartments: tuple[str, ...]
    membranes: tuple[str, ...]
    face_membranes: frozenset[str]
    regions: frozenset[str]
    volumes: dict[str, float]
    areas: dict[str, float]
    membrane_sides: dict[str, frozenset[str]]
    activity: float | None
    graph: Any = None
    space: Any = None
    model: Model = field(default_factory=Model)
    initial: list[Init] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, space: Any, activity: float | None) -> Context:
        g = as_graph(space)
        comps = tuple(g.compartment_names)
        vols = {c: float(g.volumes[g.compartments == i].sum()) for i, c in enumerate(comps)}
        mems: tuple[str, ...] = ()
        areas: dict[str, float] = {}
        faces: set[str] = set()
        sides: dict[str, frozenset[str]] = {}
        if g.membrane_areas is not None and len(g.membrane_names):
            tot = np.asarray(g.membrane_areas).sum(axis=0)
            mems = tuple(m for m, a in zip(g.membrane_names, tot, strict=True) if a > 0)
            areas = {m: float(a) for m, a in zip(g.membrane_names, tot, strict=True) if a > 0}
            src = g.edge_sources
            for k, m in enumerate(g.membrane_names):
                on = g.edge_membrane == k
                if on.any():
                    faces.add(m)
                    sides[m] = frozenset(comps[int(c)] for c in np.unique(g.compartments[src[on]]))
        return cls(
            comps,
            mems,
            frozenset(faces),
            frozenset(g.regions),
            vols,
            areas,
            sides,
            activity,
            g,
            space,
        )

    def refresh(self) -> None:
        """Re-read the regions after a module added one to the space."""
        self.graph = as_graph(self.space)
        self.regions = frozenset(self.graph.regions)

    # -- declarations that tolerate a geometry without some compartments -------------
    def present(self, compartments: Sequence[str]) -> tuple[str, ...]:
        return tuple(c for c in compartments if c in self.compartments)

    def species(self, name: str, D: float = 0.0, compartments: Sequence[str] | None = None) -> bool:
        """Declare a volume species (once; later calls are no-ops). False if none
        of its compartments exists here."""
        if name in self.model.species_names:
            return True
        comps = self.present(compartments if compartments is not None else AQUEOUS)
        if not comps:
            return False
        self.model.species(name, D=D, compartments=list(comps))
        return True

    def membrane_species(self, name: str, membranes: Sequence[str]) -> tuple[str, ...]:
        if name in self.model.species_names:
            return self.model.get_species(name).membranes
        mems = tuple(m for m in membranes if m in self.membranes)
        if mems:
            self.model.species(name, membrane=list(mems))
        return mems

    def has(self, *species: str) -> bool:
        return all(s in self.model.species_names for s in species)

    def lives(self, species: str, compartment: str) -> bool:
        sp = self.model.get_species(species)
        return not sp.membrane_bound and sp.lives_in(compartment)

    def reaction(
        self,
        equation: str,
        k: float,
        *,
        tag: str,
        name: str | None = None,
        compartment: str | None = None,
        membrane: str | None = None,
        region: str | None = None,
        activity: tuple[float, float] | None = None,
    ) -> str | None:
        """Add a reaction if its species and scope exist here; returns its name.

        ``activity = (factor at rest, factor at full contraction)``: with a static
        recipe activity ``a`` the rate constant is multiplied by ``rest + (active -
        rest) * a`` now; without one it is handed to the core's activity schedule
        (``Model.reaction(..., activity=...)``, switched by a protocol)."""
        from ..model import parse_equation

        reactants, products = parse_equation(equation)
        if not self.has(*reactants, *products):
            return None
        if compartment is not None and compartment not in self.compartments:
            return None
        if membrane is not None and membrane not in self.membranes:
            return None
        if region is not None and region not in self.regions:
            return None
        if not self._happens(equation, k, compartment, membrane, region):
            return None
        kwargs: dict[str, Any] = {}
        if activity is not None:
            rest, active = (float(v) for v in activity)
            if self.activity is not None:
                k = k * (rest + (active - rest) * self.activity)
            else:
                kwargs["activity"] = (rest, active)
        rx = self.model.reaction(
            equation,
            k=k,
            compartment=compartment,
            membrane=membrane,
            region=region,
            name=name,
            **kwargs,
        )
        self.tags.setdefault(tag, []).append(rx.name)
        return rx.name

    def _happens(
        self,
        equation: str,
        k: float,
        compartment: str | None,
        membrane: str | None,
        region: str | None,
    ) -> bool:
        """Whether the reaction has a subvolume to happen in (compile would refuse it
        otherwise), checked on a scratch model holding only its species."""
        from ..compile import _scope_mask
        from ..model import parse_equation

        reactants, products = parse_equation(equation)
        scratch = Model()
        for s in dict.fromkeys((*reactants, *products)):
            scratch._species[s] = self.model.get_species(s)
        rx = scratch.reaction(
            equation, k=k, compartment=compartment, membrane=membrane, region=region
        )
        try:
            _scope_mask(rx, self.graph, scratch)
        except ModelError:
            return False
        return True

    def permeability(self, species: str, membrane: str, P: float) -> None:
        """Set P where the membrane has faces and the species lives on both sides."""
        if species not in self.model.species_names or membrane not in self.face_membranes:
            return
        if all(self.lives(species, c) for c in self.membrane_sides[membrane]):
            self.model.permeability(species, membrane, P)

    def init(self, species: str, **kw: Any) -> None:
        if species in self.model.species_names:
            self.initial.append(Init(species, **kw))


@dataclass
class BioModel:
    """A built biology: the :class:`~redoxfield.Model`, its initial conditions,
    which reactions implement what (``tags``: e.g. ``"TrxR"`` -> reaction names),
    the sensors and a record of the recipe (stored in result files as the root
    attribute ``biology``)."""

    model: Model
    initial: list[Init]
    tags: dict[str, list[str]]
    sensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> BioModel:
        return BioModel(
            Model.from_dict(self.model.to_dict()),
            list(self.initial),
            {k: list(v) for k, v in self.tags.items()},
            {k: dict(v) for k, v in self.sensors.items()},
            json.loads(json.dumps(self.record)),
        )

    # -- transforms (interventions are built from these) ------------------------------
    def scale_reactions(self, tag: str, factor: float) -> BioModel:
        """A copy with the rate constant of every reaction tagged ``tag`` times
        ``factor``."""
        names = set(self.tags.get(tag, ()))
        out = self.copy()
        if not names:
            return out
        d = out.model.to_dict()
        for r in d["reactions"]:
            if r["name"] in names:
                if r.get("k") is not None:
                    r["k"] = r["k"] * factor
                else:
                    r["flux"] = r["flux"] * factor
        out.model = Model.from_dict(d)
        return out

    def scale_initial(
        self,
        species: str,
        factor: float,
        *,
        keep: Callable[[Init], bool] | None = None,
    ) -> BioModel:
        """A copy with every initial amount of ``species`` times ``factor``
        (entries for which ``keep`` is true are left alone)."""
        out = self.copy()
        new = []
        for ic in out.initial:
            if ic.species == species and not (keep is not None and keep(ic)):
                if ic.concentration is not None:
                    ic = replace(ic, concentration=ic.concentration * factor)
                elif ic.surface_density is not None:
                    ic = replace(ic, surface_density=ic.surface_density * factor)
            new.append(ic)
        out.initial = new
        return out

    def add_initial(self, ic: Init) -> BioModel:
        out = self.copy()
        out.initial.append(ic)
        return out

    # -- use ------------------------------------------------------------------------
    def entries(self, space: Any) -> list[dict[str, Any]]:
        """The initial conditions as ``Simulation.apply_initial`` / scenario
        ``[[initial]]`` entries for ``space``: surface densities as they are; a
        concentration as a ``concentration`` entry (rounded per subvolume) when
        rounding changes a typical subvolume's amount by at most
        :data:`ROUNDING`, else as a ``count`` entry of the rounded total (placed
        by volume), so that a 0.3 µM enzyme in 1e-3 µm³ voxels keeps its amount
        instead of rounding to zero."""
        g = as_graph(space)
        vol = np.asarray(g.volumes, dtype=float)
        comp_names = list(g.compartment_names)
        species = {s.name: s for s in self.model.species_list}
        out: list[dict[str, Any]] = []
        for ic in self.initial:
            if ic.surface_density is not None:
                e: dict[str, Any] = {"species": ic.species, "surface_density": ic.surface_density}
                if ic.membrane is not None:
                    e["membrane"] = ic.membrane
                out.append(e)
                continue
            sp = species[ic.species]
            mask = np.ones(g.n_subvolumes, dtype=bool)
            if sp.compartments is not None:
                mask &= np.isin(g.compartments, [comp_names.index(c) for c in sp.compartments])
            if ic.region is not None:
                if ic.region not in g.regions:
                    raise ModelError(
                        f"initial condition of {ic.species!r}: unknown region {ic.region!r}"
                    )
                mask &= np.asarray(g.regions[ic.region])
            c = float(ic.concentration or 0.0)
            if not mask.any():
                if c > 0:
                    raise ModelError(
                        f"initial condition of {ic.species!r}: region {ic.region!r} holds no "
                        f"subvolume of its compartments ({', '.join(sp.compartments or ())})"
                    )
                continue
            n_typ = float(units.concentration_to_molecules(c, float(np.median(vol[mask]))))
            e = {"species": ic.species}
            if c == 0 or (n_typ >= 1 and abs(np.rint(n_typ) - n_typ) <= ROUNDING * n_typ):
                e["concentration"] = c
            else:
                e["count"] = int(np.rint(units.concentration_to_molecules(c, vol[mask].sum())))
            if ic.region is not None:
                e["region"] = ic.region
            out.append(e)
        return out

    def annotate(self, sim: Any) -> None:
        """Record the recipe and the sensor specifications in the run's output
        (root attribute ``biology``, JSON; :func:`~.sensors.readout` reads it)."""
        sim.metadata["biology"] = json.dumps(
            {"record": self.record, "sensors": self.sensors}, sort_keys=True
        )

    def apply(self, sim: Any) -> None:
        """Put the initial conditions into a :class:`~redoxfield.Simulation`
        (replacing the counts of the species they name) and annotate it."""
        for e in self.entries(sim.graph):
            sim.apply_initial(e)
        self.annotate(sim)

    def simulation(self, space: Any, seed: int = 1, **kw: Any) -> Any:
        """A :class:`~redoxfield.Simulation` of this model on ``space`` with the
        initial conditions applied."""
        from ..simulation import Simulation

        sim = Simulation(self.model, space, seed=seed, **kw)
        self.apply(sim)
        return sim


def _record(obj: Any) -> dict[str, Any]:
    d = asdict(obj) if is_dataclass(obj) else dict(vars(obj))
    return {"type": type(obj).__name__, **{k: v for k, v in d.items() if not k.startswith("_")}}


@dataclass
class Recipe:
    """Modules + sensors + interventions, built on a geometry into a :class:`BioModel`.

    ``activity``: a static contraction level in [0, 1] (rest = 0) folded into the
    rate constants of the contraction-driven reactions, or ``None`` to leave them
    to a protocol (``Model.reaction(..., activity=(rest, active))``)."""

    modules: Sequence[Any] = ()
    sensors: Sequence[Any] = ()
    interventions: Sequence[Callable[[BioModel], BioModel]] = ()
    activity: float | None = None

    def __post_init__(self) -> None:
        if self.activity is not None:
            a = self.activity
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1:
                raise ModelError(f"recipe activity = {a!r} must be a number in [0, 1] or None")
            self.activity = float(a)

    def build(self, space: Any, model: Model | None = None) -> BioModel:
        """Build on ``space`` (Lattice, fibre segment, mesh or SubvolumeGraph),
        optionally adding to an existing ``model``."""
        _add_neuron_region(space)
        ctx = Context.of(space, self.activity)
        if model is not None:
            ctx.model = Model.from_dict(model.to_dict())
        # Modules may need to know which other modules are present (the relay
        # target needs Prx-SS), so modules are built before sensors.
        ctx.tags["_modules"] = [type(m).__name__ for m in self.modules]
        for m in self.modules:
            m.build(ctx)
        sensors: dict[str, dict[str, Any]] = {}
        for s in self.sensors:
            spec = s.build(ctx)
            if spec is not None:
                sensors[spec["name"]] = spec
        bm = BioModel(ctx.model, ctx.initial, ctx.tags, sensors)
        bm.record = {
            "activity": self.activity,
            "modules": [_record(m) for m in self.modules],
            "sensors": [_record(s) for s in self.sensors],
            "interventions": [getattr(i, "record", repr(i)) for i in self.interventions],
        }
        for intervention in self.interventions:
            bm = intervention(bm)
        bm.entries(space)  # an amount that has nowhere to go is an error now
        return bm


#: Region added by :meth:`Recipe.build` when the geometry has a nerve terminal: the
#: terminal's cytosol and its mitochondria (those outside the region ``fibre``), the
#: neuron that a neuron-specific rescue restores.
NEURON = "neuron"


def _add_neuron_region(space: Any) -> None:
    if not hasattr(space, "region"):
        return
    g = as_graph(space)
    if "nerve_terminal" not in g.compartment_names or NEURON in g.regions:
        return
    names = list(g.compartment_names)
    comp = np.asarray(g.compartments)
    mask = comp == names.index("nerve_terminal")
    if "fibre" in g.regions:
        mito = np.isin(comp, [names.index(c) for c in ("mito_ims", "mito_matrix") if c in names])
        mask |= mito & ~np.asarray(g.regions["fibre"])
    if mask.any():
        space.region(NEURON, mask)


def check_fraction(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{what} must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0 <= v <= 1:
        raise ModelError(f"{what} = {v!r} must lie in [0, 1]")
    return v


def check_positive(value: object, what: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ModelError(f"{what} = {v!r} must be finite and {'>=' if allow_zero else '>'} 0")
    return v


def check_fields(obj: Any) -> None:
    """Every float field of a module dataclass is finite and non-negative."""
    for k, v in asdict(obj).items():
        if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
            check_positive(v, f"{type(obj).__name__}.{k}")
