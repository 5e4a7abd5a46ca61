r"""Unstructured tetrahedral meshes: :class:`TetMesh`, one subvolume per tet.

    space = rf.TetMesh.load("fibre.msh", scale="nm",
                            compartments=["cytosol", "nucleus"],
                            membranes=["nuclear_envelope"])
    space = rf.TetMesh.from_arrays(points, tets)

A ``TetMesh`` compiles to the same :class:`~redoxfield.geometry.SubvolumeGraph` as a
lattice (docs/meshes.md has the formulas, their accuracy limits and the file
formats):

- subvolume ``i`` = tet ``i``: volume ``V_i``, centre = its barycentre (used by
  region selectors, results and analysis);
- an edge ``i -> j`` for every face shared by two tets of one compartment, coupling
  ``g_ij = A_ij / d_ij`` (µm) with ``A_ij`` the shared face area and ``d_ij`` the
  distance between the two tets' centres, so that a molecule jumps at
  ``D A_ij / (V_i d_ij)``. ``coupling="barycentric"`` (default, what STEPS does):
  ``d_ij = |b_j - b_i|`` between barycentres, always > 0 but only first-order
  consistent when the segment b_i b_j is orthogonal to the face;
  ``coupling="circumcentric"`` (the Voronoi dual): ``d_ij = (c_j - c_i) . n_ij``
  between circumcentres, which is orthogonal to the face by construction (a
  consistent two-point flux), positive on Delaunay meshes but zero or negative on
  non-Delaunay pairs and when four points are cospherical; faces where it is below
  ``min_dual_fraction`` of the barycentric distance fall back to the barycentric
  distance (counted, warned, recorded in ``meta``);
- a face between two compartments carries an edge only when a membrane passes
  through it: coupling = face area ``A_ij`` (µm²), rate ``P A_ij / V_i``;
- membranes are sets of mesh triangles (surface physical groups); the area of each
  triangle goes to the tet on its *inner* side (``membrane_areas[i, m]``), where
  membrane-bound species live. Inner: given by ``inner={membrane: compartment}``,
  else the side the membrane encloses (the sign of the flux of ``x - x0`` through
  the oriented triangles, ``x0`` their centroid); a triangle on the outer boundary
  gives its area to its one tet; a triangle inside one compartment gives half its
  area to each side (no transport role: it never blocks diffusion).
  ``area_factors={membrane: f}`` multiplies a membrane's area and its permeation
  coupling (folds, as ``area_factor`` on lattices).

Physical groups: every named volume group becomes a region (a label). With
``compartments=None`` all tets form one compartment, ``"cytosol"``
(DESIGN.md: "all volume groups = regions of one compartment"); otherwise
``compartments`` maps compartment names to the volume group(s) they are made of
(a list of names means "each group is the compartment of the same name"), and
every tet must end in exactly one compartment. ``membranes`` maps membrane names
to surface group(s) (``None``: every named surface group, by its own name).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError
from ..model import DEFAULT_COMPARTMENT
from .graph import SubvolumeGraph
from .quality import MeshQuality, MeshQualityWarning, check_tets, circumcentres, signed_volumes
from .selectors import Box, Where

__all__ = ["COUPLINGS", "UNITS", "TetMesh", "tet_faces"]

#: Supported couplings (docs/meshes.md).
COUPLINGS = ("barycentric", "circumcentric")
#: Length units a mesh file may be in, as the factor to µm.
UNITS = {"um": 1.0, "µm": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4}
#: Cell-data keys that hold physical-group tags, tried in this order.
TAG_KEYS = ("gmsh:physical", "medit:ref", "tetgen:ref", "CellEntityIds", "region", "cell_tags")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_FACE_LOCAL = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def tet_faces(
    tets: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Unique faces of a tet list.

    Returns ``(face_vertices (F, 3) sorted, face_tets (F, 2), multiplicity (F,))``;
    ``face_tets[f, 1] = -1`` on a boundary face (and only the first two owners are
    kept when more than two tets share a face: a non-manifold mesh).
    """
    n = tets.shape[0]
    allf = np.sort(tets[:, _FACE_LOCAL].reshape(-1, 3), axis=1)
    owner = np.repeat(np.arange(n, dtype=np.int64), 4)
    order = np.lexsort((allf[:, 2], allf[:, 1], allf[:, 0]))
    s = allf[order]
    new = np.ones(s.shape[0], dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)
    start = np.nonzero(new)[0]
    mult = np.diff(np.append(start, s.shape[0]))
    ft = np.full((start.size, 2), -1, dtype=np.int64)
    ft[:, 0] = owner[order[start]]
    two = mult >= 2
    ft[two, 1] = owner[order[start[two] + 1]]
    return s[start], ft, mult.astype(np.int64)


