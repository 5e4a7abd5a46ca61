"""Static pictures with matplotlib (Agg, offscreen; no pyplot global state)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..result import Result

__all__ = ["default_picture_species", "plot_summary"]


def default_picture_species(result: Result) -> str:
    """The first mobile species of the model, else the first species."""
    for sp in result.model.species_list:
        if sp.D > 0:
            return sp.name
    return result.species[0]


def plot_summary(result: Result, path: str | os.PathLike[str], species: str | None = None) -> Path:
    """Write a PNG: the final concentration of ``species`` (µM) on the mid-plane
    z slice of a lattice (axes in µm, labelled colour bar), and the time course of
    every species' total molecule count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    species = species or default_picture_species(result)
    if species not in result.species:
        raise ValueError(f"unknown species {species!r} for the picture")
    geo = result.geometry
    is_lattice = geo.get("kind") == "lattice" and result.n_samples > 0
    fig = Figure(figsize=(16.0, 4.6) if is_lattice else (6.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if is_lattice else 1)
    ax_t = axes[2] if is_lattice else axes
    times = result.times
    if is_lattice:
        nx, ny, nz = (int(v) for v in geo["shape"])
        hx, hy, hz = (float(v) for v in geo["spacing"])
        x0, y0, z0 = (float(v) for v in geo["origin"])
        kz = nz // 2
        conc = result.concentration(species, sample=-1).reshape(nz, ny, nx)
        field = conc[kz]
        ax = axes[0]
        im = ax.imshow(
            field,
            origin="lower",
            extent=(x0, x0 + nx * hx, y0, y0 + ny * hy),
            cmap="viridis",
            interpolation="nearest",
            aspect="equal",
        )
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(f"[{species}] (µM)")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
        ax.set_title(f"{species} at t = {times[-1]:g} s, mid-plane z = {z0 + (kz + 0.5) * hz:g} µm")
        ax_p = axes[1]
        xc = x0 + (np.arange(nx) + 0.5) * hx
        ax_p.step(xc, conc.mean(axis=(0, 1)), where="mid")
        ax_p.set_xlabel("x (µm)")
        ax_p.set_ylabel(f"[{species}] averaged over y, z (µM)")
        ax_p.set_title(f"{species} profile along x at t = {times[-1]:g} s")
    totals = result.totals
    for s, name in enumerate(result.species):
        ax_t.plot(times, totals[:, s], marker="o", ms=3, label=name)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("molecules (total)")
    ax_t.set_yscale("symlog", linthresh=10)
    ax_t.set_title("totals")
    ax_t.legend(loc="best", fontsize="small")
    if not result.complete:
        fig.suptitle("incomplete run (stopped early)", color="red")
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out
