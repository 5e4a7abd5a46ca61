"""Streaming HDF5 writer for one trajectory. The layout is documented, dataset by
dataset, in docs/hdf5.md; :class:`redoxfield.result.Result` reads it back.

File safety (docs/reliability.md): a run to ``run.h5`` writes ``run.h5`` from the
start, with ``complete = False`` and ``stop_reason = "running"`` set when the file
is created; ``complete`` becomes True only as the very last write of a finished
run. Samples are buffered in memory and written as one block, followed by an
HDF5 flush, at least every FLUSH_INTERVAL_S seconds; between two flushes no HDF5
call is made at all, so a run killed by SIGKILL (or a power cut) leaves a file
that opens, holds every flushed sample and says it is incomplete. On Ctrl-C or a
core error the file is closed with ``complete = False``, the samples taken so
far and ``stop_reason`` saying why. If the header cannot be written the file is
deleted; a later write failure leaves it marked incomplete. ``path=None`` writes
to an in-memory HDF5 file (h5py ``core`` driver without a backing store), so an
in-memory result has exactly the same layout.

Checkpoints (``/checkpoint``, see :mod:`redoxfield.checkpointing`) live in two
fixed-size slots written alternately, so a kill while one is written leaves the
other intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time as _time
import uuid
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from ..compile import CoreProblem
from ..geometry.graph import SubvolumeGraph
from ..model import Model
from .xdmf import uM_per_molecule, write_xdmf

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ResultWriter"]

FORMAT_NAME = "redoxfield-result"
FORMAT_VERSION = 1
#: Largest number of subvolumes per chunk of a counts dataset (1 MiB of uint32).
CHUNK_SUBVOLUMES = 2**18
#: Longest time between two flushes of the samples to disk, seconds.
FLUSH_INTERVAL_S = 1.0
#: Largest amount of buffered counts before a write, bytes.
FLUSH_BYTES = 64 * 2**20

_STR = h5py.string_dtype(encoding="utf-8")


def _strings(values: list[str] | tuple[str, ...]) -> NDArray[np.object_]:
    return np.array(list(values), dtype=object)


class ResultWriter:
    """Writes the header once, then one sample at a time (flushed at least every
    FLUSH_INTERVAL_S seconds)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.final_path: Path | None = None if path is None else Path(path)
        if self.final_path is None:
            self.temp_path: Path | None = None
            self.file = h5py.File(
                f"redoxfield-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False
            )
        else:
            parent = self.final_path.parent
            if not parent.is_dir():
                raise FileNotFoundError(f"output directory {str(parent)!r} does not exist")
            # Written under its final name from the start (marked incomplete).
            self.temp_path = None
            self.file = h5py.File(self.final_path, "w")
        self.n_samples = 0
        self._counts: list[h5py.Dataset] = []
        self._last_flush = _time.monotonic()
        self._pending: list[tuple[float, NDArray, NDArray, NDArray, NDArray]] = []
        self._pending_bytes = 0
        self._written = 0
        self._header_done = False

    @classmethod
    def reopen(cls, path: str | os.PathLike[str], n_samples: int) -> ResultWriter:
        """Continue an existing file (``Simulation.resume``): keep its first
        ``n_samples`` samples, drop later ones, and mark it running again."""
        self = cls.__new__(cls)
        self.final_path = Path(path)
        self.temp_path = None
        self.file = h5py.File(self.final_path, "r+")
        f = self.file
        f.attrs["complete"] = False
        f.attrs["stop_reason"] = "running"
        species = [str(x) for x in f["model/species/name"].asstr()[()]]
        self._counts = [f["samples/counts"][name] for name in species]
        for ds in self._sample_datasets():
            ds.resize(n_samples, axis=0)
        for key in ("events", "analysis"):
            if key in f:
                del f[key]
        f.flush()
        self.n_samples = n_samples
        self._written = n_samples
        self._last_flush = _time.monotonic()
        self._pending = []
        self._pending_bytes = 0
        self._header_done = True
        return self

    # -- header ---------------------------------------------------------------
    def write_header(
        self,
        *,
        model: Model,
        problem: CoreProblem,
        graph: SubvolumeGraph,
        attrs: dict[str, Any],
        scenario_text: str | None,
        schedule: tuple[np.ndarray, np.ndarray] | None = None,
        protocol: dict[str, Any] | None = None,
    ) -> None:
        f = self.file
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        f.attrs["complete"] = False
        f.attrs["stop_reason"] = "running"
        for key, value in attrs.items():
            f.attrs[key] = value

        net = problem.network
        mg = f.create_group("model")
        mg.attrs["description"] = json.dumps(model.to_dict())
        mg.attrs["text"] = model.describe()
        sg = mg.create_group("species")
        sg.create_dataset("name", data=_strings(net.species), dtype=_STR)
        d = sg.create_dataset("D", data=net.diffusion)
        d.attrs["units"] = "um^2/s"
        rg = mg.create_group("reactions")
        rxs = model.reactions
        rg.create_dataset("name", data=_strings([r.name for r in rxs]), dtype=_STR)
        rg.create_dataset("equation", data=_strings([r.equation for r in rxs]), dtype=_STR)
        k = rg.create_dataset(
            "k", data=np.array([np.nan if r.k is None else r.k for r in rxs], dtype=np.float64)
        )
        k.attrs["units"] = "see k_unit (NaN when the reaction is given as a flux)"
        rg.create_dataset("k_unit", data=_strings([r.k_unit for r in rxs]), dtype=_STR)
        fl = rg.create_dataset(
            "flux",
            data=np.array([np.nan if r.flux is None else r.flux for r in rxs], dtype=np.float64),
        )
        fl.attrs["units"] = "molecules/s (NaN when the reaction is given by k)"
        rg.create_dataset("order", data=net.order)
        rg.create_dataset("region", data=_strings([r.region or "" for r in rxs]), dtype=_STR)
        rg.create_dataset(
            "compartment", data=_strings([r.compartment or "" for r in rxs]), dtype=_STR
        )
        cg = mg.create_group("compiled")
        cg.attrs["note"] = "the mesoscopic problem exactly as given to the core"
        cg.create_dataset("reactants", data=net.reactants)
        cg.create_dataset("product_offsets", data=net.product_offsets)
        cg.create_dataset("product_species", data=net.product_species)
        tc = cg.create_dataset("transport_coefficients", data=problem.transport_coefficients)
        tc.attrs["units"] = "um^2/s (diffusion classes) or um/s (membrane classes)"
        cg.create_dataset(
            "transport_class_names", data=_strings(problem.transport_class_names), dtype=_STR
        )
        cg.create_dataset("rate_class", data=problem.rate_class, compression="gzip")
        rc = cg.create_dataset("rate_constants", data=problem.rate_constants)
        rc.attrs["units"] = "1/s per subvolume (order 0), per molecule (1), per pair (2)"

        gg = f.create_group("geometry")
        gg.attrs["kind"] = graph.kind
        for key, value in graph.meta.items():
            gg.attrs[key] = value if isinstance(value, str) else np.asarray(value)
        if graph.kind == "lattice":
            gg.attrs["ordering"] = "x fastest: index = i + nx*(j + ny*k)"
        c = gg.create_dataset("centers", data=graph.centers, compression="gzip", shuffle=True)
        c.attrs["units"] = "um"
        v = gg.create_dataset("volumes", data=graph.volumes, compression="gzip", shuffle=True)
        v.attrs["units"] = "um^3"
        um = gg.create_dataset(
            "uM_per_molecule", data=uM_per_molecule(graph.volumes), compression="gzip"
        )
        um.attrs["units"] = "uM per molecule: 1 / (V * N_A * 1e-21) (the XDMF sidecar uses it)"
        gg.create_dataset("compartments", data=graph.compartments, compression="gzip")
        gg.create_dataset("compartment_names", data=_strings(graph.compartment_names), dtype=_STR)
        gg.create_dataset("membrane_names", data=_strings(graph.membrane_names), dtype=_STR)
        ma = gg.create_dataset("membrane_areas", data=graph.membrane_areas)
        ma.attrs["units"] = "um^2"
        reg = gg.create_group("regions")
        for name, mask in graph.regions.items():
            reg.create_dataset(name, data=mask.astype(np.uint8), compression="gzip")
        if graph.points is not None and graph.cells is not None:
            pts = gg.create_dataset("points", data=graph.points, compression="gzip")
            pts.attrs["units"] = "um"
            cl = gg.create_dataset("cells", data=graph.cells, compression="gzip", shuffle=True)
            cl.attrs["note"] = "tetrahedron (4 indices into points) of each subvolume"
        if graph.kind != "lattice" or graph.membrane_names or len(graph.compartment_names) > 1:
            # A lattice with compartments/membranes no longer follows from its shape.
            eg = gg.create_group("edges")
            for key in ("edge_offsets", "edge_targets", "edge_coupling", "edge_membrane"):
                eg.create_dataset(key, data=getattr(graph, key), compression="gzip")

        if schedule is not None:
            sched = f.create_group("schedule")
            sched.attrs["note"] = (
                "from times[k] until times[k+1] reaction r runs at factors[k, r] times its "
                "constants (1 before times[0]); switches are exact"
            )
            st = sched.create_dataset("times", data=schedule[0])
            st.attrs["units"] = "s"
            sched.create_dataset("factors", data=schedule[1])
            sched.create_dataset("reaction_names", data=_strings(net.reaction_names), dtype=_STR)
            if protocol is not None:
                sched.attrs["protocol"] = json.dumps(protocol)

        if scenario_text is not None:
            sc = f.create_dataset("scenario", data=scenario_text, dtype=_STR)
            sc.attrs["format"] = "toml"

        n, s, r = graph.n_subvolumes, len(net.species), len(rxs)
        smp = f.create_group("samples")
        t = smp.create_dataset(
            "time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,)
        )
        t.attrs["units"] = "s"
        # (T, width) tables; maxshape (None, None) so that a width of 0 (no
        # reactions) can still be chunked and grown along T.
        for key, width, dtype in (
            ("totals", s, np.int64),
            ("diffusion_events", s, np.uint64),
            ("reaction_events", r, np.uint64),
        ):
            smp.create_dataset(
                key,
                shape=(0, width),
                maxshape=(None, None),
                dtype=dtype,
                chunks=(256, max(width, 1)),
            )
        cnt = smp.create_group("counts")
        chunk_n = min(n, CHUNK_SUBVOLUMES)
        for name in net.species:
            ds = cnt.create_dataset(
                name,
                shape=(0, n),
                maxshape=(None, n),
                dtype=np.uint32,
                chunks=(1, chunk_n),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            ds.attrs["units"] = "molecules per subvolume"
            self._counts.append(ds)
        f.flush()
        self._header_done = True

    # -- samples ----------------------------------------------------------------
    def _sample_datasets(self) -> list[h5py.Dataset]:
        smp = self.file["samples"]
        return [
            smp["time"],
            smp["totals"],
            smp["diffusion_events"],
            smp["reaction_events"],
            *self._counts,
        ]

    def append(
        self,
        time: float,
        counts: NDArray[np.uint32],
        totals: NDArray[np.int64],
        diffusion_events: NDArray[np.uint64],
        reaction_events: NDArray[np.uint64],
    ) -> None:
        """Append one sample; ``counts`` is (N, S).

        Samples are buffered and written as one block per dataset (h5py costs
        ~0.1 ms per call, far more than a small sample), at least every
        FLUSH_INTERVAL_S seconds, whenever the buffer passes FLUSH_BYTES, and by
        ``finish``. Every dataset on disk always has the same number of rows.
        """
        self._pending.append(
            (
                float(time),
                np.array(counts, dtype=np.uint32, copy=True),
                np.asarray(totals, dtype=np.int64).copy(),
                np.asarray(diffusion_events, dtype=np.uint64).copy(),
                np.asarray(reaction_events, dtype=np.uint64).copy(),
            )
        )
        self._pending_bytes += counts.size * 4
        self.n_samples += 1
        now = _time.monotonic()
        if now - self._last_flush >= FLUSH_INTERVAL_S or self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered samples and flush the file."""
        now = _time.monotonic()
        if self._pending:
            k0, b = self._written, len(self._pending)
            datasets = self._sample_datasets()
            for ds in datasets:
                ds.resize(k0 + b, axis=0)
            time_ds, totals_ds, diff_ds, react_ds = datasets[:4]
            time_ds[k0:] = [p[0] for p in self._pending]
            totals_ds[k0:] = np.stack([p[2] for p in self._pending])
            diff_ds[k0:] = np.stack([p[3] for p in self._pending])
            react_ds[k0:] = np.stack([p[4] for p in self._pending])
            block = np.stack([p[1] for p in self._pending])  # (B, N, S)
            for s, ds in enumerate(self._counts):
                ds[k0:] = block[:, :, s]
            self._written = k0 + b
            self._pending.clear()
            self._pending_bytes = 0
        self.file.flush()
        self._last_flush = now

    # -- the end ----------------------------------------------------------------
    def finish(
        self,
        *,
        complete: bool,
        stop_reason: str,
        time_reached: float,
        diffusion_events: NDArray[np.uint64],
        reaction_events: NDArray[np.uint64],
        attrs: dict[str, Any],
        before_complete: Any = None,
    ) -> h5py.File | Path:
        """Write the remaining samples and the final counters, call
        ``before_complete(file)`` (e.g. derived analysis), then set ``complete``
        as the last write and close.

        Returns the final path (file output) or the open in-memory file.
        """
        f = self.file
        self.flush()
        ev = f.require_group("events")
        for key in ("diffusion", "reaction"):
            if key in ev:
                del ev[key]
        ev.create_dataset("diffusion", data=np.asarray(diffusion_events, dtype=np.uint64))
        ev.create_dataset("reaction", data=np.asarray(reaction_events, dtype=np.uint64))
        ev.attrs["total"] = np.uint64(
            int(np.sum(diffusion_events, dtype=np.uint64))
            + int(np.sum(reaction_events, dtype=np.uint64))
        )
        ev.attrs["time"] = time_reached
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["n_samples"] = self.n_samples
        f.attrs["time_reached"] = time_reached
        f.attrs["stop_reason"] = stop_reason
        if before_complete is not None:
            before_complete(f)
        f.flush()
        # Last: the flag that says every sample and counter above is there.
        f.attrs["complete"] = bool(complete)
        f.flush()
        if self.final_path is None:
            return f
        f.close()
        try:  # the ParaView sidecar (run.xdmf); losing it must not lose the run
            write_xdmf(self.final_path)
        except Exception as exc:  # pragma: no cover - disk full, permissions
            warnings.warn(f"could not write the XDMF sidecar: {exc}", stacklevel=2)
        return self.final_path

    def abort(self, reason: str = "aborted") -> None:
        """Close after a failure. A file whose header was never completed is
        deleted; otherwise it stays, marked incomplete with ``stop_reason``."""
        header_done = getattr(self, "_header_done", False)
        try:
            if header_done and self.file.id.valid:
                try:
                    self.file.attrs["complete"] = False
                    self.file.attrs["stop_reason"] = reason
                except Exception:  # noqa: BLE001 - e.g. disk full: the flag is False anyway
                    pass
            if self.file.id.valid:
                self.file.close()
        finally:
            if not header_done and self.final_path is not None and self.final_path.exists():
                self.final_path.unlink()
