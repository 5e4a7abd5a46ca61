"""Shared fixtures for the Python-layer tests."""

from __future__ import annotations

import importlib.util

import pytest

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None

needs_core = pytest.mark.skipif(not HAVE_CORE, reason="redoxfield._core is not built")


@pytest.fixture
def b1_model():
    import redoxfield as rf

    m = rf.Model()
    m.species("H2O2", D=1000.0)
    m.species("Prx")
    m.species("PrxOx")
    m.reaction("H2O2 + Prx -> PrxOx", k=1e7)
    m.reaction("PrxOx -> Prx", k=10.0)
    m.reaction("-> H2O2", k=41.5, region="source")
    return m


def assert_ensemble_is_one_by_one(ens, make_engine, mask) -> None:
    """``ens`` (rf.ensemble_totals with one region, given by the boolean
    ``mask``) holds bitwise what the engine ``make_engine(replicate)`` gives for
    each of its replicates run alone: totals, region totals and events."""
    import numpy as np

    for k, rep in enumerate(ens.replicates):
        engine = make_engine(int(rep))
        for j, t in enumerate(ens.times):
            engine.advance(float(t))
            np.testing.assert_array_equal(ens.totals[k, j], engine.totals())
            np.testing.assert_array_equal(
                ens.region_totals[k, j, 0], engine.counts()[mask].sum(axis=0)
            )
        assert ens.events[k] == engine.total_events


def tiny_scenario(shape: str, solver: str, solver_options: str) -> str:
    """The TOML text of a tiny scenario: A (D = 10 µm²/s) born at 100 µM/s in
    the region "src" (x < 0.2 µm) of a lattice of ``shape`` ("[nx, ny, nz]", 0.1
    µm voxels), decaying at 5 /s, run to 0.02 s with ``solver`` and the inline
    table ``solver_options``."""
    return f"""
name = "tiny"
[geometry]
shape = {shape}
spacing = 0.1
[regions]
src = "x < 0.2"
[[species]]
name = "A"
D = 10.0
[[reactions]]
equation = "-> A"
k = 100.0
region = "src"
[[reactions]]
equation = "A ->"
k = 5.0
[run]
t_end = 0.02
dt_sample = 0.01
solver = "{solver}"
solver_options = {solver_options}
"""
