"""TetMesh: file formats with physical groups, units, graph formulas, membranes,
quality checks and bad files, HDF5 geometry, the B3 scenario (docs/meshes.md)."""

from __future__ import annotations

import math
import warnings

import meshio
import numpy as np
import pytest
from scipy.sparse import csr_matrix, diags
from scipy.sparse.linalg import expm_multiply

import redoxfield as rf
from redoxfield.geometry.quality import MeshQualityWarning

from .conftest import needs_core

gmsh = pytest.importorskip("gmsh")
from redoxfield.geometry import mesher  # noqa: E402

# -- small meshes made in code ----------------------------------------------------------


def kuhn_cube(n: int = 4, h: float = 0.25):
    """A structured tet mesh of an n³ grid of cubes (6 tets per cube, Kuhn split)."""
    g = np.arange(n + 1)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1).astype(float) * h

    def idx(i, j, k):
        return (i * (n + 1) + j) * (n + 1) + k

    tets = []
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for p in perms:
                    c = [i, j, k]
                    path = [idx(*c)]
                    for ax in p:
                        c[ax] += 1
                        path.append(idx(*c))
                    tets.append(path)
    tets = np.array(tets)
    p = pts[tets]
    vol = np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
    tets[vol < 0] = tets[vol < 0][:, [0, 2, 1, 3]]  # odd permutations: right-handed order
    return pts, tets


@pytest.fixture(scope="module")
def two_slabs(tmp_path_factory):
    """gmsh: 1 µm cube cut at x = 0.5 (volume groups slab0/slab1, surfaces
    boundary/cut0), as .msh v4."""
    d = tmp_path_factory.mktemp("slabs")
    return mesher.cube(d / "slabs.msh", size=1.0, h=0.3, cuts=(0.5,))


def _tets_and_tags(src):
    """All tetra blocks of a meshio mesh (gmsh writes one per entity) and their tags."""
    keep = [k for k, b in enumerate(src.cells) if b.type == "tetra"]
    tets = np.concatenate([src.cells[k].data for k in keep])
    tags = np.concatenate([src.cell_data["gmsh:physical"][k] for k in keep])
    names = {int(v[0]): k for k, v in src.field_data.items() if int(v[1]) == 3}
    return tets, tags, names


def _check_two_slabs(m: rf.TetMesh, scale_to_um: float = 1.0):
    assert {"slab0", "slab1"} <= set(m.volume_groups)
    assert m.compartment_names == ("cytosol",)  # default: groups are regions
    assert set(m.regions) >= {"slab0", "slab1"}
    v = m.volumes
    assert math.isclose(v.sum(), 1.0, rel_tol=1e-9)
    assert math.isclose(v[m.regions["slab0"]].sum(), 0.5, rel_tol=1e-9)
    assert np.all(m.centers[m.regions["slab0"], 0] < 0.5)


def test_gmsh_msh_v2_and_v4(tmp_path, two_slabs):
    m4 = rf.TetMesh.load(two_slabs)
    _check_two_slabs(m4)
    assert {"boundary", "cut0"} <= set(m4.surface_groups)
    p2 = mesher.cube(tmp_path / "v2.msh", size=1.0, h=0.3, cuts=(0.5,), version=2)
    assert "$MeshFormat\n2.2" in p2.read_text()[:40]
    m2 = rf.TetMesh.load(p2)
    _check_two_slabs(m2)
    assert math.isclose(m2.membrane_areas()["cut0"], 1.0, rel_tol=1e-9)


def test_vtu_and_vtk(tmp_path, two_slabs):
    p = mesher.cube(tmp_path / "slabs.vtu", size=1.0, h=0.3, cuts=(0.5,))
    _check_two_slabs(rf.TetMesh.load(p))
    # Legacy VTK with a plain tag array, named by group_names.
    src = meshio.read(two_slabs)
    keep = [k for k, b in enumerate(src.cells) if b.type in ("tetra", "triangle")]
    cells = [src.cells[k] for k in keep]
    tags = {"gmsh:physical": [src.cell_data["gmsh:physical"][k] for k in keep]}
    meshio.write(tmp_path / "slabs.vtk", meshio.Mesh(src.points, cells, cell_data=tags))
    names = {int(v[0]): k for k, v in src.field_data.items()}
    m = rf.TetMesh.load(tmp_path / "slabs.vtk", group_names=names)
    _check_two_slabs(m)


