"""Cartesian lattice of rectangular voxels (cubes when the spacing is scalar).

Subvolume order: **x fastest**, then y, then z. Voxel ``(i, j, k)`` (0-based
along x, y, z) has index ``i + nx * (j + ny * k)``, so a result array of length
N reshapes to the 3-D field with ``a.reshape(nz, ny, nx)`` (C order, axes
z, y, x) -- the same order as VTK image data and XDMF ``3DCoRectMesh`` cell
data. Voxel centres are ``origin + (i + 1/2, j + 1/2, k + 1/2) * spacing``.

Edges: 6 neighbours, written per source voxel in the order -x, +x, -y, +y, -z,
+z (the order of the core's own ``cubic_lattice``); walls reflect (a wall face
has no edge). Coupling ``g = A / d``: ``hy*hz/hx`` on an x face, which is ``h``
for a cube, so that the jump rate ``D g / V`` is ``D / h²``.

Compartments and membranes (docs/geometry.md):

- ``space.compartment(name, selector)`` paints voxels into a compartment (later
  calls win; unpainted voxels stay in the default compartment, ``"cytosol"``).
- ``space.membrane(name, between=(inner, outer))``: the faces between a voxel of
  ``inner`` and a voxel of ``outer`` become membrane edges (coupling = face
  area, so the crossing rate is ``P · A / V``). With ``normal=f(x, y, z) ->
  (n, 3)`` (the unit normal of the true, smooth surface) each face counts
  ``A · |n · e_face|`` instead of ``A``: summed over the staircase this
  converges to the area of the smooth surface, where the bare staircase would
  overestimate it (by up to 4/π on a cylinder). The membrane area of a face is
  recorded in the *inner* voxel (``membrane_areas[i, m]``), where
  membrane-bound species of that membrane live.
- ``space.membrane_area(name, area)``: a sub-voxel membrane (T-tubules, folds)
  given as µm² per voxel; it carries membrane-bound species and surface
  reactions, but no transport.
- Faces between two different compartments that no membrane joins have no
  edge: nothing crosses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError
from ..model import DEFAULT_COMPARTMENT
from .graph import SubvolumeGraph
from .selectors import Box, Where

__all__ = ["Lattice", "Selector"]

#: A region selector: ``f(x, y, z) -> bool mask``, a (N,) boolean array, an
#: expression string such as ``"x < 0.5"`` (see :class:`Where`) or a :class:`Box`.
Selector = Callable[..., object] | NDArray[np.bool_] | str | Box | Where

_MAX_VOXELS = 2**32 - 1
_REGION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _triple(value: object, what: str, positive: bool) -> tuple[float, float, float]:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,))
    except (TypeError, ValueError):
        raise GeometryError(f"{what} must be a number or three numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        kind = "finite and positive" if positive else "finite"
        raise GeometryError(f"{what} must be {kind}, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


class Lattice:
    """A box of ``nx × ny × nz`` voxels of size ``spacing`` (µm), reflective walls.

    >>> space = Lattice(shape=(40, 40, 40), spacing=0.1)
    >>> space.region("source", lambda x, y, z: x < 0.5)
    >>> space.centers.shape, float(space.volumes[0])
    ((64000, 3), 0.0010000000000000002)

    All voxels belong to one compartment, ``"cytosol"``, until
    :meth:`compartment` paints others.
    """

    kind = "lattice"

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float | Sequence[float],
        origin: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> None:
        try:
            sh = tuple(int(s) for s in shape)
            ok = len(sh) == 3 and all(int(s) == s for s in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok or any(s < 1 for s in sh):
            raise GeometryError(f"lattice shape must be three positive integers, got {shape!r}")
        n = sh[0] * sh[1] * sh[2]
        if n > _MAX_VOXELS:
            raise GeometryError(f"lattice shape {sh} has {n} voxels, more than {_MAX_VOXELS}")
        self.shape: tuple[int, int, int] = sh  # type: ignore[assignment]
        self.spacing: tuple[float, float, float] = _triple(spacing, "lattice spacing", True)
        self.origin: tuple[float, float, float] = _triple(origin, "lattice origin", False)
        self._regions: dict[str, NDArray[np.bool_]] = {}
        self._centers: NDArray[np.float64] | None = None
        self._graph: SubvolumeGraph | None = None
        self._compartment_names: list[str] = [DEFAULT_COMPARTMENT]
        self._compartment_ids: NDArray[np.int64] | None = None
        #: membrane name -> ("faces", pairs, normal, factor, where) or ("area", (N,) array)
        self._membranes: dict[str, tuple] = {}

    # -- basic arrays -----------------------------------------------------------
    @property
    def n_subvolumes(self) -> int:
        nx, ny, nz = self.shape
        return nx * ny * nz

    @property
    def index_grid(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """(i, j, k) integer voxel coordinates of every subvolume, each (N,)."""
        nx, ny, _ = self.shape
        idx = np.arange(self.n_subvolumes, dtype=np.int64)
        return idx % nx, (idx // nx) % ny, idx // (nx * ny)

    @property
    def centers(self) -> NDArray[np.float64]:
        """(N, 3) voxel centres in µm, x fastest (read-only)."""
        if self._centers is None:
            ijk = np.stack(self.index_grid, axis=1).astype(np.float64)
            c = (ijk + 0.5) * np.asarray(self.spacing) + np.asarray(self.origin)
            c.flags.writeable = False
            self._centers = c
        return self._centers

    @property
    def volumes(self) -> NDArray[np.float64]:
        """(N,) voxel volumes in µm³."""
        hx, hy, hz = self.spacing
        return np.full(self.n_subvolumes, hx * hy * hz, dtype=np.float64)

    @property
    def extent(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """((x0, x1), (y0, y1), (z0, z1)) bounds of the box in µm."""
        return tuple(  # type: ignore[return-value]
            (o, o + n * h) for o, n, h in zip(self.origin, self.shape, self.spacing, strict=True)
        )

    # -- regions ---------------------------------------------------------------
    @property
    def regions(self) -> dict[str, NDArray[np.bool_]]:
        """Region name -> (N,) boolean mask (a copy of the mapping)."""
        return dict(self._regions)

    def region(self, name: str, selector: Selector) -> None:
        """Label the voxels chosen by ``selector`` as region ``name``.

        ``selector``: a callable ``f(x, y, z)`` of voxel-centre arrays (µm) returning
        a boolean array; a boolean array of shape (N,); an expression string such
        as ``"x < 0.5"`` (:class:`~redoxfield.geometry.selectors.Where`); or a
        :class:`~redoxfield.geometry.selectors.Box`. A region that selects no voxel
        raises ``GeometryError`` (a ``ValueError``) naming it.
        """
        if not isinstance(name, str) or not _REGION_NAME_RE.match(name):
            raise GeometryError(
                f"bad region name {name!r}: it starts with a letter or '_' and contains only "
                "letters, digits, '_', '-' and '.'"
            )
        if name in self._regions:
            raise GeometryError(f"region {name!r} is defined twice")
        mask = self._select(selector, f"region {name!r}")
        if not mask.any():
            raise GeometryError(f"region {name!r} is empty: it selects no voxel of the lattice")
        mask = mask.copy()
        mask.flags.writeable = False
        self._regions[name] = mask
        self._graph = None

    def _select(self, selector: Selector, what: str) -> NDArray[np.bool_]:
        """Evaluate a selector to a (N,) boolean mask; errors name ``what``."""
        name = what
        n = self.n_subvolumes
        if isinstance(selector, str):
            selector = Where(selector)
        if callable(selector):
            c = self.centers
            try:
                raw = selector(c[:, 0], c[:, 1], c[:, 2])
            except GeometryError:
                raise
            except Exception as exc:
                raise GeometryError(
                    f"selector of {name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            mask = np.asarray(raw)
            if mask.ndim == 0:
                mask = np.broadcast_to(mask, (n,))
        else:
            mask = np.asarray(selector)
        if mask.dtype != np.bool_:
            raise GeometryError(f"selector of {name} must give booleans, got dtype {mask.dtype}")
        if mask.shape != (n,):
            raise GeometryError(f"selector of {name} gave shape {mask.shape}, expected ({n},)")
        return mask

    # -- compartments and membranes ---------------------------------------------
    @property
    def compartment_names(self) -> tuple[str, ...]:
        return tuple(self._compartment_names)

    @property
    def compartments(self) -> NDArray[np.int64]:
        """(N,) compartment index of every voxel (into ``compartment_names``)."""
        if self._compartment_ids is None:
            return np.zeros(self.n_subvolumes, dtype=np.int64)
        return self._compartment_ids.copy()

    def compartment(self, name: str, selector: Selector) -> None:
        """Put the voxels chosen by ``selector`` into compartment ``name`` (created on
        first use; later calls repaint). A compartment has its own chemistry and
        exchanges molecules with its neighbours only through a declared membrane."""
        if not isinstance(name, str) or not _REGION_NAME_RE.match(name):
            raise GeometryError(f"bad compartment name {name!r}")
        mask = self._select(selector, f"compartment {name!r}")
        if not mask.any():
            raise GeometryError(f"compartment {name!r} is empty: it selects no voxel")
        ids = self.compartments
        if name not in self._compartment_names:
            self._compartment_names.append(name)
        ids[mask] = self._compartment_names.index(name)
        self._compartment_ids = ids
        self._graph = None

    def set_compartments(self, ids: NDArray[np.integer], names: Sequence[str]) -> None:
        """Set every voxel's compartment at once: ``ids`` (N,) indices into ``names``."""
        ids = np.asarray(ids)
        names = list(names)
        if ids.shape != (self.n_subvolumes,) or not np.issubdtype(ids.dtype, np.integer):
            raise GeometryError(f"compartment ids must be ({self.n_subvolumes},) integers")
        if len(set(names)) != len(names) or not names:
            raise GeometryError(f"compartment names must be unique and non-empty: {names}")
        if ids.min() < 0 or ids.max() >= len(names):
            raise GeometryError("compartment ids hold an index outside the names")
        self._compartment_names = names
        self._compartment_ids = ids.astype(np.int64)
        self._graph = None

    @property
    def membrane_names(self) -> tuple[str, ...]:
        return tuple(self._membranes)

    def _check_membrane_name(self, name: str) -> None:
        if not isinstance(name, str) or not _REGION_NAME_RE.match(name):
            raise GeometryError(f"bad membrane name {name!r}")
        if name in self._membranes:
            raise GeometryError(f"membrane {name!r} is defined twice")

    def membrane(
        self,
        name: str,
        between: tuple[str, str] | Sequence[tuple[str, str]],
        *,
        normal: Callable[..., object] | None = None,
        area_factor: float = 1.0,
        where: Selector | None = None,
    ) -> None:
        """Declare membrane type ``name`` on the faces between compartments.

        ``between``: ``(inner, outer)`` or a list of such pairs; the face area is
        recorded in the inner voxel (membrane-bound species live there).
        ``normal``: optional ``f(x, y, z) -> (n, 3)`` unit normal of the smooth
        surface the staircase approximates (face area ``A · |n · e|``, see the
        module docstring). ``area_factor`` (> 0): multiplies the area (folds;
        also scales permeation through it). ``where``: only faces whose inner
        voxel the selector picks. Compartment names are checked when the graph is
        built (``to_graph``), so they may be painted later.
        """
        self._check_membrane_name(name)
        if isinstance(between, tuple) and len(between) == 2 and isinstance(between[0], str):
            pairs = [between]
        else:
            pairs = list(between)  # type: ignore[arg-type]
        for pair in pairs:
            if (
                not isinstance(pair, (tuple, list))
                or len(pair) != 2
                or not all(isinstance(c, str) for c in pair)
                or pair[0] == pair[1]
            ):
                raise GeometryError(
                    f"membrane {name!r}: between must be (inner, outer) compartment names "
                    f"of two different compartments, got {pair!r}"
                )
        f = float(area_factor)
        if not np.isfinite(f) or f <= 0:
            raise GeometryError(f"membrane {name!r}: area_factor = {area_factor!r} must be > 0")
        mask = None if where is None else self._select(where, f"membrane {name!r}")
        self._membranes[name] = ("faces", [tuple(p) for p in pairs], normal, f, mask)
        self._graph = None

    def membrane_area(self, name: str, area: object) -> None:
        """A sub-voxel membrane ``name`` given as area per voxel (µm², (N,) array or
        a callable ``f(x, y, z)`` of voxel centres). It carries membrane-bound
        species and surface reactions but makes no transport edges."""
        self._check_membrane_name(name)
        if callable(area):
            c = self.centers
            area = area(c[:, 0], c[:, 1], c[:, 2])
        a = np.asarray(area, dtype=np.float64)
        if a.shape != (self.n_subvolumes,):
            raise GeometryError(
                f"membrane {name!r}: area per voxel has shape {a.shape}, "
                f"expected ({self.n_subvolumes},)"
            )
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise GeometryError(f"membrane {name!r}: areas must be finite and non-negative")
        if not np.any(a > 0):
            raise GeometryError(f"membrane {name!r} has no area in any voxel")
        self._membranes[name] = ("area", a.copy())
        self._graph = None

    # -- compilation -------------------------------------------------------------
    def to_graph(self) -> SubvolumeGraph:
        """Compile to the generic :class:`SubvolumeGraph` (cached until a region is added)."""
        if self._graph is not None:
            return self._graph
        nx, ny, nz = self.shape
        hx, hy, hz = self.spacing
        n = self.n_subvolumes
        i, j, k = self.index_grid
        idx = np.arange(n, dtype=np.int64)
        # Six directions in the order -x, +x, -y, +y, -z, +z.
        valid = np.stack([i > 0, i < nx - 1, j > 0, j < ny - 1, k > 0, k < nz - 1], axis=1)
        step = np.array([-1, 1, -nx, nx, -nx * ny, nx * ny], dtype=np.int64)
        g_dir = np.array(
            [hy * hz / hx] * 2 + [hx * hz / hy] * 2 + [hx * hy / hz] * 2, dtype=np.float64
        )
        comp = self.compartments
        names = self.compartment_names
        # Membrane index of every (voxel, direction) slot: -1 inside a compartment,
        # -2 between compartments that no membrane joins (no edge).
        all_t = np.where(valid, idx[:, None] + step[None, :], idx[:, None])
        mem = np.full((n, 6), -1, dtype=np.int64)
        cross = comp[all_t] != comp[:, None]
        mem[cross] = -2
        g_full = np.broadcast_to(g_dir, (n, 6)).copy()
        mem_names = tuple(self._membranes)
        areas = np.zeros((n, len(mem_names)), dtype=np.float64)
        face_area = np.array([hy * hz] * 2 + [hx * hz] * 2 + [hx * hy] * 2)
        for m, mname in enumerate(mem_names):
            spec = self._membranes[mname]
            if spec[0] == "area":
                areas[:, m] = spec[1]
                continue
            _, pairs, normal, factor, where = spec
            for inner, outer in pairs:
                for c in (inner, outer):
                    if c not in names:
                        raise GeometryError(
                            f"membrane {mname!r} refers to unknown compartment {c!r} "
                            f"(the geometry defines: {', '.join(names)})"
                        )
                ci, co = names.index(inner), names.index(outer)
                fwd = valid & (comp[:, None] == ci) & (comp[all_t] == co)
                if where is not None:
                    fwd &= where[:, None]
                if np.any(mem[fwd] >= 0):
                    raise GeometryError(
                        f"membrane {mname!r} overlaps another membrane on the same faces"
                    )
                rows, dirs = np.nonzero(fwd)
                area = face_area[dirs] * factor
                if normal is not None:
                    fc = (
                        self.centers[rows]
                        + 0.5
                        * np.asarray(self.spacing)[dirs // 2][:, None]
                        * np.eye(3)[dirs // 2]
                        * np.where(dirs % 2 == 1, 1.0, -1.0)[:, None]
                    )
                    nv = np.asarray(normal(fc[:, 0], fc[:, 1], fc[:, 2]), dtype=np.float64)
                    if nv.shape != (rows.size, 3):
                        raise GeometryError(
                            f"membrane {mname!r}: normal() returned shape {nv.shape}, "
                            f"expected ({rows.size}, 3)"
                        )
                    norm = np.linalg.norm(nv, axis=1)
                    norm[norm == 0] = 1.0
                    area = area * np.abs(nv[np.arange(rows.size), dirs // 2]) / norm
                mem[rows, dirs] = m
                g_full[rows, dirs] = area
                np.add.at(areas[:, m], rows, area)
                # The reverse direction of the same face: same membrane, same area.
                back = dirs ^ 1
                trow = all_t[rows, dirs]
                mem[trow, back] = m
                g_full[trow, back] = area
        keep = valid & (mem != -2)
        targets = all_t[keep]
        coupling = g_full[keep]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        self._graph = SubvolumeGraph(
            volumes=self.volumes,
            centers=np.asarray(self.centers),
            edge_offsets=offsets,
            edge_targets=targets,
            edge_coupling=np.ascontiguousarray(coupling),
            edge_membrane=np.ascontiguousarray(mem[keep]),
            compartments=comp,
            compartment_names=names,
            membrane_names=mem_names,
            membrane_areas=areas,
            regions=dict(self._regions),
            kind="lattice",
            meta={"shape": self.shape, "spacing": self.spacing, "origin": self.origin},
        )
        return self._graph

    def __repr__(self) -> str:
        return (
            f"Lattice(shape={self.shape}, spacing={self.spacing}, origin={self.origin}, "
            f"compartments={list(self._compartment_names)}, membranes={list(self._membranes)}, "
            f"regions={list(self._regions)})"
        )
