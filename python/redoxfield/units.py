r"""Every unit conversion of redoxfield, in one place.

User-facing units (DESIGN.md, "Units"):

================================  ==========================================
quantity                          unit
================================  ==========================================
length                            µm
time                              s
concentration                     µM
diffusion coefficient D           µm²/s
permeability P                    µm/s
zeroth-order rate (volume source) µM/s, or molecules/s for a whole region
first-order rate                  1/s
second-order rate                 1/(M s)
================================  ==========================================

The core only sees molecule counts per subvolume and *mesoscopic* constants
``c`` (propensity per subvolume, 1/s). The conversions, with ``V`` the
subvolume volume in µm³ and ``N_A = 6.02214076e23`` /mol (exact, SI 2019):

- One µM in one µm³ is ``N_A · 1e-6 mol/L · 1e-15 L = N_A · 1e-21 =
  602.214076`` molecules (:data:`MOLECULES_PER_UM_UM3`).
- Concentration to expected count: ``n = C[µM] · V[µm³] · N_A · 1e-21``.
  Initial counts are this number rounded to the nearest integer (ties to even,
  :func:`concentration_to_counts`).
- Order 0, ``-> A`` with ``k`` in µM/s: ``c = k · V · N_A · 1e-21``
  molecules/s in each subvolume of the reaction's scope.
- Order 0 given as a total flux ``F`` in molecules/s over a scope of total
  volume ``V_tot``: ``c_i = F · V_i / V_tot`` (spread by volume).
- Order 1, ``A -> ...`` with ``k`` in 1/s: ``c = k``; propensity ``c · n_A``.
- Order 2, ``A + B -> ...`` (A ≠ B) with ``k`` in 1/(M s):
  ``c = k / (N_A · V · 1e-15)`` per molecule pair; propensity ``c · n_A · n_B``.
- Order 2, ``A + A -> ...`` with ``k`` in 1/(M s). Convention: the
  macroscopic *reaction* rate is ``v = k [A]²`` (events per litre per second),
  so ``d[A]/dt = -2 k [A]²``. The core's propensity is ``c · n(n-1)/2`` (number
  of distinct pairs), and matching ``c n²/2`` with ``k n² / (N_A V 1e-15)``
  gives ``c = 2 k / (N_A · V · 1e-15)``.
- Surface reactions (scoped to a membrane m, ``a_i`` = area of m in subvolume
  i, µm²): an order-0 source with ``k`` in molecules/(µm² s) gives
  ``c_i = k · a_i`` (:func:`surface_order0_constant`); order 1 is ``c = k`` as
  above, only where ``a_i > 0``; order 2 with one membrane-bound and one volume
  species takes ``k`` in 1/(M s) and uses the subvolume volume, ``c = k / (N_A
  · V_i · 1e-15)`` -- the membrane molecule meets the volume molecules of its
  own subvolume.
- Surface density ``ρ`` (molecules/µm²) to counts: ``ρ · a_i`` expected in
  subvolume i.
- Diffusion on a directed edge ``i -> j``: each molecule jumps at rate
  ``D · g_ij / V_i`` with ``g_ij = A_ij / d_ij`` (shared face area over centre
  distance, µm); a cubic lattice of spacing ``h`` has ``g = h`` so the rate is
  ``D / h²``. Membrane crossing: ``P · A_ij / V_i``. (Computed by the core.)

All functions accept scalars or numpy arrays and are vectorised.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AVOGADRO",
    "LITRES_PER_UM3",
    "MAX_COUNT",
    "MOLECULES_PER_UM_UM3",
    "concentration_to_counts",
    "concentration_to_molecules",
    "diffusion_rate",
    "membrane_rate",
    "mesoscopic_constant",
    "molecules_to_concentration",
    "order0_flux_constant",
    "order0_volume_constant",
    "order1_constant",
    "order2_constant",
    "surface_order0_constant",
]

#: Avogadro constant, 1/mol (exact by the 2019 SI definition).
AVOGADRO: float = 6.02214076e23
#: One cubic micrometre in litres.
LITRES_PER_UM3: float = 1e-15
#: Molecules in 1 µm³ at 1 µM: ``N_A · 1e-6 · 1e-15 = 602.214076``.
MOLECULES_PER_UM_UM3: float = AVOGADRO * 1e-21
#: Largest count a subvolume can hold (the core stores counts as uint32).
MAX_COUNT: int = 2**32 - 1


def concentration_to_molecules(c_uM: ArrayLike, volume_um3: ArrayLike) -> NDArray[np.float64]:
    """Expected molecule number ``n = C[µM] · V[µm³] · N_A · 1e-21`` (not rounded)."""
    return (
        np.asarray(c_uM, dtype=np.float64)
        * np.asarray(volume_um3, dtype=np.float64)
        * (MOLECULES_PER_UM_UM3)
    )


def concentration_to_counts(c_uM: ArrayLike, volume_um3: ArrayLike) -> NDArray[np.int64]:
    """Integer counts ``rint(C · V · N_A · 1e-21)``: nearest integer, ties to even.

    Example: 20 µM in a (0.1 µm)³ voxel is 12.04 molecules, rounded to 12.
    Raises ``ValueError`` if a value is negative, not finite or exceeds
    :data:`MAX_COUNT` after rounding (callers add the species name).
    """
    c = np.asarray(c_uM, dtype=np.float64)
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"concentration must be finite and non-negative, got {c!r}")
    n = np.rint(concentration_to_molecules(c, volume_um3))
    if np.any(n > MAX_COUNT):
        raise ValueError(
            f"concentration gives {int(np.max(n))} molecules in one subvolume, "
            f"more than the limit of {MAX_COUNT}"
        )
    return n.astype(np.int64)


def molecules_to_concentration(n: ArrayLike, volume_um3: ArrayLike) -> NDArray[np.float64]:
    """Concentration in µM of ``n`` molecules in ``V`` µm³: ``n / (V · N_A · 1e-21)``."""
    return np.asarray(n, dtype=np.float64) / (
        np.asarray(volume_um3, dtype=np.float64) * MOLECULES_PER_UM_UM3
    )


def order0_volume_constant(k_uM_per_s: ArrayLike, volume_um3: ArrayLike) -> NDArray[np.float64]:
    """Order 0 in µM/s to molecules/s per subvolume: ``c = k · V · N_A · 1e-21``."""
    return concentration_to_molecules(k_uM_per_s, volume_um3)


def order0_flux_constant(
    flux_molecules_per_s: float, volume_um3: ArrayLike, total_volume_um3: float
) -> NDArray[np.float64]:
    """A total flux F (molecules/s) over a scope, spread by volume: ``c_i = F · V_i / V_tot``."""
    return float(flux_molecules_per_s) * np.asarray(volume_um3, dtype=np.float64) / total_volume_um3


def order1_constant(k_per_s: ArrayLike) -> NDArray[np.float64]:
    """Order 1 in 1/s: ``c = k`` (propensity ``c · n_A``)."""
    return np.asarray(k_per_s, dtype=np.float64).copy()


def order2_constant(
    k_per_M_per_s: ArrayLike, volume_um3: ArrayLike, *, same_species: bool
) -> NDArray[np.float64]:
    """Order 2 in 1/(M s) to the core's per-pair constant.

    ``A + B``: ``c = k / (N_A · V · 1e-15)``; ``A + A``: ``c = 2 k / (N_A · V · 1e-15)``
    (the core's propensity is ``c · n(n-1)/2`` and the macroscopic convention is
    ``v = k [A]²``, ``d[A]/dt = -2 k [A]²``).
    """
    c = np.asarray(k_per_M_per_s, dtype=np.float64) / (
        AVOGADRO * np.asarray(volume_um3, dtype=np.float64) * LITRES_PER_UM3
    )
    return 2.0 * c if same_species else c


def mesoscopic_constant(
    order: int, k: ArrayLike, volume_um3: ArrayLike, *, same_species: bool = False
) -> NDArray[np.float64]:
    """Dispatch on the reaction order (0: µM/s, 1: 1/s, 2: 1/(M s))."""
    if order == 0:
        return order0_volume_constant(k, volume_um3)
    if order == 1:
        return np.broadcast_to(
            order1_constant(k), np.broadcast_shapes(np.shape(k), np.shape(volume_um3))
        ).copy()
    if order == 2:
        return order2_constant(k, volume_um3, same_species=same_species)
    raise ValueError(f"order {order} is not supported; only orders 0, 1 and 2")


def diffusion_rate(D_um2_per_s: ArrayLike, coupling_um: ArrayLike, volume_um3: ArrayLike):
    """Jump rate per molecule along one edge: ``D · g / V`` (1/s); ``D / h²`` on a cube."""
    return (
        np.asarray(D_um2_per_s, dtype=np.float64) * np.asarray(coupling_um) / np.asarray(volume_um3)
    )


def membrane_rate(P_um_per_s: ArrayLike, area_um2: ArrayLike, volume_um3: ArrayLike):
    """Crossing rate per molecule through a membrane face: ``P · A / V`` (1/s)."""
    return np.asarray(P_um_per_s, dtype=np.float64) * np.asarray(area_um2) / np.asarray(volume_um3)


def surface_order0_constant(k_per_um2_per_s: ArrayLike, area_um2: ArrayLike) -> NDArray[np.float64]:
    """Order-0 surface source in molecules/(µm² s) to molecules/s per subvolume:
    ``c_i = k · a_i`` (``a_i`` the membrane area in subvolume i)."""
    return np.asarray(k_per_um2_per_s, dtype=np.float64) * np.asarray(area_um2, dtype=np.float64)
