"""Ensemble shards and the virtual-dataset file that joins them (docs/ensembles.md).

Every trajectory of an ensemble is an ordinary result file (docs/hdf5.md), the
*shard* ``<out>.shards/a<arm:05d>_r<replicate:06d>.h5``, with root attributes
``ensemble_task`` (a token of the sweep, arm values and replicate key) and
``ensemble_arm``/``ensemble_replicate``. :func:`join` writes ``<out>``: HDF5
virtual datasets with leading (arm, replicate) dimensions whose blocks map onto
the shards' datasets. Only complete shards of this very sweep are mapped;
``/ensemble/complete`` records which, and a block without a shard holds the
fill value (all ones: 2**32 - 1 counts, -1 totals), which readers refuse to hand
out (:class:`redoxfield.ensemble_result.EnsembleResult`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__

__all__ = [
    "ENSEMBLE_FORMAT",
    "ENSEMBLE_FORMAT_VERSION",
    "join",
    "shard_dir_for",
    "shard_info",
    "shard_name",
]

ENSEMBLE_FORMAT = "redoxfield-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
#: Fill values of unmapped (missing) blocks.
FILL = {
    np.dtype(np.uint32): np.uint32(2**32 - 1),
    np.dtype(np.int64): np.int64(-1),
    np.dtype(np.uint64): np.uint64(2**64 - 1),
}
_STR = h5py.string_dtype(encoding="utf-8")
_SHARD_RE = re.compile(r"^\.a\d{5}_r\d{6}\.h5\.\d+\.part$")


def shard_name(arm: int, replicate: int) -> str:
    return f"a{arm:05d}_r{replicate:06d}.h5"


def shard_dir_for(out: Path) -> Path:
    """``sweep.h5`` -> ``sweep.h5.shards`` beside it."""
    return out.parent / f"{out.name}.shards"


def shard_info(path: Path, token: str) -> dict[str, Any] | None:
    """A summary of the shard at ``path`` if it is a readable result of the task
    ``token``; ``None`` if absent, unreadable or from another task."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if str(a.get("ensemble_task", "")) != token:
                return None
            ev = f.get("events")
            return {
                "arm": int(a["ensemble_arm"]),
                "replicate": int(a["ensemble_replicate"]),
                "key": int(a["replicate"]),
                "shard": path.name,
                "complete": bool(a.get("complete", False)),
                "stop_reason": str(a.get("stop_reason", "")),
                "n_samples": int(a.get("n_samples", 0)),
                "wall_seconds": float(a.get("wall_seconds", np.nan)),
                "cpu_seconds": float(a.get("cpu_seconds", np.nan)),
                "events": int(ev.attrs["total"]) if ev is not None else 0,
                "host": str(a.get("ensemble_host", "")),
                "pid": int(a.get("ensemble_pid", -1)),
            }
    except (OSError, KeyError, ValueError):
        return None


def remove_stale_parts(shard_dir: Path) -> None:
    """Delete temporary shard files left by killed workers (``.a..._r....h5.<pid>.part``)."""
    if not shard_dir.is_dir():
        return
    for p in shard_dir.iterdir():
        if _SHARD_RE.match(p.name):
            with contextlib.suppress(OSError):  # raced with another cleaner
                p.unlink()


def _vds(
    g: h5py.Group,
    name: str,
    dataset: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    mapped: Sequence[tuple[int, int, str]],
    lead: tuple[int, int],
) -> h5py.Dataset:
    layout = h5py.VirtualLayout(shape=(*lead, *shape), dtype=dtype)
    for j, i, rel in mapped:
        layout[j, i] = h5py.VirtualSource(rel, dataset, shape=shape, dtype=dtype)
    return g.create_virtual_dataset(name, layout, fillvalue=FILL[np.dtype(dtype)])


