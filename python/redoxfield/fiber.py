"""Parametric skeletal-muscle fibre segment on a lattice: :func:`segment`.

    space = rf.fiber.segment(radius=2.5, sarcomeres=2, spacing=0.1)

The fibre axis is x. Every structure is an analytic solid (cylinder, spheroids,
boxes, a cylindrical-shell sector); the lattice is labelled by evaluating the
solids at voxel centres and corners, and every voxel whose corners disagree is
supersampled (``supersample**3`` points) and given the compartment that fills most
of it. Membranes between compartments are staircase faces weighted by ``|n·e|``
with the true surface normal n (so their areas converge to the smooth surface);
the T-tubule system is sub-voxel membrane area in the transverse planes at the
A-I junctions. ``space.analytic`` holds the exact volume of each compartment and
area of each membrane, for comparison with the voxelised ones
(``space.voxel_volumes()``, ``space.voxel_areas()``).

Every default dimension and where it comes from is listed in docs/geometry.md and
next to the parameter below. Tags: [abs] read in the paper's abstract; [model]
read in a public model's parameter file; [unverified] commonly quoted, primary
source not checked; [flagged] no literature value used -- a schematic or numerical
choice that a user should set for their question.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import GeometryError
from .geometry.lattice import Lattice

__all__ = [
    "COMPARTMENTS",
    "FIBRE_TYPES",
    "MEMBRANES",
    "FiberParameters",
    "FiberSegment",
    "FiberSolids",
    "parameters",
    "place_solids",
    "segment",
]

#: Fibre-type presets: total mitochondrial volume fraction and its source. The
#: subsarcolemmal share (1/3) and the SR fractions are the guinea-pig soleus ones
#: for all (no rat values checked: [flagged] for the rat presets).
FIBRE_TYPES: dict[str, tuple[float, str]] = {
    "soleus_guinea_pig": (0.0485, "guinea-pig soleus, Eisenberg, Kuda & Peter 1974 [abs]"),
    "rat_soleus": (0.155, "rat soleus [abs] (PARAMETERS.md)"),
    "rat_svl": (0.087, "rat superficial vastus lateralis [abs] (PARAMETERS.md)"),
}

#: Compartments of a fibre segment, in label order.
COMPARTMENTS = (
    "extracellular",
    "cytosol",
    "nucleus",
    "mito_ims",
    "mito_matrix",
    "sr_lumen",
    "nerve_terminal",
)
EXT, CYTO, NUC, IMS, MAT, SR, NT = range(len(COMPARTMENTS))

#: Membrane types of a fibre segment.
MEMBRANES = (
    "sarcolemma",
    "nmj_postsynaptic",
    "ttubule",
    "sr_membrane",
    "mito_outer",
    "mito_inner",
    "nuclear_envelope",
    "nerve_membrane",
)


@dataclass(frozen=True)
class FiberParameters:
    """All dimensions in µm. Sources: docs/geometry.md (tags as in PARAMETERS.md)."""

    #: [flagged] demo size. Real mouse fibres are tens of µm across (Luff & Atwood
    #: 1971 JCB 51:369 [abs] quote their T-system areas for a 30 µm fibre).
    radius: float = 2.5
    #: [flagged] segment length in sarcomeres (walls at both ends reflect).
    sarcomeres: int = 2
    #: lattice spacing h (numerical).
    spacing: float = 0.1
    #: 2.2 µm: fast-twitch Ca2+ model [model]; 2.0-2.5 µm commonly quoted [unverified].
    sarcomere_length: float = 2.2
    #: 1.6 µm thick-filament (A-band) length [unverified: commonly quoted, primary
    #: source not checked]. Sets the A-I junctions, where the triads sit.
    a_band_length: float = 1.6
    #: T-system membrane area per fibre volume, µm²/µm³. 0.41 = 3.1 cm² of T-system
    #: per cm² of surface (mouse EDL, Luff & Atwood 1971 [abs]) x surface/volume
    #: 2/r of their 30 µm fibre (r = 15 µm). Soleus: 1.8 cm²/cm² -> 0.24. Spread
    #: over the two T-planes of each sarcomere (two triads per sarcomere [abs]).
    ttubule_area_density: float = 0.41
    #: [flagged] extracellular shell around the fibre in the box (numerical).
    ecs_margin: float = 0.3
    #: myonucleus volume fraction 0.86 % of the fibre (guinea-pig soleus, Eisenberg,
    #: Kuda & Peter 1974 [abs]); with ``nucleus_aspect`` it sets the semi-axes.
    nucleus_volume_fraction: float = 0.0086
    #: [flagged] long/short semi-axis ratio of the (prolate) myonucleus.
    nucleus_aspect: float = 2.0
    #: [flagged] cytosol gap between nuclear envelope and sarcolemma (resolution).
    nucleus_gap: float = 0.2
    #: [flagged] myofibril radius 0.5 µm [model] sets the pitch (1.0 µm) of the
    #: inter-myofibrillar lattice where TC and mitochondria sit.
    myofibril_radius: float = 0.5
    #: Volume fractions of the fibre (the cylinder R, L), from which the default
    #: mitochondria and SR are sized. Total mitochondria 4.85 % (guinea-pig soleus,
    #: Eisenberg, Kuda & Peter 1974 [abs]). ``None``: the explicit schematic layout
    #: (``imf_positions``, ``ss_x_fractions``, ... below), the one
    #: :mod:`redoxfield.geometry.mesher` builds.
    mito_volume_fraction: float | None = 0.0485
    #: a preset of :data:`FIBRE_TYPES`; it sets ``mito_volume_fraction`` unless that
    #: is given too.
    fibre_type: str | None = None
    #: share of the mitochondrial volume in the subsarcolemmal layer (within 1 µm of
    #: the surface): about one third (Eisenberg 1974 [abs]); the rest is
    #: inter-myofibrillar, in the core deeper than 1 µm.
    ss_mito_share: float = 1.0 / 3.0
    #: [flagged] inter-myofibrillar mitochondria: radial semi-axis; they sit on the
    #: Z-lines (centred in the I-band) at the inter-myofibrillar points of the 1 µm
    #: myofibril lattice deeper than 1 µm, and their length along x is what the
    #: volume asks (it crosses the T-planes when long).
    imf_radius: float = 0.4
    #: [flagged] subsarcolemmal mitochondria: ``ss_per_ring`` prolate spheroids
    #: (x/radial aspect ``ss_aspect``) around the circumference at each A-band
    #: centre, ``ss_gap`` under the sarcolemma; sized by the volume.
    ss_per_ring: int = 3
    ss_aspect: float = 1.5
    #: terminal cisternae 1.04 % of the fibre (guinea-pig soleus, Eisenberg 1974
    #: [abs]); ``None``: the explicit ``tc_width`` boxes. Strips of width
    #: ``sr_strip_width`` and thickness ``tc_thickness`` (x) at each T-plane in the
    #: inter-myofibrillar channels, their lengths in whole voxels (so the lattice
    #: holds them exactly).
    tc_volume_fraction: float | None = 0.0104
    #: longitudinal SR: SR total 3.52 % (Eisenberg 1974 [abs]) minus TC 1.04 % =
    #: 2.48 %, strips along the A-band between the TCs (one voxel gap: a separate
    #: piece of ``sr_lumen``, [flagged]). 0 leaves it out.
    lsr_volume_fraction: float = 0.0248
    #: [flagged] TC thickness along x and SR strip width; the real TC are thinner
    #: than a voxel. With ``tc_volume_fraction=None``: square TC boxes of side
    #: ``tc_width`` at the four inner lattice points (old schematic, 0.59 %).
    tc_thickness: float = 0.2
    sr_strip_width: float = 0.2
    tc_width: float = 0.4
    #: [flagged] explicit (schematic) mitochondria, used when
    #: ``mito_volume_fraction`` is None: spheroid semi-axes (x, radial) centred on
    #: interior Z-lines at (y, z) offsets ``imf_positions``.
    imf_semi_axes: tuple[float, float] = (0.3, 0.35)
    imf_positions: tuple[tuple[float, float], ...] = ((1.1, 0.0), (-1.1, 0.0), (0.0, 1.1))
    #: [flagged] subsarcolemmal mitochondria (explicit layout: under the NMJ, +z
    #: side): semi-axes, x positions as fractions of the segment; ``ss_gap`` (both
    #: layouts) is the gap to the sarcolemma.
    ss_semi_axes: tuple[float, float] = (0.5, 0.3)
    ss_x_fractions: tuple[float, ...] = (0.25, 0.75)
    ss_gap: float = 0.15
    #: [flagged] intermembrane-space thickness; the real IMS is tens of nm, far
    #: below a voxel: it must be at least one voxel here.
    ims_thickness: float = 0.1
    #: NMJ on the +z side. Cleft about 50 nm (secondary source); the cleft is a
    #: region of the extracellular compartment, not a compartment. It is widened
    #: to two voxels when the spacing cannot resolve it (``effective_cleft_width``).
    nmj: bool = True
    cleft_width: float = 0.05
    #: [flagged] endplate patch half-length along x (fraction of the segment) and
    #: angular half-width (degrees). The mouse endplate area was not found (300-500
    #: µm² quoted, unverified): the demo patch is scaled to the segment.
    nmj_half_length_fraction: float = 0.25
    nmj_half_angle_deg: float = 45.0
    #: [flagged] postsynaptic fold area factor (folds multiply the membrane area);
    #: no literature value found, 1.0 = no folds.
    nmj_fold_factor: float = 1.0
    #: [flagged] nerve-terminal thickness (radial); terminal volume not found.
    terminal_thickness: float = 0.8
    #: [flagged] one nerve-terminal mitochondrion (spheroid semi-axes x, radial).
    terminal_mito_semi_axes: tuple[float, float] = (0.35, 0.25)
    #: analysis: subsarcolemmal shell depth 0.9 µm (subsarcolemmal mitochondrial
    #: layer, rat soleus [abs]); perinuclear shell, triad half-width and
    #: distance-band width [flagged analysis choices].
    subsarcolemmal_depth: float = 0.9
    perinuclear_depth: float = 0.5
    triad_half_width: float = 0.2
    band_width: float = 0.5
    #: points per axis in supersampled boundary voxels.
    supersample: int = 4


# -- solids ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spheroid:
    """Axis-aligned spheroid: semi-axis ``a`` along x, ``b`` along y and z."""

    c: tuple[float, float, float]
    a: float
    b: float

    def inside(self, x, y, z):
        return self.f(x, y, z) < 0

    def f(self, x, y, z):
        return (
            ((x - self.c[0]) / self.a) ** 2
            + ((y - self.c[1]) / self.b) ** 2
            + ((z - self.c[2]) / self.b) ** 2
            - 1.0
        )

    def grad(self, x, y, z):
        return np.stack(
            [
                2 * (x - self.c[0]) / self.a**2,
                2 * (y - self.c[1]) / self.b**2,
                2 * (z - self.c[2]) / self.b**2,
            ],
            axis=1,
        )

    def distance(self, x, y, z):
        g = np.linalg.norm(self.grad(x, y, z), axis=1)
        return np.abs(self.f(x, y, z)) / np.maximum(g, 1e-12)

    @property
    def volume(self) -> float:
        return 4.0 / 3.0 * math.pi * self.a * self.b * self.b

    @property
    def area(self) -> float:
        a, b = self.a, self.b
        if abs(a - b) < 1e-12 * b:
            return 4 * math.pi * b * b
        if a > b:  # prolate
            e = math.sqrt(1 - (b / a) ** 2)
            return 2 * math.pi * b * b * (1 + a / (b * e) * math.asin(e))
        e = math.sqrt(1 - (a / b) ** 2)  # oblate
        return 2 * math.pi * b * b * (1 + (1 - e * e) / e * math.atanh(e))

    def bounds(self):
        h = np.array([self.a, self.b, self.b])
        return np.asarray(self.c) - h, np.asarray(self.c) + h


@dataclass(frozen=True)
class _Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def inside(self, x, y, z):
        return (
            (x >= self.lo[0])
            & (x < self.hi[0])
            & (y >= self.lo[1])
            & (y < self.hi[1])
            & (z >= self.lo[2])
            & (z < self.hi[2])
        )

    @property
    def volume(self) -> float:
        d = np.subtract(self.hi, self.lo)
        return float(d[0] * d[1] * d[2])

    @property
    def area(self) -> float:
        d = np.subtract(self.hi, self.lo)
        return float(2 * (d[0] * d[1] + d[1] * d[2] + d[0] * d[2]))

    def bounds(self):
        return np.asarray(self.lo), np.asarray(self.hi)


@dataclass(frozen=True)
class _ShellSector:
    """``r1 <= r < r2`` around the x axis through (cy, cz), ``x0 <= x < x1``,
    ``|theta - theta0| <= phi`` (theta measured in the y-z plane from +y)."""

    cy: float
    cz: float
    r1: float
    r2: float
    x0: float
    x1: float
    theta0: float
    phi: float

    def _polar(self, y, z):
        r = np.hypot(y - self.cy, z - self.cz)
        th = np.arctan2(z - self.cz, y - self.cy)
        dth = np.angle(np.exp(1j * (th - self.theta0)))
        return r, th, dth

    def inside(self, x, y, z):
        r, _, dth = self._polar(y, z)
        return (
            (r >= self.r1)
            & (r < self.r2)
            & (x >= self.x0)
            & (x < self.x1)
            & (np.abs(dth) <= self.phi)
        )

    @property
    def volume(self) -> float:
        return self.phi * (self.r2**2 - self.r1**2) * (self.x1 - self.x0)

    @property
    def area(self) -> float:
        ln = self.x1 - self.x0
        curved = 2 * self.phi * (self.r1 + self.r2) * ln
        ends = 2 * self.phi * (self.r2**2 - self.r1**2)
        sides = 2 * (self.r2 - self.r1) * ln
        return curved + ends + sides

    def normal(self, x, y, z):
        r, th, dth = self._polar(y, z)
        d = np.stack(
            [
                np.abs(r - self.r1),
                np.abs(r - self.r2),
                np.abs(x - self.x0),
                np.abs(x - self.x1),
                r * np.abs(np.abs(dth) - self.phi),
            ],
            axis=1,
        )
        k = np.argmin(d, axis=1)
        n = np.zeros((x.size, 3))
        radial = np.stack([np.zeros_like(r), np.cos(th), np.sin(th)], axis=1)
        tang = np.stack([np.zeros_like(r), -np.sin(th), np.cos(th)], axis=1)
        n[k <= 1] = radial[k <= 1]
        n[(k == 2) | (k == 3), 0] = 1.0
        n[k == 4] = tang[k == 4]
        return n


def _nearest_spheroid_normal(solids):
    def normal(x, y, z):
        d = np.stack([s.distance(x, y, z) for s in solids], axis=1)
        k = np.argmin(d, axis=1)
        g = np.stack([s.grad(x, y, z) for s in solids], axis=1)
        return g[np.arange(x.size), k]

    return normal


def _nearest_box_normal(boxes):
    cen = np.array([(np.add(b.lo, b.hi)) / 2 for b in boxes])
    half = np.array([(np.subtract(b.hi, b.lo)) / 2 for b in boxes])

    def normal(x, y, z):
        p = np.stack([x, y, z], axis=1)
        d = np.linalg.norm(
            (p[:, None, :] - cen[None]) / half[None], axis=2, ord=np.inf
        )  # scaled Chebyshev distance: nearest box
        k = np.argmin(np.abs(d - 1.0), axis=1)
        rel = np.abs(p - cen[k]) / half[k]
        n = np.zeros_like(p)
        n[np.arange(x.size), np.argmax(rel, axis=1)] = 1.0
        return n

    return normal


# -- the segment ---------------------------------------------------------------------
class FiberSegment(Lattice):
    """A :class:`~redoxfield.geometry.Lattice` built by :func:`segment`.

    Extra attributes: ``parameters`` (:class:`FiberParameters`), ``analytic``
    (``{"volumes": {compartment: µm³}, "areas": {membrane: µm²}}``), ``axis_center``
    (y, z of the fibre axis), ``triad_planes`` (x of the T-planes),
    ``ttubule_moved_area`` (µm² of T-plane area given to the nearest cytosol voxel
    because neither the plane's voxel nor its x-neighbours are cytosol),
    ``solids`` (:class:`FiberSolids`),
    ``effective_cleft_width`` (µm: ``max(cleft_width, 2 h)``, see docs/geometry.md),
    ``volume_fractions`` (``{"analytic": {...}, "lattice": {...}}``: mitochondria,
    their share within 1 µm of the surface, terminal cisternae, longitudinal SR, SR,
    nucleus, as fractions of the fibre cylinder; the lattice share counts the
    mitochondrial voxels whose centre is within 1 µm of the sarcolemma).
    """

    parameters: FiberParameters
    analytic: dict[str, dict[str, float]]
    solids: FiberSolids

    def voxel_volumes(self) -> dict[str, float]:
        """Volume of each compartment on the lattice, µm³."""
        v = self.volumes
        ids = self.compartments
        return {n: float(v[ids == i].sum()) for i, n in enumerate(self.compartment_names)}

    def voxel_areas(self) -> dict[str, float]:
        """Area of each membrane on the lattice, µm²."""
        g = self.to_graph()
        assert g.membrane_areas is not None
        return {n: float(g.membrane_areas[:, m].sum()) for m, n in enumerate(g.membrane_names)}

    def relative_errors(self) -> dict[str, float]:
        """(lattice - analytic) / analytic for every compartment and membrane that
        the segment has (positive analytic volume or area: without NMJ there is no
        ``nerve_terminal``, ``nmj_postsynaptic`` or ``nerve_membrane``, and no entry
        for them). A structure that exists but got no voxels or faces reports -1."""
        return _relative_errors(self.analytic, self.voxel_volumes(), self.voxel_areas())


def _relative_errors(
    analytic: dict[str, dict[str, float]],
    volumes: dict[str, float],
    areas: dict[str, float],
) -> dict[str, float]:
    """(discrete - analytic) / analytic over the structures with an analytic value
    (the lattice and the mesh list every compartment name, present or not)."""
    out = {k: volumes.get(k, 0.0) / ref - 1 for k, ref in analytic["volumes"].items()}
    out.update({k: areas.get(k, 0.0) / ref - 1 for k, ref in analytic["areas"].items()})
    return out


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"fiber parameter {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise GeometryError(
            f"fiber parameter {name} = {value!r} must be "
            + ("non-negative" if allow_zero else "positive")
        )
    return v


def _check(p: FiberParameters) -> None:
    for name, value in asdict(p).items():
        if name in ("nmj",) or (value is None and name.endswith("volume_fraction")):
            continue
        if name == "fibre_type":
            if value is not None and value not in FIBRE_TYPES:
                raise GeometryError(
                    f"unknown fibre_type {value!r} (known: {', '.join(sorted(FIBRE_TYPES))})"
                )
        elif name in ("sarcomeres", "ss_per_ring"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GeometryError(f"fiber parameter {name} = {value!r} must be an integer >= 1")
        elif name == "supersample":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise GeometryError(f"fiber parameter supersample = {value!r} must be 1..16")
        elif name == "imf_positions":
            for pos in value:
                if len(pos) != 2:
                    raise GeometryError(f"fiber parameter imf_positions: bad entry {pos!r}")
        elif name == "ss_x_fractions":
            for f in value:
                if not 0 < float(f) < 1:
                    raise GeometryError(f"fiber parameter ss_x_fractions: {f!r} not in (0, 1)")
        elif isinstance(value, tuple):
            for i, v in enumerate(value):
                _positive(f"{name}[{i}]", v)
        else:
            zero_ok = name in (
                "ttubule_area_density",
                "nucleus_volume_fraction",
                "cleft_width",
                "mito_volume_fraction",
                "ss_mito_share",
                "tc_volume_fraction",
                "lsr_volume_fraction",
            )
            _positive(name, value, allow_zero=zero_ok)
    if p.a_band_length >= p.sarcomere_length:
        raise GeometryError(
            f"a_band_length = {p.a_band_length} must be shorter than sarcomere_length = "
            f"{p.sarcomere_length}"
        )
    if not 0 <= p.ss_mito_share <= 1:
        raise GeometryError(f"ss_mito_share = {p.ss_mito_share} must be in [0, 1]")
    if p.nucleus_volume_fraction >= 0.5:
        raise GeometryError(f"nucleus_volume_fraction = {p.nucleus_volume_fraction} is too large")
    h = p.spacing
    if p.ims_thickness < h:
        raise GeometryError(
            f"ims_thickness = {p.ims_thickness} um is thinner than one voxel (spacing {h} um): "
            "the intermembrane space would not be resolved"
        )
    for name, ax in (
        ("imf_semi_axes", p.imf_semi_axes),
        ("ss_semi_axes", p.ss_semi_axes),
        ("terminal_mito_semi_axes", p.terminal_mito_semi_axes),
    ):
        if min(ax) <= p.ims_thickness:
            raise GeometryError(
                f"{name} = {ax}: every semi-axis must exceed ims_thickness = {p.ims_thickness} "
                "(the matrix would vanish)"
            )
    if 2 * p.radius < 4 * h:
        raise GeometryError(f"radius = {p.radius} um is less than two voxels at spacing {h} um")


def parameters(**kwargs: Any) -> FiberParameters:
    """Validated :class:`FiberParameters` from keyword arguments, as :func:`segment`
    reads them: unknown names are an error, a ``fibre_type`` preset sets
    ``mito_volume_fraction`` unless that is given too."""
    known = set(FiberParameters.__dataclass_fields__)
    bad = [k for k in kwargs if k not in known]
    if bad:
        raise GeometryError(
            f"unknown fiber parameter {bad[0]!r} (known: {', '.join(sorted(known))})"
        )
    ft = kwargs.get("fibre_type")
    if ft is not None and ft in FIBRE_TYPES and "mito_volume_fraction" not in kwargs:
        kwargs = {**kwargs, "mito_volume_fraction": FIBRE_TYPES[ft][0]}
    p = replace(FiberParameters(), **kwargs)
    _check(p)
    return p


def segment(**kwargs: Any) -> FiberSegment:
    """Build a fibre segment. Keyword arguments: the fields of
    :class:`FiberParameters` (unknown names are an error). Returns a
    :class:`FiberSegment` with compartments :data:`COMPARTMENTS`, membranes
    :data:`MEMBRANES` and analysis regions (docs/geometry.md)."""
    return _build(place_solids(parameters(**kwargs)))


@dataclass(frozen=True)
class FiberSolids:
    """The analytic solids of one fibre segment (µm), from :func:`place_solids`: what
    the lattice builder voxelises and :mod:`redoxfield.geometry.mesher` meshes.

    ``shape``/``box``: the lattice (voxels, and its extent ``[0, bx] x [0, by] x
    [0, bz]``); ``(cy, cz)`` the fibre axis; ``planes`` the T-planes; ``mitos``/
    ``tcs``: (name, solid) lists (``tcs``: terminal cisternae and longitudinal SR);
    ``ims_solids``/``mat_solids``: outer and matrix spheroids of every mitochondrion
    (the nerve terminal's last); ``term``: the nerve terminal (a shell sector);
    ``cleft_solid``: the cleft under it (the extracellular shell sector between the
    sarcolemma and the terminal); ``cleft``: the effective cleft width (0 without
    NMJ)."""

    p: FiberParameters
    shape: tuple[int, int, int]
    box: tuple[float, float, float]
    Lx: float
    cy: float
    cz: float
    cleft: float
    planes: tuple[float, ...]
    nuc: _Spheroid | None
    mitos: tuple[tuple[str, _Spheroid], ...]
    tcs: tuple[tuple[str, _Box], ...]
    term: _ShellSector | None
    tmito: _Spheroid | None
    ims_solids: tuple[_Spheroid, ...]
    mat_solids: tuple[_Spheroid, ...]
    cleft_solid: _ShellSector | None

    @property
    def R(self) -> float:
        return float(self.p.radius)

    @property
    def fibre_volume(self) -> float:
        """Volume of the fibre cylinder, µm³ (the reference of the volume fractions)."""
        return math.pi * self.R * self.R * self.Lx

    def label(
        self, x: NDArray[np.float64], y: NDArray[np.float64], z: NDArray[np.float64]
    ) -> NDArray[np.int8]:
        """Compartment index (:data:`COMPARTMENTS`) at points; later solids paint
        over earlier ones (the organelles over the cytosol, the matrix over the
        IMS)."""
        lab = np.full(np.shape(x), EXT, dtype=np.int8)
        lab[np.hypot(y - self.cy, z - self.cz) < self.R] = CYTO
        if self.nuc is not None:
            lab[self.nuc.inside(x, y, z)] = NUC
        for s in self.ims_solids:
            lab[s.inside(x, y, z)] = IMS
        for s in self.mat_solids:
            lab[s.inside(x, y, z)] = MAT
        for _, s in self.tcs:
            lab[s.inside(x, y, z)] = SR
        if self.term is not None:
            inside_t = self.term.inside(x, y, z)
            if self.tmito is not None:
                inside_t &= ~self.tmito.inside(x, y, z)
            lab[inside_t] = NT
        return lab

    def _plane_holes(self, xt: float) -> tuple[list[tuple[float, float, float]], list[_Box]]:
        """The non-cytosol cross-sections of the plane x = xt inside the fibre: discs
        (cy, cz, radius) of the nucleus and mitochondria (a spheroid with equal y
        and z semi-axes cuts a disc), and the SR boxes the plane crosses. The
        placement checks keep them inside the fibre and apart (bounding boxes), so
        their areas add."""
        discs = []
        for s in ([self.nuc] if self.nuc is not None else []) + [m for _, m in self.mitos]:
            rho2 = s.b * s.b * (1.0 - ((xt - s.c[0]) / s.a) ** 2)
            if rho2 > 0:
                discs.append((s.c[1], s.c[2], math.sqrt(rho2)))
        # the same half-open rule in x as _Box.inside
        boxes = [b for _, b in self.tcs if b.lo[0] <= xt < b.hi[0]]
        return discs, boxes

    def plane_cytosol_area(self, xt: float) -> float:
        """Exact cytosol area (µm²) of the fibre's cross-section at x = xt."""
        discs, boxes = self._plane_holes(xt)
        holes = sum(math.pi * r * r for _, _, r in discs)
        holes += sum((b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]) for b in boxes)
        return math.pi * self.R * self.R - holes

    def plane_cytosol_areas(
        self, xt: float, y_edges: NDArray[np.float64], z_edges: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """(len(y_edges) - 1, len(z_edges) - 1) exact cytosol area (µm²) of the plane
        x = xt in each cell of the grid ``y_edges x z_edges``. The cells tile the
        cross-section, so over a grid that covers the fibre they sum to
        :meth:`plane_cytosol_area` (to rounding)."""
        y0, y1 = y_edges[:-1, None], y_edges[1:, None]
        z0, z1 = z_edges[None, :-1], z_edges[None, 1:]
        a = _disc_rect_areas(self.cy, self.cz, self.R, y0, y1, z0, z1)
        discs, boxes = self._plane_holes(xt)
        for dy, dz, r in discs:
            a = a - _disc_rect_areas(dy, dz, r, y0, y1, z0, z1)
        for b in boxes:
            wy = np.clip(np.minimum(y1, b.hi[1]) - np.maximum(y0, b.lo[1]), 0, None)
            wz = np.clip(np.minimum(z1, b.hi[2]) - np.maximum(z0, b.lo[2]), 0, None)
            a = a - wy * wz
        return np.maximum(a, 0.0)  # rounding only: the holes lie inside the disc

    def analytic(self) -> dict[str, dict[str, float]]:
        """Exact volume of every compartment and area of every membrane present:
        ``{"volumes": {compartment: µm³}, "areas": {membrane: µm²}}``."""
        p, R, Lx = self.p, self.R, self.Lx
        vol_fibre = self.fibre_volume
        term, tmito, nuc = self.term, self.tmito, self.nuc
        v_box = self.box[0] * self.box[1] * self.box[2]
        v_ims = sum(s.volume for s in self.ims_solids) - sum(s.volume for s in self.mat_solids)
        v_nuc = nuc.volume if nuc is not None else 0.0
        v_sr = sum(b.volume for _, b in self.tcs)
        v_fib_mito = sum(s.volume for _, s in self.mitos)
        v_nt = (term.volume - tmito.volume) if (term is not None and tmito is not None) else 0.0
        volumes = {
            "extracellular": v_box - vol_fibre - (term.volume if term is not None else 0.0),
            "cytosol": vol_fibre - v_nuc - v_fib_mito - v_sr,
            "nucleus": v_nuc,
            "mito_ims": v_ims,
            "mito_matrix": sum(s.volume for s in self.mat_solids),
            "sr_lumen": v_sr,
            "nerve_terminal": v_nt,
        }
        # T-system area per µm² of each T-plane (two planes per sarcomere)
        sigma = p.ttubule_area_density * p.sarcomere_length / 2
        foot = (2 * term.phi * R * (term.x1 - term.x0)) if term is not None else 0.0
        areas = {
            "sarcolemma": 2 * math.pi * R * Lx - foot,
            "nmj_postsynaptic": foot * p.nmj_fold_factor,
            "ttubule": sum(sigma * self.plane_cytosol_area(xt) for xt in self.planes),
            "sr_membrane": sum(b.area for _, b in self.tcs),
            "mito_outer": sum(s.area for s in self.ims_solids),
            "mito_inner": sum(s.area for s in self.mat_solids),
            "nuclear_envelope": nuc.area if nuc is not None else 0.0,
            "nerve_membrane": term.area if term is not None else 0.0,
        }
        return {
            "volumes": {k: v for k, v in volumes.items() if v > 0},
            "areas": {k: a for k, a in areas.items() if a > 0},
        }


def _disc_rect_areas(
    cy: float, cz: float, r: float, y0: Any, y1: Any, z0: Any, z1: Any
) -> NDArray[np.float64]:
    """Exact area of the disc (centre (cy, cz), radius r) inside the rectangles
    ``[y0, y1] x [z0, z1]`` (arrays broadcast), by inclusion-exclusion over the
    corners of G(u, v) = signed area of the disc in ``[0, u] x [0, v]``."""

    def seg(t: NDArray[np.float64]) -> NDArray[np.float64]:
        # integral of sqrt(r² - s²) ds from 0 to t (t in [0, r])
        return 0.5 * (t * np.sqrt(np.maximum(r * r - t * t, 0.0)) + r * r * np.arcsin(t / r))

    def g(u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
        sign = np.sign(u) * np.sign(v)
        u, v = np.minimum(np.abs(u), r), np.minimum(np.abs(v), r)
        u_arc = np.sqrt(np.maximum(r * r - v * v, 0.0))  # where the arc meets height v
        q = np.where(u * u + v * v <= r * r, u * v, v * u_arc + seg(u) - seg(u_arc))
        return sign * q

    y0, y1, z0, z1 = (np.asarray(t, dtype=float) for t in (y0, y1, z0, z1))
    return g(y1 - cy, z1 - cz) - g(y0 - cy, z1 - cz) - g(y1 - cy, z0 - cz) + g(y0 - cy, z0 - cz)


def place_solids(p: FiberParameters) -> FiberSolids:
    """Place every solid of the segment for validated parameters (:func:`parameters`):
    the lattice box, the nucleus, the mitochondria and SR (the volume-fraction layout
    of :func:`_layout`, or the explicit one), the nerve terminal with its
    mitochondrion and the cleft; then check that every organelle lies inside the
    fibre and apart from the others. The one placement used by :func:`segment` and
    by the tet mesher, so that lattice and mesh describe the same fibre."""
    h, R, Ls = p.spacing, p.radius, p.sarcomere_length
    Lx = p.sarcomeres * Ls
    cleft = max(p.cleft_width, 2 * h)
    top_extra = (cleft + p.terminal_thickness) if p.nmj else 0.0
    half = R + p.ecs_margin
    ny = int(math.ceil(2 * half / h - 1e-9))
    nz_lo = int(math.ceil(half / h - 1e-9))
    nz_hi = int(math.ceil((half + top_extra) / h - 1e-9))
    nx = int(round(Lx / h))
    if abs(nx * h - Lx) > 1e-6 * Lx:
        raise GeometryError(
            f"the segment length {Lx:g} um ({p.sarcomeres} x {Ls:g}) is not a multiple of the "
            f"spacing {h:g} um"
        )
    # The axis on a voxel face in z (and in y when ny is even): the lattice is
    # symmetric about it.
    cy = ny * h / 2
    cz = nz_lo * h
    vol_fibre = math.pi * R * R * Lx
    nuc = None
    if p.nucleus_volume_fraction > 0:
        v_n = p.nucleus_volume_fraction * vol_fibre
        b = (v_n / (4 / 3 * math.pi * p.nucleus_aspect)) ** (1 / 3)
        nuc = _Spheroid((Lx / 2, cy, cz - (R - p.nucleus_gap - b)), p.nucleus_aspect * b, b)
    i_band_half = (Ls - p.a_band_length) / 2
    planes = sorted(
        s * Ls + off for s in range(p.sarcomeres) for off in (i_band_half, Ls - i_band_half)
    )
    pitch = 2 * p.myofibril_radius
    mitos: list[tuple[str, _Spheroid]] = []
    tcs: list[tuple[str, _Box]] = []
    if p.mito_volume_fraction is None:
        ax, ar = p.imf_semi_axes
        for k in range(1, p.sarcomeres):
            for dy, dz in p.imf_positions:
                mitos.append(
                    (
                        f"imf mitochondrion at Z-line {k}",
                        _Spheroid((k * Ls, cy + dy, cz + dz), ax, ar),
                    )
                )
        ax, ar = p.ss_semi_axes
        for f in p.ss_x_fractions:
            mitos.append(
                (
                    f"subsarcolemmal mitochondrion at x = {f * Lx:g}",
                    _Spheroid((f * Lx, cy, cz + R - p.ss_gap - ar), ax, ar),
                )
            )
    if p.tc_volume_fraction is None:
        grid = [pitch / 2 * np.array([sy, sz]) for sy in (-1, 1) for sz in (-1, 1)]
        w2, t2 = p.tc_width / 2, p.tc_thickness / 2
        for xt in planes:
            for gy, gz in grid:
                tcs.append(
                    (
                        f"terminal cisterna at x = {xt:g}",
                        _Box(
                            (xt - t2, cy + gy - w2, cz + gz - w2),
                            (xt + t2, cy + gy + w2, cz + gz + w2),
                        ),
                    )
                )
    if p.mito_volume_fraction is not None or p.tc_volume_fraction is not None:
        mitos_d, tcs_d = _layout(p, vol_fibre, planes, cy, cz, nuc, mitos + tcs)
        mitos += mitos_d
        tcs += tcs_d
    term = tmito = cleft_solid = None
    if p.nmj:
        hl = p.nmj_half_length_fraction * Lx
        phi = math.radians(p.nmj_half_angle_deg)
        if not 0 < p.nmj_half_length_fraction <= 0.5:
            raise GeometryError("nmj_half_length_fraction must be in (0, 0.5]")
        if not 0 < phi < math.pi:
            raise GeometryError("nmj_half_angle_deg must be in (0, 180)")
        r1, r2 = R + cleft, R + cleft + p.terminal_thickness
        term = _ShellSector(cy, cz, r1, r2, Lx / 2 - hl, Lx / 2 + hl, math.pi / 2, phi)
        cleft_solid = _ShellSector(cy, cz, R, r1, Lx / 2 - hl, Lx / 2 + hl, math.pi / 2, phi)
        ax, ar = p.terminal_mito_semi_axes
        tmito = _Spheroid((Lx / 2, cy, cz + R + cleft + p.terminal_thickness / 2), ax, ar)
    _check_placement(nuc, mitos, tcs, term, tmito, Lx, R, cy, cz)
    t = p.ims_thickness
    ims = [s for _, s in mitos] + ([tmito] if tmito is not None else [])
    mats = [_Spheroid(s.c, s.a - t, s.b - t) for s in ims]
    return FiberSolids(
        p=p,
        shape=(nx, ny, nz_lo + nz_hi),
        box=(nx * h, ny * h, (nz_lo + nz_hi) * h),
        Lx=Lx,
        cy=cy,
        cz=cz,
        cleft=cleft if p.nmj else 0.0,
        planes=tuple(planes),
        nuc=nuc,
        mitos=tuple(mitos),
        tcs=tuple(tcs),
        term=term,
        tmito=tmito,
        ims_solids=tuple(ims),
        mat_solids=tuple(mats),
        cleft_solid=cleft_solid,
    )


def _check_placement(
    nuc: _Spheroid | None,
    mitos: list[tuple[str, _Spheroid]],
    tcs: list[tuple[str, _Box]],
    term: _ShellSector | None,
    tmito: _Spheroid | None,
    Lx: float,
    R: float,
    cy: float,
    cz: float,
) -> None:
    """Every organelle inside the fibre, no two bounding boxes overlapping
    (conservative), the terminal's mitochondrion inside the terminal. The explicit
    layout can break these; the volume-fraction layout should not (it drops sites
    that would), so this also guards it."""
    inner: list[tuple[str, Any]] = ([("nucleus", nuc)] if nuc is not None else []) + [
        *mitos,
        *tcs,
    ]
    eps = 1e-9
    for name, sol in inner:
        lo, hi = sol.bounds()
        if isinstance(sol, _Spheroid):
            r_out = math.hypot(sol.c[1] - cy, sol.c[2] - cz) + sol.b
        else:
            r_out = max(math.hypot(y - cy, z - cz) for y in (lo[1], hi[1]) for z in (lo[2], hi[2]))
        if lo[0] < -eps or hi[0] > Lx + eps or r_out > R + eps:
            raise GeometryError(
                f"{name} lies outside the fibre (x in [{lo[0]:.3g}, {hi[0]:.3g}] um, reaches "
                f"r = {r_out:.3g} um; fibre: x in [0, {Lx:g}], r < {R:g})"
            )
    for a in range(len(inner)):
        for b in range(a + 1, len(inner)):
            if _bbox_overlap(inner[a][1], inner[b][1]):
                raise GeometryError(f"{inner[a][0]} overlaps {inner[b][0]} (bounding boxes)")
    if tmito is not None and term is not None:
        lo, hi = tmito.bounds()
        rr = tmito.c[2] - cz
        fits = term.r1 + eps < rr - tmito.b and rr + tmito.b < term.r2 - eps
        fits = fits and lo[0] >= term.x0 and hi[0] <= term.x1
        if not fits or tmito.b > (rr - tmito.b) * math.sin(term.phi):
            raise GeometryError("the nerve-terminal mitochondrion does not fit in the terminal")


def _build(sol: FiberSolids) -> FiberSegment:
    p = sol.p
    h, R, Ls = p.spacing, p.radius, p.sarcomere_length
    cy, cz, shape = sol.cy, sol.cz, sol.shape
    cleft = sol.cleft
    planes = list(sol.planes)
    nuc, term = sol.nuc, sol.term
    mitos, tcs = list(sol.mitos), list(sol.tcs)
    ims_solids, mat_solids = list(sol.ims_solids), list(sol.mat_solids)
    vol_fibre = sol.fibre_volume
    label = sol.label
    space = FiberSegment(shape=shape, spacing=h)
    space.parameters = p
    space.solids = sol
    space.axis_center = (cy, cz)
    space.triad_planes = tuple(planes)
    space.effective_cleft_width = cleft if p.nmj else 0.0
    n = space.n_subvolumes
    c = space.centers
    x, y, z = c[:, 0], c[:, 1], c[:, 2]

    # Voxel labels: centres and corners; supersample the voxels whose corners differ.
    lab_c = label(x, y, z)
    gx, gy, gz = (np.arange(k + 1) * h for k in shape)
    Z, Y, X = np.meshgrid(gz, gy, gx, indexing="ij")
    lab_k = label(X.ravel(), Y.ravel(), Z.ravel()).reshape(shape[2] + 1, shape[1] + 1, shape[0] + 1)
    mixed = np.zeros((shape[2], shape[1], shape[0]), dtype=bool)
    ref = lab_c.reshape(shape[2], shape[1], shape[0])
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                sl = lab_k[dz : dz + shape[2], dy : dy + shape[1], dx : dx + shape[0]]
                mixed |= sl != ref
    mixed = mixed.ravel()
    ids = lab_c.astype(np.int64)
    s = p.supersample
    off = (np.arange(s) + 0.5) / s - 0.5
    oz, oy, ox = np.meshgrid(off, off, off, indexing="ij")
    sub = np.stack([ox.ravel(), oy.ravel(), oz.ravel()], axis=1) * h  # (s^3, 3)
    idx = np.nonzero(mixed)[0]
    chunk = max(1, 2_000_000 // sub.shape[0])
    for k0 in range(0, idx.size, chunk):
        ii = idx[k0 : k0 + chunk]
        pts = c[ii][:, None, :] + sub[None]
        lab_s = label(pts[..., 0].ravel(), pts[..., 1].ravel(), pts[..., 2].ravel())
        lab_s = lab_s.reshape(ii.size, -1).astype(np.int64)
        counts = np.zeros((ii.size, len(COMPARTMENTS)), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(ii.size), lab_s.shape[1]), lab_s.ravel()), 1)
        # Majority; ties go to the label at the voxel centre, then the lowest label.
        best = counts.max(axis=1)
        centre_wins = counts[np.arange(ii.size), lab_c[ii]] == best
        ids[ii] = np.where(centre_wins, lab_c[ii], np.argmax(counts, axis=1))
    # The fibre surface: a majority vote per voxel gives a digital disc whose area
    # swings by +-1.7 % with R/h (at 10-15 voxels across the radius: a few boundary
    # pixels more or less). Instead the cross-section is the N = round(pi R² / h²)
    # pixels (voxel columns) that the fibre fills most (exact fill fractions), so the
    # lattice fibre volume is pi R² L to half a voxel per slice (docs/geometry.md).
    # Ties in the fill fraction (mirror images) go by column order: the last tie
    # group may be taken in part, breaking the mirror symmetry by a few pixels.
    y_edges = np.arange(shape[1] + 1) * h
    z_edges = np.arange(shape[2] + 1) * h
    fill = np.round(
        _disc_rect_areas(
            cy, cz, R, y_edges[:-1, None], y_edges[1:, None], z_edges[None, :-1], z_edges[None, 1:]
        )
        / (h * h),
        9,
    )
    n_disc = round(math.pi * R * R / (h * h))
    disc = np.zeros(fill.size, dtype=bool)
    disc[np.argsort(-fill.ravel(), kind="stable")[:n_disc]] = True
    disc = disc.reshape(fill.shape)
    vj = np.arange(n) // shape[0] % shape[1]
    vk = np.arange(n) // (shape[0] * shape[1])
    in_disc = disc[vj, vk]
    # Only voxels the vote made cytosol or extracellular change side: an organelle
    # voxel at the surface (an organelle closer to it than a voxel) keeps its label.
    edge = ((fill > 0) & (fill < 1))[vj, vk] & ((ids == EXT) | (ids == CYTO))
    ids[edge] = np.where(in_disc[edge], CYTO, EXT)
    space.set_compartments(ids, COMPARTMENTS)

    # Membranes ----------------------------------------------------------------------
    def radial(x, y, z):
        return np.stack([np.zeros_like(y), y - cy, z - cz], axis=1)

    if p.nmj and term is not None:
        th = np.angle(np.exp(1j * (np.arctan2(z - cz, y - cy) - math.pi / 2)))
        foot = (np.abs(th) <= term.phi) & (x >= term.x0) & (x < term.x1)
    else:
        foot = np.zeros(n, dtype=bool)
    space.membrane("sarcolemma", ("cytosol", "extracellular"), normal=radial, where=~foot)
    if foot.any():
        space.membrane(
            "nmj_postsynaptic",
            ("cytosol", "extracellular"),
            normal=radial,
            where=foot,
            area_factor=p.nmj_fold_factor,
        )
    # T-tubules: sub-voxel area in the planes. The area of each voxel column is the
    # exact cytosol area of its footprint in the plane, so the lattice total equals
    # the analytic one. The T-tubule membrane faces the cytosol: a column whose voxel
    # in the plane is not cytosol (majority labels differ from the footprint at
    # organelle rims) gives its area to a cytosol x-neighbour (the plane lies on or
    # in those voxels), else to the nearest cytosol voxel.
    sigma_plane = p.ttubule_area_density * Ls / 2  # µm² per µm² of cross-section
    t_area = np.zeros(n)
    moved = 0.0
    cyto_tree = None
    for xt in planes:
        col = sigma_plane * sol.plane_cytosol_areas(xt, y_edges, z_edges)
        jj, kk = np.nonzero(col)
        area = col[jj, kk]
        i_x = min(int(math.floor(xt / h + 1e-9)), shape[0] - 1)
        vox = i_x + shape[0] * (jj + shape[1] * kk)
        ok = ids[vox] == CYTO
        for alt in (i_x - 1, i_x + 1):
            if 0 <= alt < shape[0]:
                alt_vox = alt + shape[0] * (jj + shape[1] * kk)
                use = ~ok & (ids[alt_vox] == CYTO)
                vox = np.where(use, alt_vox, vox)
                ok |= use
        if not ok.all():
            if cyto_tree is None:
                from scipy.spatial import cKDTree

                cyto_idx = np.nonzero(ids == CYTO)[0]
                cyto_tree = cKDTree(c[cyto_idx])
            pts = np.stack(
                [np.full(int((~ok).sum()), xt), (jj[~ok] + 0.5) * h, (kk[~ok] + 0.5) * h], axis=1
            )
            vox[~ok] = cyto_idx[cyto_tree.query(pts)[1]]
            moved += float(area[~ok].sum())
        np.add.at(t_area, vox, area)
    if p.ttubule_area_density > 0:
        space.membrane_area("ttubule", t_area)
    space.ttubule_moved_area = moved
    if tcs:
        space.membrane(
            "sr_membrane", ("sr_lumen", "cytosol"), normal=_nearest_box_normal([b for _, b in tcs])
        )
    pairs = [("mito_ims", "cytosol")] + ([("mito_ims", "nerve_terminal")] if p.nmj else [])
    if ims_solids:  # the nearest-solid normals need at least one mitochondrion
        space.membrane("mito_outer", pairs, normal=_nearest_spheroid_normal(ims_solids))
        space.membrane(
            "mito_inner", ("mito_matrix", "mito_ims"), normal=_nearest_spheroid_normal(mat_solids)
        )
    if nuc is not None:
        space.membrane("nuclear_envelope", ("nucleus", "cytosol"), normal=nuc.grad)
    if term is not None:
        space.membrane("nerve_membrane", ("nerve_terminal", "extracellular"), normal=term.normal)

    # Analytic values ------------------------------------------------------------------
    space.analytic = sol.analytic()
    v_nuc = nuc.volume if nuc is not None else 0.0
    v_sr = sum(b.volume for _, b in tcs)
    v_fib_mito = sum(s.volume for _, s in mitos)
    # Volume fractions of the fibre cylinder (analytic, and on the lattice).
    v_ss = sum(m.volume for name, m in mitos if name.startswith("subsarcolemmal"))
    v_tc = sum(b.volume for name, b in tcs if name.startswith("terminal"))
    frac = {
        "mitochondria": v_fib_mito / vol_fibre,
        "subsarcolemmal_share": v_ss / v_fib_mito if v_fib_mito > 0 else 0.0,
        "terminal_cisternae": v_tc / vol_fibre,
        "longitudinal_sr": (v_sr - v_tc) / vol_fibre,
        "sr": v_sr / vol_fibre,
        "nucleus": v_nuc / vol_fibre,
    }
    in_fib = in_disc
    vox_v = space.volumes
    is_mito = in_fib & ((ids == IMS) | (ids == MAT))
    near = is_mito & (np.hypot(y - cy, z - cz) >= R - SS_LAYER_DEPTH)
    in_tc = np.zeros(n, dtype=bool)
    for name, b in tcs:
        if name.startswith("terminal"):
            in_tc |= b.inside(x, y, z)
    is_sr = ids == SR
    v_m = float(vox_v[is_mito].sum())
    space.volume_fractions = {
        "analytic": frac,
        "lattice": {
            "mitochondria": v_m / vol_fibre,
            "subsarcolemmal_share": float(vox_v[near].sum()) / v_m if v_m > 0 else 0.0,
            "terminal_cisternae": float(vox_v[is_sr & in_tc].sum()) / vol_fibre,
            "longitudinal_sr": float(vox_v[is_sr & ~in_tc].sum()) / vol_fibre,
            "sr": float(vox_v[is_sr].sum()) / vol_fibre,
            "nucleus": float(vox_v[ids == NUC].sum()) / vol_fibre,
        },
    }

    # Regions (voxel-centre tests) -----------------------------------------------------
    # The fibre is the disc the compartments use; depth below the surface from the
    # voxel centre (0 for disc voxels whose centre lies just outside r = R).
    r = np.hypot(y - cy, z - cz)
    in_fibre = in_disc
    regions: dict[str, NDArray[np.bool_]] = {
        "fibre": in_fibre,
        "subsarcolemmal": in_fibre & (R - r <= p.subsarcolemmal_depth),
        "triad": in_fibre
        & (np.min(np.abs(x[:, None] - np.asarray(planes)[None]), axis=1) <= p.triad_half_width),
    }
    if nuc is not None:
        d = p.perinuclear_depth
        grown = _Spheroid(nuc.c, nuc.a + d, nuc.b + d)
        regions["perinuclear"] = in_fibre & grown.inside(x, y, z) & (ids != NUC)
    if term is not None:
        regions["nmj"] = foot & in_fibre & (r >= R - p.subsarcolemmal_depth)
        regions["cleft"] = foot & (r >= R) & (r < R + cleft + 1e-9) & (ids == EXT)
        if not regions["cleft"].any():  # cleft thinner than the voxel centres reach
            regions["cleft"] = foot & (ids == EXT) & (r < R + max(cleft, h))
    edges = np.arange(0.0, R + 1e-9, p.band_width)
    for lo in edges:
        hi = lo + p.band_width
        depth = np.maximum(R - r, 0.0)
        regions[f"band_{lo:g}-{hi:g}um"] = in_fibre & (depth >= lo) & (depth < hi)
    for name, mask in regions.items():
        if mask.any():
            space.region(name, mask)
    space._graph = None
    return space


#: depth of the subsarcolemmal layer that holds about a third of the mitochondria
#: (within 1 µm of the surface, Eisenberg, Kuda & Peter 1974 [abs]).
SS_LAYER_DEPTH = 1.0


def _bbox_overlap(s1: Any, s2: Any, eps: float = 1e-9) -> bool:
    lo_i, hi_i = s1.bounds()
    lo_j, hi_j = s2.bounds()
    return bool(np.all(lo_i < hi_j - eps) and np.all(lo_j < hi_i - eps))


def _layout(
    p: FiberParameters,
    vol_fibre: float,
    planes: list[float],
    cy: float,
    cz: float,
    nuc: _Spheroid | None,
    fixed: list[tuple[str, Any]],
) -> tuple[list[tuple[str, _Spheroid]], list[tuple[str, _Box]]]:
    """Mitochondria and SR sized from the volume fractions (docs/geometry.md).

    Sites are tried in a fixed order (nucleus, inter-myofibrillar mitochondria,
    subsarcolemmal mitochondria, terminal cisternae, longitudinal SR); a site whose
    solid would leave the fibre or whose bounding box would meet one already placed
    is dropped and the volume is shared among the remaining sites (sizes are
    recomputed until the set of sites is stable). SR strips that this leaves with no
    site are grown where there is room instead (``strips`` below)."""
    h, R, Ls = p.spacing, p.radius, p.sarcomere_length
    Lx = p.sarcomeres * Ls
    eps = 1e-9
    placed: list[Any] = ([nuc] if nuc is not None else []) + [s for _, s in fixed]
    pitch = 2 * p.myofibril_radius
    n_pts = int(math.ceil(R / pitch)) + 1
    points = sorted(
        (
            ((i + 0.5) * pitch, (j + 0.5) * pitch)
            for i in range(-n_pts, n_pts)
            for j in range(-n_pts, n_pts)
        ),
        key=lambda q: (round(math.hypot(*q), 9), q),
    )

    def free(solid: Any) -> bool:
        lo, hi = solid.bounds()
        if lo[0] < -eps or hi[0] > Lx + eps:
            return False
        if isinstance(solid, _Spheroid):
            r_out = math.hypot(solid.c[1] - cy, solid.c[2] - cz) + solid.b
        else:
            r_out = max(math.hypot(y - cy, z - cz) for y in (lo[1], hi[1]) for z in (lo[2], hi[2]))
        if r_out > R - eps:
            return False
        return not any(_bbox_overlap(solid, q) for q in placed)

    def fit(make, sites):
        """``make(i, site, n)`` at every site; drop the sites whose solid is not
        free and size again for the survivors, until all fit."""
        while sites:
            got = [(site, make(i, site, len(sites))) for i, site in enumerate(sites)]
            ok = [site for site, m in got if m is not None and free(m[1])]
            if len(ok) == len(sites):
                return [m for _, m in got if m is not None]
            sites = ok
        return []

    mitos: list[tuple[str, _Spheroid]] = []
    if p.mito_volume_fraction:
        v_mito = p.mito_volume_fraction * vol_fibre
        v_ss = p.ss_mito_share * v_mito
        v_imf = v_mito - v_ss
        if v_imf > 0:
            b = p.imf_radius
            core = R - SS_LAYER_DEPTH
            sites = [
                (k, q) for k in range(1, p.sarcomeres) for q in points if math.hypot(*q) + b <= core
            ]

            def make_imf(i, site, n):
                k, (dy, dz) = site
                a = v_imf / n / (4 / 3 * math.pi * b * b)
                return (
                    f"imf mitochondrion at Z-line {k}",
                    _Spheroid((k * Ls, cy + dy, cz + dz), a, b),
                )

            got = fit(make_imf, sites)
            if not got:
                raise GeometryError(
                    "no room for inter-myofibrillar mitochondria (they sit on interior Z-lines, "
                    f"deeper than {SS_LAYER_DEPTH:g} um): use more sarcomeres, a larger radius, "
                    "ss_mito_share = 1 or mito_volume_fraction = None"
                )
            mitos += got
            placed.extend(s for _, s in got)
        if v_ss > 0:
            sites = [
                ((s + 0.5) * Ls, 2 * math.pi * k / p.ss_per_ring)
                for s in range(p.sarcomeres)
                for k in range(p.ss_per_ring)
            ]

            def make_ss(i, site, n):
                x0, th = site
                b = (v_ss / n / (4 / 3 * math.pi * p.ss_aspect)) ** (1 / 3)
                rc = R - p.ss_gap - b
                c = (x0, cy + rc * math.cos(th), cz + rc * math.sin(th))
                return (
                    f"subsarcolemmal mitochondrion at x = {x0:g}",
                    _Spheroid(c, p.ss_aspect * b, b),
                )

            got = fit(make_ss, sites)
            if not got:
                raise GeometryError("no room for subsarcolemmal mitochondria")
            mitos += got
            placed.extend(s for _, s in got)
        for name, m in mitos:
            if min(m.a, m.b) <= p.ims_thickness:
                raise GeometryError(
                    f"{name}: semi-axes ({m.a:.3g}, {m.b:.3g}) um do not exceed ims_thickness = "
                    f"{p.ims_thickness} (the matrix would vanish): raise mito_volume_fraction "
                    "or lower the number of sites"
                )

    def snap(v: float) -> float:
        return round(v / h) * h

    w_vox = max(1, round(p.sr_strip_width / h))
    srs: list[tuple[str, _Box]] = []

    def strips(label, x0, x1, volume, sites, param):
        """Strips of ``w_vox`` voxels (z) and whole-voxel lengths (y), x0..x1, one per
        site, ``n_cells`` voxel lengths in all: equal lengths where they fit (the
        volume of the sites that do not is shared again among the others); if that
        leaves no site, strips grown one voxel length at a time where there is room
        (an error naming how much fits if the sites fill up first)."""
        cell = (x1 - x0) * w_vox * h * h
        n_cells = round(volume / cell)

        def box(site, ln):
            dy, dz = site
            y0 = snap(cy + dy - ln * h / 2)
            z0 = snap(cz + dz - w_vox * h / 2)
            return _Box((x0, y0, z0), (x1, y0 + ln * h, z0 + w_vox * h))

        def make(i, site, n):
            ln = n_cells // n + (1 if i < n_cells % n else 0)
            return (label, box(site, ln)) if ln >= 1 else None

        got = fit(make, sites)
        if got or n_cells < 1:
            return got
        # Dropping every site whose equal strip does not fit lengthens the strips of
        # the rest, which can then fail in turn until no site is left although the
        # sites together have room (r = 1.7 um, one sarcomere: 21 voxel lengths of
        # longitudinal SR asked, room for 25). Grow the strips one voxel length at a
        # time instead, always the shortest that can still grow (ties: site order),
        # so the lengths stay as equal as the room allows; a strip stops when it would
        # leave the fibre or meet a placed solid or another strip.
        lengths = [0] * len(sites)
        stuck = [False] * len(sites)
        for _ in range(n_cells):
            for i in sorted(range(len(sites)), key=lambda k: (lengths[k], k)):
                if stuck[i]:
                    continue
                trial = box(sites[i], lengths[i] + 1)
                clash = any(
                    lengths[k] and _bbox_overlap(trial, box(sites[k], lengths[k]))
                    for k in range(len(sites))
                    if k != i
                )
                if not clash and free(trial):
                    lengths[i] += 1
                    break
                stuck[i] = True
            else:
                got_cells = sum(lengths)
                frac = getattr(p, param)
                raise GeometryError(
                    f"no room for {label}: {param} = {frac:g} asks for {n_cells} voxel "
                    f"lengths of {w_vox * h:g} x {w_vox * h:g} x {x1 - x0:.3g} um strips "
                    f"({volume:.3g} um^3) on the inter-myofibrillar sites, which hold "
                    f"{got_cells}: lower {param} to {frac * got_cells / n_cells:.3g} or less, "
                    "or use a larger radius"
                )
        return [(label, box(site, ln)) for site, ln in zip(sites, lengths, strict=True) if ln]

    if p.tc_volume_fraction:
        t_vox = max(1, round(p.tc_thickness / h))
        v_plane = p.tc_volume_fraction * vol_fibre / len(planes)
        for xt in planes:
            x0 = snap(xt - t_vox * h / 2)
            got = strips(
                f"terminal cisterna at x = {xt:g}",
                x0,
                x0 + t_vox * h,
                v_plane,
                points,
                "tc_volume_fraction",
            )
            if not got:
                raise GeometryError(f"no room for terminal cisternae at x = {xt:g}")
            srs += got
            placed.extend(b for _, b in got)
    if p.lsr_volume_fraction:
        t_vox = max(1, round(p.tc_thickness / h))
        v_band = p.lsr_volume_fraction * vol_fibre / p.sarcomeres
        for k in range(p.sarcomeres):
            xa, xb = planes[2 * k], planes[2 * k + 1]
            x0 = snap(xa - t_vox * h / 2) + (t_vox + 1) * h
            x1 = snap(xb - t_vox * h / 2) - h
            if x1 - x0 < h - eps:
                raise GeometryError("no room for longitudinal SR in the A-band")
            got = strips(
                f"longitudinal SR at x = {(xa + xb) / 2:g}",
                x0,
                x1,
                v_band,
                points,
                "lsr_volume_fraction",
            )
            if not got:
                raise GeometryError(f"no room for longitudinal SR in sarcomere {k}")
            srs += got
            placed.extend(b for _, b in got)
    return mitos, srs