def _face_lookup(face_vertices: NDArray[np.int64], tris: NDArray[np.int64]) -> NDArray[np.int64]:
    """Index of each triangle (T, 3) among the faces (sorted rows), -1 if absent."""
    key_f = np.ascontiguousarray(face_vertices).view([("a", "i8"), ("b", "i8"), ("c", "i8")])[:, 0]
    t = np.ascontiguousarray(np.sort(tris, axis=1).astype(np.int64))
    key_t = t.view([("a", "i8"), ("b", "i8"), ("c", "i8")])[:, 0]
    pos = np.searchsorted(key_f, key_t)
    pos = np.clip(pos, 0, key_f.size - 1)
    found = key_f[pos] == key_t
    return np.where(found, pos, -1)


def _scale_factor(scale: float | str) -> float:
    if isinstance(scale, str):
        try:
            return UNITS[scale]
        except KeyError:
            raise GeometryError(
                f"unknown mesh length unit {scale!r} (known: {', '.join(UNITS)}; or a factor to µm)"
            ) from None
    f = float(scale)
    if not np.isfinite(f) or f <= 0:
        raise GeometryError(f"mesh scale must be a positive factor to µm, got {scale!r}")
    return f


def _as_groups(spec: Any, what: str) -> dict[str, list[str]]:
    """``["a", "b"]`` -> {a: [a], b: [b]}; {"c": "g"} -> {c: [g]}; {"c": [g, h]}."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping):
        out = {str(k): ([v] if isinstance(v, (str, int)) else list(v)) for k, v in spec.items()}
    else:
        out = {str(k): [str(k)] for k in spec}
    for name, groups in out.items():
        if not _NAME_RE.match(name):
            raise GeometryError(f"bad {what} name {name!r}")
        if not groups:
            raise GeometryError(f"{what} {name!r} lists no physical group")
    return {k: [str(g) for g in v] for k, v in out.items()}


class TetMesh:
    """A conforming tetrahedral mesh as a geometry (module docstring).

    Build with :meth:`load` (a mesh file) or :meth:`from_arrays`. ``points`` (P, 3)
    µm, ``tets`` (N, 4) point indices; ``volume_groups``: group name -> (N,) bool
    mask; ``surface_groups``: group name -> (T, 3) triangles.
    """

    kind = "tetmesh"

    def __init__(
        self,
        points: NDArray[np.floating],
        tets: NDArray[np.integer],
        *,
        volume_groups: Mapping[str, NDArray[np.bool_]] | None = None,
        surface_groups: Mapping[str, NDArray[np.integer]] | None = None,
        compartments: Any = None,
        membranes: Any = None,
        inner: Mapping[str, str] | None = None,
        area_factors: Mapping[str, float] | None = None,
        coupling: str = "barycentric",
        min_dual_fraction: float = 0.1,
        check: str = "error",
        merge_duplicates: bool = False,
        min_radius_ratio: float = 0.02,
        source: str = "<arrays>",
    ) -> None:
        self.source = source
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3) or pts.shape[0] < 4:
            raise GeometryError(f"mesh {source}: points must be (P, 3), got shape {pts.shape}")
        if pts.shape[1] == 2:
            raise GeometryError(f"mesh {source}: 2-D points; a tetrahedral mesh needs 3-D points")
        if not np.all(np.isfinite(pts)):
            raise GeometryError(f"mesh {source}: points hold NaN or infinite coordinates")
        t = np.asarray(tets)
        if t.ndim != 2 or t.shape[1] != 4 or t.shape[0] == 0:
            raise GeometryError(f"mesh {source}: tets must be (N, 4) with N > 0, got {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            raise GeometryError(f"mesh {source}: tets must be integer point indices")
        t = t.astype(np.int64)
        if t.min() < 0 or t.max() >= pts.shape[0]:
            raise GeometryError(
                f"mesh {source}: a tet refers to a point outside 0..{pts.shape[0] - 1} "
                "(truncated file?)"
            )
        if np.any(np.sort(t, axis=1)[:, 1:] == np.sort(t, axis=1)[:, :-1]):
            bad = np.nonzero(np.any(np.sort(t, axis=1)[:, 1:] == np.sort(t, axis=1)[:, :-1], 1))[0]
            raise GeometryError(
                f"mesh {source}: {bad.size} tet(s) repeat a vertex (tets {bad[:5].tolist()})"
            )
        if check not in ("error", "warn", "off"):
            raise GeometryError(f"check must be 'error', 'warn' or 'off', got {check!r}")
        if coupling not in COUPLINGS:
            raise GeometryError(f"unknown coupling {coupling!r} (known: {', '.join(COUPLINGS)})")
        sgroups = {
            k: np.asarray(v, dtype=np.int64).reshape(-1, 3)
            for k, v in (surface_groups or {}).items()
        }
        if merge_duplicates:
            pts, remap = _merge_points(pts, t)
            t = remap[t]
            sgroups = {k: remap[v] for k, v in sgroups.items()}
        self.points = pts
        self.coupling = coupling
        self.min_dual_fraction = float(min_dual_fraction)

        faces = tet_faces(t)
        quality = check_tets(pts, t, min_radius_ratio=min_radius_ratio, faces=faces)
        self.quality: MeshQuality = quality
        quality.enforce(check, source)
        vol = signed_volumes(pts, t)
        flip = vol < 0  # all-negative files, or inverted tets under check="warn"/"off"
        if flip.any():
            t = t.copy()
            t[flip, 2], t[flip, 3] = t[flip, 3].copy(), t[flip, 2].copy()
        self.tets = t
        self._faces = faces

        n = t.shape[0]
        vg = {}
        for name, mask in (volume_groups or {}).items():
            m = np.asarray(mask, dtype=bool)
            if m.shape != (n,):
                raise GeometryError(f"mesh {source}: volume group {name!r} mask is not ({n},)")
            if m.any():
                vg[str(name)] = m
        self.volume_groups: dict[str, NDArray[np.bool_]] = vg
        self.surface_groups: dict[str, NDArray[np.int64]] = sgroups
        self._regions: dict[str, NDArray[np.bool_]] = {}
        for name, m in vg.items():
            if _NAME_RE.match(name):
                self._regions[name] = m
        self._graph: SubvolumeGraph | None = None
        self._set_compartments(compartments)
        self._membrane_spec = membranes
        self._inner = dict(inner or {})
        self._area_factors: dict[str, float] = {}
        for m, f in (area_factors or {}).items():
            try:
                fv = float(f)
            except (TypeError, ValueError):
                fv = float("nan")
            if not np.isfinite(fv) or fv <= 0:
                raise GeometryError(f"area factor of membrane {m!r} must be > 0, got {f!r}")
            self._area_factors[str(m)] = fv
        self._extra_areas: dict[str, NDArray[np.float64]] = {}
        self._resolve_membranes()

    # -- constructors --------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        points: NDArray[np.floating],
        tets: NDArray[np.integer],
        *,
        scale: float | str = 1.0,
        labels: NDArray[np.integer] | None = None,
        label_names: Mapping[int, str] | None = None,
        triangles: NDArray[np.integer] | None = None,
        triangle_labels: NDArray[np.integer] | None = None,
        **kwargs: Any,
    ) -> TetMesh:
        """A mesh made in code. ``labels`` (N,) integer group tag of each tet and
        ``triangles`` (T, 3) with ``triangle_labels`` (T,) the surface groups;
        ``label_names`` names the tags (unnamed tags are called by their number).
        Other keywords as in the class (compartments, membranes, coupling, check)."""
        f = _scale_factor(scale)
        pts = np.asarray(points, dtype=np.float64) * f
        names = {int(k): str(v) for k, v in (label_names or {}).items()}
        vg: dict[str, NDArray[np.bool_]] = {}
        if labels is not None:
            lab = np.asarray(labels).reshape(-1)
            for tag in np.unique(lab):
                vg[names.get(int(tag), str(int(tag)))] = lab == tag
        sg: dict[str, NDArray[np.int64]] = {}
        if triangles is not None:
            tri = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
            tl = (
                np.zeros(tri.shape[0], dtype=np.int64)
                if triangle_labels is None
                else np.asarray(triangle_labels).reshape(-1)
            )
            for tag in np.unique(tl):
                sg[names.get(int(tag), str(int(tag)))] = tri[tl == tag]
        kwargs.setdefault("source", "<arrays>")
        return cls(pts, tets, volume_groups=vg, surface_groups=sg, **kwargs)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        scale: float | str = 1.0,
        compartments: Any = None,
        membranes: Any = None,
        tag_key: str | None = None,
        group_names: Mapping[int, str] | None = None,
        **kwargs: Any,
    ) -> TetMesh:
        """Read a mesh file through meshio: gmsh ``.msh`` (v2 and v4, ASCII or
        binary), VTK ``.vtu``/``.vtk``, Abaqus ``.inp``, TetGen ``.node``/``.ele``,
        and anything else meshio reads that holds tetrahedra.

        ``scale``: factor to µm or a unit name (``"nm"``, ``"m"``, ``"mm"``, ``"um"``).
        Physical groups come from gmsh physical tags (named by the file's
        ``$PhysicalNames``), element sets (Abaqus ``*ELSET``), or a cell-data tag
        array (``tag_key``, else the first of :data:`TAG_KEYS`); ``group_names``
        names bare numeric tags (TetGen region attributes). Quadratic tets
        (``tetra10``) are read by their corner nodes.
        """
        p = Path(path)
        src = repr(str(p))
        if not p.is_file():
            raise GeometryError(f"mesh file {src} does not exist")
        try:
            import meshio
        except ImportError as exc:  # pragma: no cover - meshio is a dependency
            raise GeometryError("reading mesh files needs meshio (pip install meshio)") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mesh = meshio.read(str(p))
        except Exception as exc:
            raise GeometryError(
                f"cannot read mesh file {src}: {type(exc).__name__}: {exc} "
                "(truncated or not a mesh file meshio knows?)"
            ) from None
        vg, sg, pts, tets = _groups_from_meshio(mesh, src, tag_key, group_names)
        kwargs.setdefault("source", src)
        f = _scale_factor(scale)
        return cls(
            pts * f,
            tets,
            volume_groups=vg,
            surface_groups=sg,
            compartments=compartments,
            membranes=membranes,
            **kwargs,
        )

    # -- basic arrays -----------------------------------------------------------------
    @property
    def n_subvolumes(self) -> int:
        return int(self.tets.shape[0])

    @property
    def volumes(self) -> NDArray[np.float64]:
        """(N,) tet volumes in µm³."""
        return np.abs(signed_volumes(self.points, self.tets))

    @property
    def centers(self) -> NDArray[np.float64]:
        """(N, 3) tet barycentres in µm."""
        return self.points[self.tets].mean(axis=1)

    @property
    def circumcenters(self) -> NDArray[np.float64]:
        return circumcentres(self.points, self.tets)

    @property
    def regions(self) -> dict[str, NDArray[np.bool_]]:
        return dict(self._regions)

    @property
    def compartment_names(self) -> tuple[str, ...]:
        return tuple(self._compartment_names)

    @property
    def compartments(self) -> NDArray[np.int64]:
        return self._compartment_ids.copy()

    @property
    def membrane_names(self) -> tuple[str, ...]:
        return tuple(self._membranes) + tuple(self._extra_areas)

    # -- regions and compartments ------------------------------------------------------
    def region(self, name: str, selector: Any) -> None:
        """Label the tets chosen by ``selector`` (on barycentres; see Lattice.region)."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise GeometryError(f"bad region name {name!r}")
        if name in self._regions:
            raise GeometryError(f"region {name!r} is defined twice")
        mask = self._select(selector, f"region {name!r}")
        if not mask.any():
            raise GeometryError(f"region {name!r} is empty: it selects no tet of the mesh")
        self._regions[name] = mask.copy()
        self._graph = None

    def _select(self, selector: Any, what: str) -> NDArray[np.bool_]:
        n = self.n_subvolumes
        if isinstance(selector, str):
            selector = Where(selector)
        if callable(selector) or isinstance(selector, Box):
            c = self.centers
            try:
                mask = np.asarray(selector(c[:, 0], c[:, 1], c[:, 2]))
            except GeometryError:
                raise
            except Exception as exc:
                raise GeometryError(
                    f"selector of {what} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if mask.ndim == 0:
                mask = np.broadcast_to(mask, (n,))
        else:
            mask = np.asarray(selector)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise GeometryError(f"selector of {what} must give ({n},) booleans")
        return mask

    def _group_mask(self, group: str, what: str) -> NDArray[np.bool_]:
        if group not in self.volume_groups:
            known = ", ".join(self.volume_groups) or "none"
            raise GeometryError(
                f"mesh {self.source}: {what} refers to unknown volume physical group "
                f"{group!r} (the file defines: {known})"
            )
        return self.volume_groups[group]

    def _set_compartments(self, spec: Any) -> None:
        n = self.n_subvolumes
        groups = _as_groups(spec, "compartment")
        if not groups:
            self._compartment_names = [DEFAULT_COMPARTMENT]
            self._compartment_ids = np.zeros(n, dtype=np.int64)
            return
        ids = np.full(n, -1, dtype=np.int64)
        names = list(groups)
        for c, (cname, gl) in enumerate(groups.items()):
            for g in gl:
                m = self._group_mask(g, f"compartment {cname!r}")
                clash = m & (ids >= 0) & (ids != c)
                if clash.any():
                    raise GeometryError(
                        f"mesh {self.source}: volume group {g!r} overlaps compartment "
                        f"{names[int(ids[clash][0])]!r} ({int(clash.sum())} tets)"
                    )
                ids[m] = c
        if np.any(ids < 0):
            left = [g for g, m in self.volume_groups.items() if np.any(m & (ids < 0))]
            raise GeometryError(
                f"mesh {self.source}: {int(np.sum(ids < 0))} tets belong to no compartment "
                f"(volume groups not assigned: {', '.join(left) or 'untagged tets'}); list "
                "every volume group under a compartment"
            )
        self._compartment_names = names
        self._compartment_ids = ids
        self._graph = None

    def compartment(self, name: str, selector: Any) -> None:
        """Put the tets chosen by ``selector`` (or a volume group name) into
        compartment ``name`` (created on first use; later calls repaint)."""
        if isinstance(selector, str) and selector in self.volume_groups:
            mask = self.volume_groups[selector]
        else:
            mask = self._select(selector, f"compartment {name!r}")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise GeometryError(f"bad compartment name {name!r}")
        if not mask.any():
            raise GeometryError(f"compartment {name!r} is empty: it selects no tet")
        if name not in self._compartment_names:
            self._compartment_names.append(name)
        self._compartment_ids[mask] = self._compartment_names.index(name)
        self._graph = None
        self._resolve_membranes()

    def membrane_area(self, name: str, area: Any) -> None:
        """A sub-tet membrane given as µm² per tet ((N,) array or ``f(x, y, z)``):
        carries membrane-bound species, no transport (as Lattice.membrane_area)."""
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in self.membrane_names:
            raise GeometryError(f"bad or repeated membrane name {name!r}")
        if callable(area):
            c = self.centers
            area = area(c[:, 0], c[:, 1], c[:, 2])
        a = np.asarray(area, dtype=np.float64)
        if a.shape != (self.n_subvolumes,) or not np.all(np.isfinite(a)) or np.any(a < 0):
            raise GeometryError(f"membrane {name!r}: area must be ({self.n_subvolumes},) >= 0")
        self._extra_areas[name] = a.copy()
        self._graph = None

    # -- membranes ---------------------------------------------------------------------
    def _resolve_membranes(self) -> None:
        """Membrane name -> face ids, from the surface groups."""
        spec = self._membrane_spec
        if spec is None:
            groups = {g: [g] for g in self.surface_groups if _NAME_RE.match(g)}
        else:
            groups = _as_groups(spec, "membrane")
        fv = self._faces[0]
        out: dict[str, NDArray[np.int64]] = {}
        for mname, gl in groups.items():
            ids = []
            for g in gl:
                if g not in self.surface_groups:
                    known = ", ".join(self.surface_groups) or "none"
                    raise GeometryError(
                        f"mesh {self.source}: membrane {mname!r} refers to unknown surface "
                        f"physical group {g!r} (the file defines: {known})"
                    )
                tri = self.surface_groups[g]
                f = _face_lookup(fv, tri)
                if np.any(f < 0):
                    bad = np.nonzero(f < 0)[0]
                    raise GeometryError(
                        f"mesh {self.source}: {bad.size} triangle(s) of surface group {g!r} are "
                        "not faces of any tet (the surface mesh does not conform to the volume "
                        "mesh)"
                    )
                ids.append(f)
            out[mname] = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        for what, given in (("inner", self._inner), ("area_factors", self._area_factors)):
            for m in given:
                if m not in out:
                    raise GeometryError(f"{what}= names unknown membrane {m!r}")
        self._membranes = out
        self._graph = None

    # -- compilation -------------------------------------------------------------------
    def to_graph(self) -> SubvolumeGraph:
        """Compile to the :class:`SubvolumeGraph` (cached)."""
        if self._graph is not None:
            return self._graph
        pts, tets = self.points, self.tets
        fv, ft, _ = self._faces
        n = self.n_subvolumes
        vol = self.volumes
        bary = self.centers
        tri = pts[fv]
        cr = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = 0.5 * np.linalg.norm(cr, axis=1)
        normal = cr / (2 * area[:, None])
        comp = self._compartment_ids
        names = self.compartment_names

        inner_f = ft[:, 1] >= 0
        fi = np.nonzero(inner_f)[0]
        a_, b_ = ft[fi, 0], ft[fi, 1]
        nrm = normal[fi]
        sgn = np.sign(np.einsum("ij,ij->i", bary[b_] - bary[a_], nrm))
        sgn[sgn == 0] = 1.0
        nrm = nrm * sgn[:, None]  # from a_ to b_
        d_bary = np.linalg.norm(bary[b_] - bary[a_], axis=1)
        n_fallback = 0
        if self.coupling == "circumcentric":
            cc = self.circumcenters
            d_c = np.einsum("ij,ij->i", cc[b_] - cc[a_], nrm)
            bad = ~(d_c >= self.min_dual_fraction * d_bary)
            n_fallback = int(bad.sum())
            d = np.where(bad, d_bary, d_c)
            if n_fallback:
                w = fi[bad][0]
                warnings.warn(
                    f"mesh {self.source}: circumcentric coupling: {n_fallback} of {fi.size} faces "
                    f"have a Voronoi distance < {self.min_dual_fraction:g} x the barycentric one "
                    f"(non-Delaunay or cospherical; first at "
                    f"{np.round(tri[w].mean(axis=0), 4).tolist()} um); they use the barycentric "
                    "distance",
                    MeshQualityWarning,
                    stacklevel=2,
                )
        else:
            d = d_bary
        same = comp[a_] == comp[b_]

        # Membranes.
        mem_names = tuple(self._membranes)
        n_m = len(mem_names) + len(self._extra_areas)
        areas = np.zeros((n, n_m))
        face_mem = np.full(fv.shape[0], -1, dtype=np.int64)
        # Folded membranes (area_factors): more area, and so more permeation, on the
        # same faces; diffusion inside a compartment keeps the plain face area.
        m_area = area.copy()
        for m, mname in enumerate(mem_names):
            fids = self._membranes[mname]
            if np.any(face_mem[fids] >= 0):
                other = mem_names[int(face_mem[fids][face_mem[fids] >= 0][0])]
                raise GeometryError(f"membranes {mname!r} and {other!r} share faces")
            face_mem[fids] = m
            m_area[fids] *= self._area_factors.get(mname, 1.0)
            t0, t1 = ft[fids, 0], ft[fids, 1]
            bnd = t1 < 0
            np.add.at(areas[:, m], t0[bnd], m_area[fids[bnd]])
            both = ~bnd
            same_c = both & (comp[t0] == comp[np.maximum(t1, 0)])
            np.add.at(areas[:, m], t0[same_c], 0.5 * m_area[fids[same_c]])
            np.add.at(areas[:, m], t1[same_c], 0.5 * m_area[fids[same_c]])
            cross = both & ~same_c
            if cross.any():
                inner_tet = self._inner_tets(mname, fids[cross], t0[cross], t1[cross], area, normal)
                np.add.at(areas[:, m], inner_tet, m_area[fids[cross]])
        for k, a in enumerate(self._extra_areas.values()):
            areas[:, len(mem_names) + k] = a

        fm = face_mem[fi]
        keep = same | (fm >= 0)
        coupling = np.where(same, area[fi] / d, m_area[fi])
        emem = np.where(same, -1, fm)
        src = np.concatenate([a_[keep], b_[keep]])
        dst = np.concatenate([b_[keep], a_[keep]])
        cpl = np.concatenate([coupling[keep], coupling[keep]])
        em = np.concatenate([emem[keep], emem[keep]])
        order = np.lexsort((dst, src))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=offsets[1:])
        meta = {
            "coupling": self.coupling,
            "n_points": int(pts.shape[0]),
            "circumcentric_fallback_faces": n_fallback,
            "source": self.source,
        }
        self._graph = SubvolumeGraph(
            volumes=vol,
            centers=bary,
            edge_offsets=offsets,
            edge_targets=np.ascontiguousarray(dst[order]),
            edge_coupling=np.ascontiguousarray(cpl[order]),
            edge_membrane=np.ascontiguousarray(em[order]),
            compartments=comp.copy(),
            compartment_names=names,
            regions=dict(self._regions),
            membrane_names=mem_names + tuple(self._extra_areas),
            membrane_areas=areas,
            kind="tetmesh",
            meta=meta,
            points=pts,
            cells=tets,
        )
        return self._graph

    def _inner_tets(self, mname, fids, t0, t1, area, normal) -> NDArray[np.int64]:
        """The tet on the inner side of each membrane face between two compartments."""
        comp = self._compartment_ids
        names = self._compartment_names
        out = np.empty(fids.size, dtype=np.int64)
        c0, c1 = comp[t0], comp[t1]
        lo, hi = np.minimum(c0, c1), np.maximum(c0, c1)
        bary = self.centers
        for a, b in set(zip(lo.tolist(), hi.tolist(), strict=True)):
            sel = (lo == a) & (hi == b)
            want = self._inner.get(mname)
            if want is not None:
                if want not in (names[a], names[b]):
                    raise GeometryError(
                        f"inner compartment {want!r} of membrane {mname!r} is not on either side "
                        f"of its faces between {names[a]!r} and {names[b]!r}"
                    )
                inner_c = names.index(want)
            else:
                # Orient each face from compartment a to b; the flux of x - x0 through
                # the surface is > 0 when a is enclosed.
                f = fids[sel]
                pts = self.points[self._faces[0][f]].mean(axis=1)
                ta = np.where(c0[sel] == a, t0[sel], t1[sel])
                nv = (
                    normal[f]
                    * np.sign(np.einsum("ij,ij->i", pts - bary[ta], normal[f]) + 1e-300)[:, None]
                )
                x0 = (pts * area[f, None]).sum(axis=0) / area[f].sum()
                flux = float(np.sum(area[f] * np.einsum("ij,ij->i", pts - x0, nv)))
                inner_c = a if flux >= 0 else b
            out[sel] = np.where(c0[sel] == inner_c, t0[sel], t1[sel])
        return out

    # -- analysis helpers --------------------------------------------------------------
    def compartment_volumes(self) -> dict[str, float]:
        vol = self.volumes
        return {
            c: float(vol[self._compartment_ids == i].sum())
            for i, c in enumerate(self._compartment_names)
        }

    def membrane_areas(self) -> dict[str, float]:
        g = self.to_graph()
        assert g.membrane_areas is not None
        return {m: float(g.membrane_areas[:, k].sum()) for k, m in enumerate(g.membrane_names)}

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the mesh (tets with a ``region`` tag per compartment, membrane
        triangles) through meshio, e.g. to ``.vtu`` for ParaView."""
        import meshio

        cells = [("tetra", self.tets)]
        data = [self._compartment_ids.astype(np.int32)]
        for m, fids in self._membranes.items():
            if fids.size:
                cells.append(("triangle", self._faces[0][fids]))
                data.append(np.full(fids.size, -1 - list(self._membranes).index(m), np.int32))
        meshio.write(str(path), meshio.Mesh(self.points, cells, cell_data={"region": data}))

    def __repr__(self) -> str:
        return (
            f"TetMesh({self.n_subvolumes} tets, {self.points.shape[0]} points, "
            f"coupling={self.coupling!r}, compartments={list(self._compartment_names)}, "
            f"membranes={list(self.membrane_names)}, regions={list(self._regions)})"
        )


def _merge_points(
    pts: NDArray[np.float64], tets: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    span = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))) or 1.0
    q = np.round(pts / (1e-9 * span)).astype(np.int64)
    _, first, inv = np.unique(q, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    return pts[first], inv.astype(np.int64)


def _groups_from_meshio(mesh: Any, src: str, tag_key: str | None, group_names: Any):
    pts = np.asarray(mesh.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise GeometryError(f"mesh file {src}: points are not 3-D (shape {pts.shape})")
    types = [b.type for b in mesh.cells]
    tet_blocks = [k for k, b in enumerate(mesh.cells) if b.type in ("tetra", "tetra10")]
    if not tet_blocks:
        counts = ", ".join(f"{b.type} ({len(b.data)})" for b in mesh.cells) or "none"
        raise GeometryError(
            f"mesh file {src} holds no tetrahedra (cell types: {counts}); redoxfield needs a "
            "tetrahedral volume mesh (mesh the volume in 3-D, e.g. gmsh -3)"
        )
    other3d = {"hexahedron", "wedge", "pyramid", "hexahedron20", "wedge15", "pyramid13"}
    if other3d & set(types):
        raise GeometryError(
            f"mesh file {src} mixes tetrahedra with {', '.join(sorted(other3d & set(types)))} "
            "cells; only tetrahedral meshes are supported"
        )
    names: dict[tuple[int, int], str] = {}
    for name, val in (getattr(mesh, "field_data", None) or {}).items():
        v = np.asarray(val).reshape(-1)
        if v.size >= 2:
            names[(int(v[1]), int(v[0]))] = str(name)
    extra = {int(k): str(v) for k, v in (group_names or {}).items()}
    keys = [tag_key] if tag_key else list(TAG_KEYS)
    if tag_key and tag_key not in mesh.cell_data:
        raise GeometryError(
            f"mesh file {src} has no cell data {tag_key!r} (it has: "
            f"{', '.join(mesh.cell_data) or 'none'})"
        )
    key = next((k for k in keys if k in mesh.cell_data), None)

    def group_name(dim: int, tag: int) -> str:
        return extra.get(tag) or names.get((dim, tag)) or str(tag)

    tets_l, tlab, tris_l, trilab = [], [], [], []
    for k, b in enumerate(mesh.cells):
        data = np.asarray(b.data, dtype=np.int64)
        tags = None if key is None else np.asarray(mesh.cell_data[key][k]).reshape(-1)
        if b.type in ("tetra", "tetra10"):
            tets_l.append(data[:, :4])
            tlab.append(tags if tags is not None else np.full(len(data), -1))
        elif b.type in ("triangle", "triangle6"):
            tris_l.append(data[:, :3])
            trilab.append(tags if tags is not None else np.full(len(data), -1))
    tets = np.concatenate(tets_l)
    vg: dict[str, NDArray[np.bool_]] = {}
    sg: dict[str, NDArray[np.int64]] = {}
    if key is not None:
        tl = np.concatenate(tlab).astype(np.int64)
        for tag in np.unique(tl):
            vg[group_name(3, int(tag))] = tl == tag
        if tris_l:
            tri = np.concatenate(tris_l)
            trl = np.concatenate(trilab).astype(np.int64)
            for tag in np.unique(trl):
                if tag >= 0:
                    sg[group_name(2, int(tag))] = tri[trl == tag]
    # Named 0/1 cell arrays "group:<name>" (how redoxfield's mesher keeps group names
    # in formats without field data, such as VTU).
    for dkey, per_block in mesh.cell_data.items():
        if not str(dkey).startswith("group:"):
            continue
        gname = str(dkey)[len("group:") :]
        tm, sm = [], []
        for b, arr in zip(mesh.cells, per_block, strict=True):
            a = np.asarray(arr).reshape(-1) != 0
            if b.type in ("tetra", "tetra10"):
                tm.append(a)
            elif b.type in ("triangle", "triangle6"):
                sm.append(a)
        tmask = np.concatenate(tm) if tm else np.zeros(0, bool)
        if tmask.any():
            vg[gname] = tmask
        smask = np.concatenate(sm) if sm else np.zeros(0, bool)
        if smask.any():
            sg[gname] = np.concatenate(tris_l)[smask]
        # Drop the bare-number groups the named ones duplicate.
        for num in [k for k in vg if k.isdigit()]:
            if gname in vg and np.array_equal(vg[num], vg[gname]):
                del vg[num]
        for num in [k for k in sg if k.isdigit()]:
            same = gname in sg and sg[num].shape == sg[gname].shape
            if same and np.array_equal(sg[num], sg[gname]):
                del sg[num]
    # Element sets (Abaqus *ELSET, and meshio's gmsh cell_sets) by name.
    offsets = {}
    t_off = tri_off = 0
    for k, b in enumerate(mesh.cells):
        if b.type in ("tetra", "tetra10"):
            offsets[k] = ("tet", t_off)
            t_off += len(b.data)
        elif b.type in ("triangle", "triangle6"):
            offsets[k] = ("tri", tri_off)
            tri_off += len(b.data)
    all_tri = np.concatenate(tris_l) if tris_l else np.zeros((0, 3), np.int64)
    for sname, per_block in (getattr(mesh, "cell_sets", None) or {}).items():
        if sname.startswith("gmsh:") or sname in vg or sname in sg:
            continue
        tmask = np.zeros(tets.shape[0], dtype=bool)
        tri_idx: list[NDArray[np.int64]] = []
        for k, idx in enumerate(per_block):
            if k not in offsets or idx is None or len(idx) == 0:
                continue
            kind, off = offsets[k]
            idx = np.asarray(idx, dtype=np.int64) + off
            if kind == "tet":
                tmask[idx] = True
            else:
                tri_idx.append(idx)
        if tmask.any():
            vg[str(sname)] = tmask
        if tri_idx:
            sg[str(sname)] = all_tri[np.concatenate(tri_idx)]
    return vg, sg, pts, tets
