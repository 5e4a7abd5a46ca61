"""Type stub for the compiled extension ``redoxfield._core`` (crate rust/python).

The core knows nothing of biology, units or files. It sees a subvolume graph, a
mass-action network with *mesoscopic* constants already converted by
``redoxfield.units``, initial integer counts and a seed.

Conventions (all arrays C-contiguous; integer arrays int64 unless stated):

- N subvolumes, S species, R reactions, E directed edges.
- Transport along the directed edge e = i -> j for species s happens at rate
  ``transport_coefficients[edge_class[e], s] * edge_coupling[e] / volumes[i]``
  per molecule in i. For diffusion inside a compartment the coupling is
  g_ij = A_ij / d_ij (µm) and the coefficient D_s (µm²/s); across a membrane the
  coupling is the shared area A_ij (µm²) and the coefficient the permeability
  P_s (µm/s). A coefficient of 0 means no transport of that species on that edge.
- Reaction r in subvolume i has mesoscopic constant
  ``c = rate_constants[rate_class[i], r]`` (0 means the reaction does not happen
  there). Propensity: order 0 -> c; ``A`` -> c*nA; ``A + B`` -> c*nA*nB;
  ``A + A`` -> c*nA*(nA-1)/2.
- ``reactants[r]`` holds up to two species indices, -1 for an empty slot
  (``A + A`` is written [a, a]). Products are a CSR list: the products of r are
  ``product_species[product_offsets[r]:product_offsets[r+1]]`` (repeat an index
  for stoichiometry 2).
"""

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

__version__: str

class CoreError(Exception):
    """A failure inside a run (count overflow, ...); the message names the cause."""

class NsmEngine:
    """Exact next-subvolume method (Elf & Ehrenberg 2004) on one trajectory."""

    def __init__(
        self,
        *,
        volumes: NDArray[np.float64],
        edge_offsets: NDArray[np.int64],
        edge_targets: NDArray[np.int64],
        edge_coupling: NDArray[np.float64],
        edge_class: NDArray[np.int64],
        transport_coefficients: NDArray[np.float64],
        reactants: NDArray[np.int64],
        product_offsets: NDArray[np.int64],
        product_species: NDArray[np.int64],
        rate_class: NDArray[np.int64],
        rate_constants: NDArray[np.float64],
        counts: NDArray[np.int64],
        seed: int,
        replicate: int = 0,
        species_names: Sequence[str] | None = None,
        schedule_times: NDArray[np.float64] | None = None,
        schedule_factors: NDArray[np.float64] | None = None,
        layout: NDArray[np.int64] | None = None,
    ) -> None:
        """Validate every array (ValueError naming the array and the index on bad
        input) and build the engine at time 0. ``schedule_times`` (T,) strictly
        increasing and ``schedule_factors`` (T, R): from ``schedule_times[k]`` on,
        reaction r runs at ``schedule_factors[k, r]`` times its constants (1 before
        the first time); switches happen exactly at their times. ``layout`` (N,):
        a permutation of the subvolumes to store them in (``layout[k]`` at position
        k; ``SubvolumeGraph.storage_order``); only memory locality changes, every
        array in and out (counts, errors naming a subvolume) stays in the given
        order. Checkpoints are of the stored state: restore with the same layout."""

    @property
    def time(self) -> float:
        """Simulated time reached (s)."""

    @property
    def n_subvolumes(self) -> int: ...
    @property
    def n_species(self) -> int: ...
    @property
    def n_reactions(self) -> int: ...
    @property
    def total_events(self) -> int: ...
    @property
    def bytes_per_subvolume(self) -> float:
        """Memory held by the solver state, bytes per subvolume."""

    @staticmethod
    def restore(
        *,
        volumes: NDArray[np.float64],
        edge_offsets: NDArray[np.int64],
        edge_targets: NDArray[np.int64],
        edge_coupling: NDArray[np.float64],
        edge_class: NDArray[np.int64],
        transport_coefficients: NDArray[np.float64],
        reactants: NDArray[np.int64],
        product_offsets: NDArray[np.int64],
        product_species: NDArray[np.int64],
        rate_class: NDArray[np.int64],
        rate_constants: NDArray[np.float64],
        counts: NDArray[np.int64],
        state: bytes,
        species_names: Sequence[str] | None = None,
        schedule_times: NDArray[np.float64] | None = None,
        schedule_factors: NDArray[np.float64] | None = None,
        layout: NDArray[np.int64] | None = None,
        **ignored: object,
    ) -> NsmEngine:
        """The engine of these arrays (the ones the checkpoint was taken from;
        ``counts`` is only validated) in the state saved by ``checkpoint()``.
        ValueError naming the problem on a corrupt, foreign or unreachable state."""

    def checkpoint(self) -> bytes:
        """The full solver state (counts, next-event times, generator state, time,
        event counters): versioned, checksummed; restoring it continues the
        trajectory bitwise (rust/core/src/checkpoint.rs)."""

    def advance(
        self,
        t_stop: float,
        progress: Callable[[float, int], None] | None = None,
        max_seconds: float | None = None,
    ) -> bool:
        """Run every event with time <= t_stop, then set time to t_stop; returns
        True. With ``max_seconds``, returns False (time = the last event's) when
        that much wall time has passed first, at a slice boundary.

        Releases the GIL while running. Checks for signals about every 2**20
        events: Ctrl-C raises KeyboardInterrupt and leaves the engine in a
        consistent state at the last processed event. ``progress(time, events)``
        is called at the same points. Raises CoreError on count overflow.
        """

    def counts(self) -> NDArray[np.uint32]:
        """Copy of the (N, S) counts."""

    def counts_into(self, out: NDArray[np.uint32]) -> None:
        """Write the (N, S) counts into a preallocated uint32 array."""

    def totals(self) -> NDArray[np.int64]:
        """(S,) total molecules per species."""

    def diffusion_events(self) -> NDArray[np.uint64]:
        """(S,) transport events per species (diffusion and membrane crossings)."""

    def reaction_events(self) -> NDArray[np.uint64]:
        """(R,) firings per reaction."""

