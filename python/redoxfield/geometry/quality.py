"""Quality checks of a tetrahedral mesh, run before it becomes a subvolume graph.

:func:`check_tets` measures, all vectorised:

- **degenerate** tets: ``|V| <= 1e-10 * l_max³`` (``l_max`` the longest edge of the
  tet; a flat or collapsed element) -- an error;
- **inverted** tets: signed volume < 0 while most tets are positive (a mixed
  orientation means folded or overlapping elements) -- an error. A file where
  *every* tet is negative only uses the other vertex-order convention; its tets are
  re-ordered silently;
- **duplicate points** (two points closer than ``1e-9`` of the bounding-box
  diagonal) that tets use -- an error, because tets on either side of them share no
  face: the mesh holds an invisible wall (merge them with ``merge_duplicates=True``);
- **non-conforming faces**: a face shared by more than two tets, or a boundary face
  with mesh on its other side (a hanging face: found by nudging the face centroid
  outwards and locating it in the mesh) -- an error;
- **disconnected pieces** of the face-adjacency graph -- a warning (several cells
  in one mesh can be intended), with the size and a point of each piece;
- **poor aspect ratio**: radius ratio ``rho = 3 r_in / r_circ`` (1 for the regular
  tet, 0 for a flat one) below ``min_radius_ratio`` (default 0.02) -- a warning
  that counts them and gives the worst one's location.

Every finding names how many elements, the first indices and a location (µm), so
that the user can find them in ParaView or gmsh. ``check="warn"`` turns the errors
into warnings (inverted tets are then re-ordered), ``check="off"`` skips the checks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError

__all__ = ["MeshQuality", "MeshQualityWarning", "check_tets", "radius_ratio", "signed_volumes"]

#: Relative volume below which a tet is degenerate (|V| / l_max³; regular tet: 0.118).
DEGENERATE_REL_VOLUME = 1e-10
#: Default radius ratio below which a tet counts as very poor (sliver, needle, cap).
MIN_RADIUS_RATIO = 0.02


class MeshQualityWarning(UserWarning):
    """A tetrahedral mesh is usable but has elements or pieces worth a look."""


def signed_volumes(points: NDArray[np.float64], tets: NDArray[np.int64]) -> NDArray[np.float64]:
    """(N,) signed volumes ``det[b-a, c-a, d-a] / 6`` (positive: right-handed order)."""
    p = points[tets]
    return (
        np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0])) / 6
    )


def _face_areas(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, 4) areas of the faces opposite vertex 0..3 of tets with corners p (N, 4, 3)."""
    out = np.empty(p.shape[:2])
    for k in range(4):
        a, b, c = (p[:, j] for j in range(4) if j != k)
        out[:, k] = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return out


def circumcentres(points: NDArray[np.float64], tets: NDArray[np.int64]) -> NDArray[np.float64]:
    """(N, 3) circumcentres (centre of the sphere through the 4 corners). Degenerate
    tets give non-finite rows."""
    p = points[tets]
    a = p[:, 1:] - p[:, :1]  # (N, 3, 3)
    rhs = 0.5 * np.einsum("nij,nij->ni", a, a)
    det = np.linalg.det(a)
    ok = np.abs(det) > 0
    out = np.full((tets.shape[0], 3), np.nan)
    if ok.any():
        out[ok] = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0] + p[ok, 0]
    return out


