"""Mitochondria, auranofin, Sod1 and the NMJ (issue 5, acceptance bullets 3-4).

Coarse lattices of 1 um voxels (tests/_biology.py: matrix | IMS | cytosol |
extracellular [| nerve terminal | its IMS | its matrix]) keep each compartment
well mixed, so minutes of simulated time cost well under a second. Mean H2O2
counts come from the exact first-order sink counters: the lumped 160/s sink of a
compartment fires 160 * integral(N dt) times on average."""

from __future__ import annotations

import importlib.util

import pytest

from redoxfield import biology as bio
from redoxfield import protocols as pr

from ._biology import averaged_counts, mito_column, reaction_events

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None
pytestmark = pytest.mark.skipif(not HAVE_CORE, reason="compiled core not built")

SINK = bio.PARAMS["k_other_sinks"].value


def _modules(nox2_density=1000.0):
    return [
        bio.Nox2(density=nox2_density),
        bio.Mitochondria(),
        bio.Sod(),
        bio.PrxTrx(),
        bio.Gpx(),
        bio.Membranes(),
    ]


def _mean_h2o2(eng, sim, compartment, before, t0, t1):
    return (reaction_events(eng, sim, f"other H2O2 sinks in {compartment}") - before) / (
        SINK * (t1 - t0)
    )


def test_matrix_h2o2_does_not_rise_during_contraction():
    space = mito_column()
    sensors = [
        bio.RoGFP2Orp1(name="roMito", compartment="mito_matrix"),
        bio.RoGFP2Orp1(name="roCyto"),
    ]
    sim = bio.Recipe(_modules(), sensors).build(space).simulation(space, seed=1)
    sim.set_protocol(pr.sequence(pr.rest(200.0), pr.continuous(200.0, intensity=1.0)))
    eng = sim.make_engine()
    eng.advance(200.0, None)
    counts = {
        c: reaction_events(eng, sim, f"other H2O2 sinks in {c}") for c in ("mito_matrix", "cytosol")
    }
    ro_mito = reaction_events(eng, sim, "roMito oxidation")
    rest = {c: counts[c] / (SINK * 200.0) for c in counts}
    eng.advance(400.0, None)
    act = {c: _mean_h2o2(eng, sim, c, counts[c], 200.0, 400.0) for c in counts}
    ro_mito_act = reaction_events(eng, sim, "roMito oxidation") - ro_mito
    matrix = act["mito_matrix"] / rest["mito_matrix"]
    cytosol = act["cytosol"] / rest["cytosol"]
    print(
        f"matrix H2O2 contraction/rest {matrix:.3f}, cytosol {cytosol:.1f}; "
        f"matrix roGFP2-Orp1 oxidations {ro_mito} at rest, {ro_mito_act} contracting"
    )
    # ~1100 sink events per window: relative error ~4 % per mean, ~6 % on the ratio
    assert 0.8 < matrix < 1.25
    assert cytosol > 20  # NOX2 H2O2 stays in the cytosol: the IMM lets ~0.02 um/s through


def test_auranofin_unmasks_matrix_production():
    space = mito_column()
    rates = {}
    for f in (0.0, 1.0):
        sensor = bio.RoGFP2Orp1(name="roMito", compartment="mito_matrix", concentration=10.0)
        recipe = bio.Recipe(_modules(), [sensor], [bio.inhibitor("auranofin", f)], activity=0.0)
        sim = recipe.build(space).simulation(space, seed=2)
        eng = sim.make_engine()
        eng.advance(1200.0, None)
        before = reaction_events(eng, sim, "other H2O2 sinks in mito_matrix")
        ro = reaction_events(eng, sim, "roMito oxidation")
        eng.advance(1500.0, None)
        rates[f] = (
            _mean_h2o2(eng, sim, "mito_matrix", before, 1200.0, 1500.0),
            reaction_events(eng, sim, "roMito oxidation") - ro,
        )
    ratio = rates[1.0][0] / rates[0.0][0]
    print(
        f"matrix H2O2 after 20 min: auranofin {rates[1.0][0]:.3f} vs control "
        f"{rates[0.0][0]:.3f} molecules (x{ratio:.2f}); roGFP2-Orp1 oxidations "
        f"{rates[1.0][1]} vs {rates[0.0][1]}"
    )
    # TrxR blocked: Trx2 then Prx3 (48 uM) run out after ~15 min of matrix production,
    # leaving GPx1 and the lumped sinks (220/s vs 1180/s): about 5x. ~3400 vs ~16,000
    # sink events in the window.
    assert 3.5 < ratio < 7.0
    # the matrix sensor's oxidation flux follows (10 uM sensor: tens of events)
    assert rates[1.0][1] > 20 and rates[1.0][1] > 3 * rates[0.0][1]


@pytest.fixture(scope="module")
def sod1_runs():
    space = mito_column(nerve=True)
    out = {}
    for label, iv in (
        ("wt", ()),
        ("ko", (bio.knockout("Sod1"),)),
        ("rescue", (bio.neuron_sod1_rescue(),)),
    ):
        recipe = bio.Recipe(
            [bio.Mitochondria(), bio.Sod(), bio.PrxTrx(), bio.Membranes(), bio.Nos()],
            interventions=iv,
            activity=1.0,
        )
        sim = recipe.build(space).simulation(space, seed=4)
        (w,), eng = averaged_counts(sim, [(2.0, 32.0)], 0.02, ["O2m"])
        out[label] = (w[:, 0], reaction_events(eng, sim, "tyrosine nitration"))
    return out


CYTO, NERVE = 2, 4  # voxel indices in mito_column(nerve=True)


def test_sod1_knockout_raises_superoxide_and_nitration(sod1_runs):
    wt, ko = sod1_runs["wt"], sod1_runs["ko"]
    print(
        f"cytosolic superoxide {wt[0][CYTO]:.3g} -> {ko[0][CYTO]:.3g} molecules, "
        f"nitrations {wt[1]} -> {ko[1]}"
    )
    # superoxide leaves the IMS through VDAC; without SOD1 only spontaneous dismutation,
    # NO and the way back consume it
    assert ko[0][CYTO] > 100 * (wt[0][CYTO] + 0.01)
    assert ko[1] > 50 and ko[1] > 20 * (wt[1] + 1)


def test_neuron_sod1_rescue_restores_the_nerve_terminal(sod1_runs):
    wt, ko, rescue = (sod1_runs[k][0][NERVE] for k in ("wt", "ko", "rescue"))
    print(f"nerve-terminal superoxide: wild type {wt:.3g}, knockout {ko:.3g}, rescue {rescue:.3g}")
    assert ko > 100 * (wt + 0.01)
    assert rescue < wt + 0.05  # back to wild type (1500 samples of a ~0.001 mean)
    # the muscle side is not rescued
    assert sod1_runs["rescue"][0][CYTO] > 0.5 * sod1_runs["ko"][0][CYTO]
