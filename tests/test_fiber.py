"""The parametric fibre segment (issue 3): volumes and areas vs analytic values,
convergence, regions, bad input, and the fiber-demo scenario end to end."""

from __future__ import annotations

import importlib.util

import h5py
import numpy as np
import pytest

import redoxfield as rf
from redoxfield import fiber
from redoxfield.cli import main

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None
#: the explicit schematic layout (before the volume fractions; the meshes' layout)
LEGACY = dict(mito_volume_fraction=None, tc_volume_fraction=None, lsr_volume_fraction=0.0)

#: literature volume fractions of the fibre the default segment reproduces, and the
#: tolerance (relative) on the analytic and on the lattice value. Sources:
#: docs/geometry.md (Eisenberg, Kuda & Peter 1974 [abs], guinea-pig soleus).
TARGETS = {
    "mitochondria": (0.0485, 0.005, 0.02),
    "subsarcolemmal_share": (1 / 3, 0.005, 0.05),  # "about a third" within 1 um
    "terminal_cisternae": (0.0104, 0.01, 0.01),  # whole-voxel strips: rounding < 1 %
    "sr": (0.0352, 0.01, 0.01),
    "nucleus": (0.0086, 0.005, 0.02),
}


@pytest.fixture(scope="module")
def default_segment():
    return fiber.segment()


def test_default_segment_within_two_percent(default_segment):
    sp = default_segment
    assert sp.parameters.spacing == 0.1
    errors = sp.relative_errors()
    assert set(errors) == set(fiber.COMPARTMENTS) | set(fiber.MEMBRANES)
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < 0.02, (worst, errors[worst])


def test_convergence_over_three_resolutions():
    # A smaller segment (r = 1.5 um, one sarcomere: every structure but the
    # inter-myofibrillar mitochondria, which sit on interior Z-lines, so all the
    # mitochondrial volume is subsarcolemmal here) at h = 0.1, 0.05, 0.025 um: the
    # mean |relative error| over all compartments and membranes shrinks with h
    # (figures in docs/geometry.md).
    means = []
    for h in (0.1, 0.05, 0.025):
        small = dict(radius=1.5, sarcomeres=1, spacing=h, ss_mito_share=1.0)
        errs = fiber.segment(**small).relative_errors()
        if h <= 0.05:  # at h = 0.1 the 0.25-0.5 um structures of this small segment miss
            assert max(abs(e) for e in errs.values()) < 0.025
        means.append(np.mean([abs(e) for e in errs.values()]))
    assert means[0] > means[1] > means[2]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_default_volume_fractions_match_literature(default_segment, name):
    target, tol_analytic, tol_lattice = TARGETS[name]
    fr = default_segment.volume_fractions
    assert fr["analytic"][name] == pytest.approx(target, rel=tol_analytic)
    assert fr["lattice"][name] == pytest.approx(target, rel=tol_lattice)


def test_fibre_type_presets_set_the_mitochondrial_fraction():
    sp = fiber.segment(fibre_type="rat_svl")
    assert sp.parameters.mito_volume_fraction == 0.087
    assert sp.volume_fractions["analytic"]["mitochondria"] == pytest.approx(0.087, rel=0.005)
    assert sp.volume_fractions["lattice"]["mitochondria"] == pytest.approx(0.087, rel=0.03)
    # an explicit fraction wins over the preset
    p = fiber.segment(
        fibre_type="rat_svl",
        mito_volume_fraction=0.0485,
        radius=1.5,
        sarcomeres=1,
        ss_mito_share=1.0,
    ).parameters
    assert p.mito_volume_fraction == 0.0485


