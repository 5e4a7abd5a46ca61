"""Lattice geometry and its subvolume graph."""

import numpy as np
import pytest

import redoxfield as rf
from redoxfield.geometry import Box, SubvolumeGraph, Where


def _undirected(nx, ny, nz):
    return (nx - 1) * ny * nz + nx * (ny - 1) * nz + nx * ny * (nz - 1)


@pytest.mark.parametrize("shape", [(4, 3, 2), (1, 1, 1), (5, 1, 1), (3, 4, 5), (2, 2, 2)])
def test_edge_count_symmetry_and_coupling(shape):
    nx, ny, nz = shape
    lat = rf.Lattice(shape, spacing=0.25)
    g = lat.to_graph()
    n = nx * ny * nz
    assert g.n_subvolumes == n
    # Directed edges: 6N minus one per wall face = 2 * undirected neighbour pairs.
    assert g.n_edges == 2 * _undirected(nx, ny, nz)
    assert g.n_edges == 6 * n - 2 * (nx * ny + ny * nz + nx * nz)
    src = g.edge_sources
    pairs = set(zip(src.tolist(), g.edge_targets.tolist(), strict=True))
    assert len(pairs) == g.n_edges  # no duplicate edge
    assert all((j, i) in pairs for i, j in pairs)  # symmetric
    np.testing.assert_allclose(g.edge_coupling, 0.25)  # g = A/d = h for a cube
    assert np.all(g.edge_membrane == -1)
    # Every edge joins face neighbours: centres exactly h apart along one axis.
    d = g.centers[g.edge_targets] - g.centers[src]
    np.testing.assert_allclose(np.abs(d).sum(axis=1), 0.25)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 0.25)


def test_interior_voxel_has_six_neighbours_in_documented_order():
    lat = rf.Lattice((3, 3, 3), spacing=1.0)
    g = lat.to_graph()
    centre = 1 + 3 * (1 + 3 * 1)
    tgt = g.edge_targets[g.edge_offsets[centre] : g.edge_offsets[centre + 1]]
    assert tgt.tolist() == [centre - 1, centre + 1, centre - 3, centre + 3, centre - 9, centre + 9]
    corner = g.edge_targets[g.edge_offsets[0] : g.edge_offsets[1]]
    assert corner.tolist() == [1, 3, 9]


def test_centres_x_fastest_and_volumes():
    lat = rf.Lattice((4, 3, 2), spacing=0.5, origin=(1.0, -1.0, 0.0))
    c = lat.centers
    assert c.shape == (24, 3)
    np.testing.assert_allclose(c[0], [1.25, -0.75, 0.25])
    np.testing.assert_allclose(c[1], [1.75, -0.75, 0.25])  # x fastest
    np.testing.assert_allclose(c[4], [1.25, -0.25, 0.25])  # then y
    np.testing.assert_allclose(c[12], [1.25, -0.75, 0.75])  # then z
    # Reshape (nz, ny, nx) recovers the grid.
    x = c[:, 0].reshape(2, 3, 4)
    assert np.all(np.diff(x, axis=2) > 0)
    np.testing.assert_allclose(lat.volumes, 0.125)
    assert lat.extent == ((1.0, 3.0), (-1.0, 0.5), (0.0, 1.0))


def test_anisotropic_coupling():
    lat = rf.Lattice((2, 2, 2), spacing=(1.0, 2.0, 4.0))
    g = lat.to_graph()
    d = np.abs(g.centers[g.edge_targets] - g.centers[g.edge_sources])
    axis = np.argmax(d, axis=1)
    expected = np.array([2.0 * 4.0 / 1.0, 1.0 * 4.0 / 2.0, 1.0 * 2.0 / 4.0])[axis]
    np.testing.assert_allclose(g.edge_coupling, expected)
    np.testing.assert_allclose(lat.volumes, 8.0)


def test_matches_core_lattice_rates():
    """Diffusion rate D g / V equals D / h^2 on a cube."""
    lat = rf.Lattice((3, 3, 3), spacing=0.1)
    g = lat.to_graph()
    rate = 1000.0 * g.edge_coupling / g.volumes[g.edge_sources]
    np.testing.assert_allclose(rate, 1000.0 / 0.1**2)


def test_regions_all_selector_forms():
    lat = rf.Lattice((10, 4, 4), spacing=0.1)
    lat.region("fn", lambda x, y, z: x < 0.5)
    lat.region("expr", "x < 0.5")
    lat.region("box", Box((0, 0, 0), (0.5, 10, 10)))
    lat.region("mask", lat.centers[:, 0] < 0.5)
    lat.region("all", lambda x, y, z: True)
    r = lat.regions
    assert int(r["fn"].sum()) == 5 * 16
    for k in ("expr", "box", "mask"):
        np.testing.assert_array_equal(r[k], r["fn"])
    assert r["all"].all()
    g = lat.to_graph()
    assert set(g.regions) == {"fn", "expr", "box", "mask", "all"}


