"""Chemistry: species and mass-action reactions in the units biologists use.

    m = Model()
    m.species("H2O2", D=1000.0)           # µm²/s
    m.species("Prx")
    m.species("PrxOx")
    m.reaction("H2O2 + Prx -> PrxOx", k=1e7)  # 1/(M s)

Reaction strings: ``"A + B -> C"``, ``"2 A -> B"`` (same as ``"A + A -> B"``),
``"-> A"`` / ``"0 -> A"`` (order 0), ``"A ->"`` / ``"A -> 0"`` (degradation),
``"A -> 2 B"``. Rate constants ``k`` are macroscopic: order 0 µM/s, order 1 1/s,
order 2 1/(M s); an order-0 source may instead be given as a total ``flux`` in
molecules/s over its scope. Conversion to mesoscopic constants happens in
:mod:`redoxfield.units`, called from :func:`redoxfield.compile.compile_problem`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError

__all__ = ["DEFAULT_COMPARTMENT", "Model", "Reaction", "Species", "parse_equation"]

#: Name of the single compartment of geometries that declare none.
DEFAULT_COMPARTMENT = "cytosol"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TERM_RE = re.compile(r"^(?:(\d+)\s*)?([A-Za-z][A-Za-z0-9_]*)$")

#: Units of the macroscopic rate constant, by reaction order.
K_UNITS = {0: "uM/s", 1: "1/s", 2: "1/(M*s)"}
#: Unit of ``k`` of an order-0 reaction scoped to a membrane (a surface source).
SURFACE_K0_UNIT = "molecules/(um^2*s)"


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelError(
            f"bad {kind} name {name!r}: a name starts with a letter and contains only "
            "letters, digits and '_'"
        )
    return name


def _check_rate(value: object, what: str) -> float:
    """A finite, non-negative real number; the error names ``what``."""
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise ModelError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ModelError(f"{what} = {v!r} must be finite and non-negative")
    return v


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ModelError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _name_tuple(value: object, what: str) -> tuple[str, ...] | None:
    """None, a name, or a sequence of names -> tuple of unique names (or None)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    try:
        out = tuple(_check_str(v, what) for v in items)  # type: ignore[union-attr]
    except TypeError:
        raise ModelError(f"{what} must be a name or a list of names, got {value!r}") from None
    if not out:
        raise ModelError(f"{what} is empty")
    if len(set(out)) != len(out):
        raise ModelError(f"{what} lists a name twice: {list(out)}")
    return out


def _parse_side(side: str, text: str) -> list[str]:
    side = side.strip()
    if side in ("", "0"):
        return []
    names: list[str] = []
    for raw in side.split("+"):
        term = raw.strip()
        if not term:
            raise ModelError(f"malformed reaction {text!r}: empty term in {side!r}")
        mt = _TERM_RE.match(term)
        if not mt:
            raise ModelError(
                f"malformed reaction {text!r}: cannot read term {term!r} "
                "(expected a species name, optionally preceded by a stoichiometric integer)"
            )
        coef = int(mt.group(1)) if mt.group(1) is not None else 1
        if coef < 1:
            raise ModelError(
                f"malformed reaction {text!r}: stoichiometric coefficient in {term!r} must be >= 1"
            )
        if coef > 1000:
            raise ModelError(
                f"malformed reaction {text!r}: stoichiometric coefficient {coef} is too large"
            )
        names.extend([mt.group(2)] * coef)
    return names


