"""Regenerate the meshes shipped in the package (see meshes/README.md).

    pip install 'redoxfield[mesh]'      # gmsh
    python meshes/make_meshes.py        # writes python/redoxfield/meshes/*.vtu

Every mesh is made by a function of :mod:`redoxfield.geometry.mesher` with a fixed
gmsh seed, written through meshio as zlib-compressed VTU with the gmsh physical
groups (cell data ``gmsh:physical``, names in the field data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import redoxfield as rf
from redoxfield.geometry import fibermesh, mesher

HERE = Path(__file__).resolve().parent
#: Package data: installed with the package, found by scenarios by file name.
OUT = HERE.parent / "python" / "redoxfield" / "meshes"

#: B3 (BENCHMARKS.md): the 4 µm cube, mean tet volume ~1e-3 µm³, a conforming
#: plane at x = 0.5 µm (the source slab is volume group slab0).
B3 = dict(size=4.0, h=0.17, cuts=(0.5,))
#: The default fibre segment of rf.fiber.segment() (all its structures, NMJ on, the
#: default spacing 0.1 um that places the SR strips and sets the cleft), gmsh h =
#: 0.35 um in cytosol and extracellular space, 0.175 um on the organelles.
FIBRE = dict(h=0.35)


def main() -> None:
    out = {}
    out["b3-cube.vtu"] = mesher.cube(OUT / "b3-cube.vtu", **B3)
    out["fibre-segment.vtu"] = mesher.fiber_segment(OUT / "fibre-segment.vtu", **FIBRE)
    fib = fibermesh.load_fiber_segment(out["fibre-segment.vtu"])
    for k, e in fib.relative_errors().items():
        print(f"  fibre-segment.vtu {k}: {100 * e:+.2f} % vs analytic", file=sys.stderr)
    for name, path in out.items():
        m = rf.TetMesh.load(path, compartments=None)
        vol = m.volumes
        print(
            f"{name}: {m.n_subvolumes} tets, {m.points.shape[0]} points, mean volume "
            f"{vol.mean():.3g} um^3, worst radius ratio {m.quality.worst_radius_ratio:.3g}, "
            f"{path.stat().st_size / 1e6:.2f} MB",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
