"""``Result.to_xarray()``: the samples as an ``xarray.Dataset``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import units

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["to_xarray"]


#: Above this many bytes (counts + concentration) to_xarray is lazy by default.
LAZY_ABOVE_BYTES = 256 * 2**20


def to_xarray(result: Result, species: list[str] | None = None, lazy: bool | None = None) -> Any:
    """See :meth:`redoxfield.Result.to_xarray`."""
    import xarray as xr

    names = result.species if species is None else list(species)
    for s in names:
        result._species_check(s)
    t, n = result.n_samples, result.n_subvolumes
    vol = result.volumes
    if lazy is None:
        lazy = t * n * len(names) * 12 > LAZY_ABOVE_BYTES
    if lazy:
        import dask.array as da

        # Chunks follow the file's (one sample per chunk row block), so a
        # computation reads each compressed chunk once.
        parts = []
        for s in names:
            ds = result.file["samples/counts"][s]
            parts.append(da.from_array(ds, chunks=ds.chunks or "auto", lock=True))
        counts: Any = da.stack(parts, axis=-1)
        per_molecule = units.molecules_to_concentration(np.ones_like(vol), vol)
        conc: Any = counts * per_molecule[None, :, None]
    else:
        counts = np.empty((t, n, len(names)), dtype=np.uint32)
        for j, s in enumerate(names):
            counts[:, :, j] = result.file["samples/counts"][s][()]
        conc = units.molecules_to_concentration(counts, vol[None, :, None])
    c = result.centers
    g = result.file["geometry"]
    cnames = [str(v) for v in g["compartment_names"].asstr()[()]]
    coords: dict[str, Any] = {
        "time": ("time", result.times, {"units": "s"}),
        "species": ("species", np.array(names, dtype=object)),
        "subvolume": ("subvolume", np.arange(n)),
        "x": ("subvolume", c[:, 0], {"units": "um"}),
        "y": ("subvolume", c[:, 1], {"units": "um"}),
        "z": ("subvolume", c[:, 2], {"units": "um"}),
        "volume": ("subvolume", vol, {"units": "um^3"}),
        "compartment": (
            "subvolume",
            np.array(cnames, dtype=object)[g["compartments"][()]],
        ),
    }
    for rname, mask in result.regions.items():
        coords[f"region_{rname}"] = ("subvolume", mask)
    dims = ("time", "subvolume", "species")
    ds = xr.Dataset(
        {
            "counts": (dims, counts, {"units": "molecules per subvolume"}),
            "concentration": (dims, conc, {"units": "uM"}),
        },
        coords=coords,
        attrs={
            "source": str(result.path) if result.path is not None else "in memory",
            "seed": result.seed,
            "solver": result.solver,
            "redoxfield_version": result.version,
            "geometry_kind": str(result.geometry.get("kind")),
        },
    )
    return ds