def test_where_expressions():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.zeros(4)
    z = np.zeros(4)
    assert Where("1 <= x < 3")(x, y, z).tolist() == [False, True, True, False]
    assert Where("x < 1 or x > 2.5")(x, y, z).tolist() == [True, False, False, True]
    assert Where("not (x < 1) and y == 0")(x, y, z).tolist() == [False, True, True, True]
    assert Where("(x - 1.5)**2 + y**2 < 1")(x, y, z).tolist() == [False, True, True, False]
    assert Where("-x > -1.5")(x, y, z).tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("x.real < 1", "not allowed"),
        ("w < 1", "name 'w'"),
        ("x < 'a'", "constant"),
        ("x <", "cannot read"),
        ("x[0] < 1", "not allowed"),
        ("x % 2 < 1", "not allowed"),
    ],
)
def test_where_rejects_code(expr, fragment):
    with pytest.raises(ValueError, match="region expression|cannot read") as exc:
        Where(expr)
    assert fragment in str(exc.value)


def test_where_must_be_condition():
    lat = rf.Lattice((2, 2, 2), spacing=1.0)
    with pytest.raises(ValueError, match="not a condition"):
        lat.region("r", "x + 1")


def test_empty_region_named():
    lat = rf.Lattice((4, 4, 4), spacing=0.1)
    with pytest.raises(ValueError, match="region 'nowhere' is empty"):
        lat.region("nowhere", lambda x, y, z: x > 100)
    with pytest.raises(ValueError, match="region 'slab' is empty"):
        lat.region("slab", "x < 0")


def test_bad_regions():
    lat = rf.Lattice((4, 4, 4), spacing=0.1)
    lat.region("a", "x < 0.2")
    with pytest.raises(ValueError, match="region 'a' is defined twice"):
        lat.region("a", "x < 0.3")
    with pytest.raises(ValueError, match="shape"):
        lat.region("short", np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match="booleans"):
        lat.region("ints", np.ones(64, dtype=int))
    with pytest.raises(ValueError, match="selector of region 'boom' failed"):
        lat.region("boom", lambda x, y, z: 1 / 0)
    with pytest.raises(ValueError, match="bad region name"):
        lat.region("a/b", "x < 1")
    with pytest.raises(ValueError, match="box hi"):
        Box((0, 0, 0), (0, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"shape": (0, 1, 1), "spacing": 1.0}, "shape"),
        ({"shape": (2, 2), "spacing": 1.0}, "shape"),
        ({"shape": (2.5, 2, 2), "spacing": 1.0}, "shape"),
        ({"shape": (2, 2, 2), "spacing": 0.0}, "spacing"),
        ({"shape": (2, 2, 2), "spacing": float("nan")}, "spacing"),
        ({"shape": (2, 2, 2), "spacing": -1.0}, "spacing"),
        ({"shape": (2, 2, 2), "spacing": 1.0, "origin": (0, 0)}, "origin"),
        ({"shape": (2, 2, 2), "spacing": 1.0, "origin": (0, 0, float("inf"))}, "origin"),
    ],
)
def test_bad_lattice(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        rf.Lattice(**kwargs)


def test_graph_validation_catches_bad_graphs():
    g = rf.Lattice((3, 1, 1), spacing=1.0).to_graph()
    base = dict(
        volumes=g.volumes,
        centers=g.centers,
        edge_offsets=g.edge_offsets,
        edge_targets=g.edge_targets,
        edge_coupling=g.edge_coupling,
        edge_membrane=g.edge_membrane,
        compartments=g.compartments,
        compartment_names=("cytosol",),
    )
    SubvolumeGraph(**base)
    bad_targets = g.edge_targets.copy()
    bad_targets[0] = 7
    with pytest.raises(ValueError, match="edge_targets"):
        SubvolumeGraph(**{**base, "edge_targets": bad_targets})
    with pytest.raises(ValueError, match="volumes"):
        SubvolumeGraph(**{**base, "volumes": np.array([1.0, 0.0, 1.0])})
    with pytest.raises(ValueError, match="joins two compartments"):
        SubvolumeGraph(
            **{**base, "compartments": np.array([0, 1, 1]), "compartment_names": ("a", "b")}
        )
    with pytest.raises(ValueError, match="region 'r' is empty"):
        SubvolumeGraph(**base, regions={"r": np.zeros(3, dtype=bool)})
