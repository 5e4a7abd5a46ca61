"""Resource guards: estimate the memory and the output size of a run from the
geometry, the species and the sampling, and refuse it *before any work* when it
cannot fit (docs/reliability.md).

Memory model (bytes; N subvolumes, S species, E directed edges):

- the Rust engine: one record per subvolume of ``record_bytes(S)`` (32 B up to 3
  species, then whole 64 B cache lines: 4 B per count + 20 B of time, site,
  queue slot and a constant), plus the calendar queue (at most ~64 B per
  subvolume: coarse nodes and heap entries of 16 B each, a few MiB of buckets),
  plus per-site data: negligible on a lattice (at most 27 sites per rate class),
  one site per subvolume on an unstructured mesh (80 B + 20 B per species, and
  8 B + 8 B per species per edge, plus the site key of ~16 B per edge while it is
  built), and there also a rate class per subvolume (its volume sets the
  constants: 32 B of channel and up to 48 B of gain terms per reaction) and the
  storage-order map (4 B);
- a transient copy of the problem in the core while it is built:
  ``20 + 4 S`` B per subvolume and 16 B per edge (twice on a mesh: the copy
  renumbered in storage order);
- the sampling buffers of :meth:`Simulation.run`: one (N, S) uint32 sample, the
  writer's block (at most ``FLUSH_BYTES``, twice while it is stacked), and a
  checkpoint (``8 + 4 S`` B per subvolume, twice: Rust and Python copies);
- before the geometry is compiled (a :class:`Lattice` only knows its shape), the
  graph arrays themselves: ~56 B per subvolume and 32 B per edge in Python, and
  the initial counts (8 B per species).

``Nsm.bytes_per_subvolume`` (``NsmEngine.bytes_per_subvolume``) reports what the
engine really holds; the model above is an upper bound of it on the problems
measured in docs/reliability.md (lattices of 32^3 and 64^3 voxels with 1-12
species; the B3 tet mesh).

Output size: ``samples x subvolumes x species x 4 B`` of counts (uint32) before
compression, plus the small tables. gzip usually shrinks sparse fields a lot, so
this is an *upper bound*, and the cap is applied to it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import SimulationError

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "ResourceEstimate",
    "available_memory",
    "check_resources",
    "estimate_resources",
    "record_bytes",
]

#: Default cap on the (uncompressed) output size of one run: 50 GiB.
DEFAULT_MAX_OUTPUT_BYTES = 50 * 2**30
#: Environment variable that overrides the memory the guard believes is available
#: (bytes; for tests and for batch systems whose limits /proc does not show).
MEMORY_ENV = "REDOXFIELD_AVAILABLE_MEMORY"
#: Fraction of the available memory a run may plan to use.
MEMORY_FRACTION = 0.9
_QUEUE_BYTES_PER_SUBVOLUME = 64
_QUEUE_FIXED_BYTES = 4 * 2**20


def _gib(x: float) -> str:
    return f"{x / 2**30:.3g} GiB"


def record_bytes(n_species: int) -> int:
    """Bytes of one subvolume record in the NSM (mirrors ``stride_for`` in nsm.rs)."""
    need = 4 + n_species + 1
    return 32 if need <= 8 else 64 * math.ceil(need / 16)


@dataclass(frozen=True)
class ResourceEstimate:
    """Planned memory (bytes still to be allocated) and output size of a run."""

    n_subvolumes: int
    n_species: int
    n_edges: int
    n_samples: int
    memory_bytes: int
    engine_bytes: int
    output_bytes: int

    def describe(self) -> str:
        return (
            f"{self.n_subvolumes} subvolumes x {self.n_species} species, {self.n_samples} "
            f"samples: memory ~{_gib(self.memory_bytes)} (engine {_gib(self.engine_bytes)}), "
            f"output <= {_gib(self.output_bytes)} before compression"
        )


def estimate_resources(
    n_subvolumes: int,
    n_species: int,
    n_edges: int,
    n_samples: int = 0,
    *,
    lattice: bool = True,
    graph_built: bool = True,
    n_reactions: int = 0,
    flush_bytes: int = 64 * 2**20,
) -> ResourceEstimate:
    """The memory a run will still allocate and its output size (upper bounds).

    ``lattice``: per-site data stay small (a Cartesian lattice); otherwise one
    site and one rate class (of ``n_reactions`` reactions) per subvolume are
    assumed. ``graph_built``: False when the geometry is not
    compiled yet, so that the graph arrays and initial counts count too.
    """
    n, s, e, t = int(n_subvolumes), int(n_species), int(n_edges), int(n_samples)
    engine = n * (record_bytes(s) + _QUEUE_BYTES_PER_SUBVOLUME) + _QUEUE_FIXED_BYTES
    r = int(n_reactions)
    transient = n * (20 + 4 * s) + e * 16
    if not lattice:
        # + 64: a hop line per subvolume when one species moves (nsm.rs HopLine).
        engine += n * (80 + 20 * s + 80 * r + 4 + 64) + e * (8 + 8 * s + 16)
        transient *= 2
    sample = n * s * 4
    run = sample + 2 * min(max(flush_bytes, sample), max(t, 1) * sample) + 2 * n * (8 + 4 * s)
    graph = (n * (56 + 8 * s) + e * 32) if not graph_built else 0
    memory = engine + transient + run + graph
    output = t * n * s * 4 + t * (8 + 8 * s * 2) + (n * 48 + e * 24)
    return ResourceEstimate(n, s, e, t, memory, engine, output)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None if
    unknown. ``REDOXFIELD_AVAILABLE_MEMORY`` overrides it."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise SimulationError(f"{MEMORY_ENV} = {env!r} is not a number of bytes") from None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil missing
        pass
    try:  # pragma: no cover - psutil missing
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # pragma: no cover


def check_resources(
    est: ResourceEstimate,
    *,
    max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
    check_output: bool = True,
) -> None:
    """Raise :class:`SimulationError`, naming the numbers, when the run will not fit
    in the available memory or its output exceeds ``max_output_bytes``
    (None: no cap)."""
    avail = available_memory()
    if avail is not None and est.memory_bytes > MEMORY_FRACTION * avail:
        raise SimulationError(
            f"refusing to start: {est.n_subvolumes} subvolumes x {est.n_species} species "
            f"need about {_gib(est.memory_bytes)} ({est.memory_bytes} bytes; engine "
            f"{_gib(est.engine_bytes)}) but only {_gib(avail)} ({avail} bytes) of memory is "
            f"available; use a coarser geometry or fewer species"
        )
    if check_output and max_output_bytes is not None and est.output_bytes > max_output_bytes:
        raise SimulationError(
            f"refusing to start: the output would hold up to {_gib(est.output_bytes)} "
            f"({est.output_bytes} bytes: {est.n_samples} samples x {est.n_subvolumes} "
            f"subvolumes x {est.n_species} species x 4 B, before compression), more than "
            f"max_output_bytes = {_gib(max_output_bytes)} ({max_output_bytes} bytes); use a "
            f"larger dt_sample, a shorter t_end, or raise the cap "
            f"(max_output_bytes=..., redoxfield run --max-output)"
        )