def radius_ratio(points: NDArray[np.float64], tets: NDArray[np.int64]) -> NDArray[np.float64]:
    """(N,) ``3 r_in / r_circ`` in [0, 1]: 1 for a regular tet, -> 0 when degenerate."""
    p = points[tets]
    vol = np.abs(signed_volumes(points, tets))
    r_in = 3 * vol / _face_areas(p).sum(axis=1)
    cc = circumcentres(points, tets)
    r_circ = np.linalg.norm(cc - p[:, 0], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(np.isfinite(r_circ) & (r_circ > 0), 3 * r_in / r_circ, 0.0)
    return np.clip(np.nan_to_num(rho), 0.0, 1.0)


def _loc(xyz: NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in xyz) + ") um"


def _first(idx: NDArray[np.int64], k: int = 5) -> str:
    s = ", ".join(str(int(i)) for i in idx[:k])
    return s + (", ..." if idx.size > k else "")


@dataclass
class MeshQuality:
    """What :func:`check_tets` found. ``errors`` and ``warnings`` are sentences."""

    n_points: int
    n_tets: int
    degenerate: NDArray[np.int64]
    inverted: NDArray[np.int64]
    all_negative: bool
    duplicate_points: NDArray[np.int64]
    overshared_faces: int
    hanging_faces: NDArray[np.int64]
    pieces: list[tuple[int, NDArray[np.float64]]]
    poor: NDArray[np.int64]
    min_radius_ratio: float
    worst_radius_ratio: float
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        lines = [f"{self.n_tets} tets, {self.n_points} points"]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        if len(lines) == 1:
            lines.append(f"no problems (worst radius ratio {self.worst_radius_ratio:.3g})")
        return "\n".join(lines)

    def enforce(self, policy: str, source: str) -> None:
        """Raise (``"error"``) or warn about the findings (``"warn"``)."""
        if policy == "off":
            return
        if self.errors and policy == "error":
            raise GeometryError(
                f"mesh {source}: "
                + "; ".join(self.errors)
                + " (check='warn' downgrades these to warnings)"
            )
        for msg in self.errors + self.warnings:
            warnings.warn(f"mesh {source}: {msg}", MeshQualityWarning, stacklevel=4)


def _hanging_faces(
    points: NDArray[np.float64],
    tets: NDArray[np.int64],
    face_vertices: NDArray[np.int64],
    face_owner: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Boundary faces (one owner tet) whose outside is inside another tet."""
    from scipy.spatial import cKDTree

    if face_vertices.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    tri = points[face_vertices]
    cen = tri.mean(axis=1)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-300
    owner_bary = points[tets[face_owner]].mean(axis=1)
    flip = np.einsum("ij,ij->i", cen - owner_bary, nrm) < 0
    nrm[flip] *= -1
    size = np.sqrt(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1))
    probe = cen + 1e-3 * size[:, None] * nrm
    bary = points[tets].mean(axis=1)
    k = min(16, tets.shape[0])
    _, near = cKDTree(bary).query(probe, k=k)
    near = near.reshape(probe.shape[0], k)
    hit = np.zeros(probe.shape[0], dtype=bool)
    for col in range(k):
        cand = near[:, col]
        p = points[tets[cand]]  # (F, 4, 3)
        t = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], axis=2)
        ok = np.abs(np.linalg.det(t)) > 0
        lam = np.full((probe.shape[0], 3), -1.0)
        if ok.any():
            lam[ok] = np.linalg.solve(t[ok], (probe[ok] - p[ok, 0])[..., None])[..., 0]
        inside = (lam > 1e-9).all(axis=1) & (lam.sum(axis=1) < 1 - 1e-9)
        hit |= inside & (cand != face_owner)
    return np.nonzero(hit)[0].astype(np.int64)


def check_tets(
    points: NDArray[np.float64],
    tets: NDArray[np.int64],
    *,
    min_radius_ratio: float = MIN_RADIUS_RATIO,
    faces: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> MeshQuality:
    """Measure the problems listed in the module docstring.

    ``faces``: ``(face_vertices (F, 3), face_tets (F, 2) with -1 for none,
    face_multiplicity (F,))`` when the caller already has them.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = tets.shape[0]
    vol = signed_volumes(points, tets)
    p = points[tets]
    l_max = np.zeros(n)
    for a in range(4):
        for b in range(a + 1, 4):
            l_max = np.maximum(l_max, np.linalg.norm(p[:, a] - p[:, b], axis=1))
    degenerate = np.nonzero(np.abs(vol) <= DEGENERATE_REL_VOLUME * l_max**3)[0]
    neg = np.nonzero(vol < 0)[0]
    all_negative = neg.size > 0 and neg.size >= n - degenerate.size
    inverted = np.zeros(0, dtype=np.int64) if all_negative else np.setdiff1d(neg, degenerate)

    # Duplicate points among those the tets use.
    used = np.unique(tets)
    span = float(np.linalg.norm(points[used].max(axis=0) - points[used].min(axis=0))) or 1.0
    q = np.round(points[used] / (1e-9 * span)).astype(np.int64)
    _, inv, cnt = np.unique(q, axis=0, return_inverse=True, return_counts=True)
    dup = used[cnt[inv.reshape(-1)] > 1]

    if faces is None:
        from .tetmesh import tet_faces

        faces = tet_faces(tets)
    fv, ft, mult = faces
    overshared = int(np.count_nonzero(mult > 2))
    boundary = np.nonzero((ft[:, 1] < 0) & (mult == 1))[0]
    hanging = boundary[_hanging_faces(points, tets, fv[boundary], ft[boundary, 0])]

    inner = ft[:, 1] >= 0
    adj = coo_matrix(
        (np.ones(int(inner.sum())), (ft[inner, 0], ft[inner, 1])), shape=(n, n)
    ).tocsr()
    n_pieces, labels = connected_components(adj, directed=False)
    bary = p.mean(axis=1)
    pieces = []
    if n_pieces > 1:
        sizes = np.bincount(labels, minlength=n_pieces)
        for c in np.argsort(-sizes):
            pieces.append((int(sizes[c]), bary[np.argmax(labels == c)]))

    ok_tets = np.setdiff1d(np.arange(n), degenerate)
    rho = np.ones(n)
    if ok_tets.size:
        rho[ok_tets] = radius_ratio(points, tets[ok_tets])
    rho[degenerate] = 0.0
    poor = np.setdiff1d(np.nonzero(rho < min_radius_ratio)[0], degenerate)

    qual = MeshQuality(
        n_points=int(points.shape[0]),
        n_tets=n,
        degenerate=degenerate,
        inverted=inverted,
        all_negative=bool(all_negative),
        duplicate_points=dup,
        overshared_faces=overshared,
        hanging_faces=hanging,
        pieces=pieces,
        poor=poor,
        min_radius_ratio=min_radius_ratio,
        worst_radius_ratio=float(rho[ok_tets].min()) if ok_tets.size else 0.0,
    )
    e, w = qual.errors, qual.warnings
    if degenerate.size:
        e.append(
            f"{degenerate.size} degenerate tet(s) of (near) zero volume (tets {_first(degenerate)};"
            f" first at {_loc(bary[degenerate[0]])})"
        )
    if inverted.size:
        e.append(
            f"{inverted.size} inverted tet(s) (negative signed volume while {n - neg.size} are "
            f"positive: folded or overlapping elements; tets {_first(inverted)}; first at "
            f"{_loc(bary[inverted[0]])})"
        )
    if dup.size:
        e.append(
            f"{dup.size} duplicate point(s) used by tets (points {_first(dup)}; first at "
            f"{_loc(points[dup[0]])}): the tets on either side share no face, so nothing "
            "diffuses across (merge_duplicates=True merges them)"
        )
    if overshared:
        where = bary[ft[np.argmax(mult > 2), 0]]
        e.append(
            f"{overshared} non-manifold face(s) shared by more than two tets (first near "
            f"{_loc(where)})"
        )
    if hanging.size:
        e.append(
            f"{hanging.size} non-conforming (hanging) face(s): boundary faces with mesh on "
            f"their other side (first at {_loc(points[fv[hanging[0]]].mean(axis=0))})"
        )
    if len(pieces) > 1:
        desc = ", ".join(f"{s} tets near {_loc(c)}" for s, c in pieces[:4])
        w.append(
            f"{len(pieces)} disconnected pieces ({desc}{', ...' if len(pieces) > 4 else ''}); "
            "nothing diffuses between them"
        )
    if poor.size:
        worst = poor[np.argmin(rho[poor])]
        w.append(
            f"{poor.size} tet(s) with a very poor aspect ratio (radius ratio 3 r_in / r_circ "
            f"< {min_radius_ratio:g}; worst {rho[worst]:.3g}, tet {int(worst)} at "
            f"{_loc(bary[worst])}); see docs/meshes.md on the coupling's accuracy"
        )
    return qual
