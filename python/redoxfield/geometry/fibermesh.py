"""The fibre segment of :func:`redoxfield.fiber.segment` as analytic solids, and as
a tetrahedral mesh: :func:`fibre_solids`, :class:`FiberMesh`,
:func:`load_fiber_segment`.

The lattice builder (``fiber.segment``) and the gmsh mesher
(:func:`redoxfield.geometry.mesher.fiber_segment`) must describe the *same* fibre:
:func:`fibre_solids` rebuilds the solids exactly as ``fiber._build`` places them
(the box, the nucleus, the volume-fraction layout of ``fiber._layout`` or the
explicit one, the nerve terminal and its mitochondrion), with ``fiber``'s own solid
classes and constants, so that every literature number stays in fiber.py.
``tests/test_mesh_fibre.py`` checks that the analytic volumes and areas computed
here equal ``fiber.segment(...).analytic`` for the same parameters (a drift guard:
the two copies of the placement logic cannot part silently).

What a mesh cannot resolve follows the lattice: the synaptic cleft has the
lattice's width ``max(cleft_width, 2 spacing)`` (``effective_cleft_width``), the SR
strips are snapped to the lattice spacing as on the lattice (the layout depends on
``spacing``), and the T-tubules are sub-tet membrane area in the T-planes (below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError
from .tetmesh import TetMesh

__all__ = [
    "FIBRE_INNER",
    "FiberMesh",
    "FibreSolids",
    "fibre_solids",
    "load_fiber_segment",
    "plane_cut_areas",
]

#: Inner compartment of each fibre membrane: the side whose subvolumes hold the
#: membrane's area (the first of ``between=`` in fiber.py).
FIBRE_INNER = {
    "sarcolemma": "cytosol",
    "nmj_postsynaptic": "cytosol",
    "sr_membrane": "sr_lumen",
    "mito_outer": "mito_ims",
    "mito_inner": "mito_matrix",
    "nuclear_envelope": "nucleus",
    "nerve_membrane": "nerve_terminal",
}


@dataclass(frozen=True)
class FibreSolids:
    """The solids of one fibre segment (µm), placed as ``fiber.segment`` places them.

    ``box``: the lattice's box ``[0, bx] x [0, by] x [0, bz]``; ``(cy, cz)`` the
    fibre axis; ``planes`` the T-planes; ``mitos``/``tcs``: (name, solid) lists;
    ``ims_solids``/``mat_solids``: outer and matrix spheroids of every mitochondrion
    (the nerve terminal's last); ``term``: the nerve terminal (a shell sector);
    ``cleft_solid``: the cleft under it (the extracellular shell sector between the
    sarcolemma and the terminal)."""

    p: Any
    box: tuple[float, float, float]
    Lx: float
    cy: float
    cz: float
    cleft: float
    planes: tuple[float, ...]
    nuc: Any
    mitos: tuple[tuple[str, Any], ...]
    tcs: tuple[tuple[str, Any], ...]
    term: Any
    tmito: Any
    ims_solids: tuple[Any, ...]
    mat_solids: tuple[Any, ...]
    cleft_solid: Any

    @property
    def R(self) -> float:
        return float(self.p.radius)

    def label(
        self, x: NDArray[np.float64], y: NDArray[np.float64], z: NDArray[np.float64]
    ) -> NDArray[np.int8]:
        """Compartment index (``fiber.COMPARTMENTS``) at points: fiber._build's rule."""
        from ..fiber import CYTO, EXT, IMS, MAT, NT, NUC, SR

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

    def analytic(self) -> dict[str, dict[str, float]]:
        """Exact compartment volumes and membrane areas: fiber._build's formulas."""
        from ..fiber import _plane_cyto_area

        p, R, Lx = self.p, self.R, self.Lx
        vol_fibre = math.pi * R * R * Lx
        v_box = self.box[0] * self.box[1] * self.box[2]
        v_ims = sum(s.volume for s in self.ims_solids) - sum(s.volume for s in self.mat_solids)
        v_nuc = self.nuc.volume if self.nuc is not None else 0.0
        v_sr = sum(b.volume for _, b in self.tcs)
        v_fib_mito = sum(s.volume for _, s in self.mitos)
        term, tmito = self.term, self.tmito
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
        sigma = p.ttubule_area_density * p.sarcomere_length / 2
        foot = (2 * term.phi * R * (term.x1 - term.x0)) if term is not None else 0.0
        areas = {
            "sarcolemma": 2 * math.pi * R * Lx - foot,
            "nmj_postsynaptic": foot * p.nmj_fold_factor,
            "ttubule": sum(
                _plane_cyto_area(self.label, xt, self.cy, self.cz, R) * sigma for xt in self.planes
            ),
            "sr_membrane": sum(b.area for _, b in self.tcs),
            "mito_outer": sum(s.area for s in self.ims_solids),
            "mito_inner": sum(s.area for s in self.mat_solids),
            "nuclear_envelope": self.nuc.area if self.nuc is not None else 0.0,
            "nerve_membrane": term.area if term is not None else 0.0,
        }
        return {
            "volumes": {k: v for k, v in volumes.items() if v > 0},
            "areas": {k: a for k, a in areas.items() if a > 0},
        }


def fiber_parameters(**params: Any) -> Any:
    """Validated :class:`~redoxfield.fiber.FiberParameters` (as ``fiber.segment``
    reads its keywords: unknown names are an error, ``fibre_type`` presets apply)."""
    from ..fiber import FIBRE_TYPES, FiberParameters, _check

    known = set(FiberParameters.__dataclass_fields__)
    bad = [k for k in params if k not in known]
    if bad:
        raise GeometryError(
            f"unknown fiber parameter {bad[0]!r} (known: {', '.join(sorted(known))})"
        )
    ft = params.get("fibre_type")
    if ft is not None and ft in FIBRE_TYPES and "mito_volume_fraction" not in params:
        params = {**params, "mito_volume_fraction": FIBRE_TYPES[ft][0]}
    p = replace(FiberParameters(), **params)
    _check(p)
    return p


def fibre_solids(**params: Any) -> FibreSolids:
    """The solids of ``fiber.segment(**params)``, placed as fiber._build places them
    (keep in step with it: tests/test_mesh_fibre.py compares the analytic values)."""
    from ..fiber import _Box, _layout, _ShellSector, _Spheroid

    p = fiber_parameters(**params)
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
    cy, cz = ny * h / 2, nz_lo * h
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
    mitos: list[tuple[str, Any]] = []
    tcs: list[tuple[str, Any]] = []
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
        m2, t2_ = _layout(p, vol_fibre, planes, cy, cz, nuc, mitos + tcs)
        mitos += m2
        tcs += t2_
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
    return FibreSolids(
        p=p,
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


def _check_placement(nuc, mitos, tcs, term, tmito, Lx, R, cy, cz) -> None:
    """fiber._build's checks, with its messages: every organelle inside the fibre,
    no two bounding boxes overlapping, the terminal's mitochondrion inside it."""
    from ..fiber import _Spheroid

    inner = ([("nucleus", nuc)] if nuc is not None else []) + list(mitos) + list(tcs)
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
        lo_a, hi_a = inner[a][1].bounds()
        for b in range(a + 1, len(inner)):
            lo_b, hi_b = inner[b][1].bounds()
            if np.all(lo_a < hi_b - eps) and np.all(lo_b < hi_a - eps):
                raise GeometryError(f"{inner[a][0]} overlaps {inner[b][0]} (bounding boxes)")
    if tmito is not None and term is not None:
        lo, hi = tmito.bounds()
        rr = tmito.c[2] - cz
        fits = term.r1 + eps < rr - tmito.b and rr + tmito.b < term.r2 - eps
        fits = fits and lo[0] >= term.x0 and hi[0] <= term.x1
        if not fits or tmito.b > (rr - tmito.b) * math.sin(term.phi):
            raise GeometryError("the nerve-terminal mitochondrion does not fit in the terminal")


# -- T-tubules: plane cuts -------------------------------------------------------------
def plane_cut_areas(
    points: NDArray[np.float64], tets: NDArray[np.int64], x0: float
) -> NDArray[np.float64]:
    """(N,) area (µm²) of the cross-section of each tet by the plane ``x = x0``.

    The cut of a tet by a plane is a triangle (one vertex on one side) or a
    quadrilateral (two and two); its area is that of its projection on the y-z
    plane. A vertex exactly on the plane counts as below it: a layer of faces lying
    in the plane is then counted once, by the tets above it (the cut of such a tet
    is the face itself), and not at all on the mesh's upper boundary."""
    p = points[tets]  # (N, 4, 3)
    above = p[..., 0] > x0
    n_up = above.sum(axis=1)
    out = np.zeros(tets.shape[0])

    def cut(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        """Intersection of the segments a-b (K, 3) with the plane, as (K, 2) y-z."""
        s = (x0 - a[:, 0]) / (b[:, 0] - a[:, 0])
        return (a + s[:, None] * (b - a))[:, 1:]

    def cross2(u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    # Order every tet's vertices so that the "above" ones come first (stable).
    order = np.argsort(~above, axis=1, kind="stable")
    q = np.take_along_axis(p, order[..., None], axis=1)
    for k in (1, 3):  # triangle: the lone vertex against the three others
        sel = n_up == k
        if not sel.any():
            continue
        r = q[sel]
        lone, others = (r[:, 0], r[:, 1:]) if k == 1 else (r[:, 3], r[:, :3])
        c = [cut(lone, others[:, j]) for j in range(3)]
        out[sel] = 0.5 * np.abs(cross2(c[1] - c[0], c[2] - c[0]))
    sel = n_up == 2
    if sel.any():
        r = q[sel]
        a, b, c, d = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
        # Cyclic order of the quadrilateral: ac, ad, bd, bc; area from its diagonals.
        p_ac, p_ad, p_bd, p_bc = cut(a, c), cut(a, d), cut(b, d), cut(b, c)
        out[sel] = 0.5 * np.abs(cross2(p_bd - p_ac, p_bc - p_ad))
    return out


# -- the mesh ----------------------------------------------------------------------------
class FiberMesh(TetMesh):
    """A :class:`TetMesh` of a fibre segment made by
    :func:`redoxfield.geometry.mesher.fiber_segment` and read by
    :func:`load_fiber_segment`: the compartments, membranes and regions of
    ``fiber.segment`` for the same parameters.

    Extra attributes as on :class:`~redoxfield.fiber.FiberSegment`: ``parameters``,
    ``analytic``, ``axis_center``, ``triad_planes``, ``effective_cleft_width``,
    ``solids`` (:class:`FibreSolids`); ``mesh_volumes()``, ``mesh_areas()``,
    ``relative_errors()``."""

    parameters: Any
    analytic: dict[str, dict[str, float]]
    solids: FibreSolids

    def mesh_volumes(self) -> dict[str, float]:
        """Volume of each compartment on the mesh, µm³."""
        return self.compartment_volumes()

    def mesh_areas(self) -> dict[str, float]:
        """Area of each membrane on the mesh (``nmj_postsynaptic`` times its fold
        factor, as on the lattice), µm²."""
        return self.membrane_areas()

    # Same names as FiberSegment, so code comparing the two needs no branch.
    voxel_volumes = mesh_volumes
    voxel_areas = mesh_areas

    def relative_errors(self) -> dict[str, float]:
        """(mesh - analytic) / analytic for every compartment and membrane."""
        out = {}
        for k, v in self.mesh_volumes().items():
            out[k] = v / self.analytic["volumes"][k] - 1
        for k, v in self.mesh_areas().items():
            out[k] = v / self.analytic["areas"][k] - 1
        return out


def load_fiber_segment(path: str | Path, *, check_volumes: float = 0.1, **params: Any) -> FiberMesh:
    """Read a fibre mesh written by :func:`~redoxfield.geometry.mesher.fiber_segment`
    with the same ``params`` (the :class:`~redoxfield.fiber.FiberParameters` fields;
    the file carries no parameters). Returns a :class:`FiberMesh` with

    - compartments ``fiber.COMPARTMENTS`` that the mesh holds (the cleft volume
      group is part of ``extracellular``, and a region);
    - membranes ``sarcolemma``, ``nmj_postsynaptic`` (area times
      ``nmj_fold_factor``), ``sr_membrane``, ``mito_outer``, ``mito_inner``,
      ``nuclear_envelope``, ``nerve_membrane`` (their area in the tets of the inner
      compartment, :data:`FIBRE_INNER`) and ``ttubule``: sub-tet area
      ``ttubule_area_density * sarcomere_length / 2`` per µm² of each T-plane,
      given to the cytosol tets the plane cuts in proportion to the area of the cut
      (the lattice puts the same density in the voxels the plane crosses);
    - regions as on the lattice (docs/meshes.md): ``fibre``, ``subsarcolemmal``,
      ``triad``, ``perinuclear``, ``nmj``, ``cleft``, ``band_*``.

    ``check_volumes``: a compartment volume further than this relative amount from
    the analytic one means the file was made with other parameters (an error)."""
    import meshio

    from ..fiber import COMPARTMENTS
    from .tetmesh import _groups_from_meshio

    s = fibre_solids(**params)
    p = s.p
    src = repr(str(path))
    if not Path(path).is_file():
        raise GeometryError(f"mesh file {src} does not exist")
    try:
        vg, sg, pts, tets = _groups_from_meshio(meshio.read(str(path)), src, None, None)
    except GeometryError:
        raise
    except Exception as exc:
        raise GeometryError(f"cannot read mesh file {src}: {type(exc).__name__}: {exc}") from None
    # Which groups the file has decides the compartments (a segment without NMJ has
    # no nerve terminal, one without mitochondria no mito_* groups).
    comps: dict[str, list[str]] = {}
    for c in COMPARTMENTS:
        groups = [g for g in ([c, "cleft"] if c == "extracellular" else [c]) if g in vg]
        if groups:
            comps[c] = groups
    mems = {m: [m] for m in FIBRE_INNER if m in sg}
    factors = {"nmj_postsynaptic": p.nmj_fold_factor} if "nmj_postsynaptic" in mems else {}
    mesh = FiberMesh(
        pts,
        tets,
        volume_groups=vg,
        surface_groups=sg,
        compartments=comps,
        membranes=mems,
        inner={m: FIBRE_INNER[m] for m in mems},
        area_factors=factors,
        source=src,
    )
    mesh.parameters = p
    mesh.solids = s
    mesh.analytic = s.analytic()
    mesh.axis_center = (s.cy, s.cz)
    mesh.triad_planes = s.planes
    mesh.effective_cleft_width = s.cleft
    vols = mesh.compartment_volumes()
    for c, v in vols.items():
        ref = mesh.analytic["volumes"].get(c)
        if ref is None or abs(v / ref - 1) > check_volumes:
            raise GeometryError(
                f"fibre mesh {str(path)!r}: compartment {c!r} has {v:.4g} um^3 on the mesh but "
                f"{ref if ref is None else f'{ref:.4g}'} um^3 for these fiber parameters: was "
                "the file made with other parameters?"
            )
    missing = set(mesh.analytic["volumes"]) - set(vols)
    if missing:
        raise GeometryError(
            f"fibre mesh {str(path)!r} has no {', '.join(sorted(missing))} although these "
            "fiber parameters have them: was the file made with other parameters?"
        )
    if p.ttubule_area_density > 0:
        mesh.membrane_area("ttubule", ttubule_areas(mesh, s))
    add_fibre_regions(mesh, s)
    return mesh


def ttubule_areas(mesh: TetMesh, s: FibreSolids) -> NDArray[np.float64]:
    """(N,) T-tubule area per tet: the density per µm² of T-plane times the area of
    each cytosol tet's cut by each T-plane (docs/meshes.md)."""
    p = s.p
    sigma = p.ttubule_area_density * p.sarcomere_length / 2  # µm² per µm² of plane
    cyto = mesh.compartments == mesh.compartment_names.index("cytosol")
    area = np.zeros(mesh.n_subvolumes)
    for xt in s.planes:
        area += sigma * plane_cut_areas(mesh.points, mesh.tets, xt) * cyto
    return area


def add_fibre_regions(space: Any, s: FibreSolids) -> None:
    """The analysis regions of ``fiber.segment`` on a mesh, on tet barycentres (as
    the lattice tests voxel centres). ``cleft``: the mesh's cleft volume group if it
    has one (exact), else the barycentre test of the lattice."""
    p, R = s.p, s.R
    c = space.centers
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    r = np.hypot(y - s.cy, z - s.cz)
    names = space.compartment_names
    ids = space.compartments
    in_fibre = r < R
    regions: dict[str, NDArray[np.bool_]] = {
        "fibre": in_fibre,
        "subsarcolemmal": in_fibre & (r >= R - p.subsarcolemmal_depth),
        "triad": in_fibre
        & (np.min(np.abs(x[:, None] - np.asarray(s.planes)[None]), axis=1) <= p.triad_half_width),
    }
    if s.nuc is not None and "nucleus" in names:
        from ..fiber import _Spheroid

        d = p.perinuclear_depth
        grown = _Spheroid(s.nuc.c, s.nuc.a + d, s.nuc.b + d)
        regions["perinuclear"] = in_fibre & grown.inside(x, y, z) & (ids != names.index("nucleus"))
    if s.term is not None:
        th = np.angle(np.exp(1j * (np.arctan2(z - s.cz, y - s.cy) - math.pi / 2)))
        foot = (np.abs(th) <= s.term.phi) & (x >= s.term.x0) & (x < s.term.x1)
        regions["nmj"] = foot & in_fibre & (r >= R - p.subsarcolemmal_depth)
        ext = ids == names.index("extracellular")
        if "cleft" not in space.regions:
            regions["cleft"] = foot & (r >= R) & (r < R + s.cleft) & ext
    for lo in np.arange(0.0, R + 1e-9, p.band_width):
        hi = lo + p.band_width
        regions[f"band_{lo:g}-{hi:g}um"] = in_fibre & (R - r >= lo) & (R - r < hi)
    for name, mask in regions.items():
        if mask.any() and name not in space.regions:
            space.region(name, mask)
