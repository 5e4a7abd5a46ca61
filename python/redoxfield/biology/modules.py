"""Reaction modules of the exercise-redox systems (docs/biology.md).

Each module is a dataclass whose fields default to :data:`~.params.PARAMS` (the
source and tag of every number is there) and whose ``build(ctx)`` declares its
species, reactions, permeabilities and initial amounts in what the geometry has.
Species names are shared between modules (``H2O2``, ``O2m`` for superoxide, ``NO``,
``Trx``/``TrxSS``), so modules compose by name.

Proteins are immobile (D = 0): their diffusion would cost far more events than the
chemistry and changes H2O2 profiles little at these pool sizes **[flagged]**.
Reductants held constant (NADPH, GSH, ATP, O2) are folded into pseudo-first-order
constants, each named below.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import AQUEOUS, Context, check_fields
from .params import value as v

__all__ = [
    "MODULES",
    "Catalase",
    "Gpx",
    "Membranes",
    "Mitochondria",
    "Nos",
    "Nox2",
    "Nox4",
    "PrxTrx",
    "RelayTarget",
    "Sod",
    "EvExport",
    "ExtracellularClearance",
    "OPTIONAL_MODULES",
    "default_modules",
]

#: Where the cytosolic antioxidant systems live: cytosol and nucleus are both
#: reducing (nuclear Prx1/Trx1); the nerve terminal gets them too (neuron cytosol).
REDUCING = ("cytosol", "nucleus", "nerve_terminal")
#: Superoxide: made in the mitochondria, leaves the IMS through VDAC (P_O2m_vdac).
O2M_COMPARTMENTS = (
    "cytosol",
    "nucleus",
    "mito_ims",
    "mito_matrix",
    "nerve_terminal",
    "extracellular",
)
NO_COMPARTMENTS = ("cytosol", "nucleus", "extracellular", "nerve_terminal")


def h2o2(ctx: Context) -> None:
    """H2O2 in every aqueous compartment; what crosses membranes is :class:`Membranes`."""
    ctx.species("H2O2", D=v("D_H2O2"), compartments=AQUEOUS)


def superoxide(ctx: Context) -> None:
    ctx.species("O2m", D=v("D_O2m"), compartments=O2M_COMPARTMENTS)


@dataclass
class Nox2:
    """NOX2 (gp91phox/p22phox) in the sarcolemma, T-tubules and NMJ membrane.

    Assembly is driven by contraction: ``NOX2 + p47phox -> NOX2p47`` (p47phox
    phosphorylation and translocation) and ``NOX2p47 + Rac1 -> NOX2a``, both with
    ``activity = (0, 1)``; complexes fall apart at ``k_disassembly``. Each active
    complex puts H2O2 into the cytosol at ``turnover``/s **[flagged]**: its
    superoxide is made on the outer face, dismutated (SOD3, spontaneous) and the
    H2O2 crosses back; the T-tubule lumen is sub-voxel here, so the model lumps
    these steps into one H2O2 per turnover into the cytosolic voxel."""

    density: float = v("nox2_density")
    turnover: float = v("nox2_turnover")
    p47phox: float = v("p47phox")
    rac1: float = v("rac1")
    k_assembly: float = v("k_nox2_assembly")
    k_disassembly: float = v("k_nox2_disassembly")
    membranes: tuple[str, ...] = ("sarcolemma", "ttubule", "nmj_postsynaptic")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        mems = ctx.membrane_species("NOX2", self.membranes)
        if not mems:
            return
        ctx.membrane_species("NOX2p47", mems)
        ctx.membrane_species("NOX2a", mems)
        ctx.species("p47phox", compartments=("cytosol",))
        ctx.species("Rac1", compartments=("cytosol",))
        on = (0.0, 1.0)
        ctx.reaction(
            "NOX2 + p47phox -> NOX2p47",
            self.k_assembly,
            tag="NOX2_assembly",
            name="NOX2 assembly: p47phox",
            activity=on,
        )
        ctx.reaction(
            "NOX2p47 + Rac1 -> NOX2a",
            self.k_assembly,
            tag="NOX2_assembly",
            name="NOX2 assembly: Rac1",
            activity=on,
        )
        ctx.reaction(
            "NOX2p47 -> NOX2 + p47phox",
            self.k_disassembly,
            tag="NOX2_disassembly",
            name="NOX2 disassembly: p47phox",
        )
        ctx.reaction(
            "NOX2a -> NOX2 + p47phox + Rac1",
            self.k_disassembly,
            tag="NOX2_disassembly",
            name="NOX2 disassembly",
        )
        ctx.reaction(
            "NOX2a -> NOX2a + H2O2",
            self.turnover,
            tag="NOX2_production",
            name="NOX2 H2O2 production",
        )
        for m in mems:
            ctx.init("NOX2", surface_density=self.density, membrane=m)
        ctx.init("p47phox", concentration=self.p47phox)
        ctx.init("Rac1", concentration=self.rac1)


@dataclass
class Nox4:
    """NOX4 in the SR membrane, constitutively active and held low by ATP.

    The free (ATP-unbound) fraction ``Ki / (Ki + [ATP])`` makes H2O2 into the SR
    lumen at ``turnover``/s; ATP is held constant (``atp_mM``), so lowering it
    relieves the inhibition."""

    density: float = v("nox4_density")
    turnover: float = v("nox4_turnover")
    atp_mM: float = v("atp_mM")
    atp_ki_mM: float = v("nox4_atp_ki")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        if not ctx.membrane_species("NOX4", ("sr_membrane",)):
            return
        free = self.atp_ki_mM / (self.atp_ki_mM + self.atp_mM) if self.atp_ki_mM > 0 else 0.0
        ctx.reaction(
            "NOX4 -> NOX4 + H2O2",
            self.turnover * free,
            tag="NOX4",
            name="NOX4 H2O2 production (ATP-inhibited)",
        )
        ctx.init("NOX4", surface_density=self.density, membrane="sr_membrane")


@dataclass
class Mitochondria:
    """Superoxide from complexes I and III into the matrix and from complex III
    into the IMS, tied to O2 consumption.

    Source per volume of mitochondrion: ``2 * vo2 * h2o2_per_o2 /
    mito_fraction_ref`` µM superoxide/s (two superoxide per H2O2; the tissue rate
    spread over the reference mitochondrial volume), ``matrix_share`` of it in the
    matrix and the rest in the IMS, each per volume of its own compartment. At
    rest ``vo2 = vo2_rest``; during contraction O2 consumption rises
    ``vo2_active_over_rest``-fold while ADP lowers the superoxide made per O2
    ``leak_active_over_rest``-fold, so the source is scaled by ``activity = (1,
    vo2_ratio * leak_ratio)``. ``factor`` multiplies both (denervation, ageing)."""

    vo2_rest: float = v("vo2_rest")
    h2o2_per_o2: float = v("h2o2_per_o2")
    mito_fraction_ref: float = v("mito_fraction_ref")
    matrix_share: float = v("matrix_share")
    vo2_active_over_rest: float = v("vo2_active_over_rest")
    leak_active_over_rest: float = v("leak_active_over_rest")
    factor: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def superoxide_per_mito_volume(self) -> float:
        """µM superoxide per s per volume of mitochondrion, at rest."""
        return 2 * self.vo2_rest * self.h2o2_per_o2 / self.mito_fraction_ref * self.factor

    def build(self, ctx: Context) -> None:
        superoxide(ctx)
        h2o2(ctx)
        act = (1.0, self.vo2_active_over_rest * self.leak_active_over_rest)
        s = self.superoxide_per_mito_volume
        ctx.reaction(
            "0 -> O2m",
            s * self.matrix_share,
            tag="mito_source",
            compartment="mito_matrix",
            name="complex I+III superoxide to matrix",
            activity=act,
        )
        ctx.reaction(
            "0 -> O2m",
            s * (1 - self.matrix_share),
            tag="mito_source",
            compartment="mito_ims",
            name="complex III superoxide to IMS",
            activity=act,
        )


@dataclass
class Sod:
    """SOD1 (cytosol, nucleus, IMS, nerve terminal), SOD2 (matrix), SOD3
    (extracellular) as ping-pong enzymes, and spontaneous dismutation.

    ``O2m + SODx -> SODxr`` (Cu2+/Mn3+ reduced, O2 released) and ``O2m + SODxr ->
    SODx + H2O2``: two superoxide per H2O2, both steps at ``k_sod``;
    ``2 O2m -> H2O2`` at ``k_spont``."""

    sod1: float = v("sod1")
    sod2: float = v("sod2")
    sod3: float = v("sod3")
    k_sod: float = v("k_sod")
    k_spont: float = v("k_spont_dismutation")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        superoxide(ctx)
        h2o2(ctx)
        enzymes = (
            ("SOD1", ("cytosol", "nucleus", "mito_ims", "nerve_terminal"), self.sod1),
            ("SOD2", ("mito_matrix",), self.sod2),
            ("SOD3", ("extracellular",), self.sod3),
        )
        for name, comps, amount in enzymes:
            if not ctx.species(name, compartments=comps):
                continue
            ctx.species(name + "r", compartments=comps)
            ctx.reaction(
                f"O2m + {name} -> {name}r",
                self.k_sod,
                tag=name,
                name=f"{name}: superoxide reduces the metal",
            )
            ctx.reaction(
                f"O2m + {name}r -> {name} + H2O2",
                self.k_sod,
                tag=name,
                name=f"{name}: superoxide oxidises the metal, H2O2",
            )
            ctx.init(name, concentration=amount)
        ctx.reaction(
            "2 O2m -> H2O2",
            self.k_spont,
            tag="spontaneous_dismutation",
            name="spontaneous dismutation",
        )


@dataclass
class PrxTrx:
    """The peroxiredoxin relay and its thioredoxin/TrxR/NADPH recycling, in the
    reducing compartments (Prx1/2 + Trx1 in cytosol, nucleus, nerve terminal;
    Prx3 + Trx2 in the matrix).

    ``H2O2 + Prx -> PrxSO`` (sulfenic), ``PrxSO -> PrxSS`` (condensation),
    ``PrxSS + Trx -> Prx + TrxSS``, ``TrxSS -> Trx`` (TrxR with NADPH held
    constant, linearised: ``Vmax/KM``, valid while TrxSS << KM). Optional
    hyperoxidation ``PrxSO + H2O2 -> PrxSO2`` and sulfiredoxin repair ``PrxSO2 ->
    Prx``. ``other_sinks`` adds the lumped first-order H2O2 sink of the same model.
    """

    prx: float = v("prx")
    k_prx: float = v("k_prx")
    k_condense: float = v("k_prx_condense")
    trx: float = v("trx")
    k_trx_prx: float = v("k_trx_prx")
    trxr_vmax: float = v("trxr_vmax")
    trxr_km: float = v("trxr_km")
    hyperoxidation: bool = True
    k_hyper: float = v("k_prx_hyper")
    k_srx: float = v("k_srx")
    other_sinks: float = v("k_other_sinks")
    prx3: float = v("prx3")
    k_prx3: float = v("k_prx3")
    k_condense3: float = v("k_prx3_condense")
    trx2: float = v("trx2")

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def k_trxr(self) -> float:
        return self.trxr_vmax / self.trxr_km if self.trxr_km > 0 else 0.0

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        pools = (
            ("", REDUCING, self.prx, self.k_prx, self.k_condense, self.trx),
            ("3", ("mito_matrix",), self.prx3, self.k_prx3, self.k_condense3, self.trx2),
        )
        for sfx, comps, prx, k_prx, k_cond, trx in pools:
            P, T = "Prx" + sfx, ("Trx" if sfx == "" else "Trx2")
            if not ctx.species(P, compartments=comps):
                continue
            for s in (P + "SO", P + "SS", T, T + "SS") + (
                (P + "SO2",) if self.hyperoxidation else ()
            ):
                ctx.species(s, compartments=comps)
            ctx.reaction(f"H2O2 + {P} -> {P}SO", k_prx, tag="Prx", name=f"{P} + H2O2")
            ctx.reaction(f"{P}SO -> {P}SS", k_cond, tag="Prx", name=f"{P} condensation")
            ctx.reaction(
                f"{P}SS + {T} -> {P} + {T}SS", self.k_trx_prx, tag="Trx", name=f"{T} reduces {P}SS"
            )
            ctx.reaction(f"{T}SS -> {T}", self.k_trxr, tag="TrxR", name=f"TrxR reduces {T}SS")
            if self.hyperoxidation:
                ctx.reaction(
                    f"{P}SO + H2O2 -> {P}SO2",
                    self.k_hyper,
                    tag="Prx_hyperoxidation",
                    name=f"{P} hyperoxidation",
                )
                ctx.reaction(
                    f"{P}SO2 -> {P}", self.k_srx, tag="Srx", name=f"sulfiredoxin repairs {P}"
                )
            ctx.init(P, concentration=prx)
            ctx.init(T, concentration=trx)
        if self.other_sinks > 0:
            for c in REDUCING + ("mito_matrix",):
                ctx.reaction(
                    "H2O2 -> 0",
                    self.other_sinks,
                    tag="other_sinks",
                    compartment=c,
                    name=f"other H2O2 sinks in {c}",
                )


@dataclass
class Gpx:
    """Glutathione peroxidase (GPx1) with GSH/GR/NADPH held constant:
    ``H2O2 + GPx -> GPxOx``, ``GPxOx -> GPx`` at ``k_recycle``, in the reducing
    compartments and the matrix."""

    gpx: float = v("gpx")
    k_gpx: float = v("k_gpx")
    k_recycle: float = v("k_gpx_recycle")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        comps = REDUCING + ("mito_matrix",)
        if not ctx.species("GPx", compartments=comps):
            return
        ctx.species("GPxOx", compartments=comps)
        ctx.reaction("H2O2 + GPx -> GPxOx", self.k_gpx, tag="GPx", name="GPx + H2O2")
        ctx.reaction("GPxOx -> GPx", self.k_recycle, tag="GR", name="GSH and GR reduce GPx")
        ctx.init("GPx", concentration=self.gpx)


@dataclass
class Catalase:
    """Catalase (catalytic, one H2O2 per encounter in this lumping) in the cytosol."""

    catalase: float = v("catalase")
    k_catalase: float = v("k_catalase")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        if not ctx.species("CAT", compartments=("cytosol",)):
            return
        ctx.reaction("H2O2 + CAT -> CAT", self.k_catalase, tag="catalase", name="catalase")
        ctx.init("CAT", concentration=self.catalase)


@dataclass
class Nos:
    """nNOS at the sarcolemma making NO (more during contraction: ``activity =
    (rest_factor, 1)``), NO consumed by oxymyoglobin (held constant), NO +
    superoxide -> peroxynitrite, which decays and nitrates tyrosines
    (``NitroTyr``, a counter that only grows)."""

    density: float = v("nos_density")
    turnover: float = v("nos_turnover")
    rest_factor: float = v("nos_rest_factor")
    myoglobin: float = v("myoglobin")
    k_mb: float = v("k_no_mb")
    k_no_o2m: float = v("k_no_superoxide")
    k_onoo: float = v("k_onoo_decay")
    nitration_yield: float = v("nitration_yield")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        superoxide(ctx)
        ctx.species("NO", D=v("D_NO"), compartments=NO_COMPARTMENTS)
        mems = ctx.membrane_species("nNOS", ("sarcolemma", "nmj_postsynaptic"))
        for m in mems:
            ctx.init("nNOS", surface_density=self.density, membrane=m)
        ctx.reaction(
            "nNOS -> nNOS + NO",
            self.turnover,
            tag="NOS",
            name="nNOS makes NO",
            activity=(self.rest_factor, 1.0),
        )
        ctx.reaction(
            "NO -> 0", self.k_mb * self.myoglobin * 1e-6, tag="NO_sink", name="NO + oxymyoglobin"
        )
        ctx.species("ONOO", compartments=O2M_COMPARTMENTS)  # immobile: counted where formed
        ctx.species("NitroTyr", compartments=O2M_COMPARTMENTS)
        ctx.reaction(
            "NO + O2m -> ONOO",
            self.k_no_o2m,
            tag="peroxynitrite",
            name="NO + superoxide -> peroxynitrite",
        )
        y = self.nitration_yield
        ctx.reaction(
            "ONOO -> NitroTyr", self.k_onoo * y, tag="nitration", name="tyrosine nitration"
        )
        ctx.reaction(
            "ONOO -> 0", self.k_onoo * (1 - y), tag="ONOO_decay", name="peroxynitrite decay"
        )


@dataclass
class RelayTarget:
    """A redox-relay target protein oxidised by Prx disulfide (Prx2 -> STAT3-like
    relay) and reduced by Trx: ``PrxSS + Target -> Prx + TargetSS``, ``TargetSS +
    Trx -> Target + TrxSS``. Needs :class:`PrxTrx` before it."""

    target: float = v("target")
    k_relay: float = v("k_relay")
    k_trx: float = v("k_target_trx")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        if not ctx.species("Target", compartments=("cytosol",)):
            return
        ctx.species("TargetSS", compartments=("cytosol",))
        ctx.reaction(
            "PrxSS + Target -> Prx + TargetSS",
            self.k_relay,
            tag="relay",
            name="Prx relay oxidises target",
        )
        ctx.reaction(
            "TargetSS + Trx -> Target + TrxSS", self.k_trx, tag="relay", name="Trx reduces target"
        )
        ctx.init("Target", concentration=self.target)


@dataclass
class Membranes:
    """Membrane permeabilities: H2O2 through the sarcolemma, NMJ, SR, nerve and
    outer mitochondrial membranes at ``P_h2o2 * aquaporin_factor``; through the
    inner mitochondrial membrane at ``k_inner * V_matrix / A_inner`` (the lumped
    0.2/s exchange converted with this geometry's matrix volume and IMM area);
    through the nuclear envelope and the outer membrane's porins at
    ``P_pores``; superoxide through VDAC; NO through every membrane."""

    P_h2o2: float = v("P_H2O2")
    aquaporin_factor: float = v("aquaporin_factor")
    k_inner: float = v("k_H2O2_inner_membrane")
    P_pores: float = v("P_H2O2_pores")
    P_o2m_vdac: float = v("P_O2m_vdac")
    P_no: float = v("P_NO")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        p = self.P_h2o2 * self.aquaporin_factor
        for m in ("sarcolemma", "nmj_postsynaptic", "sr_membrane", "nerve_membrane"):
            ctx.permeability("H2O2", m, p)
        ctx.permeability("H2O2", "mito_outer", self.P_pores)
        ctx.permeability("H2O2", "nuclear_envelope", self.P_pores)
        a_in = ctx.areas.get("mito_inner", 0.0)
        if a_in > 0:
            ctx.permeability("H2O2", "mito_inner", self.k_inner * ctx.volumes["mito_matrix"] / a_in)
        ctx.permeability("O2m", "mito_outer", self.P_o2m_vdac)
        for m in ctx.face_membranes:
            ctx.permeability("NO", m, self.P_no)


@dataclass
class ExtracellularClearance:
    """Removal of H2O2 from the extracellular space (interstitial GPx3/catalase and
    wash-out by the capillaries, lumped first order): without it the H2O2 that
    leaves through the sarcolemma accumulates over long runs."""

    k: float = v("k_ecs_clearance")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        h2o2(ctx)
        ctx.reaction(
            "H2O2 -> 0",
            self.k,
            tag="extracellular_clearance",
            compartment="extracellular",
            name="extracellular H2O2 clearance",
        )


@dataclass
class EvExport:
    """Exercise-induced extracellular vesicles carrying antioxidant enzymes out of
    the fibre, as export counters and nothing systemic: SOD1 and Prx (Prx1) in the
    subvolumes the sarcolemma passes through, and SOD2 in the subsarcolemmal
    mitochondria, become ``SOD1_EV``, ``Prx_EV``, ``SOD2_EV`` (immobile; their
    totals are the exported amounts) at ``k_rest`` per s, times
    ``active_over_rest`` at full contraction. Build after :class:`Sod` and
    :class:`PrxTrx`."""

    k_rest: float = v("k_ev_export_rest")
    active_over_rest: float = v("ev_active_over_rest")

    def __post_init__(self) -> None:
        check_fields(self)

    def build(self, ctx: Context) -> None:
        cargo = (
            ("SOD1", ("cytosol",), {"membrane": "sarcolemma"}),
            ("Prx", ("cytosol",), {"membrane": "sarcolemma"}),
            ("SOD2", ("mito_matrix",), {"region": "subsarcolemmal"}),
        )
        for enzyme, comps, scope in cargo:
            if not ctx.has(enzyme) or not ctx.species(enzyme + "_EV", compartments=comps):
                continue
            ctx.reaction(
                f"{enzyme} -> {enzyme}_EV",
                self.k_rest,
                tag="ev_export",
                compartment=comps[0],
                name=f"EV export of {enzyme}",
                activity=(1.0, self.active_over_rest),
                **scope,
            )


#: Module name (as in a scenario's [biology] table) -> class.
MODULES = {
    "nox2": Nox2,
    "nox4": Nox4,
    "mitochondria": Mitochondria,
    "sod": Sod,
    "prx": PrxTrx,
    "gpx": Gpx,
    "catalase": Catalase,
    "nos": Nos,
    "relay": RelayTarget,
    "membranes": Membranes,
    "clearance": ExtracellularClearance,
    "ev_export": EvExport,
}

#: Modules left out of "all" / default_modules(): counters a study asks for.
OPTIONAL_MODULES = ("ev_export",)


def default_modules() -> list:
    """Every module but the optional ones, with its defaults, in build order."""
    return [cls() for n, cls in MODULES.items() if n not in OPTIONAL_MODULES]