def test_abaqus_inp_element_sets(tmp_path, two_slabs):
    tets, tags, names = _tets_and_tags(meshio.read(two_slabs))
    cell_sets = {names[t]: [np.nonzero(tags == t)[0]] for t in np.unique(tags)}
    src = meshio.read(two_slabs)
    mesh = meshio.Mesh(src.points, [("tetra", tets)], cell_sets=cell_sets)
    meshio.write(tmp_path / "slabs.inp", mesh)
    _check_two_slabs(rf.TetMesh.load(tmp_path / "slabs.inp"))


def test_tetgen_node_ele(tmp_path, two_slabs):
    src = meshio.read(two_slabs)
    tets, tags, names = _tets_and_tags(src)
    mesh = meshio.Mesh(src.points, [("tetra", tets)], cell_data={"tetgen:ref": [tags]})
    meshio.write(tmp_path / "slabs.node", mesh)
    m = rf.TetMesh.load(tmp_path / "slabs.ele", group_names=names)
    _check_two_slabs(m)


def test_units_nm(tmp_path, two_slabs):
    src = meshio.read(two_slabs)
    src.points = src.points * 1000.0  # the same mesh in nm
    meshio.write(tmp_path / "nm.msh", src, file_format="gmsh22")
    m = rf.TetMesh.load(tmp_path / "nm.msh", scale="nm")
    _check_two_slabs(m)
    assert np.allclose(m.points.max(axis=0), 1.0)
    m2 = rf.TetMesh.load(tmp_path / "nm.msh", scale=1e-3)
    assert np.allclose(m2.volumes, m.volumes)
    with pytest.raises(rf.GeometryError, match="unknown mesh length unit 'furlong'"):
        rf.TetMesh.load(tmp_path / "nm.msh", scale="furlong")


def test_graph_formulas_and_symmetry():
    pts, tets = kuhn_cube(3, 0.25)
    m = rf.TetMesh.from_arrays(pts, tets)
    g = m.to_graph()
    assert g.kind == "tetmesh" and g.cells.shape == (tets.shape[0], 4)
    assert np.allclose(g.volumes, 0.25**3 / 6)
    # Each edge: coupling = A / |b_j - b_i| and the reverse edge has the same value.
    src, dst = g.edge_sources, g.edge_targets
    fwd = {(int(a), int(b)): c for a, b, c in zip(src, dst, g.edge_coupling, strict=True)}
    for (a, b), c in list(fwd.items())[:200]:
        assert fwd[(b, a)] == pytest.approx(c)
        shared = sorted(set(tets[a]) & set(tets[b]))
        p = pts[shared]
        area = 0.5 * np.linalg.norm(np.cross(p[1] - p[0], p[2] - p[0]))
        d = np.linalg.norm(g.centers[b] - g.centers[a])
        assert c == pytest.approx(area / d)
    # Interior tets have 4 neighbours; count of directed edges = 2 x interior faces.
    assert g.n_edges % 2 == 0 and np.diff(g.edge_offsets).max() == 4
    # Circumcentric on a Kuhn mesh: the six tets of a cube are cospherical, so
    # faces inside a cube have Voronoi distance 0 and fall back (with a warning).
    with pytest.warns(MeshQualityWarning, match="circumcentric coupling"):
        gc = rf.TetMesh.from_arrays(pts, tets, coupling="circumcentric").to_graph()
    assert gc.meta["circumcentric_fallback_faces"] > 0