def join(
    out: Path,
    shard_dir: Path,
    tasks: Sequence[Any],
    infos: Mapping[tuple[int, int], dict[str, Any]],
    errors: Mapping[tuple[int, int], str],
    *,
    n_arms: int,
    n_replicates: int,
    parameter_names: Sequence[str],
    arms: Sequence[Mapping[str, float | int]],
    attrs: Mapping[str, Any],
    base_model: Mapping[str, Any],
    scenario_text: str | None,
) -> Path:
    """Write the joined file ``out`` (via a temporary name, then renamed)."""
    shape2 = (n_arms, n_replicates)
    complete = np.zeros(shape2, dtype=bool)
    status = np.full(shape2, "missing", dtype=object)
    keys = np.zeros(shape2, dtype=np.uint64)
    wall = np.full(shape2, np.nan)
    events = np.zeros(shape2, dtype=np.uint64)
    shard_rel = np.empty(shape2, dtype=object)
    rel_dir = shard_dir.name
    template: Path | None = None
    n_samples: int | None = None
    mapped: list[tuple[int, int, str]] = []
    for t in tasks:
        j, i = t.arm, t.replicate
        keys[j, i] = t.key
        shard_rel[j, i] = f"{rel_dir}/{t.shard}"
        if (j, i) in errors:
            status[j, i] = f"failed: {errors[j, i]}"
        # Trust the files, not the messages: re-read every shard.
        info = shard_info(shard_dir / t.shard, t.token)
        if info is None:
            continue
        if not info["complete"]:
            status[j, i] = f"incomplete: {info['stop_reason']}"
            continue
        if n_samples is None:
            n_samples, template = info["n_samples"], shard_dir / t.shard
        elif info["n_samples"] != n_samples:
            status[j, i] = f"inconsistent: {info['n_samples']} samples, expected {n_samples}"
            continue
        complete[j, i] = True
        status[j, i] = "complete"
        wall[j, i] = info["wall_seconds"]
        events[j, i] = info["events"]
        mapped.append((j, i, f"{rel_dir}/{t.shard}"))
    del infos  # the returned summaries agree with the files; the files decide

    tmp = out.parent / f".{out.name}.{os.getpid()}.part"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = ENSEMBLE_FORMAT
            f.attrs["format_version"] = ENSEMBLE_FORMAT_VERSION
            f.attrs["redoxfield_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            f.attrs["n_arms"] = n_arms
            f.attrs["n_replicates"] = n_replicates
            f.attrs["n_complete"] = int(complete.sum())
            f.attrs["complete"] = bool(complete.all())
            for k, v in attrs.items():
                f.attrs[k] = v
            e = f.create_group("ensemble")
            e.create_dataset("complete", data=complete)
            e.create_dataset("status", data=status.astype(object), dtype=_STR)
            e.create_dataset("replicate_key", data=keys)
            e.create_dataset("shard", data=shard_rel.astype(object), dtype=_STR)
            w = e.create_dataset("wall_seconds", data=wall)
            w.attrs["units"] = "s (NaN where missing)"
            e.create_dataset("events", data=events)
            p = e.create_group("parameters")
            p.create_dataset("name", data=np.array(list(parameter_names), dtype=object), dtype=_STR)
            vals = np.array(
                [[float(a[n]) for n in parameter_names] for a in arms], dtype=np.float64
            ).reshape(n_arms, len(parameter_names))
            p.create_dataset("values", data=vals)
            p.attrs["arms"] = json.dumps([dict(a) for a in arms])
            e.attrs["base_model"] = json.dumps(base_model)
            if scenario_text is not None:
                sc = f.create_dataset("scenario", data=scenario_text, dtype=_STR)
                sc.attrs["format"] = "toml"
            if template is not None:
                _write_data(f, template, mapped, (n_arms, n_replicates))
        os.replace(tmp, out)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return out


def _write_data(
    f: h5py.File, template: Path, mapped: list[tuple[int, int, str]], lead: tuple[int, int]
) -> None:
    """Model and geometry copied from one shard; samples as virtual datasets."""
    with h5py.File(template, "r") as src:
        src.copy(src["geometry"], f, "geometry")
        mg = f.create_group("model")
        src.copy(src["model/species"], mg, "species")
        src.copy(src["model/reactions/name"], mg, "reactions_name")
        mg.move("reactions_name", "reaction_names")
        mg.attrs["note"] = (
            "species and reaction names; every arm's full model is in its shards' /model"
        )
        smp = src["samples"]
        species = [str(s) for s in src["model/species/name"].asstr()[()]]
        t = smp["time"][()]
        g = f.create_group("samples")
        tds = g.create_dataset("time", data=t)
        tds.attrs["units"] = "s"
        T = t.shape[0]
        c = g.create_group("counts")
        for s in species:
            ds = smp["counts"][s]
            v = _vds(c, s, f"samples/counts/{s}", (T, ds.shape[1]), ds.dtype, mapped, lead)
            v.attrs["units"] = "molecules per subvolume"
            v.attrs["dims"] = "arm, replicate, time, subvolume"
        for key in ("totals", "diffusion_events", "reaction_events"):
            ds = smp[key]
            v = _vds(g, key, f"samples/{key}", (T, ds.shape[1]), ds.dtype, mapped, lead)
            v.attrs["dims"] = "arm, replicate, time, column"
        if "analysis/regions" in src:
            ar = src["analysis/regions"]
            ag = f.create_group("analysis/regions")
            for k, val in ar.attrs.items():
                ag.attrs[k] = val
            for name, grp in ar.items():
                rg = ag.create_group(name)
                for k, val in grp.attrs.items():
                    rg.attrs[k] = val
                ds = grp["total"]
                v = _vds(
                    rg,
                    "total",
                    f"analysis/regions/{name}/total",
                    ds.shape,
                    ds.dtype,
                    mapped,
                    lead,
                )
                v.attrs["units"] = "molecules"
                v.attrs["dims"] = "arm, replicate, time, species"
