"""Virtual microscopy: what a genetically encoded H2O2 sensor would show.

A ratiometric sensor such as HyPer7 (Pak et al. 2020, Cell Metab 31:642) or
roGFP2-Orp1 (Gutscher et al. 2009, J Biol Chem 284:31532) exists in a reduced and
an oxidised form with different excitation spectra. Here both forms are ordinary
species of **your model**: the sensor's kinetics (its oxidation by H2O2, its
reduction by thioredoxin or glutaredoxin, its concentration) are whatever reactions
and constants you wrote. redoxfield ships no sensor constants; take them from the
papers above or your own calibration and cite them in your model.

Image formation (all numpy/scipy.ndimage, no loops over voxels):

1. Each form's concentration on the lattice (µM, optionally time-averaged, e.g.
   over a camera exposure) is one fluorescence channel, scaled by ``brightness``.
2. Each channel is blurred by a Gaussian point-spread function:

   - confocal (small pinhole): the product of the excitation and emission
     Gaussians (Zhang, Zerubia & Olivo-Marin 2007, Appl Opt 46:1819),
     ``σ_xy = 0.21 λ_ex λ_em / (NA √(λ_ex² + λ_em²))``,
     ``σ_z = 0.66 n λ_ex λ_em / (NA² √(λ_ex² + λ_em²))``; the image is the plane
     of the blurred volume at the focal depth (an optical section).
   - widefield: in focus, ``σ_xy = 0.21 λ_em / NA`` (same reference); out of focus,
     a plane at distance ``Δz`` adds its whole light blurred by the geometric cone,
     a disc of radius ``|Δz| tan(asin(NA/n))`` whose Gaussian equivalent has
     ``σ = radius / 2``: no optical sectioning, as in a real widefield image.

   ``sigma_xy``/``sigma_z`` (µm) override the formulas.
3. The blurred channels are integrated over camera pixels of ``pixel_size`` µm
   (box average, then sampled at pixel centres).
4. Oxidised fraction ``F_ox / (F_ox + F_red)`` or ratio ``F_ox / F_red`` of the
   blurred channels (blurring first, then dividing, as an instrument does).
   Optional Poisson shot noise with ``photons_per_uM`` photons per µM per pixel.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from .fields import TimeSpec, field, lattice_grid, lattice_info

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["Microscope", "MicroscopyImage", "plot_virtual_microscopy", "virtual_microscopy"]


@dataclass(frozen=True)
class Microscope:
    """Optics of the virtual microscope (lengths in µm).

    Defaults: a 1.4 NA oil objective (n = 1.518), excitation 0.488 µm, emission
    0.516 µm (GFP-like, as HyPer7 and roGFP2), pixel 0.1 µm, confocal.
    """

    mode: Literal["confocal", "widefield"] = "confocal"
    na: float = 1.4
    n: float = 1.518
    wavelength_ex: float = 0.488
    wavelength_em: float = 0.516
    pixel_size: float = 0.1
    sigma_xy: float | None = None
    sigma_z: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("confocal", "widefield"):
            raise ValueError(f"mode must be 'confocal' or 'widefield', got {self.mode!r}")
        if not 0 < self.na < self.n:
            raise ValueError(f"NA must be in (0, n = {self.n:g}), got {self.na:g}")
        for name in ("wavelength_ex", "wavelength_em", "pixel_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive (µm)")

    @property
    def sigmas(self) -> tuple[float, float]:
        """(lateral, axial) Gaussian sigma of the PSF, µm (axial = in-focus depth
        scale; a widefield image has no sectioning, see the module doc)."""
        lex, lem, na = self.wavelength_ex, self.wavelength_em, self.na
        if self.mode == "confocal":
            eff = lex * lem / math.sqrt(lex**2 + lem**2)
            sxy, sz = 0.21 * eff / na, 0.66 * self.n * eff / na**2
        else:
            sxy, sz = 0.21 * lem / na, 0.66 * self.n * lem / na**2
        return (
            self.sigma_xy if self.sigma_xy is not None else sxy,
            self.sigma_z if self.sigma_z is not None else sz,
        )

    @property
    def cone_tan(self) -> float:
        """tan of the half-angle of the objective's light cone."""
        return math.tan(math.asin(self.na / self.n))


@dataclass(frozen=True)
class MicroscopyImage:
    """A virtual image: ``signal`` (ny_pix, nx_pix) in the pixel grid given by
    ``extent`` (x0, x1, y0, y1 µm), its two channels, and what made it."""

    signal: NDArray[np.float64]
    oxidised: NDArray[np.float64]
    reduced: NDArray[np.float64]
    extent: tuple[float, float, float, float]
    focal_z: float
    quantity: str  # "oxidised fraction" or "ratio"
    microscope: Microscope
    when: str