def parse_equation(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``"A + B -> 2 C"`` into reactant and product name tuples (expanded by
    stoichiometry, e.g. ``(("A", "B"), ("C", "C"))``). Checks syntax and order,
    not whether the species exist."""
    if not isinstance(text, str):
        raise ModelError(f"a reaction must be a string like 'A + B -> C', got {text!r}")
    if text.count("->") != 1:
        raise ModelError(f"malformed reaction {text!r}: it must contain exactly one '->'")
    lhs, rhs = text.split("->")
    if "<" in lhs or ">" in rhs or "=" in text:
        raise ModelError(f"malformed reaction {text!r}: only irreversible '->' is supported")
    reactants = _parse_side(lhs, text)
    products = _parse_side(rhs, text)
    if len(reactants) > 2:
        raise ModelError(
            f"reaction {text!r} has order {len(reactants)}; only orders 0, 1 and 2 are supported"
        )
    if not reactants and not products:
        raise ModelError(f"malformed reaction {text!r}: it has neither reactants nor products")
    return tuple(reactants), tuple(products)


def _format_side(names: tuple[str, ...]) -> str:
    if not names:
        return "0"
    counts = Counter(names)
    order = list(dict.fromkeys(names))
    return " + ".join(n if counts[n] == 1 else f"{counts[n]} {n}" for n in order)


def format_equation(reactants: tuple[str, ...], products: tuple[str, ...]) -> str:
    """Canonical text: ``"H2O2 + Prx -> PrxOx"``, ``"2 A -> B"``, ``"0 -> A"``, ``"A -> 0"``."""
    return f"{_format_side(reactants)} -> {_format_side(products)}"


@dataclass(frozen=True)
class Species:
    """A chemical species.

    ``D``: diffusion coefficient in µm²/s (0 = immobile), used in every compartment
    the species lives in unless ``D_in`` names a compartment-specific value.
    ``compartments``: the compartments it lives in (``None``: all of them).
    ``membranes``: for a membrane-bound (immobile) species, the membrane types it
    sits in; it then lives only in the subvolumes those membranes pass through.
    """

    name: str
    D: float = 0.0
    compartments: tuple[str, ...] | None = None
    D_in: tuple[tuple[str, float], ...] = ()
    membranes: tuple[str, ...] = ()

    @property
    def membrane_bound(self) -> bool:
        return bool(self.membranes)

    def diffusion_in(self, compartment: str) -> float:
        """D (µm²/s) in ``compartment``; 0 where the species does not live."""
        if self.membranes:
            return 0.0
        if self.compartments is not None and compartment not in self.compartments:
            return 0.0
        return dict(self.D_in).get(compartment, self.D)

    def lives_in(self, compartment: str) -> bool:
        return self.compartments is None or compartment in self.compartments


@dataclass(frozen=True)
class Reaction:
    """A mass-action reaction.

    ``reactants``/``products`` are expanded by stoichiometry (``2 A`` is
    ``("A", "A")``). Exactly one of ``k`` (macroscopic, unit by order, see
    :data:`K_UNITS`) and ``flux`` (order 0 only, molecules/s in total over the
    scope) is set. ``region``/``compartment`` restrict where it happens (``None``:
    everywhere).
    """

    name: str
    equation: str
    reactants: tuple[str, ...]
    products: tuple[str, ...]
    k: float | None
    flux: float | None = None
    region: str | None = None
    compartment: str | None = None
    membrane: str | None = None
    #: (factor at rest, factor at full contraction) or None: see Model.reaction.
    activity: tuple[float, float] | None = None

    @property
    def order(self) -> int:
        return len(self.reactants)

    @property
    def k_unit(self) -> str:
        if self.flux is not None:
            return "molecules/s"
        if self.order == 0 and self.membrane is not None:
            return SURFACE_K0_UNIT
        return K_UNITS[self.order]

    @property
    def homodimer(self) -> bool:
        """True for ``A + A`` (pair propensity ``c n(n-1)/2``)."""
        return self.order == 2 and self.reactants[0] == self.reactants[1]


def _species_dict(s: Species) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "D": s.D}
    if s.compartments is not None:
        out["compartments"] = list(s.compartments)
    if s.D_in:
        out["D_in"] = dict(s.D_in)
    if s.membranes:
        out["membranes"] = list(s.membranes)
    return out


@dataclass
class Model:
    """Species and reactions. Order of declaration is the index order everywhere
    (result arrays, HDF5 datasets)."""

    _species: dict[str, Species] = field(default_factory=dict, repr=False)
    _reactions: list[Reaction] = field(default_factory=list, repr=False)
    _permeabilities: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    # -- building -------------------------------------------------------------
    def species(
        self,
        name: str,
        D: float | Mapping[str, float] = 0.0,
        *,
        compartments: str | Sequence[str] | None = None,
        membrane: str | Sequence[str] | None = None,
    ) -> Species:
        """Declare a species.

        ``D``: diffusion coefficient in µm²/s (default 0 = immobile), or a mapping
        ``{compartment: D}`` for compartment-specific values (the species then lives
        in those compartments unless ``compartments`` says otherwise; a compartment
        in ``compartments`` but not in the mapping gets D = 0).
        ``compartments``: name or names of the compartments it lives in (default:
        all). Reactions that involve it happen only there, and initial
        concentrations are set only there.
        ``membrane``: name or names of membrane types for a membrane-bound species
        (immobile; D must be 0): it lives only in the subvolumes those membranes
        pass through, is set with ``Simulation.set_surface_density``, and every
        reaction that involves it happens only where its membranes are.
        """
        _check_name("species", name)
        if name in self._species:
            raise ModelError(f"species {name!r} is declared twice")
        comps = _name_tuple(compartments, f"compartments of species {name!r}")
        mems = _name_tuple(membrane, f"membrane of species {name!r}")
        d_in: tuple[tuple[str, float], ...] = ()
        if isinstance(D, Mapping):
            d_in = tuple(
                (
                    _check_str(c, f"compartment key of D of species {name!r}"),
                    _check_rate(v, f"diffusion coefficient D[{c!r}] of species {name!r}"),
                )
                for c, v in D.items()
            )
            if not d_in:
                raise ModelError(f"species {name!r}: D mapping is empty")
            if comps is None:
                comps = tuple(c for c, _ in d_in)
            d = 0.0
        else:
            d = _check_rate(D, f"diffusion coefficient D of species {name!r}")
        if mems is not None:
            if d > 0 or any(v > 0 for _, v in d_in):
                raise ModelError(
                    f"species {name!r} is membrane-bound (membrane={list(mems)}) and must be "
                    "immobile: D must be 0"
                )
            if comps is not None:
                raise ModelError(
                    f"species {name!r}: give either compartments or membrane, not both "
                    "(a membrane-bound species lives where its membranes are)"
                )
        sp = Species(name, d, comps, d_in, mems or ())
        self._species[name] = sp
        return sp

    def permeability(self, species: str, membrane: str, P: float) -> None:
        """Permeability ``P`` (µm/s) of ``membrane`` to ``species``: each molecule
        crosses a membrane face of area A out of subvolume i at rate ``P · A / V_i``.
        Unset (or 0): impermeable -- adjacent compartments exchange nothing unless
        told. Setting it again replaces the value."""
        if species not in self._species:
            raise ModelError(f"permeability: unknown species {species!r}")
        sp = self._species[species]
        if sp.membrane_bound:
            raise ModelError(
                f"permeability: species {species!r} is membrane-bound and cannot cross membranes"
            )
        _check_str(membrane, "permeability: membrane")
        self._permeabilities[(species, membrane)] = _check_rate(
            P, f"permeability P of membrane {membrane!r} to species {species!r}"
        )

    @property
    def permeabilities(self) -> dict[tuple[str, str], float]:
        """``(species, membrane) -> P`` in µm/s (a copy)."""
        return dict(self._permeabilities)

    def reaction(
        self,
        text: str,
        k: float | None = None,
        region: str | None = None,
        compartment: str | None = None,
        name: str | None = None,
        *,
        flux: float | None = None,
        membrane: str | None = None,
        activity: tuple[float, float] | None = None,
    ) -> Reaction:
        """Add a reaction from a string such as ``"H2O2 + Prx -> PrxOx"``.

        ``k``: macroscopic rate constant (order 0: µM/s in each subvolume of the
        scope; order 1: 1/s; order 2: 1/(M s), ``A + A`` with ``v = k[A]²``).
        ``flux``: instead of ``k`` for order 0 only, a total source in molecules/s
        spread over the scope by volume. ``region``/``compartment``: scope (names
        checked against the geometry when a Simulation is built). ``name``: unique
        label used for event counters (default: the canonical equation, plus
        ``" @region"`` when scoped to a region).
        ``membrane``: a surface reaction, happening only in subvolumes that
        membrane passes through. An order-0 surface source then takes ``k`` in
        molecules/(µm² s) (``c_i = k · a_i``, a_i the membrane area in subvolume
        i; docs/units.md). Reactions involving a membrane-bound species are
        restricted to its membranes automatically.
        ``activity``: ``(rest, active)`` couples the rate to the contraction
        activity a(t) in [0, 1] of a protocol (:mod:`redoxfield.protocols`): the
        constant is multiplied by ``rest + (active - rest) * a(t)``, switched
        exactly at the protocol's phase boundaries (``Simulation.set_protocol``).
        Without a protocol the reaction runs at its plain ``k``.
        """
        reactants, products = parse_equation(text)
        for sp in (*reactants, *products):
            if sp not in self._species:
                raise ModelError(f"unknown species {sp!r} in reaction {text!r}")
        if (k is None) == (flux is None):
            raise ModelError(f"reaction {text!r}: give exactly one of k and flux")
        kk = None if k is None else _check_rate(k, f"rate constant k of reaction {text!r}")
        ff = None
        if flux is not None:
            if reactants:
                raise ModelError(
                    f"reaction {text!r}: flux (molecules/s) is only for order-0 sources; "
                    "use k for reactions with reactants"
                )
            ff = _check_rate(flux, f"flux of reaction {text!r}")
        for what, val in (("region", region), ("compartment", compartment), ("membrane", membrane)):
            if val is not None and (not isinstance(val, str) or not val):
                raise ModelError(f"reaction {text!r}: {what} must be a non-empty string")
        equation = format_equation(reactants, products)
        if name is None:
            base = equation + (f" @{region}" if region is not None else "")
            if compartment is not None:
                base += f" in {compartment}"
            if membrane is not None:
                base += f" on {membrane}"
            label, i = base, 2
            taken = {r.name for r in self._reactions}
            while label in taken:
                label, i = f"{base} #{i}", i + 1
        else:
            if not isinstance(name, str) or not name.strip() or "/" in name:
                raise ModelError(
                    f"reaction {text!r}: name {name!r} must be a non-empty string without '/'"
                )
            if any(r.name == name for r in self._reactions):
                raise ModelError(f"reaction name {name!r} is used twice")
            label = name
        act = None
        if activity is not None:
            try:
                lo, hi = activity  # type: ignore[misc]
            except (TypeError, ValueError):
                raise ModelError(
                    f"reaction {text!r}: activity must be a pair (factor at rest, factor at "
                    f"full activity), got {activity!r}"
                ) from None
            act = (
                _check_rate(lo, f"activity factor at rest of reaction {text!r}"),
                _check_rate(hi, f"activity factor at full activity of reaction {text!r}"),
            )
        rx = Reaction(
            label, equation, reactants, products, kk, ff, region, compartment, membrane, act
        )
        self._reactions.append(rx)
        return rx

    # -- inspection -----------------------------------------------------------
    @property
    def species_names(self) -> tuple[str, ...]:
        return tuple(self._species)

    @property
    def species_list(self) -> tuple[Species, ...]:
        return tuple(self._species.values())

    @property
    def reactions(self) -> tuple[Reaction, ...]:
        return tuple(self._reactions)

    def get_species(self, name: str) -> Species:
        try:
            return self._species[name]
        except KeyError:
            raise ModelError(f"unknown species {name!r}") from None

    def species_index(self, name: str) -> int:
        """Index of a species; ``ModelError`` naming it if unknown."""
        for i, n in enumerate(self._species):
            if n == name:
                return i
        known = ", ".join(self._species) or "none"
        raise ModelError(f"unknown species {name!r} (the model has: {known})")

    # -- (de)serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data description (stored as JSON in result files)."""
        return {
            "species": [_species_dict(s) for s in self._species.values()],
            "reactions": [
                {
                    "name": r.name,
                    "equation": r.equation,
                    "k": r.k,
                    "k_unit": r.k_unit,
                    "flux": r.flux,
                    "order": r.order,
                    "region": r.region,
                    "compartment": r.compartment,
                    "membrane": r.membrane,
                    **({"activity": list(r.activity)} if r.activity is not None else {}),
                }
                for r in self._reactions
            ],
            "permeabilities": [
                {"species": sp, "membrane": mem, "P": p}
                for (sp, mem), p in self._permeabilities.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        m = cls()
        for s in data["species"]:
            d_in = s.get("D_in") or {}
            m.species(
                s["name"],
                D=d_in if d_in and not s.get("compartments") else s["D"],
                compartments=s.get("compartments"),
                membrane=s.get("membranes"),
            )
            if d_in and s.get("compartments"):
                sp = m._species[s["name"]]
                m._species[s["name"]] = Species(
                    sp.name, sp.D, sp.compartments, tuple(d_in.items()), sp.membranes
                )
        for r in data["reactions"]:
            m.reaction(
                r["equation"],
                k=r.get("k"),
                flux=r.get("flux"),
                region=r.get("region"),
                compartment=r.get("compartment"),
                membrane=r.get("membrane"),
                name=r["name"],
                activity=r.get("activity"),
            )
        for p in data.get("permeabilities", []):
            m.permeability(p["species"], p["membrane"], p["P"])
        return m

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"Model(species={list(self._species)}, reactions={[r.name for r in self._reactions]})"
        )

    def describe(self) -> str:
        """Human-readable multi-line summary."""
        lines = ["species:"]
        for s in self._species.values():
            if s.membranes:
                where = f"  [membrane-bound: {', '.join(s.membranes)}]"
            elif s.compartments is not None:
                where = f"  [in {', '.join(s.compartments)}]"
            else:
                where = ""
            d_in = "".join(f", {c}: {v:g}" for c, v in s.D_in)
            lines.append(f"  {s.name:<12} D = {s.D:g} um^2/s{d_in}{where}")
        lines.append("reactions:")
        for r in self._reactions:
            rate = (
                f"flux = {r.flux:g} molecules/s"
                if r.flux is not None
                else f"k = {r.k:g} {r.k_unit}"
            )
            scope = []
            if r.region:
                scope.append(f"region {r.region}")
            if r.compartment:
                scope.append(f"compartment {r.compartment}")
            if r.membrane:
                scope.append(f"membrane {r.membrane}")
            if r.activity is not None:
                scope.append(f"activity x{r.activity[0]:g} at rest .. x{r.activity[1]:g} active")
            where = f"  [{', '.join(scope)}]" if scope else ""
            label = "" if r.name == r.equation else f"  ({r.name})"
            lines.append(f"  {r.equation}   {rate}{where}{label}")
        if self._permeabilities:
            lines.append("permeabilities:")
            for (sp, mem), p in self._permeabilities.items():
                lines.append(f"  {sp:<12} through {mem}: P = {p:g} um/s")
        return "\n".join(lines)
