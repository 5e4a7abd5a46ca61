"""Pictures of results: 3-D rendering (PyVista, offscreen), movies, virtual
microscopy and analysis plots (matplotlib, Agg). See docs/gallery.md.

- :func:`render`, :func:`animate`, :func:`plotter`, :func:`mesh` (``viz.render``)
- :func:`virtual_microscopy`, :func:`plot_virtual_microscopy`, :class:`Microscope`
  (``viz.microscopy``)
- :func:`plot_timecourse`, :func:`plot_profile` (``viz.plots``)
- :func:`plot_summary` (the PNG ``redoxfield run`` writes), :func:`field`

PyVista (and VTK) are imported only when a 3-D picture is made.
"""

from __future__ import annotations

from .fields import Field, field, signed_distance, structure_masks
from .microscopy import Microscope, MicroscopyImage, plot_virtual_microscopy, virtual_microscopy
from .plots import plot_profile, plot_timecourse, profile, timecourse
from .render import Rendering, animate, mesh, plotter, render
from .summary import default_picture_species, plot_summary

__all__ = [
    "Field",
    "Microscope",
    "MicroscopyImage",
    "Rendering",
    "animate",
    "default_picture_species",
    "field",
    "mesh",
    "plot_profile",
    "plot_summary",
    "plot_timecourse",
    "plot_virtual_microscopy",
    "plotter",
    "profile",
    "render",
    "signed_distance",
    "structure_masks",
    "timecourse",
    "virtual_microscopy",
]
