"""Reading results: :class:`Result`, backed by an HDF5 file (on disk or in memory).

Datasets are read on demand, so opening a large file is cheap; keep the Result
open while you use it and close it (or use ``with``) when done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import units
from .io.hdf5 import FORMAT_NAME
from .model import Model

__all__ = ["Result"]


def _str_list(ds: h5py.Dataset) -> list[str]:
    return [str(s) for s in ds.asstr()[()]] if ds.shape and ds.shape[0] else []


class Result:
    """One trajectory: sample times, counts per subvolume, totals, event counters
    and everything needed to interpret them (model, geometry, seed, ...).

    Arrays are indexed ``[sample, subvolume]`` with the subvolume order of the
    geometry's ``centers`` (x fastest on a lattice).
    """

    def __init__(self, file: h5py.File, path: Path | None = None) -> None:
        if file.attrs.get("format") != FORMAT_NAME:
            name = path or file.filename
            file.close()
            raise ValueError(f"{str(name)!r} is not a redoxfield result file")
        self._file = file
        self.path = path
        missing = [
            key
            for key in ("model/species/name", "model/reactions/name", "samples/time", "geometry")
            if key not in file
        ]
        if missing:
            name = path or file.filename
            file.close()
            raise ValueError(
                f"{str(name)!r} is a damaged redoxfield result file: missing {', '.join(missing)}"
            )
        self._species = _str_list(file["model/species/name"])
        self._reactions = _str_list(file["model/reactions/name"])

    # -- opening / closing -------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Open a result file read-only (lazy: datasets are read when asked for)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no such result file: {str(p)!r}")
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise ValueError(f"{str(p)!r} is not an HDF5 file ({exc})") from None
        return cls(f, p)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> Result:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Copy this result (e.g. an in-memory one) to an HDF5 file."""
        p = Path(path)
        with h5py.File(p, "w") as dst:
            for key, value in self._file.attrs.items():
                dst.attrs[key] = value
            for name in self._file:
                self._file.copy(self._file[name], dst, name=name)
        from .io.xdmf import write_xdmf

        write_xdmf(p)
        return p

    @property
    def file(self) -> h5py.File:
        """The underlying open h5py.File (read-only for loaded results)."""
        return self._file

    # -- metadata ----------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self._file.attrs.items():
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    @property
    def complete(self) -> bool:
        """False when the run stopped early (Ctrl-C, core error)."""
        return bool(self._file.attrs["complete"])

    @property
    def seed(self) -> int:
        return int(self._file.attrs["seed"])

    @property
    def replicate(self) -> int:
        return int(self._file.attrs["replicate"])

    @property
    def solver(self) -> str:
        return str(self._file.attrs["solver"])

    @property
    def version(self) -> str:
        return str(self._file.attrs["redoxfield_version"])

    @property
    def species(self) -> list[str]:
        return list(self._species)

    @property
    def reactions(self) -> list[str]:
        return list(self._reactions)

    @property
    def model(self) -> Model:
        """The Model that was run, rebuilt from the file."""
        return Model.from_dict(json.loads(self._file["model"].attrs["description"]))

    @property
    def rate_schedule(self) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]] | None:
        """(switch times, reaction name -> factors) of the run, or None."""
        if "schedule" not in self._file:
            return None
        g = self._file["schedule"]
        factors = np.asarray(g["factors"][()])
        names = _str_list(g["reaction_names"])
        return np.asarray(g["times"][()]), {n: factors[:, k] for k, n in enumerate(names)}

    @property
    def protocol(self) -> Any:
        """The exercise protocol of the run (redoxfield.protocols.Protocol) or None."""
        if "schedule" not in self._file or "protocol" not in self._file["schedule"].attrs:
            return None
        from .protocols import from_dict

        return from_dict(json.loads(self._file["schedule"].attrs["protocol"]))

    def activity(self) -> NDArray[np.float64] | None:
        """Contraction activity at each sample time (None without a protocol)."""
        p = self.protocol
        return None if p is None else p.activity(self.times)

    @property
    def scenario_text(self) -> str | None:
        if "scenario" not in self._file:
            return None
        return str(self._file["scenario"].asstr()[()])

    # -- geometry ----------------------------------------------------------------
    @property
    def geometry(self) -> dict[str, Any]:
        """Geometry attributes (kind; shape/spacing/origin for a lattice)."""
        out: dict[str, Any] = {}
        for k, v in self._file["geometry"].attrs.items():
            out[k] = (
                v.tolist()
                if isinstance(v, np.ndarray)
                else (v.item() if isinstance(v, np.generic) else v)
            )
        return out

    @property
    def centers(self) -> NDArray[np.float64]:
        """(N, 3) subvolume centres, µm."""
        return self._file["geometry/centers"][()]

    @property
    def volumes(self) -> NDArray[np.float64]:
        """(N,) subvolume volumes, µm³."""
        return self._file["geometry/volumes"][()]

    @property
    def n_subvolumes(self) -> int:
        return int(self._file["geometry/volumes"].shape[0])

    @property
    def regions(self) -> dict[str, NDArray[np.bool_]]:
        g = self._file["geometry/regions"]
        return {name: g[name][()].astype(bool) for name in g}

    # -- samples -----------------------------------------------------------------
    @property
    def times(self) -> NDArray[np.float64]:
        """(T,) sample times, s."""
        return self._file["samples/time"][()]

    @property
    def n_samples(self) -> int:
        return int(self._file["samples/time"].shape[0])

    def _species_check(self, species: str) -> None:
        if species not in self._species:
            known = ", ".join(self._species)
            raise ValueError(f"unknown species {species!r} (the result has: {known})")

    def counts(self, species: str, sample: int | slice | None = None) -> NDArray[np.int64]:
        """Counts per subvolume: (T, N) int64, or (N,) for one ``sample`` index."""
        self._species_check(species)
        ds = self._file["samples/counts"][species]
        data = ds[()] if sample is None else ds[sample]
        return data.astype(np.int64)

    def concentration(self, species: str, sample: int | slice | None = None) -> NDArray[np.float64]:
        """Concentration per subvolume in µM: ``n / (V · N_A · 1e-21)``."""
        return units.molecules_to_concentration(self.counts(species, sample), self.volumes)

    @property
    def totals(self) -> NDArray[np.int64]:
        """(T, S) total molecules per species."""
        return self._file["samples/totals"][()]

    def total(self, species: str) -> NDArray[np.int64]:
        """(T,) total molecules of one species."""
        self._species_check(species)
        return self._file["samples/totals"][:, self._species.index(species)]

    # -- compartments and per-region analysis ----------------------------------
    @property
    def compartments(self) -> dict[str, NDArray[np.bool_]]:
        """Compartment name -> (N,) mask."""
        g = self._file["geometry"]
        ids = g["compartments"][()]
        return {n: ids == i for i, n in enumerate(_str_list(g["compartment_names"]))}

    @property
    def membrane_areas(self) -> dict[str, NDArray[np.float64]]:
        """Membrane name -> (N,) area in each subvolume, µm²."""
        g = self._file["geometry"]
        a = g["membrane_areas"][()]
        return {n: a[:, m] for m, n in enumerate(_str_list(g["membrane_names"]))}

    def _mask(self, region: str) -> NDArray[np.bool_]:
        g = self._file["geometry"]
        if region in g["regions"]:
            return g["regions"][region][()].astype(bool)
        comps = self.compartments
        if region in comps:
            return comps[region]
        raise ValueError(
            f"unknown region {region!r} (regions: {', '.join(g['regions']) or 'none'}; "
            f"compartments: {', '.join(comps)})"
        )

    def region_total(self, species: str, region: str) -> NDArray[np.int64]:
        """(T,) molecules of ``species`` in ``region`` (a region or compartment name)."""
        self._species_check(species)
        mask = self._mask(region)
        ds = self._file["samples/counts"][species]
        out = np.zeros(ds.shape[0], dtype=np.int64)
        block = max(1, 2**24 // max(ds.shape[1], 1))
        for k0 in range(0, ds.shape[0], block):
            data = ds[k0 : k0 + block]
            out[k0 : k0 + block] = data[:, mask].sum(axis=1, dtype=np.int64)
        return out

    def region_volume(self, region: str) -> float:
        """Total volume of ``region`` (or compartment), µm³."""
        return float(self.volumes[self._mask(region)].sum())

    def region_mean(self, species: str, region: str) -> NDArray[np.float64]:
        """(T,) mean concentration in µM over ``region``: total molecules over its
        total volume, ``n / (V_region · N_A · 1e-21)``. For a membrane-bound
        species this is the molecules per region volume, not a surface density."""
        return units.molecules_to_concentration(
            self.region_total(species, region), self.region_volume(region)
        )

    def region_table(self, species: str | None = None) -> dict[str, dict[str, NDArray]]:
        """Per region: ``{"total": (T, S), "mean_uM": (T, S)}`` for the listed (or
        all) species, over every saved region."""
        names = self._species if species is None else [species]
        out: dict[str, dict[str, NDArray]] = {}
        for region in self._file["geometry/regions"]:
            tot = np.stack([self.region_total(s, region) for s in names], axis=1)
            out[region] = {
                "total": tot,
                "mean_uM": units.molecules_to_concentration(tot, self.region_volume(region)),
            }
        return out

    # -- events ------------------------------------------------------------------
    @property
    def events(self) -> dict[str, int]:
        """Event counts when the run stopped: ``total``, ``diffusion``,
        ``diffusion:<species>``, ``reaction``, ``reaction:<name>``. A run killed
        before closing its file has no ``/events``: the counters at its last
        flushed sample are given instead (zeros if none was flushed)."""
        if "events" in self._file:
            ev = self._file["events"]
            diff = [int(v) for v in ev["diffusion"][()]]
            reac = [int(v) for v in ev["reaction"][()]]
        else:
            smp = self._file["samples"]
            k = smp["time"].shape[0]
            diff = [int(v) for v in smp["diffusion_events"][k - 1]] if k else []
            reac = [int(v) for v in smp["reaction_events"][k - 1]] if k else []
            diff = diff or [0] * len(self._species)
            reac = reac or [0] * len(self._reactions)
        out = {"total": sum(diff) + sum(reac), "diffusion": sum(diff), "reaction": sum(reac)}
        out.update({f"diffusion:{s}": v for s, v in zip(self._species, diff, strict=True)})
        out.update({f"reaction:{r}": v for r, v in zip(self._reactions, reac, strict=True)})
        return out

    def events_at_samples(self) -> dict[str, NDArray[np.uint64]]:
        """Cumulative counters at each sample: (T, S) diffusion and (T, R) reaction."""
        smp = self._file["samples"]
        return {
            "diffusion": smp["diffusion_events"][()],
            "reaction": smp["reaction_events"][()],
        }

    # -- pictures and exports (redoxfield.viz, redoxfield.io.xdmf) ----------------
    def plot(
        self,
        species: str | None = None,
        t: float | str | tuple[float, float] | None = None,
        kind: str = "slice",
        *,
        log: bool = False,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render ``species`` offscreen with PyVista and return a
        :class:`redoxfield.viz.Rendering` (``.image`` RGB array, ``.clim`` in µM);
        ``kind``: ``"slice"``, ``"isosurface"``, ``"volume"`` or ``"membrane"``;
        ``t``: a sample time, ``"mean"`` or ``(t0, t1)``. See
        :func:`redoxfield.viz.render` for every option."""
        from .viz.render import render

        return render(self, species, t, kind, log=log, path=path, **kwargs)  # type: ignore[arg-type]

    def screenshot(
        self, path: str | os.PathLike[str], species: str | None = None, **kwargs: Any
    ) -> Path:
        """Write a PNG of :meth:`plot` (same options) to ``path``."""
        self.plot(species, path=path, **kwargs)
        return Path(path)

    def animate(
        self, species: str | None, path: str | os.PathLike[str], kind: str = "slice", **kwargs: Any
    ) -> Path:
        """MP4 or GIF (by suffix) over the sample times; see :func:`redoxfield.viz.animate`."""
        from .viz.render import animate

        return animate(self, species, path, kind, **kwargs)  # type: ignore[arg-type]

    def to_xarray(self, species: list[str] | None = None, lazy: bool | None = None) -> Any:
        """An ``xarray.Dataset`` with ``counts`` (uint32) and ``concentration`` (µM)
        of dims (time, subvolume, species) and coordinates time (s), species, x, y, z
        (µm, subvolume centres), volume (µm³), compartment and one boolean coordinate
        per region. ``lazy``: Dask arrays reading the file on demand (keep the
        Result open while using them); default lazy when the block exceeds 256 MiB,
        else read into memory."""
        from .io.xarray import to_xarray

        return to_xarray(self, species, lazy)

    def write_xdmf(self) -> Path:
        """(Re)write the ParaView sidecar ``<file>.xdmf`` next to the HDF5 file."""
        from .io.xdmf import write_xdmf

        if self.path is None:
            raise ValueError("an in-memory result has no file for ParaView: save() it first")
        return write_xdmf(self.path)

    # -- summary -----------------------------------------------------------------
    def summary(self) -> str:
        """Multi-line human-readable summary (what ``redoxfield info`` prints)."""
        a = self.attrs
        g = self.geometry
        lines = []
        where = str(self.path) if self.path is not None else "(in memory)"
        lines.append(f"file:        {where}")
        lines.append(
            f"redoxfield:  {a.get('redoxfield_version')} (core {a.get('core_version')}), "
            f"format {a.get('format_version')}"
        )
        lines.append(
            f"run:         solver {a.get('solver')}, seed {a.get('seed')}, "
            f"replicate {a.get('replicate')}, created {a.get('created')}"
        )
        reason = a.get("stop_reason")
        if not self.complete and reason == "running":
            reason = "the run was killed or crashed before closing the file"
        lines.append(f"complete:    {'yes' if self.complete else 'no'} ({reason})")
        if not self.complete and "checkpoint" in self._file:
            lines.append(f"resumable:   yes: redoxfield resume {self.path or ''}".rstrip())
        if "scenario_name" in a:
            lines.append(f"scenario:    {a['scenario_name']}")
        if g.get("kind") == "lattice":
            geo = (
                f"lattice {' x '.join(str(int(s)) for s in g['shape'])} voxels, spacing "
                f"{' x '.join(f'{h:g}' for h in g['spacing'])} um, origin "
                f"({', '.join(f'{o:g}' for o in g['origin'])}) um"
            )
        else:
            geo = str(g.get("kind"))
        lines.append(
            f"geometry:    {geo}; {self.n_subvolumes} subvolumes, "
            f"{float(np.sum(self.volumes)):g} um^3"
        )
        regions = self.regions
        if regions:
            lines.append(
                "regions:     "
                + ", ".join(f"{k} ({int(v.sum())} subvolumes)" for k, v in regions.items())
            )
        lines.append("model:")
        lines.extend("  " + ln for ln in str(self._file["model"].attrs["text"]).splitlines())
        t = self.times
        if t.size:
            lines.append(
                f"samples:     {t.size} from t = {t[0]:g} s to {t[-1]:g} s "
                f"(requested t_end = {a.get('t_end'):g} s, dt = {a.get('dt_sample'):g} s)"
            )
            tot = self.totals[-1]
            lines.append(f"totals at t = {t[-1]:g} s:")
            lines.extend(f"  {s:<12} {int(n)}" for s, n in zip(self._species, tot, strict=True))
        else:
            lines.append("samples:     none")
        ev = self.events
        if "events" in self._file:
            t_ev = float(self._file["events"].attrs["time"])
            lines.append(f"events (at t = {t_ev:g} s):")
        else:
            lines.append("events (at the last flushed sample):")
        for k, v in ev.items():
            lines.append(f"  {k:<28} {v}")
        if "wall_seconds" in a:
            ws = float(a["wall_seconds"])
            rate = ev["total"] / ws if ws > 0 else float("nan")
            lines.append(f"wall time:   {ws:.3f} s ({rate:.3g} events/s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "in memory"
        return (
            f"Result({where}, species={self._species}, samples={self.n_samples}, "
            f"subvolumes={self.n_subvolumes}, complete={self.complete})"
        )