def _blur_and_section(
    grid: NDArray[np.float64], hs: tuple[float, float, float], mic: Microscope, k_focus: float
) -> NDArray[np.float64]:
    """(nz, ny, nx) field -> (ny, nx) image at fractional plane index ``k_focus``."""
    from scipy import ndimage

    hx, hy, hz = hs
    sxy, sz = mic.sigmas
    nz = grid.shape[0]
    if mic.mode == "confocal":
        vol = ndimage.gaussian_filter(grid, (sz / hz, sxy / hy, sxy / hx), mode="constant")
        k0 = int(np.clip(np.floor(k_focus), 0, nz - 1))
        k1 = min(k0 + 1, nz - 1)
        w = float(np.clip(k_focus - k0, 0.0, 1.0))
        return (1 - w) * vol[k0] + w * vol[k1]
    # widefield: every plane contributes all its light, blurred by in-focus PSF and
    # the geometric defocus cone (sigma grows with distance from focus)
    img = np.zeros(grid.shape[1:])
    dz = (np.arange(nz) - k_focus) * hz
    sig = np.sqrt(sxy**2 + (np.abs(dz) * mic.cone_tan / 2.0) ** 2)
    for k in range(nz):  # one 2-D filter per plane (nz calls), not per voxel
        img += ndimage.gaussian_filter(grid[k], (sig[k] / hy, sig[k] / hx), mode="constant")
    return img / nz


def _pixelate(
    img: NDArray[np.float64], info_xy: tuple[float, float, float, float], pixel: float
) -> tuple[NDArray[np.float64], tuple[float, float, float, float]]:
    """Average (ny, nx) over camera pixels of ``pixel`` µm (box filter + sampling)."""
    from scipy import ndimage

    x0, y0, hx, hy = info_xy
    ny, nx = img.shape
    lx, ly = nx * hx, ny * hy
    npx, npy = max(1, int(round(lx / pixel))), max(1, int(round(ly / pixel)))
    size = (max(1, int(round(pixel / hy))), max(1, int(round(pixel / hx))))
    box = ndimage.uniform_filter(img, size=size, mode="nearest") if max(size) > 1 else img
    px = x0 + (np.arange(npx) + 0.5) * pixel  # µm
    py = y0 + (np.arange(npy) + 0.5) * pixel
    ix = (px - x0) / hx - 0.5  # fractional voxel index
    iy = (py - y0) / hy - 0.5
    yy, xx = np.meshgrid(iy, ix, indexing="ij")
    out = ndimage.map_coordinates(box, [yy, xx], order=1, mode="nearest")
    return out, (x0, x0 + npx * pixel, y0, y0 + npy * pixel)


def virtual_microscopy(
    result: Result,
    oxidised: str,
    reduced: str,
    t: TimeSpec = None,
    *,
    microscope: Microscope | None = None,
    focal_z: float | None = None,
    quantity: Literal["fraction", "ratio"] = "fraction",
    brightness: tuple[float, float] = (1.0, 1.0),
    photons_per_uM: float | None = None,
    seed: int = 0,
) -> MicroscopyImage:
    """Image the sensor pair ``oxidised``/``reduced`` (species of the model).

    ``t``: a sample time, ``"mean"`` or ``(t0, t1)`` (an exposure: time average).
    ``focal_z``: depth of the focal plane (µm), default the middle of the lattice.
    ``quantity``: ``"fraction"`` (F_ox / (F_ox + F_red), with equal brightness the
    oxidised fraction) or ``"ratio"`` (F_ox / F_red). ``brightness``: relative
    brightness of the two forms in the two channels (e.g. the excitation ratio of
    the pure forms from your calibration). ``photons_per_uM``: add Poisson shot
    noise at that many photons per µM per pixel (seeded by ``seed``).
    """
    info = lattice_info(result)
    if info is None:
        raise ValueError("virtual microscopy needs a lattice geometry")
    mic = microscope or Microscope()
    if quantity not in ("fraction", "ratio"):
        raise ValueError(f"quantity must be 'fraction' or 'ratio', got {quantity!r}")
    f_ox = field(result, oxidised, t)
    f_red = field(result, reduced, t)
    z_lo, z_hi = info.extent[4], info.extent[5]
    zf = 0.5 * (z_lo + z_hi) if focal_z is None else float(focal_z)
    if not z_lo <= zf <= z_hi:
        raise ValueError(f"focal_z = {zf:g} µm is outside the lattice [{z_lo:g}, {z_hi:g}] µm")
    k_focus = (zf - info.origin[2]) / info.spacing[2] - 0.5
    chans = []
    extent = info.extent[:4]
    for fld, b in ((f_ox, brightness[0]), (f_red, brightness[1])):
        img = _blur_and_section(b * lattice_grid(fld.values, info), info.spacing, mic, k_focus)
        img, extent = _pixelate(
            img,
            (info.origin[0], info.origin[1], info.spacing[0], info.spacing[1]),
            mic.pixel_size,
        )
        chans.append(img)
    ox, red = chans
    if photons_per_uM is not None:
        rng = np.random.default_rng(seed)
        ox = rng.poisson(np.clip(ox, 0, None) * photons_per_uM) / photons_per_uM
        red = rng.poisson(np.clip(red, 0, None) * photons_per_uM) / photons_per_uM
    with np.errstate(divide="ignore", invalid="ignore"):
        if quantity == "fraction":
            sig = ox / (ox + red)
            name = "oxidised fraction"
        else:
            sig = ox / red
            name = "ratio"
    return MicroscopyImage(
        signal=np.asarray(sig, dtype=np.float64),
        oxidised=ox,
        reduced=red,
        extent=tuple(float(v) for v in extent),  # type: ignore[arg-type]
        focal_z=zf,
        quantity=name,
        microscope=mic,
        when=f_ox.when,
    )


