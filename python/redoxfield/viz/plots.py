"""Analysis plots (matplotlib, Agg): time courses and microdomain profiles, with
ensemble bands when several replicate results are given.

Means over a region are volume-weighted concentrations: the region's molecules
over its volume (µM), not the mean of per-voxel concentrations. With two or more
results the line is the ensemble mean and the band the mean ± one standard
deviation across replicates (each replicate's curve computed first).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .. import units
from .fields import TimeSpec, sample_indices, signed_distance, structure_masks

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["plot_profile", "plot_timecourse", "profile", "timecourse"]


def _as_list(results: Result | Sequence[Result]) -> list[Result]:
    out = [results] if not isinstance(results, Sequence) else list(results)
    if not out:
        raise ValueError("no results given")
    return out


def _common_times(results: list[Result]) -> NDArray[np.float64]:
    t = results[0].times
    for r in results[1:]:
        if r.times.shape != t.shape or not np.allclose(r.times, t):
            raise ValueError("replicates must share their sample times to be averaged")
    return t


def timecourse(result: Result, species: str, region: str | None = None) -> NDArray[np.float64]:
    """(T,) volume-weighted mean concentration (µM) of ``species`` in ``region``
    (``None``: the whole geometry)."""
    vol = result.volumes
    if region is None:
        mask = np.ones(result.n_subvolumes, dtype=bool)
    else:
        regions = result.regions
        if region not in regions:
            raise ValueError(f"unknown region {region!r} (the result has: {', '.join(regions)})")
        mask = regions[region]
    if region is None:
        n = result.total(species).astype(np.float64)
    else:
        n = result.counts(species)[:, mask].sum(axis=1).astype(np.float64)
    return units.molecules_to_concentration(n, float(vol[mask].sum()))


def _band(ax, t, curves: NDArray[np.float64], label: str, color=None) -> None:
    mean = curves.mean(axis=0)
    (line,) = ax.plot(t, mean, label=label, color=color)
    if curves.shape[0] > 1:
        sd = curves.std(axis=0, ddof=1)
        ax.fill_between(t, mean - sd, mean + sd, color=line.get_color(), alpha=0.25, lw=0)


def plot_timecourse(
    results: Result | Sequence[Result],
    path: str | os.PathLike[str],
    species: Sequence[str] | None = None,
    regions: Sequence[str | None] | None = None,
    mean_species: str | None = None,
) -> Path:
    """Two panels: total molecules of ``species`` (default all) over time, and the
    mean concentration of ``mean_species`` (default the first mobile species) in the
    whole geometry and in each region (``regions``: default all). Replicates give
    mean ± SD bands."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .summary import default_picture_species

    res = _as_list(results)
    t = _common_times(res)
    species = list(species) if species is not None else res[0].species
    mean_species = mean_species or default_picture_species(res[0])
    regs: list[str | None] = [None, *res[0].regions] if regions is None else list(regions)
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax0, ax1 = fig.subplots(1, 2)
    for s in species:
        _band(ax0, t, np.stack([r.total(s).astype(np.float64) for r in res]), s)
    ax0.set_xlabel("time (s)")
    ax0.set_ylabel("molecules (total)")
    ax0.set_yscale("symlog", linthresh=10)
    ax0.legend(fontsize="small")
    ax0.set_title("totals" + (f", mean ± SD of {len(res)} replicates" if len(res) > 1 else ""))
    for reg in regs:
        _band(
            ax1,
            t,
            np.stack([timecourse(r, mean_species, reg) for r in res]),
            "whole geometry" if reg is None else f"region {reg}",
        )
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel(f"mean [{mean_species}] (µM)")
    ax1.legend(fontsize="small")
    ax1.set_title(f"{mean_species}: volume-weighted mean per region")
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out


def profile(
    result: Result,
    species: str,
    source: str,
    t: TimeSpec = None,
    bin_width: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Concentration (µM) against distance from ``source`` (a region name,
    ``"membrane:<name>"`` or ``"compartment:<name>"``): bin centres (µm, negative
    inside) and the volume-weighted mean concentration in each bin (NaN if empty).

    Bins are ``bin_width`` wide (default the lattice spacing) starting at the
    boundary, so on a lattice each bin holds one layer of voxels from a flat face.
    """
    masks = structure_masks(result)
    key = source if ":" in source else f"region:{source}"
    if key not in masks:
        raise ValueError(
            f"unknown structure {source!r} (the result has: "
            + ", ".join(k.split(":", 1)[1] if k.startswith("region:") else k for k in masks)
            + ")"
        )
    d = signed_distance(result, masks[key][1])
    if bin_width is None:
        g = result.geometry
        bin_width = (
            float(min(g["spacing"])) if "spacing" in g else float(np.cbrt(np.mean(result.volumes)))
        )
    idx, _ = sample_indices(result, t)
    n = np.zeros(result.n_subvolumes)
    for k in idx:
        n += result.counts(species, int(k))
    n /= idx.size
    b = np.floor(d / bin_width).astype(np.int64)
    b -= b.min()
    vol = np.bincount(b, weights=result.volumes)
    cnt = np.bincount(b, weights=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = units.molecules_to_concentration(cnt, vol)
    c = np.where(vol > 0, c, np.nan)
    lo = np.floor(d.min() / bin_width)
    centres = (lo + np.arange(vol.size) + 0.5) * bin_width
    return centres, np.asarray(c, dtype=np.float64)


def plot_profile(
    results: Result | Sequence[Result],
    path: str | os.PathLike[str],
    species: str,
    source: str,
    t: TimeSpec = "mean",
    bin_width: float | None = None,
    log: bool = False,
) -> Path:
    """The microdomain profile: ``species`` (µM) against distance from ``source``
    (region or membrane boundary, µm; negative inside), mean ± SD over replicates.
    Default ``t="mean"``: averaged over all samples."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    res = _as_list(results)
    profs = [profile(r, species, source, t, bin_width) for r in res]
    x = profs[0][0]
    if any(p[0].shape != x.shape for p in profs):
        raise ValueError("replicates must share their geometry to be averaged")
    curves = np.stack([p[1] for p in profs])
    _, when = sample_indices(res[0], t)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    label = f"{len(res)} replicates, mean ± SD" if len(res) > 1 else "one trajectory"
    _band(ax, x, curves, label)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"distance from {source.split(':', 1)[-1]} boundary (µm; < 0 inside)")
    ax.set_ylabel(f"[{species}] (µM)")
    if log:
        ax.set_yscale("log")
    ax.set_title(f"{species} microdomain profile, {when}", fontsize=10)
    ax.legend(fontsize="small")
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
