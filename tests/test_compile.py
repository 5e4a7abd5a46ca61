"""Compilation of a Model on a subvolume graph into the core's arrays."""

import numpy as np
import pytest

import redoxfield as rf
from redoxfield import units
from redoxfield.compile import compile_network, compile_problem


def test_network_arrays():
    m = rf.Model()
    for s in ("A", "B", "C"):
        m.species(s, D=float(len(s)))
    m.reaction("A + B -> C", k=1.0)
    m.reaction("2 A -> B", k=1.0)
    m.reaction("-> A", k=1.0)
    m.reaction("C -> 0", k=1.0)
    m.reaction("A -> 2 B + C", k=1.0)
    net = compile_network(m)
    assert net.reactants.tolist() == [[0, 1], [0, 0], [-1, -1], [2, -1], [0, -1]]
    assert net.product_offsets.tolist() == [0, 1, 2, 3, 3, 6]
    assert net.product_species.tolist() == [2, 1, 0, 1, 1, 2]
    assert net.order.tolist() == [2, 2, 0, 1, 1]
    assert net.reactants.dtype == np.int64 and net.product_species.dtype == np.int64


def test_b1_problem(b1_model):
    lat = rf.Lattice((40, 40, 40), spacing=0.1)
    lat.region("source", lambda x, y, z: x < 0.5)
    p = compile_problem(b1_model, lat.to_graph())
    v = 0.1**3
    c = p.propensity_constants()
    assert c.shape == (64000, 3)
    np.testing.assert_allclose(c[:, 0], 1e7 / (units.AVOGADRO * v * 1e-15))
    np.testing.assert_allclose(c[:, 1], 10.0)
    src = lat.regions["source"]
    np.testing.assert_allclose(c[src, 2], 41.5 * v * 602.214076, rtol=1e-12)
    assert np.all(c[~src, 2] == 0)
    assert c[:, 2].sum() == pytest.approx(2.0e5, rel=1e-3)  # B1: 2e5 molecules/s
    assert p.rate_constants.shape == (2, 3)  # two classes: in and out of the slab
    assert p.transport_coefficients.tolist() == [[1000.0, 0.0, 0.0]]
    assert p.transport_class_names == ("diffusion:cytosol",)
    assert np.all(p.edge_class == 0)
    kw = p.engine_kwargs()
    assert set(kw) >= {"volumes", "edge_offsets", "reactants", "rate_class", "rate_constants"}
    for key, val in kw.items():
        if isinstance(val, np.ndarray):
            assert val.flags.c_contiguous, key


def test_flux_source_spread_by_volume():
    m = rf.Model()
    m.species("A")
    m.reaction("-> A", flux=1000.0, region="r")
    lat = rf.Lattice((10, 2, 2), spacing=0.5)
    lat.region("r", "x < 1.5")  # 3 layers of 4 voxels
    c = compile_problem(m, lat.to_graph()).propensity_constants()[:, 0]
    assert c.sum() == pytest.approx(1000.0)
    np.testing.assert_allclose(c[lat.regions["r"]], 1000.0 / 12)


def test_homodimer_constant():
    m = rf.Model()
    m.species("A")
    m.reaction("A + A -> 0", k=1e6)
    m.reaction("2 A -> A", k=1e6)
    lat = rf.Lattice((1, 1, 1), spacing=0.5)
    c = compile_problem(m, lat.to_graph()).propensity_constants()[0]
    expected = 2 * 1e6 / (units.AVOGADRO * 0.125e-15)
    np.testing.assert_allclose(c, [expected, expected])


def test_compartment_scope_and_errors():
    m = rf.Model()
    m.species("A")
    m.reaction("A ->", k=1.0, compartment="cytosol")
    lat = rf.Lattice((2, 2, 2), spacing=1.0)
    c = compile_problem(m, lat.to_graph()).propensity_constants()
    np.testing.assert_allclose(c[:, 0], 1.0)

    m2 = rf.Model()
    m2.species("A")
    m2.reaction("A ->", k=1.0, compartment="matrix")
    with pytest.raises(ValueError, match="unknown compartment 'matrix'"):
        compile_problem(m2, lat.to_graph())

    m3 = rf.Model()
    m3.species("A")
    m3.reaction("-> A", k=1.0, region="source")
    with pytest.raises(ValueError, match="unknown region 'source'"):
        compile_problem(m3, lat.to_graph())


def test_no_reactions_and_no_species():
    m = rf.Model()
    m.species("A", D=1.0)
    p = compile_problem(m, rf.Lattice((2, 1, 1), spacing=1.0).to_graph())
    assert p.rate_constants.shape == (1, 0)
    assert p.rate_class.tolist() == [0, 0]
    with pytest.raises(ValueError, match="no species"):
        compile_problem(rf.Model(), rf.Lattice((2, 1, 1), spacing=1.0).to_graph())
