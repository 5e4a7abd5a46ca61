"""Checkpoints inside a result file (``/checkpoint``), for ``Simulation.resume``.

Layout:

- ``/checkpoint/problem/<name>``: the engine's input arrays exactly as given to
  ``NsmEngine`` (so a resume never depends on rebuilding the geometry), with the
  initial counts; ``/checkpoint/times``: every sample time of the run.
- ``/checkpoint/slot0`` and ``slot1``: two fixed-size uint8 datasets written
  alternately (overwritten in place, so the file does not grow). A slot is
  ``b"RDXFSLOT" | seq u64 | sample_index u64 | length u64 | core state | crc32``
  (little-endian): ``sample_index`` samples had been written when the core
  state (``NsmEngine.checkpoint()``, itself versioned and checksummed) was
  taken. A kill while a slot is being written leaves the other one valid; the
  reader takes the valid slot with the highest ``seq``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import h5py
import numpy as np

__all__ = ["Checkpointer", "read_latest", "read_problem"]

_MAGIC = b"RDXFSLOT"
_HEAD = struct.Struct("<8sQQQ")
_PROBLEM_KEYS = (
    "volumes",
    "edge_offsets",
    "edge_targets",
    "edge_coupling",
    "edge_class",
    "transport_coefficients",
    "reactants",
    "product_offsets",
    "product_species",
    "rate_class",
    "rate_constants",
    "counts",
)
#: Engine arrays present only in some runs: a rate schedule (protocol), a
#: storage layout (meshes); files written before "layout" existed restore
#: without it.
_OPTIONAL_KEYS = ("schedule_times", "schedule_factors", "layout")


def _pack(seq: int, sample_index: int, state: bytes) -> np.ndarray:
    head = _HEAD.pack(_MAGIC, seq, sample_index, len(state))
    crc = zlib.crc32(state, zlib.crc32(head))
    return np.frombuffer(head + state + struct.pack("<I", crc), dtype=np.uint8)


def _unpack(raw: bytes) -> tuple[int, int, bytes] | None:
    if len(raw) < _HEAD.size + 4:
        return None
    magic, seq, sample_index, n = _HEAD.unpack_from(raw)
    if magic != _MAGIC or _HEAD.size + n + 4 != len(raw):
        return None
    state = raw[_HEAD.size : _HEAD.size + n]
    (crc,) = struct.unpack_from("<I", raw, _HEAD.size + n)
    if crc != zlib.crc32(state, zlib.crc32(raw[: _HEAD.size])) or seq == 0:
        return None
    return seq, sample_index, state


class Checkpointer:
    """Writes checkpoints of ``engine`` into an open result file."""

    def __init__(
        self,
        file: h5py.File,
        engine: Any,
        problem_arrays: dict[str, Any],
        times: np.ndarray,
        interval_s: float | None,
    ) -> None:
        self.file = file
        self.engine = engine
        self.interval_s = interval_s
        state_len = len(engine.checkpoint())
        g = file.require_group("checkpoint")
        g.attrs["note"] = "resume with Simulation.resume(path) or `redoxfield resume FILE`"
        g.attrs["interval_s"] = -1.0 if interval_s is None else float(interval_s)
        if "problem" not in g:
            pg = g.create_group("problem")
            for key in _PROBLEM_KEYS:
                pg.create_dataset(key, data=np.asarray(problem_arrays[key]), compression="gzip")
            for key in _OPTIONAL_KEYS:
                if key in problem_arrays:
                    pg.create_dataset(key, data=np.asarray(problem_arrays[key]))
            g.create_dataset("times", data=np.asarray(times, dtype=np.float64))
        size = _HEAD.size + state_len + 4
        for k in (0, 1):
            name = f"slot{k}"
            if name in g and g[name].shape != (size,):
                del g[name]
            if name not in g:
                g.create_dataset(name, shape=(size,), dtype=np.uint8, fillvalue=0)
        latest = read_latest(file)
        self.seq = latest[0] if latest else 0
        self.written = 0

    def write(self, sample_index: int) -> None:
        """Checkpoint the engine now; ``sample_index`` samples are already on disk
        (the caller flushes the writer first)."""
        self.seq += 1
        slot = self.file["checkpoint"][f"slot{self.seq % 2}"]
        slot[...] = _pack(self.seq, sample_index, bytes(self.engine.checkpoint()))
        self.file.flush()
        self.written += 1


def read_latest(file: h5py.File) -> tuple[int, int, bytes] | None:
    """(seq, sample_index, core state) of the newest valid slot, or None."""
    g = file.get("checkpoint")
    if not isinstance(g, h5py.Group):
        return None
    best = None
    for k in (0, 1):
        ds = g.get(f"slot{k}")
        if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
            continue
        got = _unpack(ds[()].tobytes())
        if got is not None and (best is None or got[0] > best[0]):
            best = got
    return best


def read_problem(file: h5py.File) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The engine arrays and the sample times stored with the checkpoints."""
    pg = file["checkpoint/problem"]
    arrays = {key: np.ascontiguousarray(pg[key][()]) for key in _PROBLEM_KEYS}
    for key in _OPTIONAL_KEYS:
        if key in pg:
            arrays[key] = np.ascontiguousarray(pg[key][()])
    return arrays, np.asarray(file["checkpoint/times"][()], dtype=np.float64)