@needs_core
def test_membrane_between_compartments_permeation(two_slabs):
    """Compartments from volume groups, membrane from the cut plane: edges across
    carry the face area, the membrane area (1 µm²) sits in the inner tets, and the
    relaxation of A between the halves follows the graph's master equation (exactly)
    and the well-mixed law rate P A (1/V_l + 1/V_r) (within 5 %)."""
    m = rf.TetMesh.load(
        two_slabs,
        compartments={"left": "slab0", "right": "slab1"},
        membranes={"wall": "cut0"},
        inner={"wall": "left"},
    )
    g = m.to_graph()
    assert g.membrane_names == ("wall",)
    on = g.edge_membrane == 0
    assert on.any() and np.all(
        g.compartments[g.edge_sources[on]] != g.compartments[g.edge_targets[on]]
    )
    assert math.isclose(g.membrane_areas[:, 0].sum(), 1.0, rel_tol=1e-9)
    assert np.all(g.compartments[g.membrane_areas[:, 0] > 0] == 0)  # inner = left
    # Without a membrane the halves do not exchange at all.
    g0 = rf.TetMesh.load(
        two_slabs, compartments={"left": "slab0", "right": "slab1"}, membranes=[]
    ).to_graph()
    assert g0.n_edges == g.n_edges - on.sum()

    D, P, N, t = 5.0, 0.5, 2000, 0.4
    model = rf.Model()
    model.species("A", D=D, compartments=["left", "right"])
    model.permeability("A", "wall", P)
    sim = rf.Simulation(model, m, seed=77)
    sim.set_count("A", N, region="slab0")
    res = sim.run(t_end=t, dt_sample=t)
    n_left = float(res.counts("A", sample=-1)[g.compartments == 0].sum())
    # Master equation on the graph (P A / V_i on membrane edges).
    src = g.edge_sources
    coef = np.where(on, P, D)
    n = g.n_subvolumes
    q = csr_matrix((coef * g.edge_coupling / g.volumes[src], (src, g.edge_targets)), (n, n))
    q = q - diags(np.asarray(q.sum(axis=1)).ravel())
    p0 = sim.initial_counts("A") / N
    pl = float(expm_multiply(q.T * t, p0)[g.compartments == 0].sum())
    se = math.sqrt(N * pl * (1 - pl))
    lam = P * 1.0 * (1 / 0.5 + 1 / 0.5)
    well_mixed = 0.5 + 0.5 * math.exp(-lam * t)
    print("membrane relaxation", dict(measured=n_left / N, graph=pl, well_mixed=well_mixed))
    assert abs(n_left - N * pl) < 4 * se
    assert abs(pl / well_mixed - 1) < 0.05


def test_membrane_area_factor_scales_area_and_permeation_only(two_slabs):
    """``area_factors`` (postsynaptic folds): the membrane's area and its
    permeation coupling double; diffusion couplings inside a compartment stay."""
    kw = dict(compartments={"left": "slab0", "right": "slab1"}, membranes={"wall": "cut0"})
    g1 = rf.TetMesh.load(two_slabs, **kw).to_graph()
    g2 = rf.TetMesh.load(two_slabs, area_factors={"wall": 2.0}, **kw).to_graph()
    assert math.isclose(g2.membrane_areas.sum(), 2.0, rel_tol=1e-9)
    on = g1.edge_membrane == 0
    assert np.allclose(g2.edge_coupling[on], 2 * g1.edge_coupling[on])
    assert np.array_equal(g2.edge_coupling[~on], g1.edge_coupling[~on])
    with pytest.raises(rf.GeometryError, match="area factor of membrane 'wall'"):
        rf.TetMesh.load(two_slabs, area_factors={"wall": -1}, **kw)
    with pytest.raises(rf.GeometryError, match="area_factors= names unknown membrane 'wal'"):
        rf.TetMesh.load(two_slabs, area_factors={"wal": 2.0}, **kw)


