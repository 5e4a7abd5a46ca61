"""gmsh-based meshers (optional extra ``redoxfield[mesh]``: ``pip install gmsh``).

- :func:`cube`: a box meshed with tetrahedra of a target edge length (the B3
  benchmark cube: 4 µm, mean tet volume about 1e-3 µm³); one volume group
  ``"box"``.
- :func:`fiber_segment`: the fibre segment of :func:`redoxfield.fiber.segment`
  for the same :class:`~redoxfield.fiber.FiberParameters` (the solids of
  :func:`redoxfield.fiber.place_solids`, the lattice builder's): extracellular box with the
  cleft, cytosol cylinder, myonucleus, mitochondria (IMS shell and matrix),
  terminal cisternae and longitudinal SR strips, nerve terminal with its
  mitochondrion. Volume groups: the compartments of ``fiber.COMPARTMENTS`` plus
  ``cleft``; surface groups: the membranes of ``fiber.MEMBRANES`` but ``ttubule``
  (sub-tet area, added by :func:`~redoxfield.geometry.fibermesh.load_fiber_segment`,
  which reads the file back with compartments, membranes and regions).

Both write a gmsh ``.msh`` file (format 4.1, or 2.2 with ``version=2``) or any
format meshio writes (by suffix), and return the path. gmsh is seeded and
single-threaded, so a given version of gmsh reproduces the same mesh.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

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


def fiber_segment(
    path: str | os.PathLike[str],
    h: float = 0.35,
    h_fine: float | None = None,
    *,
    seed: int = 1,
    version: int = 4,
    snap: bool = True,
    **params: Any,
) -> Path:
    """Mesh the fibre segment of ``rf.fiber.segment(**params)`` (module docstring)
    with tets of edge about ``h`` (µm) in the cytosol and extracellular space and
    ``h_fine`` (default ``h / 2``) on the organelles, the SR, the cleft and the nerve
    terminal. ``snap``: scale the nodes of every spheroid and of the fibre cylinder
    about its centre (axis) so that the polyhedral volume it encloses equals the
    analytic one (see :func:`_snap_volumes`). ``params``:
    :class:`~redoxfield.fiber.FiberParameters` fields, as for
    the lattice (``spacing`` matters: the SR strips and the cleft follow the
    lattice's). Read the file with
    :func:`redoxfield.geometry.fibermesh.load_fiber_segment` and the same
    ``params``."""
    from .fibermesh import fibre_solids

    s = fibre_solids(**params)
    p = s.p
    hf = h / 2 if h_fine is None else float(h_fine)
    if not (h > 0 and hf > 0):
        raise GeometryError(f"mesh sizes must be positive, got h = {h!r}, h_fine = {h_fine!r}")
    gmsh = _gmsh()
    _start(gmsh, "fibre", h, seed)
    gmsh.option.setNumber("Mesh.MeshSizeMin", min(0.25 * h, 0.5 * hf))
    # MeshAdapt in 2-D: Frontal-Delaunay leaves the elongated spheroids (OCC spheres
    # dilated into B-spline surfaces, aspect ~3) of the inter-myofibrillar
    # mitochondria without a single triangle (gmsh 4.15).
    gmsh.option.setNumber("Mesh.Algorithm", 1)
    occ = gmsh.model.occ
    try:
        R, Lx, cy, cz = s.R, s.Lx, s.cy, s.cz
        box = occ.addBox(0, 0, 0, *s.box)
        cyl = occ.addCylinder(0, cy, cz, Lx, 0, 0, R)

        def spheroid(sp: Any) -> int:
            c = sp.c
            tag = occ.addSphere(c[0], c[1], c[2], sp.b)
            occ.dilate([(3, tag)], c[0], c[1], c[2], sp.a / sp.b, 1, 1)
            return int(tag)

        def wedge(sector: Any, r: float) -> int:
            """Cylindrical wedge of radius r over the sector's angle and x range."""
            tag = occ.addCylinder(
                sector.x0, cy, cz, sector.x1 - sector.x0, 0, 0, r, angle=2 * sector.phi
            )
            _, yc, zc = occ.getCenterOfMass(3, tag)
            alpha = math.atan2(zc - cz, yc - cy)
            occ.rotate([(3, tag)], 0, cy, cz, 1, 0, 0, sector.theta0 - alpha)
            return int(tag)

        # Every input solid with the compartment its pieces take; the first match in
        # this priority order wins (the order fiber's label() paints in, reversed).
        tools: list[tuple[str, int]] = [("cytosol", int(cyl))]
        if s.nuc is not None:
            tools.append(("nucleus", spheroid(s.nuc)))
        for outer, inner in zip(s.ims_solids, s.mat_solids, strict=True):
            tools += [("mito_ims", spheroid(outer)), ("mito_matrix", spheroid(inner))]
        for _, b in s.tcs:
            lo = b.lo
            d = np.subtract(b.hi, b.lo)
            tools.append(("sr_lumen", int(occ.addBox(lo[0], lo[1], lo[2], *d))))
        if s.term is not None:
            r1, r2 = s.term.r1, s.term.r2
            cleft_cut, _ = occ.cut([(3, wedge(s.term, r1))], [(3, cyl)], removeTool=False)
            term_cut, _ = occ.cut([(3, wedge(s.term, r2))], [(3, wedge(s.term, r1))])
            tools += [("cleft", int(t)) for _, t in cleft_cut]
            tools += [("nerve_terminal", int(t)) for _, t in term_cut]
        _, pieces = occ.fragment([(3, box)], [(3, t) for _, t in tools])
        occ.synchronize()
        priority = [
            "mito_matrix",
            "mito_ims",
            "sr_lumen",
            "nucleus",
            "nerve_terminal",
            "cleft",
            "cytosol",
        ]
        owner: dict[int, set[str]] = {}
        for (kind, _), out in zip(tools, pieces[1:], strict=True):
            for _, t in out:
                owner.setdefault(int(t), set()).add(kind)
        groups: dict[str, list[int]] = {}
        comp_of: dict[int, str] = {}
        for _, t in gmsh.model.getEntities(3):
            kinds = owner.get(int(t), set())
            kind = next((k for k in priority if k in kinds), "extracellular")
            groups.setdefault(kind, []).append(int(t))
            comp_of[int(t)] = kind
        # Membranes from the pair of pieces on either side of each surface.
        pair_to_membrane = {
            frozenset(("cytosol", "extracellular")): "sarcolemma",
            frozenset(("cytosol", "cleft")): "nmj_postsynaptic",
            frozenset(("mito_ims", "cytosol")): "mito_outer",
            frozenset(("mito_ims", "nerve_terminal")): "mito_outer",
            frozenset(("mito_matrix", "mito_ims")): "mito_inner",
            frozenset(("sr_lumen", "cytosol")): "sr_membrane",
            frozenset(("nucleus", "cytosol")): "nuclear_envelope",
            frozenset(("nerve_terminal", "extracellular")): "nerve_membrane",
            frozenset(("nerve_terminal", "cleft")): "nerve_membrane",
        }
        surfaces: dict[str, list[int]] = {}
        by_pair: dict[frozenset[str], list[int]] = {}
        for _, f in gmsh.model.getEntities(2):
            up, _down = gmsh.model.getAdjacencies(2, f)
            sides = {comp_of[int(v)] for v in up}
            if len(up) < 2 or len(sides) < 2 or sides == {"cleft", "extracellular"}:
                continue  # outer boundary, fibre ends, or inside one compartment
            m = pair_to_membrane.get(frozenset(sides))
            if m is None:
                x, y, z = occ.getCenterOfMass(2, f)
                raise GeometryError(
                    f"fibre mesher: {' and '.join(sorted(sides))} touch at "
                    f"({x:.3g}, {y:.3g}, {z:.3g}) um, with no membrane between them: the "
                    "structures of these parameters overlap or touch"
                )
            surfaces.setdefault(m, []).append(int(f))
            by_pair.setdefault(frozenset(sides), []).append(int(f))
        for name, tags in groups.items():
            gmsh.model.addPhysicalGroup(3, sorted(tags), name=name)
        for name, tags in surfaces.items():
            gmsh.model.addPhysicalGroup(2, sorted(tags), name=name)
        # Fine tets on everything smaller than the fibre: sizes on the geometric
        # points of those pieces, spread over their curves and surfaces.
        fine = [t for k, ts in groups.items() if k not in ("cytosol", "extracellular") for t in ts]
        if fine:
            pts = gmsh.model.getBoundary([(3, t) for t in fine], combined=False, recursive=True)
            gmsh.model.mesh.setSize(pts, hf)
        gmsh.model.mesh.generate(3)
        # gmsh skips a volume whose surface mesh it cannot fill (thin shells meshed
        # coarser than their thickness) and says so only on its terminal.
        for kind, ts in groups.items():
            for t in ts:
                types, _, _ = gmsh.model.mesh.getElements(3, t)
                if not len(types):
                    x0, y0, z0, x1, y1, z1 = gmsh.model.getBoundingBox(3, t)
                    raise GeometryError(
                        f"fibre mesher: gmsh could not mesh a {kind} volume in "
                        f"[{x0:.3g}, {x1:.3g}] x [{y0:.3g}, {y1:.3g}] x [{z0:.3g}, {z1:.3g}] um: "
                        f"use h_fine <= the thinnest layer (ims_thickness = {p.ims_thickness} um, "
                        f"cleft {s.cleft:g} um; h_fine = {hf:g} um now)"
                    )
        if snap:
            spheroids = ([s.nuc] if s.nuc is not None else []) + [
                sp for pair in zip(s.ims_solids, s.mat_solids, strict=True) for sp in pair
            ]
            owned = [out for (kind, _), out in zip(tools, pieces[1:], strict=True)]
            # tools: cytosol cylinder, nucleus?, (ims, matrix) per mitochondrion, ...
            inside = [[int(t) for _, t in o] for o in owned[1 : 1 + len(spheroids)]]
            # The terminal's cylindrical faces: r1 (cleft | terminal) and r2 (terminal
            # | ECS; its flat faces add nothing to the wedge volume, see below).
            sectors = []
            if s.term is not None:
                sectors = [
                    (s.term.r1, by_pair.get(frozenset(("cleft", "nerve_terminal")), [])),
                    (s.term.r2, by_pair.get(frozenset(("nerve_terminal", "extracellular")), [])),
                ]
            fibre = [int(t) for _, t in owned[0]]
            _snap_volumes(gmsh, s, spheroids, inside, fibre, sectors)
        return _write(gmsh, path, version)
    finally:
        gmsh.finalize()


def _snap_volumes(
    gmsh: Any,
    s: Any,
    spheroids: list[Any],
    inside: list[list[int]],
    fibre: list[int],
    sectors: list[tuple[float, list[int]]] = (),  # type: ignore[assignment]
) -> None:
    """Give every curved closed surface its analytic enclosed volume.

    gmsh puts the surface nodes *on* the curved surface, so the polyhedron they
    span is inscribed and too small: at two or three edges across a mitochondrial
    matrix the deficit is 5-7 % (it falls as (h/r)²). Scaling the nodes of one
    surface about its centre by ``f = (V / V_poly)^(1/3)`` (spheroids; about the
    axis by ``(V / V_poly)^(1/2)`` for the fibre cylinder, whose planar end caps do
    not change the volume under that map) makes the enclosed volume exact, moves the
    nodes by ~1 % of the radius (nanometres), and leaves every other node alone.
    The nerve terminal's faces at r1 and r2 (cylinder sectors, not closed) are
    scaled about the axis so that the wedge from the axis to each holds
    ``phi r² L``: with ``F = (0, y - cy, z - cz) / 2`` that wedge volume is the
    flux of F through the face (F is tangent to the radial and end planes), which a
    radial scaling by f multiplies by f².
    Inverted tets after the move are an error (make ``h_fine`` smaller or pass
    ``snap=False``)."""
    from .quality import signed_volumes

    tags, xyz, _ = gmsh.model.mesh.getNodes()
    xyz = np.asarray(xyz).reshape(-1, 3)
    pos = {int(t): k for k, t in enumerate(tags)}
    new = xyz.copy()

    def elements_of(dim: int, ents: list[int]) -> Any:
        """Node rows (into xyz) of the linear simplices of these entities:
        4-node tetrahedra (gmsh type 4) for dim 3, 3-node triangles (type 2)
        for dim 2."""
        gmsh_type, k = (4, 4) if dim == 3 else (2, 3)
        out = []
        for e in ents:
            types, _, nodes = gmsh.model.mesh.getElements(dim, e)
            for ty, nd in zip(types, nodes, strict=True):
                if ty == gmsh_type:
                    out.append(np.asarray(nd, dtype=np.int64).reshape(-1, k))
        t = np.concatenate(out) if out else np.zeros((0, k), np.int64)
        return np.vectorize(pos.__getitem__, otypes=[np.int64])(t) if t.size else t

    def tets_of(ents: list[int]) -> Any:
        return elements_of(3, ents)

    def volume(t: Any, pts: Any) -> float:
        return float(np.abs(signed_volumes(pts, t)).sum())

    for sp, ents in zip(spheroids, inside, strict=True):
        v_poly = volume(tets_of(ents), xyz)
        on = np.abs(sp.f(xyz[:, 0], xyz[:, 1], xyz[:, 2])) < 1e-5
        f = (sp.volume / v_poly) ** (1 / 3)
        c = np.asarray(sp.c)
        new[on] = c + f * (xyz[on] - c)
    ax = np.array([0.0, s.cy, s.cz])
    r = np.hypot(xyz[:, 1] - s.cy, xyz[:, 2] - s.cz)
    on = np.abs(r - s.R) < 1e-6 * s.R
    v_fibre = math.pi * s.R**2 * s.Lx
    f = (v_fibre / volume(tets_of(fibre), xyz)) ** 0.5
    new[on, 1:] = ax[1:] + f * (xyz[on, 1:] - ax[1:])
    for r_k, faces in sectors:
        t3 = elements_of(2, faces)
        if not t3.size:
            continue
        q = xyz[t3]
        cr = 0.5 * np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])  # area x normal
        cen = q.mean(axis=1)
        flux = np.abs(0.5 * np.einsum("ij,ij->i", cen[:, 1:] - ax[1:], cr[:, 1:])).sum()
        wedge = s.term.phi * r_k**2 * (s.term.x1 - s.term.x0)
        f = (wedge / flux) ** 0.5
        on = np.zeros(len(xyz), dtype=bool)
        on[np.unique(t3)] = True
        on &= np.abs(r - r_k) < 1e-6 * r_k
        new[on, 1:] = ax[1:] + f * (xyz[on, 1:] - ax[1:])
    moved = np.nonzero(np.any(new != xyz, axis=1))[0]
    every = tets_of([int(t) for _, t in gmsh.model.getEntities(3)])
    flipped = np.sign(signed_volumes(xyz, every)) != np.sign(signed_volumes(new, every))
    if flipped.any():
        where = np.round(new[every[flipped][0]].mean(axis=0), 3).tolist()
        raise GeometryError(
            f"fibre mesher: snapping the curved surfaces to their volumes inverts "
            f"{int(flipped.sum())} tets (first near {where} um): use a smaller h_fine, or "
            "snap=False"
        )
    for k in moved:
        gmsh.model.mesh.setNode(int(tags[k]), new[k].tolist(), [])


def fiber_regions(space: Any, **params: Any) -> None:
    """Add the analysis regions of :func:`redoxfield.fiber.segment` (``fibre``,
    ``subsarcolemmal``, ``triad``, ``perinuclear``, ``nmj``, ``cleft``,
    ``band_*``) to a mesh of the fibre, with the same definitions (on tet
    barycentres). :func:`~redoxfield.geometry.fibermesh.load_fiber_segment` does
    this (and more) itself."""
    from .fibermesh import add_fibre_regions, fibre_solids

    add_fibre_regions(space, fibre_solids(**params))