def plot_virtual_microscopy(
    result: Result,
    oxidised: str,
    reduced: str,
    path: str | os.PathLike[str],
    t: TimeSpec = None,
    *,
    truth: str = "H2O2",
    microscope: Microscope | None = None,
    focal_z: float | None = None,
    quantity: Literal["fraction", "ratio"] = "fraction",
    smooth_truth: float | None = None,
    **kwargs: object,
) -> Path:
    """Side by side: the true ``truth`` field (µM) in the focal plane, the true
    oxidised fraction of the sensor there, and its confocal and widefield images.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    info = lattice_info(result)
    if info is None:
        raise ValueError("virtual microscopy needs a lattice geometry")
    mic = microscope or Microscope()
    conf = virtual_microscopy(
        result,
        oxidised,
        reduced,
        t,
        microscope=replace(mic, mode="confocal"),
        focal_z=focal_z,
        quantity=quantity,
        **kwargs,  # type: ignore[arg-type]
    )
    wide = virtual_microscopy(
        result,
        oxidised,
        reduced,
        t,
        microscope=replace(mic, mode="widefield"),
        focal_z=focal_z,
        quantity=quantity,
        **kwargs,  # type: ignore[arg-type]
    )
    k = int(
        np.clip(
            round((conf.focal_z - info.origin[2]) / info.spacing[2] - 0.5), 0, info.shape[2] - 1
        )
    )
    tf = field(result, truth, t, smooth=smooth_truth)
    plane = lattice_grid(tf.values, info)[k]
    ox = lattice_grid(field(result, oxidised, t).values, info)[k]
    red = lattice_grid(field(result, reduced, t).values, info)[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        true_q = ox / (ox + red) if quantity == "fraction" else ox / red
    fig = Figure(figsize=(17.0, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    xy = info.extent[:4]
    im = axes[0].imshow(plane, origin="lower", extent=xy, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=axes[0], label=f"{tf.label}")
    axes[0].set_title(
        f"true {truth}" + (f" (smoothed σ = {smooth_truth:g} µm)" if smooth_truth else ""),
        fontsize=10,
    )
    # one colour scale for the three sensor panels, set by the two microscope images;
    # the noisy per-voxel truth may exceed it (the colour bar's arrow says so)
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in (conf.signal, wide.signal)])
    vlo, vhi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    over = bool(np.nanmax(true_q, initial=-np.inf) > vhi)
    under = bool(np.nanmin(true_q, initial=np.inf) < vlo)
    extend = {(False, False): "neither", (True, False): "max", (False, True): "min"}.get(
        (over, under), "both"
    )
    qlabel = (
        f"{oxidised} / ({oxidised} + {reduced})"
        if quantity == "fraction"
        else (f"{oxidised} / {reduced}")
    )
    for ax, img, ext, ttl in (
        (axes[1], true_q, xy, "true, per voxel"),
        (axes[2], conf.signal, conf.extent, "confocal section"),
        (axes[3], wide.signal, wide.extent, "widefield"),
    ):
        im = ax.imshow(
            img,
            origin="lower",
            extent=ext,
            cmap="magma",
            vmin=vlo,
            vmax=vhi,
            interpolation="nearest",
        )
        ax.set_title(f"{conf.quantity}: {ttl}", fontsize=10)
    fig.colorbar(im, ax=list(axes[1:]), label=qlabel, extend=extend)
    sc, sw = conf.microscope.sigmas, wide.microscope.sigmas
    axes[2].set_xlabel(
        f"σxy {sc[0] * 1e3:.0f} nm, σz {sc[1] * 1e3:.0f} nm, pixel {mic.pixel_size * 1e3:.0f} nm",
        fontsize=9,
    )
    axes[3].set_xlabel(
        f"NA {mic.na:g}, in-focus σxy {sw[0] * 1e3:.0f} nm, no sectioning", fontsize=9
    )
    axes[0].set_xlabel("x (µm)")
    axes[1].set_xlabel("x (µm)")
    axes[0].set_ylabel("y (µm)")
    fig.suptitle(
        f"virtual microscopy at z = {conf.focal_z:.3g} µm, {conf.when} "
        f"(sensor kinetics: the model's own reactions)",
        fontsize=11,
    )
    out = Path(path)
    fig.savefig(out, dpi=90)
    return out