@needs_core
def test_membrane_bound_species_and_surface_reaction(two_slabs):
    m = rf.TetMesh.load(two_slabs, membranes=["boundary"])
    model = rf.Model()
    model.species("NOX", membrane="boundary")
    model.species("H2O2", D=10.0)
    model.reaction("NOX -> NOX + H2O2", k=5.0)
    sim = rf.Simulation(model, m, seed=3)
    sim.set_surface_density("NOX", 100.0, "boundary")  # 6 µm² of boundary
    nox = sim.initial_counts("NOX")
    assert nox.sum() == 600
    assert np.all(nox[m.to_graph().membrane_areas[:, 0] == 0] == 0)


@needs_core
def test_mesh_is_stored_along_a_morton_curve_but_read_in_file_order():
    """The exact solver stores a mesh's tets along a Morton curve (neighbours
    close in memory), but every array in and out stays in the mesh's order:
    per-tet initial counts, region-scoped sources, sampled counts, checkpoints."""
    from redoxfield import _core
    from redoxfield.geometry import Box

    pts, tets = kuhn_cube(6, 0.25)
    tets = tets[np.random.default_rng(3).permutation(len(tets))]  # neighbours far apart
    mesh = rf.TetMesh.from_arrays(pts, tets)
    mesh.region("left", Box(lo=(0.0, 0.0, 0.0), hi=(0.3, 1.5, 1.5)))
    g = mesh.to_graph()
    n = g.n_subvolumes
    order = g.storage_order()
    assert order is not None and np.array_equal(np.sort(order), np.arange(n))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    src, dst = g.edge_sources, g.edge_targets
    assert np.median(np.abs(position[src] - position[dst])) < np.median(np.abs(src - dst)) / 10
    # A lattice keeps its row-major order.
    assert rf.Lattice(shape=(4, 4, 4), spacing=0.1).to_graph().storage_order() is None

    model = rf.Model()
    model.species("Tag")  # immobile, never reacts: each tet keeps its own count
    model.species("A")  # immobile: made only where the source is
    model.species("H2O2", D=0.5)
    model.reaction("-> A", k=50.0, region="left")
    model.reaction("-> H2O2", k=50.0, region="left")
    model.reaction("H2O2 ->", k=20.0)
    sim = rf.Simulation(model, mesh, seed=5)
    tag = np.arange(n, dtype=np.int64) * 3 + 1
    counts = np.zeros((n, 3), dtype=np.int64)
    counts[:, 0] = tag
    sim.set_counts(counts)
    arrays = sim.engine_arrays()
    assert np.array_equal(arrays["layout"], order)
    res = sim.run(0.2, 0.1)
    left = g.regions["left"]
    assert np.array_equal(res.counts("Tag", -1), tag)
    a = res.counts("A", -1)
    assert a[left].sum() > 100 and a[~left].sum() == 0
    h2o2 = res.counts("H2O2", -1)
    assert h2o2[left].sum() > h2o2[~left].sum() / (~left).sum() * left.sum()

    # A checkpoint of the engine restores, in the same storage, bitwise.
    engine = _core.NsmEngine(**arrays, seed=5)
    engine.advance(0.1)
    restored = _core.NsmEngine.restore(**arrays, state=bytes(engine.checkpoint()))
    engine.advance(0.2)
    restored.advance(0.2)
    assert np.array_equal(engine.counts(), restored.counts())
    assert np.array_equal(engine.counts()[:, 0], tag)
    # Without the layout the problem is a different one for a checkpoint.
    no_layout = {k: v for k, v in arrays.items() if k != "layout"}
    with pytest.raises(Exception, match="different problem"):
        _core.NsmEngine.restore(**no_layout, state=bytes(engine.checkpoint()))
    bad = dict(arrays, layout=np.zeros(n, dtype=np.int64))
    with pytest.raises(ValueError, match="layout"):
        _core.NsmEngine(**bad, seed=5)

    # The operator-splitting solver stores the mesh the same way.
    ops = rf.Simulation(model, mesh, seed=5, solver="opsplit")
    ops.set_counts(counts)
    res = ops.run(0.2, 0.1)
    assert np.array_equal(res.counts("Tag", -1), tag)
    a = res.counts("A", -1)
    assert a[left].sum() > 100 and a[~left].sum() == 0