class MoleculesEngine:
    """Exact SSA over the molecules of the lone moving species, by one candidate
    stream thinned per molecule or one next-event clock per molecule (``method``;
    the same Markov chain as the NSM)."""

    def __init__(
        self,
        *,
        volumes: NDArray[np.float64],
        edge_offsets: NDArray[np.int64],
        edge_targets: NDArray[np.int64],
        edge_coupling: NDArray[np.float64],
        edge_class: NDArray[np.int64],
        transport_coefficients: NDArray[np.float64],
        reactants: NDArray[np.int64],
        product_offsets: NDArray[np.int64],
        product_species: NDArray[np.int64],
        rate_class: NDArray[np.int64],
        rate_constants: NDArray[np.float64],
        counts: NDArray[np.int64],
        seed: int,
        replicate: int = 0,
        species_names: Sequence[str] | None = None,
        schedule_times: NDArray[np.float64] | None = None,
        schedule_factors: NDArray[np.float64] | None = None,
        layout: NDArray[np.int64] | None = None,
        method: str = "auto",
    ) -> None:
        """As ``NsmEngine``; also ValueError unless exactly one species moves and no
        reaction has two molecules of it among its reactants, or for a ``method``
        other than "auto", "clocks" or "thinning". No checkpoints."""

    @property
    def method(self) -> str:
        """The method in use, "clocks" or "thinning" (what "auto" chose)."""

    @property
    def rejected_candidates(self) -> int:
        """Thinning candidates rejected so far (not events; 0 with clocks)."""

    @property
    def time(self) -> float:
        """Simulated time reached (s)."""

    @property
    def n_subvolumes(self) -> int: ...
    @property
    def n_species(self) -> int: ...
    @property
    def n_reactions(self) -> int: ...
    @property
    def total_events(self) -> int: ...
    @property
    def bytes_per_subvolume(self) -> float:
        """Memory held by the solver state, bytes per subvolume."""

    @property
    def mobile_species(self) -> int:
        """Index of the species whose molecules carry the clocks."""

    def advance(
        self,
        t_stop: float,
        progress: Callable[[float, int], None] | None = None,
        max_seconds: float | None = None,
    ) -> bool:
        """As ``NsmEngine.advance``."""

    def counts(self) -> NDArray[np.uint32]:
        """Copy of the (N, S) counts."""

    def counts_into(self, out: NDArray[np.uint32]) -> None:
        """Write the (N, S) counts into a preallocated uint32 array."""

    def totals(self) -> NDArray[np.int64]:
        """(S,) total molecules per species."""

    def diffusion_events(self) -> NDArray[np.uint64]:
        """(S,) transport events per species (only the moving one's are non-zero)."""

    def reaction_events(self) -> NDArray[np.uint64]:
        """(R,) firings per reaction."""

