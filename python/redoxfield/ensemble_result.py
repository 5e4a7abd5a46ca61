"""Reading an ensemble: :class:`EnsembleResult` (the joined file of
:meth:`redoxfield.Ensemble.run`; layout in docs/ensembles.md).

Statistics over replicates stream: each replicate's samples are folded into a
Welford aggregate, one shard at a time (memory: two float64 arrays of one
trajectory's shape per arm, whatever the number of replicates); with a Dask
client, chunks of replicates fold on the workers and the partial aggregates are
merged with Chan et al.'s formula (:mod:`redoxfield.stats`). Quantiles are exact
(numpy's default ``linear`` method, Hyndman-Fan type 7), read from the shards on
demand in blocks of subvolumes so that memory is bounded by ``max_bytes``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import units
from .errors import EnsembleError
from .io.shards import ENSEMBLE_FORMAT
from .stats import Moments, merge_all, welch

__all__ = ["EnsembleResult"]


def _strs(ds: h5py.Dataset) -> list[str]:
    return [str(s) for s in ds.asstr()[()]]


class _LazyH5:
    """A picklable array-like over one dataset of a file, opened per read (dask
    tasks on any worker can read it through a shared filesystem)."""

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.name, self.shape, self.dtype = path, name, shape, dtype
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> NDArray:
        with h5py.File(self.path, "r") as f:
            return f[self.name][key]


class EnsembleResult:
    """An ensemble's joined file, read lazily. Arms and replicates are the two
    leading dimensions of every sample dataset."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise EnsembleError(f"cannot open ensemble file {str(path)!r}: {exc}") from None
        if self.file.attrs.get("format") != ENSEMBLE_FORMAT:
            self.file.close()
            raise EnsembleError(f"{str(path)!r} is not a redoxfield ensemble file")
        e = self.file["ensemble"]
        self.complete_mask: NDArray[np.bool_] = e["complete"][()]
        self.status: NDArray[np.object_] = np.asarray(e["status"].asstr()[()], dtype=object)
        self.shards: NDArray[np.object_] = np.asarray(e["shard"].asstr()[()], dtype=object)
        self.replicate_keys: NDArray[np.uint64] = e["replicate_key"][()]
        self.parameter_names: list[str] = _strs(e["parameters/name"])
        self.parameter_values: NDArray[np.float64] = e["parameters/values"][()]
        self.arms: list[dict[str, float | int]] = json.loads(e["parameters"].attrs["arms"])
        missing = [
            s
            for s, ok in zip(self.shards.ravel(), self.complete_mask.ravel(), strict=True)
            if ok and not (self.path.parent / s).is_file()
        ]
        if missing:
            self.file.close()
            raise EnsembleError(
                f"{len(missing)} shard(s) of {self.path} are gone (first: {missing[0]}); "
                "their blocks would read as fill values, so the file is refused"
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EnsembleResult:
        return cls(path)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> EnsembleResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- description -------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.file.attrs)

    @property
    def complete(self) -> bool:
        """True when every (arm, replicate) trajectory is present and complete."""
        return bool(self.file.attrs["complete"])

    @property
    def n_arms(self) -> int:
        return int(self.file.attrs["n_arms"])

    @property
    def n_replicates(self) -> int:
        return int(self.file.attrs["n_replicates"])

    @property
    def seed(self) -> int:
        return int(self.file.attrs["seed"])

    def _need_data(self) -> None:
        if "samples" not in self.file:
            raise EnsembleError(f"{self.path}: no trajectory is complete, there is no data")

    @property
    def species(self) -> list[str]:
        self._need_data()
        return _strs(self.file["model/species/name"])

    @property
    def times(self) -> NDArray[np.float64]:
        self._need_data()
        return self.file["samples/time"][()]

    @property
    def volumes(self) -> NDArray[np.float64]:
        self._need_data()
        return self.file["geometry/volumes"][()]

    @property
    def n_subvolumes(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def regions(self) -> dict[str, NDArray[np.bool_]]:
        self._need_data()
        return {k: v[()].astype(bool) for k, v in self.file["geometry/regions"].items()}

    def _arm_index(self, arm: int | dict[str, float]) -> int:
        if isinstance(arm, dict):
            for j, a in enumerate(self.arms):
                if all(float(a.get(k, np.nan)) == float(v) for k, v in arm.items()):
                    return j
            raise EnsembleError(f"no arm with {arm!r} (arms: {self.arms})")
        if not 0 <= int(arm) < self.n_arms:
            raise EnsembleError(f"arm {arm} out of range (0..{self.n_arms - 1})")
        return int(arm)

    def _check_species(self, species: Sequence[str] | str | None) -> list[str]:
        names = self.species
        if species is None:
            return names
        if isinstance(species, str):
            species = [species]
        for s in species:
            if s not in names:
                raise EnsembleError(f"unknown species {s!r} (the ensemble has: {', '.join(names)})")
        return list(species)

    def _replicates(self, arm: int, allow_incomplete: bool) -> list[int]:
        ok = self.complete_mask[arm]
        if not ok.all() and not allow_incomplete:
            bad = int(np.flatnonzero(~ok)[0])
            raise EnsembleError(
                f"arm {arm}: {int((~ok).sum())} of {ok.size} replicates are not complete "
                f"(first: replicate {bad}, {self.status[arm, bad]}); pass "
                "allow_incomplete=True to use only the complete ones"
            )
        return [int(i) for i in np.flatnonzero(ok)]

    def shard_path(self, arm: int, replicate: int) -> Path:
        return self.path.parent / str(self.shards[arm, replicate])

    # -- raw data ----------------------------------------------------------------------
    def counts(self, species: str, arm: int, replicate: int) -> NDArray[np.int64]:
        """(T, N) counts of one trajectory; an error if it is not complete."""
        (sp,) = self._check_species(species)
        j = self._arm_index(arm)
        if not self.complete_mask[j, replicate]:
            raise EnsembleError(
                f"arm {j} replicate {replicate} is not complete ({self.status[j, replicate]})"
            )
        return self.file["samples/counts"][sp][j, replicate].astype(np.int64)

    def to_xarray(
        self, species: Sequence[str] | None = None, allow_incomplete: bool = False
    ) -> Any:
        """Lazy (dask-backed) ``xarray.Dataset``: ``counts`` and ``concentration``
        (arm, replicate, time, subvolume, species), ``totals`` (arm, replicate,
        time, species), ``region_total`` (arm, replicate, time, region, species)
        when the geometry has regions. Coordinates: every swept parameter along
        ``arm``, the core's ``replicate_key`` and ``complete`` (arm, replicate),
        time (s), x/y/z/volume per subvolume. Missing trajectories are an error,
        or with ``allow_incomplete=True`` NaN (float arrays)."""
        import dask.array as da
        import xarray as xr

        names = self._check_species(species)
        if not self.complete_mask.all() and not allow_incomplete:
            j, i = np.argwhere(~self.complete_mask)[0]
            raise EnsembleError(
                f"{int((~self.complete_mask).sum())} trajectories are not complete (first: arm "
                f"{j}, replicate {i}: {self.status[j, i]}); allow_incomplete=True gives NaN there"
            )
        f, p = self.file, str(self.path)
        A, R = self.complete_mask.shape

        def lazy(name: str) -> Any:
            ds = f[name]
            chunks = (1, 1, *ds.shape[2:])
            arr = da.from_array(_LazyH5(p, name, ds.shape, ds.dtype), chunks=chunks, lock=False)
            if allow_incomplete and not self.complete_mask.all():
                m = self.complete_mask.reshape(A, R, *([1] * (ds.ndim - 2)))
                arr = da.where(m, arr, np.nan)
            return arr

        counts = da.stack([lazy(f"samples/counts/{s}") for s in names], axis=-1)
        vol = self.volumes
        conc = counts * units.molecules_to_concentration(1.0, vol)[None, None, None, :, None]
        g = f["geometry"]
        c = g["centers"][()]
        cnames = _strs(g["compartment_names"])
        all_species = self.species
        sidx = [all_species.index(s) for s in names]
        tot = lazy("samples/totals")[..., sidx]
        coords: dict[str, Any] = {
            "arm": ("arm", np.arange(A)),
            "replicate": ("replicate", np.arange(R)),
            "time": ("time", self.times, {"units": "s"}),
            "species": ("species", np.array(names, dtype=object)),
            "subvolume": ("subvolume", np.arange(vol.size)),
            "x": ("subvolume", c[:, 0], {"units": "um"}),
            "y": ("subvolume", c[:, 1], {"units": "um"}),
            "z": ("subvolume", c[:, 2], {"units": "um"}),
            "volume": ("subvolume", vol, {"units": "um^3"}),
            "compartment": ("subvolume", np.array(cnames, dtype=object)[g["compartments"][()]]),
            "replicate_key": (("arm", "replicate"), self.replicate_keys),
            "complete": (("arm", "replicate"), self.complete_mask),
        }
        for k, name in enumerate(self.parameter_names):
            coords[name] = ("arm", self.parameter_values[:, k])
        data: dict[str, Any] = {
            "counts": (
                ("arm", "replicate", "time", "subvolume", "species"),
                counts,
                {"units": "molecules per subvolume"},
            ),
            "concentration": (
                ("arm", "replicate", "time", "subvolume", "species"),
                conc,
                {"units": "uM"},
            ),
            "totals": (("arm", "replicate", "time", "species"), tot, {"units": "molecules"}),
        }
        if "analysis/regions" in f:
            rnames = list(f["analysis/regions"])
            rt = da.stack([lazy(f"analysis/regions/{r}/total") for r in rnames], axis=3)
            data["region_total"] = (
                ("arm", "replicate", "time", "region", "species"),
                rt[..., sidx],
                {"units": "molecules"},
            )
            coords["region"] = ("region", np.array(rnames, dtype=object))
        return xr.Dataset(
            data,
            coords=coords,
            attrs={
                "source": p,
                "seed": self.seed,
                "parameters": json.dumps(self.parameter_names),
                "replicate_key": "arm * 2**32 + replicate",
            },
        )

    # -- statistics --------------------------------------------------------------------
    def _region_table(self) -> tuple[list[str], NDArray[np.float64]]:
        """Region names (plus "all", the whole geometry) and their volumes, µm³."""
        vol = self.volumes
        regions = self.regions
        names = ["all", *regions]
        vols = np.array([vol.sum(), *[vol[m].sum() for m in regions.values()]], dtype=np.float64)
        return names, vols

    def _fold_specs(self, by: str, names: list[str]) -> tuple[str, list[str], list[int]]:
        if by not in ("subvolume", "region"):
            raise EnsembleError(f"by = {by!r}: expected 'subvolume' or 'region'")
        all_species = self.species
        return by, names, [all_species.index(s) for s in names]

    def moments(
        self,
        arm: int,
        species: Sequence[str] | str | None = None,
        by: str = "region",
        client: Any = None,
        chunk: int = 16,
        allow_incomplete: bool = False,
    ) -> Moments:
        """Welford aggregate over the replicates of one arm: shape (T, N, S) for
        ``by="subvolume"``, (T, 1 + n_regions, S) for ``by="region"`` (molecules;
        region 0 is "all"). With ``client``, ``chunk`` replicates per task fold on
        the workers and the partial aggregates merge with Chan's formula."""
        j = self._arm_index(arm)
        by, names, sidx = self._fold_specs(by, self._check_species(species))
        reps = self._replicates(j, allow_incomplete)
        if not reps:
            raise EnsembleError(f"arm {j} has no complete replicate")
        paths = [str(self.shard_path(j, i)) for i in reps]
        rnames = list(self.regions) if by == "region" else []
        groups = [paths[k : k + max(1, int(chunk))] for k in range(0, len(paths), max(1, chunk))]
        if client is None:
            parts = [_fold(g, by, names, sidx, rnames) for g in groups]
        else:
            futs = client.map(_fold, groups, by=by, names=names, sidx=sidx, rnames=rnames)
            parts = client.gather(futs)
        return merge_all(parts)

    def stats(
        self,
        species: Sequence[str] | str | None = None,
        by: str = "region",
        client: Any = None,
        allow_incomplete: bool = False,
    ) -> Any:
        """Mean, variance (unbiased), standard deviation and standard error of the
        mean over replicates, per arm, as an ``xarray.Dataset``.

        ``by="region"``: dims (arm, time, region, species) of molecules in each
        region ("all" = the whole geometry), plus ``mean_uM`` (the mean over the
        region volume). ``by="subvolume"``: dims (arm, time, subvolume, species)
        of molecules per subvolume, plus ``mean_uM``. Coordinate ``n`` (arm):
        replicates used."""
        import xarray as xr

        names = self._check_species(species)
        ms = [
            self.moments(j, names, by, client=client, allow_incomplete=allow_incomplete)
            for j in range(self.n_arms)
        ]
        if by == "region":
            place, vol = self._region_table()
            dims = ("arm", "time", "region", "species")
        else:
            vol = self.volumes
            place = list(range(vol.size))
            dims = ("arm", "time", "subvolume", "species")
        per_uM = units.molecules_to_concentration(1.0, vol)[None, None, :, None]
        mean = np.stack([m.mean for m in ms])
        var = np.stack([m.var for m in ms])
        n = np.array([m.n for m in ms])
        coords: dict[str, Any] = {
            "arm": np.arange(self.n_arms),
            "time": ("time", self.times, {"units": "s"}),
            dims[2]: np.array(place, dtype=object if by == "region" else np.int64),
            "species": np.array(names, dtype=object),
            "n": ("arm", n),
        }
        for k, name in enumerate(self.parameter_names):
            coords[name] = ("arm", self.parameter_values[:, k])
        return xr.Dataset(
            {
                "mean": (dims, mean, {"units": "molecules"}),
                "var": (dims, var, {"units": "molecules^2"}),
                "std": (dims, np.sqrt(var), {"units": "molecules"}),
                "sem": (dims, np.sqrt(var / n[:, None, None, None]), {"units": "molecules"}),
                "mean_uM": (dims, mean * per_uM, {"units": "uM"}),
            },
            coords=coords,
            attrs={"method": "Welford per replicate, Chan et al. merge of partial aggregates"},
        )

    def quantiles(
        self,
        q: Sequence[float] | float,
        species: Sequence[str] | str | None = None,
        by: str = "region",
        allow_incomplete: bool = False,
        max_bytes: int = 256 * 2**20,
    ) -> Any:
        """Exact quantiles over replicates (numpy ``method="linear"``), per arm:
        dims (quantile, arm, time, region|subvolume, species). Read from the
        shards in blocks of subvolumes holding at most ``max_bytes`` of samples."""
        import xarray as xr

        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if qs.size == 0 or np.any((qs < 0) | (qs > 1)) or not np.all(np.isfinite(qs)):
            raise EnsembleError(f"quantiles {q!r} must lie in [0, 1]")
        names = self._check_species(species)
        by, names, sidx = self._fold_specs(by, names)
        T = self.times.size
        if by == "region":
            place, _ = self._region_table()
        else:
            place = list(range(self.n_subvolumes))
        out = np.full((qs.size, self.n_arms, T, len(place), len(names)), np.nan)
        for j in range(self.n_arms):
            reps = self._replicates(j, allow_incomplete)
            if not reps:
                continue
            if by == "region":
                tot = self.file["samples/totals"]
                vals = np.stack([tot[j, i][:, sidx] for i in reps])  # (R, T, S)
                cols = [vals]
                for r in self.regions:
                    ds = self.file[f"analysis/regions/{r}/total"]
                    cols.append(np.stack([ds[j, i][:, sidx] for i in reps]))
                data = np.stack(cols, axis=2)  # (R, T, P, S)
                out[:, j] = np.quantile(data, qs, axis=0)
                continue
            n = self.n_subvolumes
            block = max(1, int(max_bytes // max(1, len(reps) * T * 8)))
            for s_out, s in enumerate(names):
                ds = self.file[f"samples/counts/{s}"]
                for n0 in range(0, n, block):
                    n1 = min(n, n0 + block)
                    data = np.stack([ds[j, i, :, n0:n1] for i in reps]).astype(np.float64)
                    out[:, j, :, n0:n1, s_out] = np.quantile(data, qs, axis=0)
        dims = ("quantile", "arm", "time", "region" if by == "region" else "subvolume", "species")
        coords: dict[str, Any] = {
            "quantile": qs,
            "arm": np.arange(self.n_arms),
            "time": self.times,
            dims[3]: np.array(place, dtype=object if by == "region" else np.int64),
            "species": np.array(names, dtype=object),
        }
        for k, name in enumerate(self.parameter_names):
            coords[name] = ("arm", self.parameter_values[:, k])
        return xr.DataArray(
            out,
            dims=dims,
            coords=coords,
            name="quantile",
            attrs={"units": "molecules", "method": "exact, numpy linear (type 7)"},
        )

    def compare(
        self,
        arm_a: int | dict[str, float],
        arm_b: int | dict[str, float],
        species: Sequence[str] | str | None = None,
        by: str = "region",
        confidence: float = 0.95,
        client: Any = None,
        allow_incomplete: bool = False,
    ) -> Any:
        """Arm ``b`` minus arm ``a``: difference of the replicate means with a
        Welch confidence interval, Welch's t and p, and Hedges' g (see
        :func:`redoxfield.stats.welch`), as an ``xarray.Dataset`` of dims (time,
        region|subvolume, species)."""
        import xarray as xr

        a, b = self._arm_index(arm_a), self._arm_index(arm_b)
        names = self._check_species(species)
        ma = self.moments(a, names, by, client=client, allow_incomplete=allow_incomplete)
        mb = self.moments(b, names, by, client=client, allow_incomplete=allow_incomplete)
        w = welch(ma.mean, ma.var, ma.n, mb.mean, mb.var, mb.n, confidence)
        place = self._region_table()[0] if by == "region" else list(range(self.n_subvolumes))
        dims = ("time", "region" if by == "region" else "subvolume", "species")
        coords = {
            "time": self.times,
            dims[1]: np.array(place, dtype=object if by == "region" else np.int64),
            "species": np.array(names, dtype=object),
        }
        keys = ("diff", "se", "dof", "ci_low", "ci_high", "t", "p_value", "hedges_g")
        return xr.Dataset(
            {k: (dims, np.asarray(w[k])) for k in keys},
            coords=coords,
            attrs={
                "arm_a": a,
                "arm_b": b,
                "arm_a_parameters": json.dumps(self.arms[a]),
                "arm_b_parameters": json.dumps(self.arms[b]),
                "n_a": ma.n,
                "n_b": mb.n,
                "confidence": confidence,
                "method": "Welch t interval on the difference of means (b - a); Hedges' g",
                "units": "molecules",
            },
        )

    def summary(self) -> str:
        a = self.file.attrs
        lines = [
            f"redoxfield ensemble {self.path}",
            f"  {self.n_arms} arm(s) x {self.n_replicates} replicate(s), seed {self.seed}, "
            f"{int(a['n_complete'])} complete" + ("" if self.complete else "  (INCOMPLETE)"),
            f"  source {a.get('source', '?')}, ran on {a.get('executor', '?')}",
        ]
        for j, arm in enumerate(self.arms):
            vals = ", ".join(f"{k} = {v:g}" for k, v in arm.items()) or "(no parameters)"
            lines.append(f"  arm {j}: {vals}: {int(self.complete_mask[j].sum())} complete")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"EnsembleResult({str(self.path)!r}, arms={self.n_arms}, "
            f"replicates={self.n_replicates}, complete={self.complete})"
        )


def _fold(
    paths: list[str], by: str, names: list[str], sidx: list[int], rnames: list[str]
) -> Moments:
    """Welford over the given shards (a Dask task, or called in process)."""
    acc: Moments | None = None
    for p in paths:
        with h5py.File(p, "r") as f:
            if by == "subvolume":
                x = np.stack([f["samples/counts"][s][()] for s in names], axis=-1)
            else:
                cols = [f["samples/totals"][()][:, sidx]]
                cols += [f[f"analysis/regions/{r}/total"][()][:, sidx] for r in rnames]
                x = np.stack(cols, axis=1)
        x = x.astype(np.float64)
        acc = Moments.of(x) if acc is None else acc.add(x)
    assert acc is not None
    return acc