def test_structure_layout(default_segment):
    sp = default_segment
    p = sp.parameters
    assert len(sp.triad_planes) == 2 * p.sarcomeres  # two triads per sarcomere
    i_band = (p.sarcomere_length - p.a_band_length) / 2
    assert sp.triad_planes[0] == pytest.approx(i_band)
    g = sp.to_graph()
    # T-tubule area lives only in cytosol voxels of the T-planes
    t = g.membrane_areas[:, g.membrane_names.index("ttubule")]
    assert np.all(g.compartments[t > 0] == fiber.COMPARTMENTS.index("cytosol"))
    x = sp.centers[t > 0, 0]
    d = np.min(np.abs(x[:, None] - np.asarray(sp.triad_planes)[None]), axis=1)
    assert d.max() <= 1.5 * p.spacing + 1e-9
    # regions
    for name in ("subsarcolemmal", "perinuclear", "nmj", "cleft", "triad", "band_0-0.5um"):
        assert sp.regions[name].any(), name
    # sarcolemma faces: cytosol <-> extracellular; mito_inner: matrix <-> ims
    src = g.edge_sources
    for mem, pair in (("sarcolemma", {0, 1}), ("mito_inner", {3, 4})):
        e = g.edge_membrane == g.membrane_names.index(mem)
        assert set(np.unique(g.compartments[src[e]])) == pair


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": 0}, "radius = 0 must be positive"),
        ({"radius": -2.0}, "radius = -2.0 must be positive"),
        ({"sarcomeres": 0}, "sarcomeres"),
        ({"sarcomere_length": -1.0}, "sarcomere_length"),
        ({"a_band_length": 2.5}, "a_band_length"),
        ({"imf_positions": ((2.4, 0.0),), **LEGACY}, "outside the fibre"),
        ({"imf_positions": ((0.5, 0.5),), **LEGACY}, "overlaps terminal cisterna"),
        ({"fibre_type": "frog"}, "unknown fibre_type 'frog'"),
        ({"mito_volume_fraction": -0.1}, "mito_volume_fraction = -0.1 must be non-negative"),
        ({"sarcomeres": 1}, "no room for inter-myofibrillar mitochondria"),
        ({"mito_volume_fraction": 0.004}, "ims_thickness"),
        ({"nucleus_aspect": 10.0}, "nucleus lies outside the fibre"),
        ({"ss_semi_axes": (0.5, 0.05)}, "ims_thickness"),
        ({"spacing": 0.2}, "ims_thickness = 0.1 um is thinner than one voxel"),
        ({"colour": "red"}, "unknown fiber parameter 'colour'"),
    ],
)
def test_bad_fiber_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fiber.segment(**kwargs)


@pytest.mark.skipif(not HAVE_CORE, reason="compiled core not built")
def test_fiber_demo_cli_writes_per_region_results(tmp_path, capsys):
    out = tmp_path / "fd.h5"
    assert main(["run", "fiber-demo", "--out", str(out), "--quiet", "--no-picture"]) == 0
    with rf.Result.load(out) as res:
        assert res.complete
        regions = res.regions
        for name in ("subsarcolemmal", "perinuclear", "nmj", "triad", "cleft"):
            assert name in regions
        names = res.file["geometry/membrane_names"].asstr()[()].tolist()
        assert "ttubule" in names and "sarcolemma" in names
        # per-region results stored in the file agree with Result.region_total
        ag = res.file["analysis/regions"]
        s = res.species.index("PrxSO")
        stored = ag["subsarcolemmal/total"][:, s]
        assert np.array_equal(stored, res.region_total("PrxSO", "subsarcolemmal"))
        assert res.region_total("PrxSO", "fibre")[-1] > 0
        # NOX2 sits only in voxels with sarcolemma or T-tubule area
        nox = res.counts("NOX2", 0)
        areas = res.membrane_areas
        assert np.all((areas["sarcolemma"] + areas["ttubule"])[nox > 0] > 0)
        assert res.region_total("NOX2", "extracellular")[0] == 0
        assert res.region_mean("Prx", "cytosol")[0] == pytest.approx(142.0, rel=0.01)
    with h5py.File(out) as f:
        assert f["analysis/regions/triad/mean_uM"].shape[0] == f["samples/time"].shape[0]
