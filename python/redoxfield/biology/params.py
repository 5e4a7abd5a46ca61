"""Every default number of the biology library, with its source and tag.

Tags (as in PARAMETERS.md): ``abs`` read in the paper's abstract; ``model`` read in
a public model's parameter file that cites or follows the paper; ``unverified`` a
commonly quoted value whose primary source was not checked; ``flagged`` no
literature value was found or used: a documented choice that a study should
sweep; ``derived`` arithmetic on the rows named in the source. The module
dataclasses take their defaults from here, so this table is the single place a
value lives (docs/biology.md prints it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARAMS", "Param", "markdown_table", "value"]

TAGS = ("abs", "model", "unverified", "flagged", "derived")


@dataclass(frozen=True)
class Param:
    value: float
    unit: str
    source: str
    tag: str

    def __post_init__(self) -> None:
        if self.tag not in TAGS:  # pragma: no cover - a table typo
            raise ValueError(f"unknown tag {self.tag!r}")


_SEL = "Selvaggio et al. 2018 Redox Biol 15:297 (HEK293 model)"
_SIKES = "Sikes-lab HeLa mitochondrial model (Prx3, Trx2, GPx1)"
_CORT = "Cortassa et al. 2004 / Kembro et al. 2013 cardiac models"

PARAMS: dict[str, Param] = {
    # -- transport --------------------------------------------------------------------
    "D_H2O2": Param(
        1400.0, "um^2/s", "water 1400-1800 um^2/s; no cytosolic value found", "unverified"
    ),
    "D_O2m": Param(1400.0, "um^2/s", "no value checked: set equal to D(H2O2)", "flagged"),
    "D_NO": Param(3000.0, "um^2/s", "Zacharia & Deen 2005: about 3.0e-5 cm^2/s at 37 C", "abs"),
    "P_H2O2": Param(
        15.0, "um/s", _SEL + "; 16 um/s human red cells (Denicola/Moller group ~2022)", "model"
    ),
    "aquaporin_factor": Param(
        1.0,
        "1",
        "red-cell H2O2 permeability unchanged by AQP1/AQP3 loss (Denicola/Moller ~2022)",
        "abs",
    ),
    "k_H2O2_inner_membrane": Param(
        0.2, "1/s", _CORT + ": lumped H2O2 exchange across the IMM", "model"
    ),
    "P_H2O2_pores": Param(
        1000.0, "um/s", "nuclear pores / outer-membrane porins: no value, 'fast'", "flagged"
    ),
    "P_O2m_vdac": Param(
        1.0, "um/s", "superoxide exit from the IMS through VDAC: no value", "flagged"
    ),
    "P_NO": Param(1000.0, "um/s", "NO crosses membranes freely: no value, 'fast'", "flagged"),
    # -- peroxiredoxin / thioredoxin (cytosol, nucleus) ---------------------------------
    "k_prx": Param(4e7, "1/(M s)", _SEL + ": Prx I/II lumped + H2O2", "model"),
    "prx": Param(142.0, "uM", _SEL + ": PrxI 110 + PrxII 32 uM", "model"),
    "k_prx_condense": Param(7.3, "1/s", _SEL + ": sulfenic -> disulfide", "model"),
    "k_prx_hyper": Param(1.3e3, "1/(M s)", _SEL + ": PrxI hyperoxidation (PrxII 1.2e4)", "model"),
    "k_srx": Param(4.1e-4, "1/s", _SEL + ": sulfiredoxin repair", "model"),
    "k_trx_prx": Param(2.1e5, "1/(M s)", _SEL + "; Benfeitas 2014: Trx + Prx-SS", "model"),
    "trx": Param(46.0, "uM", _SEL, "model"),
    "trxr_vmax": Param(190.0, "uM/s", _SEL + ": TrxR Vmax", "model"),
    "trxr_km": Param(1.8, "uM", _SEL + ": TrxR KM", "model"),
    "k_other_sinks": Param(160.0, "1/s", _SEL + ": other H2O2 sinks, lumped", "model"),
    "k_ecs_clearance": Param(
        10.0,
        "1/s",
        "extracellular H2O2 removal (interstitial GPx3/catalase, capillary wash-out), "
        "lumped: no value found; keeps exported H2O2 from accumulating",
        "flagged",
    ),
    "k_ev_export_rest": Param(
        1e-4,
        "1/s",
        "fraction per s of the enzyme next to the sarcolemma packed into extracellular "
        "vesicles at rest: no value",
        "flagged",
    ),
    "ev_active_over_rest": Param(
        2.0,
        "1",
        "exercise releases small EVs into the circulation within minutes (Fruhbeis et al. "
        "2015 J Extracell Vesicles): fold change per fibre not read",
        "flagged",
    ),
    # -- matrix ---------------------------------------------------------------------------
    "k_prx3": Param(2e7, "1/(M s)", _SIKES, "model"),
    "prx3": Param(48.0, "uM", _SIKES + ": 48-110 uM, low end used", "model"),
    "k_prx3_condense": Param(20.0, "1/s", _SIKES, "model"),
    "trx2": Param(7.7, "uM", _SIKES, "model"),
    "k_gpx": Param(6e7, "1/(M s)", _SIKES + ": GPx1 + H2O2", "model"),
    "gpx": Param(1.0, "uM", "GPx1 amount in muscle: no value checked", "flagged"),
    "k_gpx_recycle": Param(
        100.0, "1/s", "GPx reduction by GSH/GR/NADPH, pseudo-first order: no value", "flagged"
    ),
    "gsh_mM": Param(
        2.0, "mM", "about 1-3 mM in muscle (3.2 mM red cells, Benfeitas 2014)", "unverified"
    ),
    # -- catalase, SOD, NO ------------------------------------------------------------------
    "k_catalase": Param(1.7e7, "1/(M s)", _CORT, "model"),
    "catalase": Param(
        0.1, "uM", "cytosolic catalase in muscle: no value (mostly peroxisomal)", "flagged"
    ),
    "k_sod": Param(
        1.2e9, "1/(M s)", _CORT + ": CuZnSOD (pulse radiolysis 1.4-1.9e9 [abs])", "model"
    ),
    "sod1": Param(0.3, "uM", _CORT + ": CuZnSOD", "model"),
    "sod2": Param(0.24, "uM", _CORT + ": MnSOD (the CuZnSOD rate constant is used)", "model"),
    "sod3": Param(0.3, "uM", "extracellular SOD3: no value; set as SOD1", "flagged"),
    "k_spont_dismutation": Param(2e5, "1/(M s)", "spontaneous dismutation at pH 7.4", "unverified"),
    "k_no_superoxide": Param(
        1.6e10, "1/(M s)", "Kissner et al. 1997 (6.7e9, Huie & Padmaja 1993)", "abs"
    ),
    "k_no_mb": Param(4.36e7, "1/(M s)", "Herold 2001: NO + oxymyoglobin, pH 7", "abs"),
    "myoglobin": Param(
        100.0, "uM", "oxymyoglobin in the modelled fibre: no value checked", "flagged"
    ),
    "k_onoo_decay": Param(
        100.0, "1/s", "peroxynitrite decay (CO2, thiols), lumped: no value", "flagged"
    ),
    "nitration_yield": Param(
        0.1, "1", "fraction of ONOO- that nitrates tyrosine: no value", "flagged"
    ),
    # -- sources ------------------------------------------------------------------------------
    "nox2_density": Param(
        100.0, "molecules/um^2", "NOX2 density in muscle: none found (sweep)", "flagged"
    ),
    "nox2_turnover": Param(
        10.0, "1/s", "H2O2 per active NOX2 per s: none found (sweep)", "flagged"
    ),
    "p47phox": Param(10.0, "uM", "p47phox in muscle: no value", "flagged"),
    "rac1": Param(10.0, "uM", "Rac1 (GTP-bound) in muscle: no value", "flagged"),
    "k_nox2_assembly": Param(5e6, "1/(M s)", "assembly with p47phox / Rac1: no value", "flagged"),
    "k_nox2_disassembly": Param(10.0, "1/s", "complex dissociation: no value", "flagged"),
    "nox4_density": Param(10.0, "molecules/um^2", "NOX4 in SR membrane: no value", "flagged"),
    "nox4_turnover": Param(1.0, "1/s", "H2O2 per free NOX4 per s: no value", "flagged"),
    "atp_mM": Param(5.0, "mM", "cytosolic ATP, commonly quoted 5-8 mM", "unverified"),
    "nox4_atp_ki": Param(1.0, "mM", "NOX4 ATP inhibition constant: no value checked", "flagged"),
    "vo2_rest": Param(
        5.7, "uM O2/s of tissue", "rat muscle at rest 0.32 +- 0.12 umol/g/min", "abs"
    ),
    "h2o2_per_o2": Param(
        0.0012,
        "1",
        "0.12-0.15 % of O2 consumed in intact cells (review figure; low end)",
        "unverified",
    ),
    "mito_fraction_ref": Param(
        0.0485, "1", "mitochondrial volume fraction, Eisenberg, Kuda & Peter 1974", "abs"
    ),
    "matrix_share": Param(
        0.5, "1", "complex I+III to matrix vs III to IMS: split unknown", "flagged"
    ),
    "vo2_active_over_rest": Param(
        20.0,
        "1",
        "moderate contraction; ATP demand can exceed 100x rest (Calbet et al. 2020)",
        "flagged",
    ),
    "leak_active_over_rest": Param(
        0.05,
        "1",
        "ADP lowers superoxide per O2 (state 3 vs 4; Goncalves et al. 2015 JBC, number not read)",
        "flagged",
    ),
    "nos_density": Param(10.0, "molecules/um^2", "nNOSmu at the sarcolemma: no value", "flagged"),
    "nos_turnover": Param(10.0, "1/s", "NO per nNOS per s: no value", "flagged"),
    "nos_rest_factor": Param(
        0.2, "1", "NOS activity at rest relative to contraction: no value", "flagged"
    ),
    "target": Param(1.0, "uM", "redox-relay target (e.g. STAT3 with Prx2): no value", "flagged"),
    "k_relay": Param(1e5, "1/(M s)", "Prx-SS + target thiol exchange: no value", "flagged"),
    "k_target_trx": Param(1e5, "1/(M s)", "target disulfide + Trx: no value", "flagged"),
    "denervation_mito_factor": Param(
        2.0, "1", "denervation raises mitochondrial peroxide generation: fold not read", "flagged"
    ),
    "ageing_mito_factor": Param(
        2.0, "1", "ageing: higher basal mitochondrial release, fold not read", "flagged"
    ),
    "ageing_nox2_factor": Param(
        0.5, "1", "ageing blunts contraction-induced responses: fold not read", "flagged"
    ),
    "ageing_prx_factor": Param(1.0, "1", "ageing: Prx/Trx amounts, no change assumed", "flagged"),
    # -- supplementation ----------------------------------------------------------------------
    "scavenger": Param(100.0, "uM", "vitamin C-like scavenger in the fibre: no value", "flagged"),
    "k_scavenger_h2o2": Param(
        6e7,
        "1/(M s)",
        "no value: chosen as strong as the Prx network (x 100 uM ~ 4e7 x 142 uM); "
        "ascorbate itself reacts with H2O2 far slower",
        "flagged",
    ),
    "k_scavenger_regen": Param(
        10.0, "1/s", "re-reduction of the oxidised scavenger (GSH, DHAR): no value", "flagged"
    ),
    "k_scavenger_o2m": Param(
        3e5, "1/(M s)", "ascorbate + superoxide, commonly quoted 1e5-3e5", "unverified"
    ),
    # -- biosensors -----------------------------------------------------------------------------
    "sensor": Param(1.0, "uM", "expressed sensor concentration: no value (typical ~uM)", "flagged"),
    "k_hyper7_ox": Param(
        1e7,
        "1/(M s)",
        "HyPer7 (Pak et al. 2020 Cell Metab): rate constant not retrieved",
        "flagged",
    ),
    "k_hyper7_red": Param(
        0.05, "1/s", "HyPer7 Trx-dependent recovery: not retrieved (minutes in cells)", "flagged"
    ),
    "hyper7_range": Param(5.0, "1", "HyPer7 500/400 ratio range: not retrieved", "flagged"),
    "k_orp1_ox": Param(
        1e5, "1/(M s)", "roGFP2-Orp1 (Gutscher et al. 2009 JBC): Orp1 + H2O2 ~1e5", "unverified"
    ),
    "k_orp1_red": Param(
        0.01, "1/s", "roGFP2-Orp1 reduction by Grx/GSH over minutes (Gutscher 2009)", "unverified"
    ),
    "rogfp2_range": Param(
        5.0, "1", "roGFP2 405/488 ratio range 4-6 fold (Gutscher 2009)", "unverified"
    ),
    "rogfp2_alpha": Param(
        1.0, "1", "488-nm brightness oxidised/reduced: no value (1 = linear)", "flagged"
    ),
    "k_mitosox": Param(
        2e6, "1/(M s)", "hydroethidine-like probe + superoxide: no value checked", "flagged"
    ),
    "mitosox_range": Param(
        10.0, "1", "fluorescence oxidised/reduced of the reporter: no value", "flagged"
    ),
}


def value(name: str) -> float:
    """The default value of parameter ``name``."""
    return PARAMS[name].value


def markdown_table() -> str:
    """The table above as Markdown (docs/biology.md)."""
    rows = ["| parameter | value | unit | source | tag |", "|---|---|---|---|---|"]
    for k, p in PARAMS.items():
        rows.append(f"| `{k}` | {p.value:g} | {p.unit} | {p.source} | [{p.tag}] |")
    return "\n".join(rows)
