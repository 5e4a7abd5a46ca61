"""NOX2 at the sarcolemma and T-tubules (issue 5, first two acceptance bullets).

Small geometries: the one-sarcomere r = 1.5 um fibre segment without NMJ
(28,512 voxels) for the contraction/knockout/inhibitor effects, and a 3 x 1 x 1
um cytosol column behind a sarcolemma for the decay length. Fixed seeds; the
bounds are several standard errors wide (stated at each assert)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.optimize import brentq

import redoxfield as rf
from redoxfield import biology as bio
from redoxfield import protocols as pr
from redoxfield.units import MOLECULES_PER_UM_UM3

from ._biology import averaged_counts, reaction_events

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None
pytestmark = pytest.mark.skipif(not HAVE_CORE, reason="compiled core not built")

#: NOX2 turnover raised 10x over the [flagged] default so that the test sees tens of
#: H2O2 molecules at a time (turnover is a swept parameter; the effects are ratios).
TURNOVER = 100.0
REST, WORK = 0.05, 0.10  # s: protocol phases; the contraction window skips 30 ms of assembly


@pytest.fixture(scope="module")
def fibre():
    space = rf.fiber.segment(radius=1.5, sarcomeres=1, ss_mito_share=1.0, nmj=False)
    g = space.to_graph()
    cyto = g.compartments == list(g.compartment_names).index("cytosol")
    reg = g.regions
    # within 0.5 um of the sarcolemma or of a T-tubule plane (triad: 0.2 um each side)
    near = (reg["band_0-0.5um"] | reg["triad"]) & cyto
    mid = reg["band_0.5-1um"] & ~reg["triad"] & cyto
    deep = reg["band_1-1.5um"] & ~reg["triad"] & cyto
    return space, g, {"near": near, "mid": mid, "deep": deep}


def _modules():
    """The NOX2 test recipe's modules (turnover raised, see TURNOVER)."""
    return [
        bio.Nox2(turnover=TURNOVER),
        bio.PrxTrx(),
        bio.Mitochondria(),
        bio.Sod(),
        bio.Nox4(),
        bio.Membranes(),
    ]


def _run(space, interventions=(), seed=1):
    recipe = bio.Recipe(
        _modules(),
        interventions=interventions,
    )
    sim = recipe.build(space).simulation(space, seed=seed)
    sim.set_protocol(pr.sequence(pr.rest(REST), pr.continuous(WORK, intensity=1.0)))
    (rest, act), _ = averaged_counts(
        sim, [(0.0, REST), (REST + 0.03, REST + WORK)], 0.001, ["H2O2"]
    )
    return rest[:, 0], act[:, 0]


def _nM(counts, mask, g):
    return 1e3 * counts[mask].sum() / (g.volumes[mask].sum() * MOLECULES_PER_UM_UM3)


@pytest.fixture(scope="module")
def wild_type(fibre):
    space, g, _ = fibre
    return _run(space)


def _rest_near_nM(space, g, near, t_end=2.0, k_probe=1e5):
    """Mean H2O2 near the membranes at rest, from an exact time-integral probe:
    ``H2O2 -> H2O2`` scoped to the region fires on average ``k * integral(N dt)``
    times (rest H2O2 is ~1e-3 molecules there, too little to sample)."""
    if "near_membranes" not in space.regions:
        space.region("near_membranes", near)
    recipe = bio.Recipe(
        _modules(),
        activity=0.0,
    )
    bm = recipe.build(space)
    bm.model.reaction("H2O2 -> H2O2", k=k_probe, region="near_membranes", name="probe")
    sim = bm.simulation(space, seed=1)
    eng = sim.make_engine()
    eng.advance(t_end, None)
    n = reaction_events(eng, sim, "probe")
    assert n > 100  # Poisson error < 10 %
    return 1e3 * n / (k_probe * t_end) / (g.volumes[near].sum() * MOLECULES_PER_UM_UM3)


def test_contraction_raises_h2o2_near_membranes_and_it_falls_off(fibre, wild_type):
    space, g, m = fibre
    _, act = wild_type
    near, mid, deep = (_nM(act, m[k], g) for k in ("near", "mid", "deep"))
    rest = _rest_near_nM(space, g, m["near"])
    print(
        f"near {near:.3g} nM (rest {1e3 * rest:.3g} pM: x{near / rest:.0f}), "
        f"0.5-1 um {mid:.3g}, 1-1.5 um {deep:.3g}"
    )
    # rest: mitochondrial and NOX4 H2O2 only (sub-pM here); measured ~6000x
    assert near / rest > 100
    # falls off with distance. Seed-to-seed spread of the band means (seeds 1-4):
    # near 3.32-3.54 nM, 0.5-1 um 1.98-2.18, 1-1.5 um 1.29-1.86 (the deepest band
    # holds few molecules), so mid/deep lies in 1.14-1.57 and 1.05 is the bound.
    assert near > 1.3 * mid
    assert mid > 1.05 * deep


