"""gmsh-based meshers (optional extra ``redoxfield[mesh]``: ``pip install gmsh``).

- :func:`cube`: a box meshed with tetrahedra of a target edge length (the B3
  benchmark cube: 4 µm, mean tet volume about 1e-3 µm³); one volume group
  ``"box"``.
- :func:`fiber_segment`: a fibre segment with the structures of
  :func:`redoxfield.fiber.segment` that a conforming tet mesh resolves at a few
  hundred nm: the extracellular shell (a box around the fibre), the cytosol
  (a cylinder along x), the myonucleus (prolate spheroid), inter-myofibrillar and
  subsarcolemmal mitochondria (spheroids with an intermembrane space and a
  matrix), at the same positions and sizes as the lattice builder for the same
  :class:`~redoxfield.fiber.FiberParameters`. Volume groups: ``extracellular``,
  ``cytosol``, ``nucleus``, ``mito_ims``, ``mito_matrix``; surface groups:
  ``sarcolemma``, ``nuclear_envelope``, ``mito_outer``, ``mito_inner``. Left out:
  terminal cisternae (SR), T-tubules (sub-voxel area on the lattice; add them with
  ``TetMesh.membrane_area``) and the NMJ (nerve terminal, cleft).

Both write a gmsh ``.msh`` file (format 4.1, or 2.2 with ``version=2``) or any
format meshio writes (by suffix), and return the path. gmsh is seeded and
single-threaded, so a given version of gmsh reproduces the same mesh.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import GeometryError

__all__ = ["cube", "fiber_segment", "fiber_regions"]


def _gmsh() -> Any:
    try:
        import gmsh
    except ImportError as exc:  # pragma: no cover - optional extra
        raise GeometryError(
            "meshing needs gmsh: pip install 'redoxfield[mesh]' (or pip install gmsh)"
        ) from exc
    return gmsh


def _start(gmsh: Any, name: str, h: float, seed: int) -> None:
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.option.setNumber("Mesh.RandomSeed", seed)
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)  # Delaunay
    gmsh.option.setNumber("Mesh.Optimize", 1)
    gmsh.option.setNumber("Mesh.OptimizeNetgen", 1)
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.25 * h)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 1)
    gmsh.model.add(name)


def _write(gmsh: Any, path: str | os.PathLike[str], version: int) -> Path:
    p = Path(path)
    if p.suffix == ".msh":
        gmsh.option.setNumber("Mesh.MshFileVersion", 2.2 if version == 2 else 4.1)
        gmsh.option.setNumber("Mesh.Binary", 0)
        gmsh.write(str(p))
        return p
    tmp = p.with_suffix(".tmp.msh")
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.write(str(tmp))
    import meshio

    m = meshio.read(str(tmp))
    tmp.unlink()
    keep = [k for k, b in enumerate(m.cells) if b.type in ("tetra", "triangle")]
    cells = [m.cells[k] for k in keep]
    tags = [m.cell_data["gmsh:physical"][k] for k in keep]
    data = {"gmsh:physical": tags}
    # Formats without field data (VTU) lose the group names: one 0/1 cell array
    # "group:<name>" per physical group keeps them (TetMesh.load reads these).
    for name, (tag, dim) in m.field_data.items():
        want = "tetra" if int(dim) == 3 else "triangle"
        data[f"group:{name}"] = [
            ((t == tag) & (b.type == want)).astype("uint8")
            for t, b in zip(tags, cells, strict=True)
        ]
    meshio.write(str(p), meshio.Mesh(m.points, cells, cell_data=data, field_data=m.field_data))
    return p


def cube(
    path: str | os.PathLike[str],
    size: float | tuple[float, float, float] = 4.0,
    h: float = 0.2,
    *,
    cuts: tuple[float, ...] = (),
    seed: int = 1,
    version: int = 4,
) -> Path:
    """Mesh the box ``[0, sx] x [0, sy] x [0, sz]`` (µm) with tets of edge about ``h``.

    Volume group ``box``; surface group ``boundary`` (its six faces). ``cuts``:
    x positions of internal planes the mesh conforms to; the slabs between them
    become volume groups ``slab0``, ``slab1``, ... (instead of ``box``), e.g. an
    exact source slab; the internal planes are surface groups ``cut0``, ``cut1``, ..."""
    gmsh = _gmsh()
    sx, sy, sz = (size, size, size) if isinstance(size, (int, float)) else size
    _start(gmsh, "cube", h, seed)
    try:
        xs = [0.0, *sorted(float(c) for c in cuts if 0 < c < sx), float(sx)]
        vols = [
            gmsh.model.occ.addBox(a, 0, 0, b - a, sy, sz)
            for a, b in zip(xs[:-1], xs[1:], strict=True)
        ]
        if len(vols) > 1:
            gmsh.model.occ.fragment([(3, vols[0])], [(3, v) for v in vols[1:]])
        gmsh.model.occ.synchronize()
        vols = sorted(
            (t for _, t in gmsh.model.getEntities(3)),
            key=lambda t: gmsh.model.occ.getCenterOfMass(3, t)[0],
        )
        faces = [t for _, t in gmsh.model.getBoundary([(3, v) for v in vols], oriented=False)]
        if len(vols) == 1:
            gmsh.model.addPhysicalGroup(3, vols, name="box")
        else:
            for k, v in enumerate(vols):
                gmsh.model.addPhysicalGroup(3, [v], name=f"slab{k}")
        gmsh.model.addPhysicalGroup(2, faces, name="boundary")
        for k in range(len(vols) - 1):
            a = {t for _, t in gmsh.model.getBoundary([(3, vols[k])], oriented=False)}
            b = {t for _, t in gmsh.model.getBoundary([(3, vols[k + 1])], oriented=False)}
            gmsh.model.addPhysicalGroup(2, sorted(a & b), name=f"cut{k}")
        gmsh.option.setNumber("Mesh.MeshSizeMin", h)
        gmsh.model.mesh.generate(3)
        return _write(gmsh, path, version)
    finally:
        gmsh.finalize()


def _fibre_solids(p: Any) -> dict[str, Any]:
    """Positions of the fibre structures exactly as fiber.segment places them."""
    R, Ls = p.radius, p.sarcomere_length
    Lx = p.sarcomeres * Ls
    half = R + p.ecs_margin
    cy = cz = half  # box [0, Lx] x [0, 2 half] x [0, 2 half]; axis at (cy, cz)
    nuc = None
    if p.nucleus_volume_fraction > 0:
        v_n = p.nucleus_volume_fraction * math.pi * R * R * Lx
        b = (v_n / (4 / 3 * math.pi * p.nucleus_aspect)) ** (1 / 3)
        a = p.nucleus_aspect * b
        nuc = ((Lx / 2, cy, cz - (R - p.nucleus_gap - b)), a, b)
    mitos = []
    for k in range(1, p.sarcomeres):
        for dy, dz in p.imf_positions:
            mitos.append(((k * Ls, cy + dy, cz + dz), *p.imf_semi_axes))
    for f in p.ss_x_fractions:
        ax, ar = p.ss_semi_axes
        mitos.append(((f * Lx, cy, cz + R - p.ss_gap - ar), ax, ar))
    return {"Lx": Lx, "half": half, "cy": cy, "cz": cz, "nucleus": nuc, "mitos": mitos}


def fiber_segment(
    path: str | os.PathLike[str],
    h: float = 0.3,
    h_fine: float | None = None,
    *,
    seed: int = 1,
    version: int = 4,
    **params: Any,
) -> Path:
    """Mesh a fibre segment (module docstring) with tets of edge about ``h`` (µm)
    in the cytosol and extracellular space, ``h_fine`` (default ``h / 2``) on the
    organelles. ``params``: :class:`~redoxfield.fiber.FiberParameters` fields."""
    from ..fiber import FiberParameters

    p = FiberParameters(**params)
    s = _fibre_solids(p)
    hf = h / 2 if h_fine is None else h_fine
    gmsh = _gmsh()
    _start(gmsh, "fibre", h, seed)
    occ = gmsh.model.occ
    try:
        Lx, half, cy, cz = s["Lx"], s["half"], s["cy"], s["cz"]
        box = occ.addBox(0, 0, 0, Lx, 2 * half, 2 * half)
        cyl = occ.addCylinder(0, cy, cz, Lx, 0, 0, p.radius)

        def spheroid(c: tuple[float, float, float], a: float, b: float) -> int:
            tag = occ.addSphere(c[0], c[1], c[2], b)
            occ.dilate([(3, tag)], c[0], c[1], c[2], a / b, 1, 1)
            return tag

        tools = [(3, cyl)]
        nuc = None
        if s["nucleus"] is not None:
            nuc = spheroid(*s["nucleus"])
            tools.append((3, nuc))
        outer, inner = [], []
        for c, a, b in s["mitos"]:
            outer.append(spheroid(c, a, b))
            inner.append(spheroid(c, a - p.ims_thickness, b - p.ims_thickness))
            tools += [(3, outer[-1]), (3, inner[-1])]
        occ.fragment([(3, box)], tools)
        occ.synchronize()

        # Classify the fragments: the two big pieces by their bounding boxes, the
        # organelles by the spheroid that holds their centre of mass, IMS shell vs
        # matrix (same centre) by volume.
        def inside_spheroid(x, y, z, c, a, b) -> bool:
            return ((x - c[0]) / a) ** 2 + ((y - c[1]) / b) ** 2 + ((z - c[2]) / b) ** 2 < 1

        groups: dict[str, list[int]] = {
            k: [] for k in ("extracellular", "cytosol", "nucleus", "mito_ims", "mito_matrix")
        }
        t = p.ims_thickness
        long = []
        for _, tag in gmsh.model.getEntities(3):
            x0, y0, _z0, x1, y1, _z1 = occ.getBoundingBox(3, tag)
            x, y, z = occ.getCenterOfMass(3, tag)
            vol = occ.getMass(3, tag)
            if x1 - x0 > 0.99 * Lx:  # the extracellular shell or the cytosol
                long.append((y1 - y0, tag))
            else:
                mito = next(
                    ((c, a, b) for c, a, b in s["mitos"] if inside_spheroid(x, y, z, c, a, b)),
                    None,
                )
                if mito is not None:
                    c, a, b = mito
                    v_mat = 4 / 3 * math.pi * (a - t) * (b - t) ** 2
                    kind = "mito_matrix" if abs(vol - v_mat) < 0.05 * v_mat else "mito_ims"
                    groups[kind].append(tag)
                elif s["nucleus"] is not None and inside_spheroid(x, y, z, *s["nucleus"]):
                    groups["nucleus"].append(tag)
                else:
                    raise GeometryError(f"fibre mesher: cannot classify volume {tag}")
        if len(long) != 2:
            raise GeometryError(f"fibre mesher: expected 2 pieces along the fibre, got {long}")
        long.sort()
        groups["cytosol"].append(long[0][1])
        groups["extracellular"].append(long[1][1])

        def boundary(tags: list[int]) -> set[int]:
            return {
                t
                for _, t in gmsh.model.getBoundary(
                    [(3, v) for v in tags], combined=False, oriented=False
                )
            }

        b_ext, b_cyt = boundary(groups["extracellular"]), boundary(groups["cytosol"])
        b_nuc, b_ims = boundary(groups["nucleus"]), boundary(groups["mito_ims"])
        b_mat = boundary(groups["mito_matrix"])
        surfaces = {
            "sarcolemma": sorted(b_ext & b_cyt),
            "nuclear_envelope": sorted(b_nuc & b_cyt),
            "mito_outer": sorted(b_ims & b_cyt),
            "mito_inner": sorted(b_ims & b_mat),
        }
        for name, tags in groups.items():
            if tags:
                gmsh.model.addPhysicalGroup(3, sorted(tags), name=name)
        for name, tags in surfaces.items():
            if tags:
                gmsh.model.addPhysicalGroup(2, tags, name=name)
        fine = [t for k in ("nucleus", "mito_ims", "mito_matrix") for t in groups[k]]
        if fine:
            pts = gmsh.model.getBoundary([(3, t) for t in fine], combined=False, recursive=True)
            gmsh.model.mesh.setSize(pts, hf)
        gmsh.model.mesh.generate(3)
        return _write(gmsh, path, version)
    finally:
        gmsh.finalize()


def fiber_regions(space: Any, **params: Any) -> None:
    """Add the analysis regions of :func:`redoxfield.fiber.segment` (``fibre``,
    ``subsarcolemmal``, ``perinuclear``, ``band_*``) to a mesh made by
    :func:`fiber_segment`, with the same definitions (on tet barycentres)."""
    import numpy as np

    from ..fiber import FiberParameters

    p = FiberParameters(**params)
    s = _fibre_solids(p)
    c = space.centers
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    r = np.hypot(y - s["cy"], z - s["cz"])
    R = p.radius
    in_fibre = r < R
    ids = space.compartments
    names = space.compartment_names
    regions = {"fibre": in_fibre, "subsarcolemmal": in_fibre & (r >= R - p.subsarcolemmal_depth)}
    if s["nucleus"] is not None and "nucleus" in names:
        (cx, ncy, ncz), a, b = s["nucleus"]
        d = p.perinuclear_depth
        grown = ((x - cx) / (a + d)) ** 2 + ((y - ncy) / (b + d)) ** 2 + ((z - ncz) / (b + d)) ** 2
        regions["perinuclear"] = in_fibre & (grown < 1) & (ids != names.index("nucleus"))
    for lo in np.arange(0.0, R + 1e-9, p.band_width):
        hi = lo + p.band_width
        regions[f"band_{lo:g}-{hi:g}um"] = in_fibre & (R - r >= lo) & (R - r < hi)
    for name, mask in regions.items():
        if mask.any() and name not in space.regions:
            space.region(name, mask)
