"""Fields to draw: which samples, in which units, on which grid.

Everything here is plain numpy/scipy and shared by the PyVista renderer, the
virtual microscope and the matplotlib plots, so that every picture of a result
shows the same numbers:

- :func:`field` gives one value per subvolume (µM, or molecules) at one sample,
  averaged over a time window, optionally Gaussian-smoothed on a lattice. Its
  :class:`Field` says what was done, and that goes into every title.
- :func:`lattice_grid` reshapes a per-subvolume array to the (nz, ny, nx) block of
  a lattice; :func:`signed_distance` is the distance of each subvolume from a
  region or membrane (the x axis of a microdomain profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .. import units

if TYPE_CHECKING:
    from ..result import Result

__all__ = [
    "Field",
    "LatticeInfo",
    "TimeSpec",
    "field",
    "lattice_grid",
    "lattice_info",
    "sample_indices",
    "signed_distance",
    "structure_masks",
]

#: ``None`` = last sample; a float = the sample nearest that time (s); ``"mean"`` =
#: average over all samples; ``(t0, t1)`` = average over the samples in [t0, t1].
TimeSpec = float | str | tuple[float, float] | None


@dataclass(frozen=True)
class LatticeInfo:
    shape: tuple[int, int, int]  # (nx, ny, nz)
    spacing: tuple[float, float, float]  # µm
    origin: tuple[float, float, float]  # µm

    @property
    def extent(self) -> tuple[float, float, float, float, float, float]:
        (nx, ny, nz), (hx, hy, hz), (x0, y0, z0) = self.shape, self.spacing, self.origin
        return (x0, x0 + nx * hx, y0, y0 + ny * hy, z0, z0 + nz * hz)

    def axis_centres(self, axis: int) -> NDArray[np.float64]:
        return self.origin[axis] + (np.arange(self.shape[axis]) + 0.5) * self.spacing[axis]


def lattice_info(result: Result) -> LatticeInfo | None:
    """Shape/spacing/origin when the result's geometry is a lattice, else None."""
    g = result.geometry
    if g.get("kind") != "lattice" or "shape" not in g:
        return None
    return LatticeInfo(
        tuple(int(v) for v in g["shape"]),  # type: ignore[arg-type]
        tuple(float(v) for v in g["spacing"]),  # type: ignore[arg-type]
        tuple(float(v) for v in g.get("origin", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
    )


def lattice_grid(values: NDArray, info: LatticeInfo) -> NDArray:
    """(N,) per-subvolume values -> (nz, ny, nx) array (x fastest, docs/hdf5.md)."""
    nx, ny, nz = info.shape
    return np.asarray(values).reshape(nz, ny, nx)


def sample_indices(result: Result, t: TimeSpec) -> tuple[NDArray[np.int64], str]:
    """Sample indices selected by ``t`` and a phrase for titles."""
    times = result.times
    if times.size == 0:
        raise ValueError("the result has no samples to draw")
    if t is None:
        return np.array([times.size - 1]), f"t = {_fmt_t(times[-1])}"
    if isinstance(t, str):
        if t != "mean":
            raise ValueError(f"t must be a time in s, 'mean' or (t0, t1), got {t!r}")
        return (
            np.arange(times.size),
            f"mean of {times.size} samples, t = {_fmt_t(times[0])} to {_fmt_t(times[-1])}",
        )
    if isinstance(t, Sequence):
        if len(t) != 2:
            raise ValueError(f"a time window is (t0, t1), got {t!r}")
        t0, t1 = float(t[0]), float(t[1])
        idx = np.flatnonzero((times >= t0 - 1e-12) & (times <= t1 + 1e-12))
        if idx.size == 0:
            raise ValueError(f"no sample in the window [{t0:g}, {t1:g}] s")
        return idx, (
            f"mean of {idx.size} samples, t = {_fmt_t(times[idx[0]])} to {_fmt_t(times[idx[-1]])}"
        )
    tf = float(t)
    tol = 1e-9 + 1e-6 * abs(times[-1])
    if tf < times[0] - tol or tf > times[-1] + tol:
        raise ValueError(
            f"t = {tf:g} s is outside the sampled times [{times[0]:g}, {times[-1]:g}] s"
        )
    k = int(np.argmin(np.abs(times - tf)))
    return np.array([k]), f"t = {_fmt_t(times[k])}"


def _fmt_t(t: float) -> str:
    t = float(t)
    if t != 0 and abs(t) < 1.0:
        return f"{t * 1e3:.4g} ms"
    return f"{t:.4g} s"


@dataclass(frozen=True)
class Field:
    """One value per subvolume and how it was made (for honest labels)."""

    values: NDArray[np.float64]  # (N,)
    species: str
    unit: str  # "µM" or "molecules"
    when: str  # "t = 5 ms" or "mean of 6 samples, ..."
    smooth: float | None  # Gaussian sigma in µm, or None
    samples: NDArray[np.int64]

    @property
    def label(self) -> str:
        """Colour-bar label, e.g. ``[H2O2] (µM)``."""
        return f"[{self.species}] ({self.unit})" if self.unit == "µM" else f"{self.species} (n)"

    @property
    def description(self) -> str:
        """Title text (plain ASCII apart from µ: VTK's default font has no σ)."""
        s = f"{self.species}, {self.when}"
        if self.smooth:
            s += f", Gaussian-smoothed (sigma {self.smooth:g} µm)"
        return s

    @property
    def range(self) -> tuple[float, float]:
        return float(np.min(self.values)), float(np.max(self.values))


def field(
    result: Result,
    species: str,
    t: TimeSpec = None,
    *,
    smooth: float | None = None,
    unit: str = "uM",
) -> Field:
    """The field of ``species`` per subvolume.

    ``t``: see :data:`TimeSpec`. ``smooth``: Gaussian sigma in µm applied on a
    lattice (reflecting edges, so the total is kept); a sparse stochastic field
    (a few molecules per voxel) is noise at full resolution, and its time average
    or a smoothed version is what a picture can honestly show; the title says so.
    ``unit``: ``"uM"`` (concentration) or ``"molecules"``.
    """
    if unit not in ("uM", "µM", "molecules"):
        raise ValueError(f"unit must be 'uM' or 'molecules', got {unit!r}")
    idx, when = sample_indices(result, t)
    if idx.size == 1:
        counts = result.counts(species, int(idx[0])).astype(np.float64)
    else:
        # read sample by sample: a (T, N) block of a large lattice may not fit
        counts = np.zeros(result.n_subvolumes)
        for k in idx:
            counts += result.counts(species, int(k))
        counts /= idx.size
    if smooth:
        info = lattice_info(result)
        if info is None:
            raise ValueError("smooth= needs a lattice geometry")
        from scipy import ndimage

        sig = [smooth / h for h in info.spacing[::-1]]
        counts = ndimage.gaussian_filter(lattice_grid(counts, info), sig, mode="reflect").ravel()
    if unit == "molecules":
        vals, u = counts, "molecules"
    else:
        vals, u = units.molecules_to_concentration(counts, result.volumes), "µM"
    return Field(np.asarray(vals, dtype=np.float64), species, u, when, smooth or None, idx)


def structure_masks(result: Result) -> dict[str, tuple[str, NDArray[np.bool_]]]:
    """Named subvolume masks of the structures a picture should outline:
    ``{"membrane:<m>": ("membrane", mask), "compartment:<c>": (...), "region:<r>": (...)}``.

    Membranes are the subvolumes a membrane passes through (area > 0); compartments
    are drawn only when there are several (the first one is the background space);
    regions are labels (a plain lattice has only these).
    """
    out: dict[str, tuple[str, NDArray[np.bool_]]] = {}
    g = result.file["geometry"]
    names = [str(s) for s in g["membrane_names"].asstr()[()]] if "membrane_names" in g else []
    if names:
        areas = g["membrane_areas"][()]
        for m, name in enumerate(names):
            mask = areas[:, m] > 0
            if mask.any():
                out[f"membrane:{name}"] = ("membrane", mask)
    cnames = (
        [str(s) for s in g["compartment_names"].asstr()[()]] if "compartment_names" in g else []
    )
    if len(cnames) > 1:
        comp = g["compartments"][()]
        for c, name in enumerate(cnames[1:], start=1):
            mask = comp == c
            if mask.any():
                out[f"compartment:{name}"] = ("compartment", mask)
    for name, mask in result.regions.items():
        out[f"region:{name}"] = ("region", mask)
    return out


def signed_distance(result: Result, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Distance (µm) of every subvolume from the boundary of ``mask``: positive
    outside, negative inside.

    Lattice: :func:`scipy.ndimage.distance_transform_edt` from voxel centre to the
    nearest voxel centre on the other side, minus half a spacing along the way, so
    a voxel touching a flat boundary face is at ±h/2 (its centre's distance from
    the face). Other geometries: nearest-centre distance with a k-d tree (no half
    spacing correction).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.all() or not mask.any():
        raise ValueError("the distance needs a region that covers some but not all subvolumes")
    info = lattice_info(result)
    if info is not None:
        from scipy import ndimage

        m3 = lattice_grid(mask, info)
        sampling = info.spacing[::-1]
        out_d = ndimage.distance_transform_edt(~m3, sampling=sampling)  # outside: to mask
        in_d = ndimage.distance_transform_edt(m3, sampling=sampling)  # inside: to outside
        half = 0.5 * min(info.spacing)
        d = np.where(m3, -(in_d - half), out_d - half)
        return d.ravel()
    from scipy.spatial import cKDTree

    c = result.centers
    d_out, _ = cKDTree(c[mask]).query(c[~mask])
    d_in, _ = cKDTree(c[~mask]).query(c[mask])
    d = np.empty(c.shape[0])
    d[~mask] = d_out
    d[mask] = -d_in
    return d
