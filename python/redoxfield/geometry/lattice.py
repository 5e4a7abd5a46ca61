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

    All voxels belong to one compartment, ``"cytosol"``.
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
                    f"selector of region {name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            mask = np.asarray(raw)
            if mask.ndim == 0:
                mask = np.broadcast_to(mask, (n,))
        else:
            mask = np.asarray(selector)
        if mask.dtype != np.bool_:
            raise GeometryError(
                f"selector of region {name!r} must give booleans, got dtype {mask.dtype}"
            )
        if mask.shape != (n,):
            raise GeometryError(
                f"selector of region {name!r} gave shape {mask.shape}, expected ({n},)"
            )
        if not mask.any():
            raise GeometryError(f"region {name!r} is empty: it selects no voxel of the lattice")
        mask = mask.copy()
        mask.flags.writeable = False
        self._regions[name] = mask
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
        targets = (idx[:, None] + step[None, :])[valid]
        coupling = np.broadcast_to(g_dir, (n, 6))[valid]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(valid.sum(axis=1), out=offsets[1:])
        self._graph = SubvolumeGraph(
            volumes=self.volumes,
            centers=np.asarray(self.centers),
            edge_offsets=offsets,
            edge_targets=targets,
            edge_coupling=np.ascontiguousarray(coupling),
            edge_membrane=np.full(targets.shape[0], -1, dtype=np.int64),
            compartments=np.zeros(n, dtype=np.int64),
            compartment_names=(DEFAULT_COMPARTMENT,),
            regions=dict(self._regions),
            kind="lattice",
            meta={"shape": self.shape, "spacing": self.spacing, "origin": self.origin},
        )
        return self._graph

    def __repr__(self) -> str:
        return (
            f"Lattice(shape={self.shape}, spacing={self.spacing}, origin={self.origin}, "
            f"regions={list(self._regions)})"
        )