class OpSplitEngine:
    """Approximate operator-splitting solver on one trajectory, multithreaded
    (docs/performance.md): per step of length tau, an exact walk of every mobile
    molecule for tau (per-axis Skellam draws folded at the walls on a Cartesian
    lattice, hop by hop elsewhere), then an exact SSA inside every subvolume that
    was touched or whose next reaction falls in the step. The trajectory for a
    (seed, replicate) is bitwise the same on any number of threads. No
    checkpoints."""

    def __init__(
        self,
        *,
        volumes: NDArray[np.float64],
        edge_offsets: NDArray[np.int64],
        edge_targets: NDArray[np.int64],
        edge_coupling: NDArray[np.float64],
        edge_class: NDArray[np.int64],
        transport_coefficients: NDArray[np.float64],
        reactants: NDArray[np.int64],
        product_offsets: NDArray[np.int64],
        product_species: NDArray[np.int64],
        rate_class: NDArray[np.int64],
        rate_constants: NDArray[np.float64],
        counts: NDArray[np.int64],
        seed: int,
        replicate: int = 0,
        species_names: Sequence[str] | None = None,
        schedule_times: NDArray[np.float64] | None = None,
        schedule_factors: NDArray[np.float64] | None = None,
        layout: NDArray[np.int64] | None = None,
        tolerance: float | None = None,
        tau: float | None = None,
        threads: int = 0,
    ) -> None:
        """As NsmEngine, plus: ``schedule_times`` (T,) and ``schedule_factors``
        (T, R), piecewise-constant rate multipliers (steps end exactly on switch
        times); ``tolerance`` (default 0.01): the largest per-molecule reaction
        probability per step, tau = -ln(1 - tolerance) / k_max; ``tau``: a fixed
        largest step (s) instead; ``threads``: worker threads, 0 for one per
        core; ``layout`` as for NsmEngine (storage order only; counts and errors
        stay in the given order). ValueError naming the bad argument on bad
        input."""

    @property
    def time(self) -> float: ...
    @property
    def n_subvolumes(self) -> int: ...
    @property
    def n_species(self) -> int: ...
    @property
    def n_reactions(self) -> int: ...
    @property
    def total_events(self) -> int:
        """Reaction events plus transport events (for lattice walks, whose hops are
        not drawn, their expected number)."""
    @property
    def bytes_per_subvolume(self) -> float: ...
    @property
    def threads(self) -> int: ...
    @property
    def steps(self) -> int:
        """Steps taken so far."""
    @property
    def tolerance(self) -> float: ...
    @property
    def tau_option(self) -> float | None:
        """The fixed step given by the user, if any."""
    @property
    def tau_bound(self) -> float:
        """The step bound computed at the start of the last advance (s; inf if
        nothing bounds it)."""
    @property
    def tau_used(self) -> tuple[float, float]:
        """(shortest, longest) step actually taken (s)."""
    @property
    def ssa_runs(self) -> int:
        """Subvolume SSA runs so far (the reaction phase's work)."""
    def lattice_walk(self, species: int) -> bool:
        """True if ``species`` walks by exact per-axis draws on a detected lattice."""

    def advance(
        self,
        t_stop: float,
        progress: Callable[[float, int], None] | None = None,
        max_seconds: float | None = None,
    ) -> bool:
        """Run steps up to t_stop (time is then exactly t_stop); returns True. With
        ``max_seconds``, returns False at a step boundary when that much wall time
        has passed; calling again continues the same step plan. GIL released;
        Ctrl-C raises KeyboardInterrupt within ~0.1 s: between steps the engine
        stays usable; inside a step (the steps run on a worker thread) the
        engine is then unusable, its time left at the step's start. CoreError on
        count overflow or after such an interrupt (the engine is unusable)."""

    def counts(self) -> NDArray[np.uint32]: ...
    def counts_into(self, out: NDArray[np.uint32]) -> None: ...
    def totals(self) -> NDArray[np.int64]: ...
    def diffusion_events(self) -> NDArray[np.uint64]: ...
    def reaction_events(self) -> NDArray[np.uint64]: ...

def run_ensemble_totals(
    *,
    volumes: NDArray[np.float64],
    edge_offsets: NDArray[np.int64],
    edge_targets: NDArray[np.int64],
    edge_coupling: NDArray[np.float64],
    edge_class: NDArray[np.int64],
    transport_coefficients: NDArray[np.float64],
    reactants: NDArray[np.int64],
    product_offsets: NDArray[np.int64],
    product_species: NDArray[np.int64],
    rate_class: NDArray[np.int64],
    rate_constants: NDArray[np.float64],
    counts: NDArray[np.int64],
    seed: int,
    replicates: Sequence[int],
    times: NDArray[np.float64],
    regions: Sequence[NDArray[np.int64]] | None = None,
    threads: int = 0,
    species_names: Sequence[str] | None = None,
    schedule_times: NDArray[np.float64] | None = None,
    schedule_factors: NDArray[np.float64] | None = None,
    layout: NDArray[np.int64] | None = None,
    solver: str = "nsm",
    method: str = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.int64] | None, NDArray[np.uint64]]:
    """Exact replicates, with ``solver`` "nsm" or "molecules" (streams (seed, r)
    for r in ``replicates``) in parallel
    threads, GIL released: (totals (R, T, S), region totals (R, T, G, S) or None,
    events (R,)) at ``times``; ``regions`` lists the subvolume indices of each
    region. Bitwise the same as running the replicates one by one. Ctrl-C raises
    KeyboardInterrupt."""
