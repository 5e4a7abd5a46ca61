"""ParaView sidecar (XDMF), xarray export, virtual microscopy optics, microdomain
profiles and time courses: values checked against the Result arrays and against
what the optics and geometry say they must be."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import needs_core

pytestmark = needs_core


def _model():
    import redoxfield as rf

    m = rf.Model()
    m.species("A", D=20.0)
    m.species("Red")
    m.species("Ox")
    m.reaction("A + Red -> Ox", k=1e8)
    m.reaction("Ox -> Red", k=5.0)
    m.reaction("-> A", k=300.0, region="src")
    return m


def _run(tmp, seed=1, output=True):
    import redoxfield as rf

    space = rf.Lattice(shape=(10, 6, 4), spacing=0.2, origin=(1.0, 0.0, -0.4))
    space.region("src", "x < 1.4")
    sim = rf.Simulation(_model(), space, seed=seed)
    sim.set_concentration("Red", 10.0)
    return sim.run(0.06, 0.02, output=(tmp / f"r{seed}.h5") if output else None)


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    r = _run(tmp_path_factory.mktemp("ana"))
    yield r
    r.close()


# -- XDMF -------------------------------------------------------------------------------
def test_xdmf_sidecar_written_with_the_file_and_read_by_vtk(res):
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as sddp
    from vtkmodules.vtkIOXdmf2 import vtkXdmfReader

    xd = res.path.with_suffix(".xdmf")
    assert xd.exists()  # written by the HDF5 writer, no call needed
    text = xd.read_text()
    assert res.path.name + ":/samples/counts/A" in text  # references, no copy
    assert xd.stat().st_size < 200_000
    rd = vtkXdmfReader()
    rd.SetFileName(str(xd))
    rd.UpdateInformation()
    times = rd.GetOutputInformation(0).Get(sddp.TIME_STEPS())
    np.testing.assert_allclose(times, res.times)
    for k, t in enumerate(times):
        rd.UpdateTimeStep(t)
        out = rd.GetOutputDataObject(0)
        assert out.GetClassName() == "vtkImageData"
        assert out.GetDimensions() == (11, 7, 5)
        np.testing.assert_allclose(out.GetBounds(), (1.0, 3.0, 0.0, 1.2, -0.4, 0.4))
        cd = out.GetCellData()
        for s in res.species:
            n = vtk_to_numpy(cd.GetArray(f"{s} (molecules)"))
            np.testing.assert_array_equal(n, res.counts(s, k))
            c = vtk_to_numpy(cd.GetArray(f"{s} (uM)"))
            np.testing.assert_allclose(c, res.concentration(s, k), rtol=1e-12)
        src = vtk_to_numpy(cd.GetArray("region src"))
        np.testing.assert_array_equal(src.astype(bool), res.regions["src"])
    # the cell at VTK index i has the centre of subvolume i (x fastest, both)
    cell = out.GetCell(37)
    b = cell.GetBounds()
    np.testing.assert_allclose(
        [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2], res.centers[37]
    )


def test_save_writes_a_sidecar_too(tmp_path):
    r = _run(tmp_path, output=False)
    with r:
        p = r.save(tmp_path / "copy.h5")
    assert p.with_suffix(".xdmf").exists()


# -- xarray -----------------------------------------------------------------------------
def test_to_xarray_round_trip(res):
    ds = res.to_xarray()
    assert ds["counts"].dims == ("time", "subvolume", "species")
    np.testing.assert_array_equal(ds["time"].values, res.times)
    assert list(ds["species"].values) == res.species
    np.testing.assert_array_equal(
        np.stack([ds["x"].values, ds["y"].values, ds["z"].values], axis=1), res.centers
    )
    np.testing.assert_array_equal(ds["volume"].values, res.volumes)
    for s in res.species:
        np.testing.assert_array_equal(ds["counts"].sel(species=s).values, res.counts(s))
        np.testing.assert_allclose(
            ds["concentration"].sel(species=s).values, res.concentration(s), rtol=1e-12
        )
    np.testing.assert_array_equal(ds["region_src"].values, res.regions["src"])
    # analysis the xarray way gives the Result's numbers
    np.testing.assert_array_equal(ds["counts"].sum("subvolume").values.astype(np.int64), res.totals)
    sub = res.to_xarray(species=["Ox"])
    assert sub.sizes["species"] == 1


def test_lazy_to_xarray_matches_the_eager_one(res):
    """Big results become Dask-backed (no (T, N, S) block in memory); values equal."""
    import dask.array as da

    eager = res.to_xarray()
    lazy = res.to_xarray(lazy=True)
    assert isinstance(lazy["counts"].data, da.Array)
    assert isinstance(lazy["concentration"].data, da.Array)
    np.testing.assert_array_equal(lazy["counts"].values, eager["counts"].values)
    np.testing.assert_allclose(
        lazy["concentration"].values, eager["concentration"].values, rtol=1e-12
    )


# -- virtual microscopy ----------------------------------------------------------------
def test_psf_sigmas_follow_the_gaussian_approximations():
    from redoxfield.viz import Microscope

    wf = Microscope(mode="widefield", na=1.2, n=1.33, wavelength_em=0.52)
    assert wf.sigmas[0] == pytest.approx(0.21 * 0.52 / 1.2)
    assert wf.sigmas[1] == pytest.approx(0.66 * 1.33 * 0.52 / 1.2**2)
    cf = Microscope(mode="confocal", na=1.2, n=1.33, wavelength_ex=0.52, wavelength_em=0.52)
    # equal wavelengths: excitation x emission Gaussians -> sigma / sqrt(2)
    assert cf.sigmas[0] == pytest.approx(wf.sigmas[0] / math.sqrt(2))
    assert Microscope(sigma_xy=0.3, sigma_z=0.9).sigmas == (0.3, 0.9)
    with pytest.raises(ValueError, match="NA"):
        Microscope(na=1.6, n=1.518)


def test_confocal_image_of_a_point_has_the_psf_width():
    from redoxfield.viz import Microscope
    from redoxfield.viz.microscopy import _blur_and_section

    h = 0.02
    grid = np.zeros((101, 81, 81))
    grid[20, 40, 40] = 1.0
    mic = Microscope(mode="confocal", sigma_xy=0.15, sigma_z=0.5)
    img = _blur_and_section(grid, (h, h, h), mic, 20.0)
    x = (np.arange(81) - 40) * h
    prof = img.sum(axis=0) / img.sum()
    sigma = math.sqrt(float((prof * x**2).sum()))
    assert sigma == pytest.approx(0.15, rel=0.02)
    # optical sectioning: 2 sigma_z out of focus the point fades by exp(-2)
    off = _blur_and_section(grid, (h, h, h), mic, 20.0 + 1.0 / h)
    assert off.sum() / img.sum() == pytest.approx(math.exp(-2.0), rel=0.05)


def test_widefield_keeps_out_of_focus_light():
    from redoxfield.viz import Microscope
    from redoxfield.viz.microscopy import _blur_and_section

    h = 0.05
    grid = np.zeros((30, 61, 61))
    grid[5, 30, 30] = 1.0
    mic = Microscope(mode="widefield", na=1.0, n=1.33)
    near = _blur_and_section(grid, (h, h, h), mic, 5.0)
    far = _blur_and_section(grid, (h, h, h), mic, 25.0)
    assert far.sum() == pytest.approx(near.sum(), rel=0.02)  # no sectioning
    assert far.max() < 0.5 * near.max()  # but blurred by the defocus cone


def test_uniform_oxidised_fraction_images_as_that_fraction(tmp_path):
    import redoxfield as rf
    from redoxfield.viz import Microscope, virtual_microscopy

    space = rf.Lattice(shape=(8, 8, 4), spacing=0.1)
    m = rf.Model()
    m.species("Ox")
    m.species("Red")
    sim = rf.Simulation(m, space, seed=1)
    sim.set_concentration("Ox", 5.0)  # 3 molecules in every 0.001 um^3 voxel
    sim.set_concentration("Red", 15.0)  # 9 molecules
    assert np.all(sim.counts[:, 0] == 3) and np.all(sim.counts[:, 1] == 9)
    with sim.run(0.01, 0.01) as r:
        for mode in ("confocal", "widefield"):
            vm = virtual_microscopy(r, "Ox", "Red", microscope=Microscope(mode=mode))
            np.testing.assert_allclose(vm.signal, 0.25)


def test_virtual_microscopy_figure_and_gradient(res, tmp_path):
    from redoxfield.viz import Microscope, plot_virtual_microscopy, virtual_microscopy

    vm = virtual_microscopy(
        res, "Ox", "Red", t="mean", microscope=Microscope(pixel_size=0.4, sigma_xy=0.2)
    )
    assert vm.signal.shape == (3, 5)  # 2.0 x 1.2 um at 0.4 um pixels
    assert vm.extent == pytest.approx((1.0, 3.0, 0.0, 1.2))
    assert np.all((vm.signal >= 0) & (vm.signal <= 1))
    col = np.nanmean(vm.signal, axis=0)
    assert col[0] > col[-1]  # oxidation is highest next to the source (x < 1.4)
    png = plot_virtual_microscopy(res, "Ox", "Red", tmp_path / "vm.png", t="mean", truth="A")
    assert png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="outside the lattice"):
        virtual_microscopy(res, "Ox", "Red", focal_z=5.0)


# -- profiles and time courses ---------------------------------------------------------
def test_signed_distance_from_a_slab(res):
    from redoxfield.viz import signed_distance

    d = signed_distance(res, res.regions["src"])
    x = res.centers[:, 0]
    # src is x < 1.4 (two layers of 0.2 um); the boundary face is at x = 1.4
    np.testing.assert_allclose(d, x - 1.4, atol=1e-12)


def test_profile_is_volume_weighted_mean_per_layer(res):
    from redoxfield.units import molecules_to_concentration
    from redoxfield.viz import profile

    x, c = profile(res, "Ox", "src", t="mean")
    np.testing.assert_allclose(x, np.arange(-2, 8) * 0.2 + 0.1)
    n = res.counts("Ox").mean(axis=0).reshape(4, 6, 10)
    want = molecules_to_concentration(n.sum(axis=(0, 1)), 24 * 0.008)
    np.testing.assert_allclose(c, want)
    with pytest.raises(ValueError, match="unknown structure"):
        profile(res, "Ox", "nowhere")


def test_timecourse_and_ensemble_plots(res, tmp_path):
    from redoxfield.units import molecules_to_concentration
    from redoxfield.viz import plot_profile, plot_timecourse, timecourse

    tc = timecourse(res, "Ox", "src")
    src = res.regions["src"]
    want = molecules_to_concentration(res.counts("Ox")[:, src].sum(axis=1), src.sum() * 0.008)
    np.testing.assert_allclose(tc, want)
    np.testing.assert_allclose(
        timecourse(res, "A"), molecules_to_concentration(res.total("A"), 240 * 0.008)
    )
    r2 = _run(tmp_path, seed=2)
    with r2:
        p1 = plot_timecourse([res, r2], tmp_path / "tc.png")
        p2 = plot_profile([res, r2], tmp_path / "pr.png", "Ox", "src")
    assert p1.stat().st_size > 10_000 and p2.stat().st_size > 10_000
