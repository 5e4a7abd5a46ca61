"""3-D pictures and movies of a result with PyVista, offscreen by default.

The mesh follows the geometry stored in the result file:

- a lattice becomes a ``pyvista.ImageData`` whose cells are the voxels (cell data,
  x fastest, the subvolume order of docs/hdf5.md);
- a geometry with ``/geometry/points`` (P, 3) and ``/geometry/cells`` (N, 4) (a
  tetrahedral mesh, one tetrahedron per subvolume) becomes an
  ``UnstructuredGrid`` with the same filters (slice, contour, threshold, surface);
- any other subvolume graph is drawn as a cloud of its subvolume centres.

Without a display (CI, a cluster node), rendering goes through EGL: when no
``DISPLAY`` is set on Linux, ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` is
set before VTK makes its first window (unless you set the variable yourself, e.g.
to ``vtkOSOpenGLRenderWindow`` for OSMesa). Debian packages: ``libegl1`` and
``libgl1-mesa-dri`` (``libosmesa6`` for the OSMesa fallback).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from .fields import Field, TimeSpec, lattice_info, structure_masks
from .fields import field as make_field

if TYPE_CHECKING:
    import pyvista as pv

    from ..result import Result

__all__ = ["Kind", "Rendering", "animate", "mesh", "plotter", "render"]

Kind = Literal["slice", "isosurface", "volume", "membrane"]
KINDS = ("slice", "isosurface", "volume", "membrane")
_SCALARS = "value"
_PALETTE = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf")


def _pyvista() -> Any:
    """Import pyvista for offscreen use (EGL when there is no display)."""
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista as pv

    return pv


def mesh(result: Result) -> pv.DataSet:
    """The result's geometry as a PyVista dataset with one cell per subvolume
    (or one point per subvolume for a geometry known only as a graph)."""
    pv = _pyvista()
    info = lattice_info(result)
    if info is not None:
        nx, ny, nz = info.shape
        return pv.ImageData(
            dimensions=(nx + 1, ny + 1, nz + 1), spacing=info.spacing, origin=info.origin
        )
    g = result.file["geometry"]
    if "points" in g and "cells" in g:
        points = np.asarray(g["points"][()], dtype=np.float64)
        cells = np.asarray(g["cells"][()], dtype=np.int64)
        if cells.ndim != 2 or cells.shape[1] != 4 or cells.shape[0] != result.n_subvolumes:
            raise ValueError(
                f"/geometry/cells has shape {cells.shape}; expected ({result.n_subvolumes}, 4) "
                "tetrahedra, one per subvolume"
            )
        return pv.UnstructuredGrid({pv.CellType.TETRA: cells}, points)
    return pv.PolyData(np.asarray(result.centers, dtype=np.float64))


@dataclass
class Rendering:
    """What :func:`render` drew: the RGB image, the colour range (data units, µM
    unless ``unit="molecules"``), the field (values and how they were made)."""

    image: NDArray[np.uint8]
    clim: tuple[float, float]
    field: Field
    kind: str
    log: bool
    title: str
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _color_limits(
    values: NDArray[np.float64], log: bool, clim: tuple[float, float] | None
) -> tuple[float, float]:
    if clim is not None:
        lo, hi = float(clim[0]), float(clim[1])
    else:
        lo, hi = float(np.min(values)), float(np.max(values))
        if log:
            pos = values[values > 0]
            lo = float(pos.min()) if pos.size else 1e-3
            hi = max(hi, lo)
    if log and lo <= 0:
        raise ValueError(f"a log colour scale needs a positive lower limit, got {lo:g}")
    if hi <= lo:  # a constant field: widen so VTK can draw it; the title keeps the value
        hi = lo + (abs(lo) * 1e-6 or 1e-12)
    return lo, hi


def plotter(
    result: Result,
    species: str | None = None,
    t: TimeSpec = None,
    kind: Kind = "slice",
    *,
    log: bool = False,
    smooth: float | None = None,
    unit: str = "uM",
    clim: tuple[float, float] | None = None,
    cmap: str = "viridis",
    slice_at: tuple[float, float, float] | None = None,
    normal: str | None = None,
    levels: int | list[float] = 3,
    structures: bool = True,
    outline: bool = True,
    scalar_bar: bool = True,
    title: str | bool = True,
    camera: str = "iso",
    window_size: tuple[int, int] = (1024, 768),
    background: str = "white",
    off_screen: bool = True,
    field_override: Field | None = None,
) -> tuple[pv.Plotter, Rendering]:
    """A configured ``pyvista.Plotter`` (not yet shown) and what it draws.

    See :func:`render` for the arguments; use this to add your own actors before
    ``plotter.screenshot(...)`` or ``plotter.show()`` (``off_screen=False``).
    """
    pv = _pyvista()
    pl = pv.Plotter(off_screen=off_screen, window_size=list(window_size))
    rendering = _draw(
        pl,
        result,
        species,
        t,
        kind,
        log=log,
        smooth=smooth,
        unit=unit,
        clim=clim,
        cmap=cmap,
        slice_at=slice_at,
        normal=normal,
        levels=levels,
        structures=structures,
        outline=outline,
        scalar_bar=scalar_bar,
        title=title,
        camera=camera,
        background=background,
        field_override=field_override,
    )
    return pl, rendering


def _draw(
    pl: Any,
    result: Result,
    species: str | None,
    t: TimeSpec,
    kind: str,
    *,
    log: bool,
    smooth: float | None,
    unit: str,
    clim: tuple[float, float] | None,
    cmap: str,
    slice_at: tuple[float, float, float] | None,
    normal: str | None,
    levels: int | list[float],
    structures: bool,
    outline: bool,
    scalar_bar: bool,
    title: str | bool,
    camera: str,
    background: str,
    field_override: Field | None,
) -> Rendering:
    pv = _pyvista()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if species is None:
        from .summary import default_picture_species

        species = default_picture_species(result)
    fld = field_override or make_field(result, species, t, smooth=smooth, unit=unit)
    lo, hi = _color_limits(fld.values, log, clim)
    notes: list[str] = []
    ds = mesh(result)
    point_cloud = ds.__class__.__name__ == "PolyData"
    shown = np.clip(fld.values, lo, None) if log else fld.values
    if point_cloud:
        ds.point_data[_SCALARS] = shown
    else:
        ds.cell_data[_SCALARS] = shown
    pl.set_background(background)
    fg = "black" if background in ("white", "w", "#ffffff") else "white"
    bar_title = fld.label.replace(")", ", log)") if log else fld.label
    bar_args = {
        "title": bar_title,
        "color": fg,
        "vertical": True,
        "position_x": 0.86,
        "position_y": 0.12,
        "height": 0.72,
        "width": 0.06,
        "fmt": "%.3g",
        "n_labels": 5,
        "title_font_size": 18,
        "label_font_size": 16,
    }
    mesh_kw: dict[str, Any] = {
        "scalars": _SCALARS,
        "cmap": cmap,
        "clim": (lo, hi),
        "log_scale": log,
        "show_scalar_bar": scalar_bar,
        "scalar_bar_args": bar_args,
    }
    b = ds.bounds
    centre = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
    at = centre if slice_at is None else np.asarray(slice_at, dtype=float)

    if point_cloud:
        notes.append("geometry known only as a graph: subvolume centres drawn as points")
        pl.add_mesh(ds, render_points_as_spheres=True, point_size=6, **mesh_kw)
    elif kind == "slice":
        if normal is None:
            sl = ds.slice_orthogonal(x=at[0], y=at[1], z=at[2])
            desc = f"slices at x = {at[0]:.3g}, y = {at[1]:.3g}, z = {at[2]:.3g} µm"
        else:
            if normal not in ("x", "y", "z"):
                raise ValueError(f"normal must be 'x', 'y' or 'z', got {normal!r}")
            sl = ds.slice(normal=normal, origin=at)
            desc = f"slice {normal} = {at['xyz'.index(normal)]:.3g} µm"
        if sl.__class__.__name__ == "MultiBlock":
            parts = [blk for blk in sl if blk is not None and blk.n_cells]
            sl = pv.MultiBlock(parts) if parts else None
        elif not sl.n_cells:
            sl = None
        if sl is None:
            notes.append("the slice plane meets no subvolume")
        else:
            # unlit: the slice shows exactly the colour-bar colours
            pl.add_mesh(sl, lighting=False, **mesh_kw)
        notes.append(desc)
    elif kind == "isosurface":
        pdata = ds.cell_data_to_point_data()
        if isinstance(levels, int):
            if log:
                vals = list(np.geomspace(lo, hi, levels + 2)[1:-1])
            else:
                vals = list(np.linspace(lo, hi, levels + 2)[1:-1])
        else:
            vals = [float(v) for v in levels]
        surf = pdata.contour(isosurfaces=vals, scalars=_SCALARS)
        if surf.n_points:
            pl.add_mesh(surf, opacity=0.55, smooth_shading=True, **mesh_kw)
        else:
            notes.append("no isosurface at these levels")
        notes.append("isosurfaces at " + ", ".join(f"{v:.3g}" for v in vals) + f" {fld.unit}")
    elif kind == "volume":
        vol = ds
        if ds.__class__.__name__ != "ImageData":
            # ray casting wants a regular grid: resample the tetrahedral field
            bnd = ds.bounds
            n = 96
            vol = pv.ImageData(
                dimensions=(n, n, n),
                spacing=(
                    (bnd[1] - bnd[0]) / (n - 1),
                    (bnd[3] - bnd[2]) / (n - 1),
                    (bnd[5] - bnd[4]) / (n - 1),
                ),
                origin=(bnd[0], bnd[2], bnd[4]),
            ).sample(ds)
            notes.append("tetrahedral field resampled on a 96³ grid for volume rendering")
        else:
            vol = ds.cell_data_to_point_data()
        vkw = dict(mesh_kw)
        vkw.pop("log_scale")
        if log:
            vol.point_data[_SCALARS] = np.log10(np.clip(vol.point_data[_SCALARS], lo, None))
            vkw["clim"] = (np.log10(lo), np.log10(hi))
            bar_args["title"] = f"log10 {fld.label}"
        pl.add_volume(vol, opacity="linear", shade=False, **vkw)
        notes.append("volume rendering, opacity rising linearly with the value")
    else:  # membrane
        masks = structure_masks(result)
        drawn = False
        for name, (what, mask) in masks.items():
            if what == "region" and any(w != "region" for w, _ in masks.values()):
                continue  # with real membranes, regions are only labels
            surf = ds.extract_cells(np.flatnonzero(mask)).extract_surface(
                algorithm="dataset_surface"
            )
            if surf.n_cells:
                pl.add_mesh(surf, **mesh_kw)
                mesh_kw["show_scalar_bar"] = False
                drawn = True
                notes.append(f"{name.split(':', 1)[1]} surface coloured by the subvolumes inside")
        if not drawn:
            pl.add_mesh(ds.extract_surface(algorithm="dataset_surface"), **mesh_kw)
            notes.append("no membrane or region: the outer surface of the domain")
        structures = False
    if structures and not point_cloud and kind != "membrane":
        op = 0.12 if kind in ("isosurface", "volume") else 0.2
        labels = []
        for k, (name, (_what, mask)) in enumerate(structure_masks(result).items()):
            surf = ds.extract_cells(np.flatnonzero(mask)).extract_surface(
                algorithm="dataset_surface"
            )
            if surf.n_cells:
                color = _PALETTE[k % len(_PALETTE)]
                pl.add_mesh(surf, color=color, opacity=op, show_scalar_bar=False)
                labels.append((name.split(":", 1)[1] + f" ({name.split(':', 1)[0]})", color))
        if labels:
            pl.add_legend(
                labels,
                bcolor=None,
                face="rectangle",
                size=(0.22, 0.05 * len(labels)),
                loc="lower left",
            )
    if outline and not point_cloud:
        pl.add_mesh(ds.outline(), color=fg, line_width=1)
    if camera == "iso":
        # x to the right, y into the picture, z up: a source at low x is on the left
        c = centre
        span = float(max(b[1] - b[0], b[3] - b[2], b[5] - b[4]))
        pl.camera_position = [
            (c[0] + 0.9 * span, c[1] - 2.2 * span, c[2] + 1.4 * span),
            tuple(c),
            (0.0, 0.0, 1.0),
        ]
        pl.reset_camera()
        pl.camera.zoom(1.05)
    elif camera in ("xy", "xz", "yz", "yx", "zx", "zy"):
        pl.camera_position = camera
        pl.enable_parallel_projection()
    else:
        raise ValueError(f"camera must be 'iso', 'xy', 'xz' or 'yz', got {camera!r}")
    if outline and not point_cloud and camera == "iso":
        pl.show_bounds(
            color=fg,
            xtitle="x (µm)",
            ytitle="y (µm)",
            ztitle="z (µm)",
            fmt="%.2g",
            font_size=10,
            grid=False,
            location="outer",
            ticks="outside",
            use_2d=True,
        )
    text = ""
    if title:
        text = title if isinstance(title, str) else fld.description
        if log:
            text += f"\nlog colour scale from {lo:.3g} {fld.unit}"
        if fld.range[0] == fld.range[1]:
            text += f"\nuniform field: {fld.range[0]:.4g} {fld.unit}"
        if not result.complete:
            text += "\nincomplete run (stopped early)"
        pl.add_text(text, position="upper_left", font_size=11, color=fg)
    return Rendering(
        image=np.zeros((0, 0, 3), np.uint8),
        clim=(lo, hi),
        field=fld,
        kind=kind,
        log=log,
        title=text,
        notes=notes,
    )


def render(
    result: Result,
    species: str | None = None,
    t: TimeSpec = None,
    kind: Kind = "slice",
    *,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Rendering:
    """Render one field offscreen and return the image (and write it to ``path``).

    - ``species``: default the first mobile species. ``t``: ``None`` (last sample),
      a time in s (nearest sample), ``"mean"`` or ``(t0, t1)`` (time average).
    - ``kind``: ``"slice"`` (three orthogonal slices through ``slice_at``, default
      the centre; ``normal="z"`` for one), ``"isosurface"`` (``levels``: a count of
      evenly spaced levels inside the colour range, or the values), ``"volume"``
      (ray-cast, linear opacity), ``"membrane"`` (the surfaces of membranes, or of
      the regions on a plain lattice, coloured by the subvolumes inside them).
    - ``log``: logarithmic colour scale; values below the lower limit (by default the
      smallest positive value) are drawn at the lower limit, and the title says so.
    - ``clim``: colour range in the field's unit; default the field's min and max, so
      the colour bar shows the data's range. ``smooth``: Gaussian sigma (µm).
    - ``structures``: membranes, compartments and regions as translucent surfaces.
    - ``camera``: ``"iso"`` or an axis view (``"xy"``: looking down z, parallel).
    - ``window_size``, ``background``, ``cmap``, ``unit`` (``"uM"``/``"molecules"``).
    """
    pl, rendering = plotter(result, species, t, kind, **kwargs)
    try:
        img = pl.screenshot(None if path is None else str(path), return_img=True)
    finally:
        pl.close()
    rendering.image = np.asarray(img)[..., :3]
    rendering.path = None if path is None else Path(path)
    return rendering


def animate(
    result: Result,
    species: str | None,
    path: str | os.PathLike[str],
    kind: Kind = "slice",
    *,
    fps: float = 4.0,
    log: bool = False,
    smooth: float | None = None,
    unit: str = "uM",
    clim: tuple[float, float] | None = None,
    window: int = 1,
    window_size: tuple[int, int] = (960, 720),
    **kwargs: Any,
) -> Path:
    """Write a movie over the sample times: MP4 (imageio-ffmpeg's own ffmpeg) or GIF,
    chosen by the suffix of ``path``, with the time in the title of every frame.

    The colour range is the same for every frame (default: min and max over all
    frames), so brightness compares across time. ``window``: average each frame
    over this many samples ending at it (a running time average for sparse fields).
    """
    pv = _pyvista()
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"movie path must end in .mp4 or .gif, got {str(out)!r}")
    if species is None:
        from .summary import default_picture_species

        species = default_picture_species(result)
    times = result.times
    if times.size == 0:
        raise ValueError("the result has no samples to animate")
    if window < 1:
        raise ValueError(f"window must be at least 1 sample, got {window}")
    frames = []
    for k in range(times.size):
        k0 = max(0, k - window + 1)
        spec: TimeSpec = float(times[k]) if k0 == k else (float(times[k0]), float(times[k]))
        frames.append(make_field(result, species, spec, smooth=smooth, unit=unit))
    if clim is None:
        allv = np.concatenate([f.values for f in frames])
        clim = _color_limits(allv, log, None)
    pl = pv.Plotter(off_screen=True, window_size=list(window_size))
    try:
        if suffix == ".mp4":
            pl.open_movie(str(out), framerate=fps, quality=6)
        else:
            pl.open_gif(str(out), fps=fps)
        opts = {
            "log": log,
            "smooth": smooth,
            "unit": unit,
            "clim": clim,
            "cmap": "viridis",
            "slice_at": None,
            "normal": None,
            "levels": 3,
            "structures": True,
            "outline": True,
            "scalar_bar": True,
            "title": True,
            "camera": "iso",
            "background": "white",
        }
        opts.update(kwargs)
        for fld in frames:
            pl.clear()
            _draw(pl, result, species, None, kind, field_override=fld, **opts)
            pl.write_frame()
    finally:
        pl.close()
    return out
