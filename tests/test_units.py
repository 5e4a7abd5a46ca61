"""Unit conversions against hand-computed numbers (docs/units.md)."""

import math

import numpy as np
import pytest

from redoxfield import units


def test_avogadro_exact_and_molecules_per_uM_um3():
    assert units.AVOGADRO == 6.02214076e23
    assert abs(units.MOLECULES_PER_UM_UM3 - 602.214076) < 1e-12


def test_concentration_to_count_b1_voxel():
    # 20 uM in a (0.1 um)^3 voxel: 20 * 1e-3 * 602.214076 = 12.04428152 -> 12
    v = 0.1**3
    assert units.concentration_to_molecules(20.0, v) == pytest.approx(12.04428152, rel=1e-12)
    assert units.concentration_to_counts(20.0, v) == 12
    # 1 uM in 1 um^3 is 602.214076 molecules -> 602
    assert units.concentration_to_counts(1.0, 1.0) == 602


def test_rounding_is_nearest_ties_to_even():
    v = 1.0 / units.MOLECULES_PER_UM_UM3  # 1 uM in v is exactly one molecule (to rounding)
    c = np.array([0.49, 0.51, 1.49, 2.5, 3.5])
    assert list(units.concentration_to_counts(c, v)) == [0, 1, 1, 2, 4]


def test_concentration_round_trip():
    v = np.array([0.001, 0.5, 2.0])
    c = np.array([20.0, 3.3, 0.1])
    n = units.concentration_to_molecules(c, v)
    np.testing.assert_allclose(units.molecules_to_concentration(n, v), c, rtol=1e-14)


def test_concentration_to_counts_rejects_bad_values():
    with pytest.raises(ValueError, match="non-negative"):
        units.concentration_to_counts(-1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        units.concentration_to_counts(float("nan"), 1.0)
    with pytest.raises(ValueError, match="limit"):
        units.concentration_to_counts(1e10, 1.0)


def test_order0_b1_source():
    # B1: 41.5 uM/s over the slab (8000 voxels of 1e-3 um^3 = 8 um^3) = 2.0e5 molecules/s.
    c = units.order0_volume_constant(41.5, 0.1**3)
    assert c == pytest.approx(41.5 * 1e-3 * 602.214076, rel=1e-12)
    assert 8000 * c == pytest.approx(199_935.073232, rel=1e-9)


def test_order0_flux_spread_by_volume():
    v = np.array([1.0, 3.0])
    c = units.order0_flux_constant(100.0, v, 4.0)
    np.testing.assert_allclose(c, [25.0, 75.0])
    assert c.sum() == pytest.approx(100.0)


def test_order1_is_identity():
    assert units.order1_constant(10.0) == 10.0
    np.testing.assert_array_equal(units.mesoscopic_constant(1, 2.5, np.ones(3)), [2.5] * 3)


def test_order2_heterodimer_b1():
    # k = 1e7 /M/s in 1e-3 um^3 = 1e-18 L: c = 1e7 / (6.02214076e23 * 1e-18) = 16.6054 /s
    c = units.order2_constant(1e7, 1e-3, same_species=False)
    assert c == pytest.approx(1e7 / 602214.076, rel=1e-12)
    assert c == pytest.approx(16.605390671738466, rel=1e-12)


def test_order2_homodimer_has_factor_two():
    # v = k[A]^2 convention: c = 2k/(N_A V 1e-15)
    a = units.order2_constant(1e6, 0.5, same_species=True)
    b = units.order2_constant(1e6, 0.5, same_species=False)
    assert a == pytest.approx(2 * b, rel=1e-15)
    assert a == pytest.approx(2e6 / (6.02214076e23 * 0.5e-15), rel=1e-12)


def test_homodimer_macroscopic_limit():
    # For large n, the propensity c n(n-1)/2 ~ c n^2/2 must equal k [A]^2 N_A V events/s.
    k, vol, conc = 3e5, 0.8, 50.0  # 1/(M s), um^3, uM
    n = units.concentration_to_molecules(conc, vol)
    c = units.order2_constant(k, vol, same_species=True)
    events_meso = c * n * n / 2
    events_macro = k * (conc * 1e-6) ** 2 * units.AVOGADRO * vol * 1e-15
    assert events_meso == pytest.approx(events_macro, rel=1e-12)


def test_diffusion_rate_cube():
    h, D = 0.1, 1000.0
    assert units.diffusion_rate(D, h, h**3) == pytest.approx(D / h**2)
    assert units.membrane_rate(2.0, 0.01, 0.001) == pytest.approx(20.0)


def test_mesoscopic_constant_bad_order():
    with pytest.raises(ValueError, match="order 3"):
        units.mesoscopic_constant(3, 1.0, 1.0)
    assert math.isclose(units.mesoscopic_constant(0, 1.0, 1.0), 602.214076)
