"""3-D rendering (PyVista, offscreen), movies and the `view` command: the pictures'
content is checked (colours against the data, where the hot spot is), never bytes."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import needs_core

pytest.importorskip("pyvista")

pytestmark = needs_core


def _tiny_model():
    import redoxfield as rf

    m = rf.Model()
    m.species("A", D=20.0)
    m.species("B")
    m.reaction("A -> B", k=5.0)
    m.reaction("-> A", k=400.0, region="src")
    return m


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 12 x 8 x 6 lattice with a source at low x, a few samples, on disk."""
    import redoxfield as rf

    space = rf.Lattice(shape=(12, 8, 6), spacing=0.25)
    space.region("src", "x < 0.5")
    sim = rf.Simulation(_tiny_model(), space, seed=4)
    out = tmp_path_factory.mktemp("viz") / "small.h5"
    res = sim.run(0.2, 0.05, output=out)
    yield res
    res.close()


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """One voxel layer (nz = 1): a z slice shows every voxel, min and max included."""
    import redoxfield as rf

    space = rf.Lattice(shape=(16, 10, 1), spacing=0.25)
    space.region("src", "x < 0.5")
    sim = rf.Simulation(_tiny_model(), space, seed=2)
    sim.set_count("B", 3000, region="src")
    res = sim.run(0.1, 0.05, output=tmp_path_factory.mktemp("viz") / "flat.h5")
    yield res
    res.close()


def _bare(**kw):
    return dict(camera="xy", scalar_bar=False, structures=False, outline=False, title=False, **kw)


def _domain_pixels(img: np.ndarray) -> np.ndarray:
    """Pixels that are not the white background, as an (H, W) mask."""
    return np.any(img < 250, axis=2)


def _inverse_viridis(pixels: np.ndarray) -> np.ndarray:
    """Position (0..1) in viridis of each RGB pixel (nearest of 256 entries) and
    the distance to it."""
    from matplotlib import colormaps

    lut = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(float)
    d = np.linalg.norm(pixels[:, None, :].astype(float) - lut[None], axis=2)
    return d.argmin(axis=1) / 255.0, d.min(axis=1)


@pytest.mark.parametrize("kind", ["slice", "isosurface", "volume", "membrane"])
def test_every_kind_renders_headless_and_not_blank(small, kind):
    r = small.plot("A", t="mean", kind=kind, window_size=(320, 240))
    img = r.image
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    drawn = _domain_pixels(img)
    assert 0.05 < drawn.mean() < 0.98, f"{kind}: {drawn.mean():.3f} of the picture drawn"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # a field, not a flat fill
    lo, hi = r.field.range
    assert r.clim == pytest.approx((lo, hi))  # the colour bar spans the data's range


def test_slice_colours_map_back_to_the_data_range(flat):
    fld_range = None
    r = flat.plot("B", kind="slice", normal="z", window_size=(480, 320), **_bare())
    fld_range = r.field.range
    assert r.clim == pytest.approx(fld_range) and fld_range[1] > fld_range[0]
    mask = _domain_pixels(r.image)
    pos, dist = _inverse_viridis(r.image[mask])
    assert np.median(dist) < 3.0  # unlit slice: the pixels are colour-map colours
    ok = dist < 3.0
    # the brightest and darkest pixels are the two ends of the colour bar, i.e. the
    # data's max and min (16 x 10 voxels, each many pixels wide)
    assert pos[ok].max() > 0.98 and pos[ok].min() < 0.02
    # and the picture's values (colour bar scale) average like the data
    lo, hi = r.clim
    mean_pixel_value = lo + pos[ok].mean() * (hi - lo)
    assert mean_pixel_value == pytest.approx(r.field.values.mean(), rel=0.15)


def test_log_scale_limits_are_positive_and_titled(flat):
    r = flat.plot("B", kind="slice", log=True, window_size=(320, 240))
    vals = r.field.values
    assert r.clim[0] == pytest.approx(vals[vals > 0].min())
    assert r.clim[1] == pytest.approx(vals.max())
    assert "log colour scale" in r.title


