"""The fibre segment of :func:`redoxfield.fiber.segment` as analytic solids, and as
a tetrahedral mesh: :func:`fibre_solids`, :class:`FiberMesh`,
:func:`load_fiber_segment`.

The lattice builder (``fiber.segment``) and the gmsh mesher
(:func:`redoxfield.geometry.mesher.fiber_segment`) describe the *same* fibre: both
take their solids from :func:`redoxfield.fiber.place_solids` (:func:`fibre_solids`
here is that function for keyword parameters), so the placement rules and every
literature number exist once, in fiber.py. ``tests/test_mesh_fibre.py`` checks that
a mesh read back has the analytic volumes and areas of ``fiber.segment(...)``.

What a mesh cannot resolve follows the lattice: the synaptic cleft has the
lattice's width ``max(cleft_width, 2 spacing)`` (``effective_cleft_width``), the SR
strips are snapped to the lattice spacing as on the lattice (the layout depends on
``spacing``), and the T-tubules are sub-tet membrane area in the T-planes (below).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError
from ..fiber import FiberSolids, _relative_errors, parameters, place_solids
from .tetmesh import TetMesh

__all__ = [
    "FIBRE_INNER",
    "FiberMesh",
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


def fibre_solids(**params: Any) -> FiberSolids:
    """The solids of ``fiber.segment(**params)``: :func:`redoxfield.fiber.place_solids`
    of the same parameters (one placement for lattice and mesh)."""
    return place_solids(parameters(**params))


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
    ``solids`` (:class:`FiberSolids`); ``mesh_volumes()``, ``mesh_areas()``,
    ``relative_errors()``."""

    parameters: Any
    analytic: dict[str, dict[str, float]]
    solids: FiberSolids

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
        """(mesh - analytic) / analytic for every compartment and membrane that the
        segment has (as ``FiberSegment.relative_errors``: absent structures have
        no entry; one present but missing on the mesh reports -1)."""
        return _relative_errors(self.analytic, self.mesh_volumes(), self.mesh_areas())


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


def ttubule_areas(mesh: TetMesh, s: FiberSolids) -> NDArray[np.float64]:
    """(N,) T-tubule area per tet: the density per µm² of T-plane times the area of
    each cytosol tet's cut by each T-plane (docs/meshes.md)."""
    p = s.p
    sigma = p.ttubule_area_density * p.sarcomere_length / 2  # µm² per µm² of plane
    cyto = mesh.compartments == mesh.compartment_names.index("cytosol")
    area = np.zeros(mesh.n_subvolumes)
    for xt in s.planes:
        area += sigma * plane_cut_areas(mesh.points, mesh.tets, xt) * cyto
    return area


def add_fibre_regions(space: Any, s: FiberSolids) -> None:
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
