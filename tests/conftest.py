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