def test_b1_source_slab_is_the_bright_region():
    """B1 geometry (40^3 voxels, source x < 0.5 um), 10 ms, time-averaged and smoothed
    H2O2 seen from +z: the left eighth of the picture is the brightest."""
    import redoxfield as rf

    sc = rf.load_scenario("h2o2-burst")
    res = sc.simulation().run(0.01, 0.002)
    with res:
        r = res.plot(
            "H2O2",
            t=(0.004, 0.01),
            smooth=0.3,
            kind="slice",
            normal="z",
            window_size=(400, 400),
            **_bare(),
        )
        rows, cols = np.nonzero(_domain_pixels(r.image))
        box = r.image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert abs(box.shape[0] - box.shape[1]) <= 3  # the 4 x 4 um square, face on
        pos, _ = _inverse_viridis(box.reshape(-1, 3))
        value = pos.reshape(box.shape[:2])
        w = box.shape[1]
        slab = value[:, : w // 8].mean()  # x < 0.5 um of 4 um
        rest = value[:, w // 8 :].mean()
        far = value[:, -w // 4 :].mean()
        assert slab > rest + 0.15 and slab > far + 0.3, (slab, rest, far)


def test_animate_mp4_and_gif(small, tmp_path):
    import imageio
    import imageio.v3 as iio

    mp4 = small.animate("A", tmp_path / "a.mp4", window_size=(320, 240))
    reader = imageio.get_reader(mp4, format="ffmpeg")
    n = sum(1 for _ in reader)
    reader.close()
    assert n == small.n_samples
    gif = small.animate("A", tmp_path / "a.gif", kind="membrane", window_size=(160, 120))
    g = iio.imread(gif, index=None)
    assert g.shape[0] == small.n_samples
    assert not np.array_equal(g[0], g[-1])  # the time label (and field) change


def test_animate_rejects_unknown_suffix(small, tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        small.animate("A", tmp_path / "a.avi")


def test_bad_arguments_name_the_problem(small):
    with pytest.raises(ValueError, match="kind must be one of"):
        small.plot("A", kind="hologram")
    with pytest.raises(ValueError, match="outside the sampled times"):
        small.plot("A", t=5.0)
    with pytest.raises(ValueError, match="unknown species 'Z'"):
        small.plot("Z")


def test_tetrahedral_geometry_renders_as_unstructured_grid(small, tmp_path):
    """A geometry with /geometry/points and /geometry/cells (one tetrahedron per
    subvolume) is drawn as an UnstructuredGrid with the same filters."""
    import h5py

    import redoxfield as rf
    from redoxfield.viz import mesh

    p = tmp_path / "tet.h5"
    small.save(p)
    c = small.centers - 0.125  # low corner of each 0.25 um voxel
    h = 0.25
    pts = np.concatenate(
        [c, c + [h, 0, 0], c + [0, h, 0], c + [0, 0, h]], axis=0
    )  # one corner tetrahedron in each voxel
    n = c.shape[0]
    cells = np.stack([np.arange(n) + k * n for k in range(4)], axis=1)
    with h5py.File(p, "r+") as f:
        f["geometry"].attrs["kind"] = "tetmesh"
        f["geometry/points"] = pts
        f["geometry/cells"] = cells
    with rf.Result.load(p) as res:
        grid = mesh(res)
        assert grid.__class__.__name__ == "UnstructuredGrid" and grid.n_cells == n
        for kind in ("slice", "membrane"):
            r = res.plot("A", t="mean", kind=kind, window_size=(240, 200))
            assert _domain_pixels(r.image).mean() > 0.01
        xd = res.write_xdmf()
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkIOXdmf2 import vtkXdmfReader

        rd = vtkXdmfReader()
        rd.SetFileName(str(xd))
        rd.UpdateTimeStep(float(res.times[-1]))
        out = rd.GetOutputDataObject(0)
        assert out.GetNumberOfCells() == n
        got = vtk_to_numpy(out.GetCellData().GetArray("A (molecules)"))
        np.testing.assert_array_equal(got, res.counts("A", -1))


def test_cli_run_then_view_png_and_mp4(tmp_path, capsys):
    import imageio

    from redoxfield.cli import main

    from .test_scenario import TINY

    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    h5 = tmp_path / "tiny.h5"
    assert main(["run", str(toml), "--out", str(h5), "--quiet"]) == 0
    assert (tmp_path / "tiny.png").exists() and (tmp_path / "tiny.xdmf").exists()
    png, mp4 = tmp_path / "v.png", tmp_path / "v.mp4"
    rc = main(
        [
            "view",
            str(h5),
            "--species",
            "A",
            "--t",
            "mean",
            "--kind",
            "slice",
            "--log",
            "--out",
            str(png),
            "--movie",
            str(mp4),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "colour range" in printed and f"wrote {mp4}" in printed
    img = imageio.v3.imread(png)
    assert img.ndim == 3 and _domain_pixels(img[..., :3]).mean() > 0.05
    reader = imageio.get_reader(mp4, format="ffmpeg")
    assert sum(1 for _ in reader) >= 2
    reader.close()
    with pytest.raises(SystemExit):
        main(["view", str(h5), "--kind", "nope"])