@pytest.mark.parametrize("gene", ["Ncf1", "Rac1"])
def test_p47phox_or_rac1_loss_abolishes_the_rise(fibre, wild_type, gene):
    space, g, m = fibre
    _, act = _run(space, [bio.knockout(gene)])
    wt = _nM(wild_type[1], m["near"], g)
    ko = _nM(act, m["near"], g)
    print(f"{gene} knockout: near {ko:.3g} nM vs wild type {wt:.3g} nM")
    assert ko < 0.01 * wt


def test_gp91ds_tat_attenuates_in_proportion(fibre, wild_type):
    space, g, m = fibre
    wt = _nM(wild_type[1], m["near"], g)
    ratios = {}
    # At f = 0.8 one run holds few molecules: its near-band mean scatters by ~9 %
    # between seeds (0.80, 0.66, 0.74 nM for seeds 2-4), so three runs are pooled.
    for f, seeds in ((0.5, (2,)), (0.8, (2, 3, 4))):
        runs = [_run(space, [bio.inhibitor("gp91ds-tat", f)], seed=s)[1] for s in seeds]
        ratios[f] = float(np.mean([_nM(act, m["near"], g) for act in runs])) / wt
    print("gp91ds-tat remaining signal:", ratios)
    # linear scavenging (Prx far from saturation) makes the remaining signal 1 - f;
    # each ratio has a relative error of ~5-6 % (the wild type's ~3 % included)
    for f, r in ratios.items():
        assert r == pytest.approx(1 - f, rel=0.2)


def test_decay_length_equals_sqrt_d_over_k_eff():
    # 3 um x 1 um^2 cytosol behind a sarcolemma face carrying NOX2 (all H2O2 enters
    # the first layer); reflecting walls, so the mean profile is cosh((L - x)/lambda).
    h, nx, ny = 0.1, 30, 10
    space = rf.Lattice(shape=(nx, ny, ny), spacing=h)
    space.compartment("extracellular", "x < 0.1")
    space.membrane("sarcolemma", between=("cytosol", "extracellular"))
    prx, gpx, cat = bio.PrxTrx(hyperoxidation=False), bio.Gpx(), bio.Catalase()
    recipe = bio.Recipe([bio.Nox2(density=2500.0, turnover=100.0), prx, gpx, cat], activity=1.0)
    sim = recipe.build(space).simulation(space, seed=3)
    (avg,), _ = averaged_counts(sim, [(0.1, 0.6)], 0.00025, ["H2O2", "Prx", "GPx", "CAT"])
    ix = np.arange(sim.graph.n_subvolumes) % nx
    layer = np.bincount(ix, weights=avg[:, 0], minlength=nx)[1:]
    x = (np.arange(1, nx) - 0.5) * h  # voxel centres from the membrane face
    near = (ix >= 1) & (ix <= 5)  # the first ~lambda of cytosol, where H2O2 is consumed
    conc = {
        s: avg[near, k].sum() / (near.sum() * h**3 * MOLECULES_PER_UM_UM3)
        for k, s in enumerate(["H2O2", "Prx", "GPx", "CAT"])
        if k
    }
    k_eff = (
        prx.k_prx * conc["Prx"] + gpx.k_gpx * conc["GPx"] + cat.k_catalase * conc["CAT"]
    ) * 1e-6 + prx.other_sinks
    lam_pred = np.sqrt(bio.PARAMS["D_H2O2"].value / k_eff)
    length = (nx - 1) * h

    def mean_x(lam):
        w = np.cosh((length - x) / lam)
        return (w * x).sum() / w.sum()

    lam = brentq(lambda val: mean_x(val) - (layer * x).sum() / layer.sum(), 0.05, 5.0)
    print(f"lambda measured {lam:.4f} um, sqrt(D/k_eff) {lam_pred:.4f} um, k_eff {k_eff:.4g}/s")
    # ~14,000 molecule-samples: the mean distance has a relative error of ~1 %
    assert lam == pytest.approx(lam_pred, rel=0.10)
    assert lam < 1.0  # sub-micrometre at default Prx (Travasso et al. 2017)
