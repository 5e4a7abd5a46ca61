"""Interventions as transforms of a built :class:`~.core.BioModel`.

Each function returns a callable ``BioModel -> BioModel`` (a new one; the input is
left alone) that also carries a ``record`` of what it is, so a recipe stores its
interventions in result files. They act on what the modules declared: protein
amounts (initial conditions) for genetic changes, rate constants of tagged
reactions for drugs.

==========================  ===========================================================
intervention                what changes
==========================  ===========================================================
``knockout("Sod1")``        SOD1 amount 0 (likewise Sod2, Sod3, Ncf1/p47phox, Rac1,
                            Cybb/NOX2, Nox4, Nos1, Gpx1, Cat)
``neuron_sod1_rescue()``    Sod1 knockout, SOD1 restored in region ``neuron``
``inhibitor("apocynin", f)``  NOX2 assembly rate x (1 - f) (blocks p47phox translocation)
``inhibitor("gp91ds-tat", f)``  a fraction f of NOX2 cannot dock p47phox: NOX2 x (1 - f)
``inhibitor("auranofin", f)``  TrxR (cytosol and matrix) x (1 - f)
``inhibitor("gpx", f)``     GPx + H2O2 rate x (1 - f) (e.g. mercaptosuccinate)
``supplement(...)``         a vitamin C-like scavenger of H2O2 and superoxide, re-reduced
``denervation()``           no nerve-evoked contraction (NOX2 assembly 0), mitochondrial
                            superoxide x ``denervation_mito_factor``
``ageing()``                mitochondrial superoxide x ``ageing_mito_factor``, NOX2
                            assembly x ``ageing_nox2_factor``, Prx x ``ageing_prx_factor``
==========================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ModelError
from ..model import Model
from .core import NEURON, BioModel, Init, check_fraction, check_positive
from .modules import REDUCING
from .params import value as v

__all__ = [
    "GENES",
    "INTERVENTIONS",
    "ageing",
    "denervation",
    "inhibitor",
    "knockout",
    "neuron_sod1_rescue",
    "supplement",
]

Transform = Callable[[BioModel], BioModel]

#: Gene (and common aliases) -> the protein species whose amount a knockout zeroes.
GENES: dict[str, str] = {
    "Sod1": "SOD1",
    "Sod2": "SOD2",
    "Sod3": "SOD3",
    "Ncf1": "p47phox",
    "p47phox": "p47phox",
    "Rac1": "Rac1",
    "Cybb": "NOX2",
    "gp91phox": "NOX2",
    "Nox4": "NOX4",
    "Nos1": "nNOS",
    "Gpx1": "GPx",
    "Cat": "CAT",
}

#: Drug -> (what it does, reaction tag or species, how).
DRUGS = {
    "apocynin": ("NOX2_assembly", "rate"),
    "gp91ds-tat": ("NOX2", "amount"),
    "auranofin": ("TrxR", "rate"),
    "gpx": ("GPx", "rate"),
}


def _named(fn: Transform, record: dict[str, Any]) -> Transform:
    fn.record = record  # type: ignore[attr-defined]
    return fn


def _need(bm: BioModel, species: str, what: str) -> None:
    if species not in bm.model.species_names:
        raise ModelError(f"{what}: the model has no {species!r} (add the module that makes it)")


def knockout(gene: str) -> Transform:
    """Remove the protein a gene encodes (its amount becomes 0 everywhere)."""
    if gene not in GENES:
        raise ModelError(f"knockout: unknown gene {gene!r} (known: {', '.join(GENES)})")
    species = GENES[gene]

    def apply(bm: BioModel) -> BioModel:
        _need(bm, species, f"knockout of {gene}")
        return bm.scale_initial(species, 0.0)

    return _named(apply, {"type": "knockout", "gene": gene})


def neuron_sod1_rescue(amount: float | None = None) -> Transform:
    """Sod1 knockout with SOD1 restored in the neuron (region ``neuron``: the nerve
    terminal and its mitochondria), at ``amount`` µM (default: the wild-type one)."""
    if amount is not None:
        check_positive(amount, "neuron_sod1_rescue amount")

    def apply(bm: BioModel) -> BioModel:
        _need(bm, "SOD1", "neuron Sod1 rescue")
        wt = [ic.concentration for ic in bm.initial if ic.species == "SOD1" and ic.concentration]
        level = amount if amount is not None else (wt[0] if wt else v("sod1"))
        out = bm.scale_initial("SOD1", 0.0)
        return out.add_initial(Init("SOD1", concentration=level, region=NEURON))

    return _named(apply, {"type": "neuron_sod1_rescue", "amount": amount})


def inhibitor(drug: str, fraction: float) -> Transform:
    """A drug that inhibits a ``fraction`` in [0, 1] of its target (table above)."""
    if drug not in DRUGS:
        raise ModelError(f"inhibitor: unknown drug {drug!r} (known: {', '.join(DRUGS)})")
    f = check_fraction(fraction, f"inhibitor {drug!r} fraction")
    target, how = DRUGS[drug]

    def apply(bm: BioModel) -> BioModel:
        if how == "amount":
            _need(bm, target, f"inhibitor {drug}")
            return bm.scale_initial(target, 1.0 - f)
        if not bm.tags.get(target):
            raise ModelError(f"inhibitor {drug}: the model has no {target} reactions")
        return bm.scale_reactions(target, 1.0 - f)

    return _named(apply, {"type": "inhibitor", "drug": drug, "fraction": f})


def supplement(
    concentration: float = v("scavenger"),
    k_h2o2: float = v("k_scavenger_h2o2"),
    k_superoxide: float = v("k_scavenger_o2m"),
    k_regen: float = v("k_scavenger_regen"),
    name: str = "VitC",
) -> Transform:
    """A vitamin C-like scavenger ``name`` (µM) in the reducing compartments,
    oxidised by H2O2 (``k_h2o2``) and superoxide (``k_superoxide``) into
    ``name + "ox"`` and re-reduced at ``k_regen`` (GSH held constant)."""
    c = check_positive(concentration, "supplement concentration")
    kr = check_positive(k_regen, "supplement k_regen")
    kh = check_positive(k_h2o2, "supplement k_h2o2")
    ks = check_positive(k_superoxide, "supplement k_superoxide")

    def apply(bm: BioModel) -> BioModel:
        _need(bm, "H2O2", "supplement")
        out = bm.copy()
        m: Model = out.model
        if name in m.species_names:
            raise ModelError(f"supplement: species {name!r} exists already")
        h = m.get_species("H2O2")
        comps = [x for x in REDUCING if h.compartments is None or x in h.compartments]
        m.species(name, compartments=comps)
        m.species(name + "ox", compartments=comps)
        rx = [m.reaction(f"H2O2 + {name} -> {name}ox", k=kh, name=f"{name} scavenges H2O2")]
        if "O2m" in m.species_names and ks > 0:
            rx.append(
                m.reaction(f"O2m + {name} -> {name}ox", k=ks, name=f"{name} scavenges superoxide")
            )
        if kr > 0:
            rx.append(m.reaction(f"{name}ox -> {name}", k=kr, name=f"{name} is re-reduced"))
        out.tags.setdefault("supplement", []).extend(r.name for r in rx)
        out.initial.append(Init(name, concentration=c))
        return out

    return _named(
        apply,
        {
            "type": "supplement",
            "name": name,
            "concentration": c,
            "k_h2o2": kh,
            "k_superoxide": ks,
            "k_regen": kr,
        },
    )


def denervation(mito_factor: float = v("denervation_mito_factor")) -> Transform:
    """No nerve-evoked contraction (NOX2 does not assemble) and mitochondrial
    superoxide x ``mito_factor``."""
    fm = check_positive(mito_factor, "denervation mito_factor")

    def apply(bm: BioModel) -> BioModel:
        return bm.scale_reactions("NOX2_assembly", 0.0).scale_reactions("mito_source", fm)

    return _named(apply, {"type": "denervation", "mito_factor": fm})


def ageing(
    mito_factor: float = v("ageing_mito_factor"),
    nox2_factor: float = v("ageing_nox2_factor"),
    prx_factor: float = v("ageing_prx_factor"),
) -> Transform:
    """The ageing preset (every factor **[flagged]**, docs/biology.md)."""
    fm = check_positive(mito_factor, "ageing mito_factor")
    fn = check_positive(nox2_factor, "ageing nox2_factor")
    fp = check_positive(prx_factor, "ageing prx_factor")

    def apply(bm: BioModel) -> BioModel:
        out = bm.scale_reactions("mito_source", fm).scale_reactions("NOX2_assembly", fn)
        return out.scale_initial("Prx", fp) if "Prx" in out.model.species_names else out

    return _named(apply, {"type": "ageing", "mito_factor": fm, "nox2_factor": fn, "prx_factor": fp})


#: Intervention type (as in a scenario's [[biology.interventions]] table) -> factory.
INTERVENTIONS: dict[str, Callable[..., Transform]] = {
    "knockout": knockout,
    "neuron_sod1_rescue": neuron_sod1_rescue,
    "inhibitor": inhibitor,
    "supplement": supplement,
    "denervation": denervation,
    "ageing": ageing,
}
