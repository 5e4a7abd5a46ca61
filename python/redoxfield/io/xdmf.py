"""XDMF sidecar for ParaView: ``run.xdmf`` next to ``run.h5``.

The sidecar is a small XML file (XDMF 3 syntax, also read by VTK's XDMF2 reader)
describing a temporal collection with one grid per sample. Nothing is copied: each
time step's counts are a HyperSlab (row ``k``) of ``run.h5:/samples/counts/<species>``
and the concentration is an XDMF Function of that slab and
``/geometry/uM_per_molecule`` (µM per molecule in each subvolume, written by the
HDF5 writer). The HDF5 file is referenced by its name only, so keep the two files
in the same directory (move them together).

Geometry:

- lattice: ``3DCoRectMesh`` (origin and spacing; one cell per voxel, cell data);
- ``/geometry/points`` + ``/geometry/cells`` (tetrahedra): ``Tetrahedron`` topology,
  cell data;
- anything else: ``Polyvertex`` at ``/geometry/centers``, node data.

Open it in ParaView with the "XDMF Reader" (or "Xdmf3 Reader T"); the time steps
are the sample times in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np

__all__ = ["write_xdmf", "xdmf_path"]


def xdmf_path(h5_path: str | os.PathLike[str]) -> Path:
    """The sidecar's path: the HDF5 path with suffix ``.xdmf``."""
    return Path(h5_path).with_suffix(".xdmf")


def _hdf(ref: str, dims: str, number: str, precision: int) -> str:
    return (
        f'<DataItem Dimensions="{dims}" NumberType="{number}" Precision="{precision}" '
        f'Format="HDF">{ref}</DataItem>'
    )


def write_xdmf(h5_path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the XDMF sidecar of a result file; returns its path."""
    h5p = Path(h5_path)
    dest = xdmf_path(h5p) if out is None else Path(out)
    name = h5p.name if dest.parent.resolve() == h5p.parent.resolve() else str(h5p.resolve())
    with h5py.File(h5p, "r") as f:
        g = f["geometry"]
        kind = str(g.attrs.get("kind", ""))
        n = int(g["volumes"].shape[0])
        times = f["samples/time"][()]
        species = [str(s) for s in f["model/species/name"].asstr()[()]]
        has_factor = "uM_per_molecule" in g
        if kind == "lattice" and "shape" in g.attrs:
            nx, ny, nz = (int(v) for v in g.attrs["shape"])
            hx, hy, hz = (float(v) for v in g.attrs["spacing"])
            x0, y0, z0 = (float(v) for v in g.attrs["origin"])
            topo = (
                f'<Topology TopologyType="3DCoRectMesh" Dimensions="{nz + 1} {ny + 1} {nx + 1}"/>'
                '<Geometry GeometryType="ORIGIN_DXDYDZ">'
                f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">'
                f"{z0!r} {y0!r} {x0!r}</DataItem>"
                f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">'
                f"{hz!r} {hy!r} {hx!r}</DataItem></Geometry>"
            )
            center, dims = "Cell", f"{nz} {ny} {nx}"
        elif "points" in g and "cells" in g:
            p = int(g["points"].shape[0])
            topo = (
                f'<Topology TopologyType="Tetrahedron" NumberOfElements="{n}">'
                + _hdf(f"{name}:/geometry/cells", f"{n} 4", "Int", 8)
                + '</Topology><Geometry GeometryType="XYZ">'
                + _hdf(f"{name}:/geometry/points", f"{p} 3", "Float", 8)
                + "</Geometry>"
            )
            center, dims = "Cell", f"{n}"
        else:
            topo = (
                f'<Topology TopologyType="Polyvertex" NumberOfElements="{n}"/>'
                '<Geometry GeometryType="XYZ">'
                + _hdf(f"{name}:/geometry/centers", f"{n} 3", "Float", 8)
                + "</Geometry>"
            )
            center, dims = "Node", f"{n}"
        regions = list(g["regions"]) if "regions" in g else []
    t_count = int(times.size)
    parts = [
        '<?xml version="1.0" ?>\n',
        '<Xdmf Version="3.0" xmlns:xi="http://www.w3.org/2001/XInclude">\n<Domain>\n',
        '<Grid Name="redoxfield" GridType="Collection" CollectionType="Temporal">\n',
    ]
    for k, t in enumerate(times):
        parts.append(f'<Grid Name="sample {k}" GridType="Uniform"><Time Value="{float(t)!r}"/>')
        parts.append(topo)
        for s in species:
            ref = f"{name}:/samples/counts/{s}"

            def slab(out_dims: str, ref: str = ref, k: int = k) -> str:
                return (
                    f'<DataItem ItemType="HyperSlab" Dimensions="{out_dims}" Type="HyperSlab">'
                    f'<DataItem Dimensions="3 2" NumberType="Int" Format="XML">{k} 0 1 1 1 {n}'
                    "</DataItem>" + _hdf(ref, f"{t_count} {n}", "UInt", 4) + "</DataItem>"
                )

            parts.append(
                f'<Attribute Name={quoteattr(s + " (molecules)")} AttributeType="Scalar" '
                f'Center="{center}">' + slab(dims) + "</Attribute>"
            )
            if has_factor:
                # the float factor comes first: the reader takes the result type from $0
                parts.append(
                    f'<Attribute Name={quoteattr(s + " (uM)")} AttributeType="Scalar" '
                    f'Center="{center}"><DataItem ItemType="Function" Function="$0 * $1" '
                    f'Dimensions="{dims}">'
                    + _hdf(f"{name}:/geometry/uM_per_molecule", f"1 {n}", "Float", 8)
                    + slab(f"1 {n}")
                    + "</DataItem></Attribute>"
                )
        for r in regions:
            parts.append(
                f'<Attribute Name={quoteattr("region " + r)} AttributeType="Scalar" '
                f'Center="{center}">'
                + _hdf(f"{name}:/geometry/regions/{r}", dims, "UChar", 1)
                + "</Attribute>"
            )
        parts.append("</Grid>\n")
    parts.append("</Grid>\n</Domain>\n</Xdmf>\n")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, dest)
    return dest


def uM_per_molecule(volumes: np.ndarray) -> np.ndarray:
    """µM that one molecule makes in each subvolume: ``1 / (V · N_A · 1e-21)``."""
    from .. import units

    return units.molecules_to_concentration(1.0, volumes)
