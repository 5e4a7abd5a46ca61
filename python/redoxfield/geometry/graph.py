"""The subvolume graph: what every geometry (lattice, tetrahedral mesh, fibre)
compiles to, and all the core ever sees of space (DESIGN.md).

Transport along the directed edge ``e = i -> j``:

- inside a compartment (``edge_membrane[e] == -1``): ``edge_coupling[e]`` is
  ``g_ij = A_ij / d_ij`` (µm), and species ``s`` jumps at ``D_s · g_ij / V_i``;
- across membrane ``m`` (``edge_membrane[e] == m >= 0``): ``edge_coupling[e]``
  is the shared area ``A_ij`` (µm²), and the rate is ``P_s,m · A_ij / V_i``.

Compartment ``c`` owns transport class ``c``; membrane ``m`` owns transport class
``n_compartments + m`` (see :func:`redoxfield.compile.compile_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError

__all__ = ["SubvolumeGraph"]


@dataclass(frozen=True, eq=False)
class SubvolumeGraph:
    """Subvolumes and directed neighbour edges in CSR form.

    Attributes (N subvolumes, E directed edges, M membrane types):

    - ``volumes`` (N,) float64 µm³; ``centers`` (N, 3) float64 µm.
    - ``edge_offsets`` (N+1,) int64, ``edge_targets`` (E,) int64: the edges leaving
      ``i`` are ``edge_targets[edge_offsets[i]:edge_offsets[i+1]]``.
    - ``edge_coupling`` (E,) float64: ``A/d`` (µm) or membrane area ``A`` (µm²).
    - ``edge_membrane`` (E,) int64: -1 inside a compartment, else the membrane index.
    - ``compartments`` (N,) int64 into ``compartment_names``.
    - ``regions``: name -> (N,) bool mask (labels only; they never block diffusion).
    - ``membrane_areas`` (N, M) float64 µm², membrane ``m`` area inside each subvolume.
    - ``kind`` and ``meta``: what built it (``"lattice"`` with shape/spacing/origin, ...).
    - ``points``, ``cells``: optional tetrahedra, one per subvolume (a ``TetMesh``).
    """

    volumes: NDArray[np.float64]
    centers: NDArray[np.float64]
    edge_offsets: NDArray[np.int64]
    edge_targets: NDArray[np.int64]
    edge_coupling: NDArray[np.float64]
    edge_membrane: NDArray[np.int64]
    compartments: NDArray[np.int64]
    compartment_names: tuple[str, ...]
    regions: Mapping[str, NDArray[np.bool_]] = field(default_factory=dict)
    membrane_names: tuple[str, ...] = ()
    membrane_areas: NDArray[np.float64] | None = None
    kind: str = "graph"
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: Optional cell geometry for pictures and the XDMF sidecar: ``points`` (P, 3)
    #: µm and ``cells`` (N, 4) point indices, one tetrahedron per subvolume.
    points: NDArray[np.float64] | None = None
    cells: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        if self.membrane_areas is None:
            object.__setattr__(
                self, "membrane_areas", np.zeros((self.n_subvolumes, 0), dtype=np.float64)
            )
        self.validate()

    @property
    def n_subvolumes(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_targets.shape[0])

    @property
    def edge_sources(self) -> NDArray[np.int64]:
        """(E,) source subvolume of every edge (expanded from the CSR offsets)."""
        return np.repeat(np.arange(self.n_subvolumes, dtype=np.int64), np.diff(self.edge_offsets))

    def storage_order(self) -> NDArray[np.int64] | None:
        """A permutation of the subvolumes that keeps neighbours close in memory,
        for the exact solver to store them in (None: keep the given order).

        A lattice is kept as it is: its row-major order already puts the six
        neighbours at fixed offsets. Any other graph (a tet mesh's file order
        puts neighbours thousands of indices apart) is sorted along a Morton
        (Z-order) curve of its centres, quantised to 2^21 steps per axis.
        Only the storage changes: every array in and out of the engine stays
        in this graph's order.
        """
        if self.kind == "lattice" or self.n_subvolumes < 2:
            return None
        c = np.asarray(self.centers, dtype=np.float64)
        lo = c.min(axis=0)
        span = np.maximum(c.max(axis=0) - lo, np.finfo(np.float64).tiny)
        steps = (1 << 21) - 1
        q = np.minimum(((c - lo) / span * steps).astype(np.uint64), np.uint64(steps))
        key = np.zeros(self.n_subvolumes, dtype=np.uint64)
        for axis in range(3):
            key |= _spread_bits(q[:, axis]) << np.uint64(axis)
        return np.argsort(key, kind="stable").astype(np.int64)

    def region_mask(self, name: str) -> NDArray[np.bool_]:
        try:
            return self.regions[name]
        except KeyError:
            known = ", ".join(self.regions) or "none"
            raise GeometryError(
                f"unknown region {name!r} (the geometry defines: {known})"
            ) from None

    def compartment_mask(self, name: str) -> NDArray[np.bool_]:
        if name not in self.compartment_names:
            known = ", ".join(self.compartment_names)
            raise GeometryError(f"unknown compartment {name!r} (the geometry defines: {known})")
        return self.compartments == self.compartment_names.index(name)

    def validate(self) -> None:
        """Check shapes, dtypes, index ranges and values; GeometryError naming the array."""
        n = self.volumes.shape[0] if self.volumes.ndim == 1 else -1
        if n <= 0:
            raise GeometryError("volumes must be a non-empty 1-D array")
        if not np.all(np.isfinite(self.volumes)) or np.any(self.volumes <= 0):
            raise GeometryError("volumes must be finite and positive")
        if self.centers.shape != (n, 3):
            raise GeometryError(f"centers has shape {self.centers.shape}, expected ({n}, 3)")
        off = self.edge_offsets
        if off.shape != (n + 1,) or off[0] != 0 or np.any(np.diff(off) < 0):
            raise GeometryError("edge_offsets must be non-decreasing, start at 0, length N+1")
        e = int(off[-1])
        for name in ("edge_targets", "edge_coupling", "edge_membrane"):
            if getattr(self, name).shape != (e,):
                raise GeometryError(f"{name} must have one entry per edge ({e})")
        t = self.edge_targets
        if e and (t.min() < 0 or t.max() >= n):
            raise GeometryError("edge_targets holds an index outside 0..N-1")
        src = self.edge_sources
        if np.any(t == src):
            raise GeometryError("edge_targets holds a self-loop")
        if not np.all(np.isfinite(self.edge_coupling)) or np.any(self.edge_coupling < 0):
            raise GeometryError("edge_coupling must be finite and non-negative")
        nm = len(self.membrane_names)
        if e and (self.edge_membrane.min() < -1 or self.edge_membrane.max() >= nm):
            raise GeometryError("edge_membrane holds an index outside -1..n_membranes-1")
        if self.compartments.shape != (n,) or not self.compartment_names:
            raise GeometryError("compartments must be (N,) with at least one compartment name")
        if self.compartments.min() < 0 or self.compartments.max() >= len(self.compartment_names):
            raise GeometryError("compartments holds an index outside the compartment names")
        inside = self.edge_membrane < 0
        if np.any(self.compartments[src[inside]] != self.compartments[t[inside]]):
            raise GeometryError(
                "an edge without a membrane joins two compartments; compartments exchange "
                "molecules only through membrane edges"
            )
        assert self.membrane_areas is not None
        if self.membrane_areas.shape != (n, nm):
            raise GeometryError(
                f"membrane_areas has shape {self.membrane_areas.shape}, expected ({n}, {nm})"
            )
        if (self.points is None) != (self.cells is None):
            raise GeometryError("points and cells go together (one tetrahedron per subvolume)")
        if self.cells is not None and self.points is not None:
            if self.cells.shape != (n, 4) or self.points.ndim != 2 or self.points.shape[1] != 3:
                raise GeometryError(f"cells must be ({n}, 4) and points (P, 3)")
            if self.cells.min() < 0 or self.cells.max() >= self.points.shape[0]:
                raise GeometryError("cells hold a point index outside the points")
        for name, mask in self.regions.items():
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise GeometryError(f"region {name!r} must be a (N,) boolean mask")
            if not mask.any():
                raise GeometryError(f"region {name!r} is empty: it selects no subvolume")


def _spread_bits(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The 21 low bits of each value spread to every third bit (Morton codes)."""
    v = v & np.uint64(0x1FFFFF)
    v = (v | (v << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x1249249249249249)
    return v