# -- quality checks and bad files ---------------------------------------------------------


def test_good_mesh_has_no_findings():
    pts, tets = kuhn_cube(2)
    q = rf.TetMesh.from_arrays(pts, tets).quality
    assert q.ok and not q.warnings, q.summary()


def test_all_negative_orientation_is_fixed_silently():
    pts, tets = kuhn_cube(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = rf.TetMesh.from_arrays(pts, tets[:, [0, 2, 1, 3]])
    assert np.all(m.volumes > 0)


def test_inverted_tets_error_names_them():
    pts, tets = kuhn_cube(2)
    bad = tets.copy()
    bad[5] = bad[5][[1, 0, 2, 3]]
    with pytest.raises(rf.GeometryError, match=r"1 inverted tet\(s\).*tets 5;"):
        rf.TetMesh.from_arrays(pts, bad, source="'bad.msh'")
    with pytest.warns(MeshQualityWarning, match="inverted"):
        m = rf.TetMesh.from_arrays(pts, bad, check="warn")
    assert np.all(m.volumes > 0)


def test_degenerate_tet_error():
    pts, tets = kuhn_cube(2)
    pts = np.vstack([pts, [[0.1, 0.1, 0.0], [0.2, 0.1, 0.0], [0.1, 0.2, 0.0], [0.2, 0.2, 0.0]]])
    n = len(pts)
    flat = np.vstack([tets, [[n - 4, n - 3, n - 2, n - 1]]])
    with pytest.raises(rf.GeometryError, match=r"1 degenerate tet\(s\).*tets 48;"):
        rf.TetMesh.from_arrays(pts, flat)


def test_duplicate_points_error_and_merge():
    pts, tets = kuhn_cube(2)
    # Give the upper half (x > 0.25) its own copies of the points on the plane x = 0.25.
    on_plane = np.nonzero(np.isclose(pts[:, 0], 0.25))[0]
    copy = {int(i): len(pts) + k for k, i in enumerate(on_plane)}
    pts2 = np.vstack([pts, pts[on_plane]])
    upper = pts[tets].mean(axis=1)[:, 0] > 0.25
    tets2 = tets.copy()
    for t in np.nonzero(upper)[0]:
        tets2[t] = [copy.get(int(v), int(v)) for v in tets2[t]]
    with pytest.raises(rf.GeometryError, match=r"18 duplicate point\(s\).*first at \(0\.25"):
        rf.TetMesh.from_arrays(pts2, tets2)
    m = rf.TetMesh.from_arrays(pts2, tets2, merge_duplicates=True)
    assert m.points.shape[0] == pts.shape[0] and m.quality.ok


def test_hanging_face_non_conforming():
    # Two cubes side by side; the right one is split differently (its points on the
    # shared plane are the same, but it is shifted by half a cell in y, so faces do
    # not match): boundary faces with mesh on their other side.
    pts, tets = kuhn_cube(2, 0.25)
    right = pts + [0.5, 0.125, 0.0]
    allp = np.vstack([pts, right])
    allt = np.vstack([tets, tets + len(pts)])
    with pytest.raises(rf.GeometryError, match="non-conforming"):
        rf.TetMesh.from_arrays(allp, allt)


def test_disconnected_pieces_warning():
    pts, tets = kuhn_cube(2, 0.25)
    allp = np.vstack([pts, pts + [2.0, 0, 0]])
    allt = np.vstack([tets, tets + len(pts)])
    with pytest.warns(MeshQualityWarning, match=r"2 disconnected pieces \(48 tets near"):
        rf.TetMesh.from_arrays(allp, allt)


def test_poor_aspect_ratio_warning():
    pts, tets = kuhn_cube(2, 0.25)
    n = len(pts)
    sliver = np.array([[3.0, 0, 0], [3.1, 0, 0], [3.05, 0.1, 0], [3.05, 0.05, 0.0005]])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rf.TetMesh.from_arrays(
            np.vstack([pts, sliver]), np.vstack([tets, [[n, n + 1, n + 2, n + 3]]]), check="warn"
        )
    msgs = [str(w.message) for w in rec if issubclass(w.category, MeshQualityWarning)]
    # The sliver is also a second piece: both are reported.
    assert any("1 tet(s) with a very poor aspect ratio (radius ratio" in m for m in msgs), msgs
    assert any("2 disconnected pieces" in m for m in msgs), msgs


def test_bad_files_name_the_file_and_problem(tmp_path, two_slabs):
    text = two_slabs.read_text()
    trunc = tmp_path / "truncated.msh"
    trunc.write_text(text[: len(text) // 2])
    with pytest.raises(rf.GeometryError, match=r"cannot read mesh file '.*truncated\.msh'"):
        rf.TetMesh.load(trunc)
    surf = tmp_path / "surface.vtu"
    src = meshio.read(two_slabs)
    tri = [b for b in src.cells if b.type == "triangle"]
    meshio.write(surf, meshio.Mesh(src.points, tri))
    with pytest.raises(
        rf.GeometryError, match=r"surface\.vtu' holds no tetrahedra \(cell types: triangle"
    ):
        rf.TetMesh.load(surf)
    hexa = tmp_path / "hex.vtu"
    meshio.write(hexa, meshio.Mesh(np.eye(8, 3), [("hexahedron", np.arange(8)[None])]))
    with pytest.raises(rf.GeometryError, match="holds no tetrahedra"):
        rf.TetMesh.load(hexa)
    with pytest.raises(
        rf.GeometryError,
        match=r"unknown volume physical group 'nucleus' \(the file defines: slab0, slab1\)",
    ):
        rf.TetMesh.load(two_slabs, compartments={"nucleus": "nucleus"})
    with pytest.raises(rf.GeometryError, match="unknown surface physical group 'sarco'"):
        rf.TetMesh.load(two_slabs, membranes={"sarcolemma": "sarco"})
    with pytest.raises(
        rf.GeometryError,
        match=r"tets belong to no compartment \(volume groups not assigned: slab1\)",
    ):
        rf.TetMesh.load(two_slabs, compartments={"left": "slab0"})
    with pytest.raises(rf.GeometryError, match="does not exist"):
        rf.TetMesh.load(tmp_path / "missing.msh")


# -- results, pictures, scenario ----------------------------------------------------------


@needs_core
def test_hdf5_geometry_points_cells_and_xdmf(tmp_path, two_slabs):
    m = rf.TetMesh.load(two_slabs)
    model = rf.Model()
    model.species("A", D=1.0)
    sim = rf.Simulation(model, m, seed=1)
    sim.set_count("A", 100, region="slab0")
    res = sim.run(t_end=0.01, dt_sample=0.01, output=tmp_path / "run.h5")
    back = rf.Result.load(tmp_path / "run.h5")
    geo = back.file["geometry"]
    assert geo.attrs["kind"] == "tetmesh"
    np.testing.assert_array_equal(geo["cells"][()], m.tets)
    np.testing.assert_allclose(geo["points"][()], m.points)
    assert res.counts("A").shape == (2, m.n_subvolumes)
    from redoxfield.viz.render import mesh as viz_mesh

    grid = viz_mesh(back)
    assert grid.n_cells == m.n_subvolumes


def test_b3_scenario_loads():
    sc = rf.load_scenario("h2o2-burst-tets")
    g = sc.space.to_graph()
    assert g.kind == "tetmesh" and 55_000 < g.n_subvolumes < 70_000
    assert abs(g.volumes.mean() - 1e-3) < 0.15e-3
    assert math.isclose(g.volumes[g.regions["source"]].sum(), 8.0, rel_tol=1e-9)


def test_mesh_scenario_errors(tmp_path):
    bad = """
[geometry]
kind = "mesh"
path = "nowhere.msh"
[[species]]
name = "A"
[run]
t_end = 1.0
dt_sample = 1.0
"""
    with pytest.raises(rf.ScenarioError, match="mesh file 'nowhere.msh' not found"):
        rf.scenario.parse_scenario(bad)
