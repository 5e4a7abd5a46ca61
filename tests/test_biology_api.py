"""The biology API without running the core: building on different geometries,
interventions as transforms, the [biology] table and its errors (issue 5)."""

from __future__ import annotations

import numpy as np
import pytest

import redoxfield as rf
from redoxfield import biology as bio
from redoxfield.errors import ModelError, ScenarioError
from redoxfield.scenario import parse_scenario

from ._biology import mito_column


def _k(bm, name):
    return {r.name: r.k for r in bm.model.reactions}[name]


def test_recipe_builds_only_what_the_geometry_has():
    space = rf.Lattice(shape=(4, 2, 2), spacing=0.5)  # cytosol only: no membranes
    bm = bio.Recipe(bio.default_modules(), [bio.HyPer7()], activity=0.0).build(space)
    names = bm.model.species_names
    assert "Prx" in names and "HyPer7" in names
    assert "NOX2" not in names and "Prx3" not in names  # no sarcolemma, no matrix
    for sp in bm.model.species_list:
        assert sp.compartments is None or set(sp.compartments) <= {"cytosol"}


def test_static_activity_scales_contraction_driven_rates():
    space = mito_column()
    rest = bio.Recipe([bio.Nox2(), bio.Nos()], activity=0.0).build(space)
    full = bio.Recipe([bio.Nox2(), bio.Nos()], activity=1.0).build(space)
    half = bio.Recipe([bio.Nox2(), bio.Nos()], activity=0.5).build(space)
    assert _k(rest, "NOX2 assembly: p47phox") == 0.0
    assert _k(full, "NOX2 assembly: p47phox") == bio.PARAMS["k_nox2_assembly"].value
    nos = bio.PARAMS["nos_turnover"].value
    assert _k(rest, "nNOS makes NO") == pytest.approx(0.2 * nos)
    assert _k(half, "nNOS makes NO") == pytest.approx(0.6 * nos)
    # without a static level the coupling goes to the protocol machinery
    proto = bio.Recipe([bio.Nox2()]).build(space)
    rx = {r.name: r for r in proto.model.reactions}["NOX2 assembly: p47phox"]
    assert rx.activity == (0.0, 1.0)


def test_interventions_are_transforms_that_leave_the_input_alone():
    space = mito_column()
    base = bio.Recipe(bio.default_modules(), activity=1.0).build(space)
    ko = bio.knockout("Sod1")(base)
    assert all(ic.concentration == 0 for ic in ko.initial if ic.species == "SOD1")
    assert any(ic.concentration for ic in base.initial if ic.species == "SOD1")
    aur = bio.inhibitor("auranofin", 0.75)(base)
    for name in base.tags["TrxR"]:
        assert _k(aur, name) == pytest.approx(0.25 * _k(base, name))
    tat = bio.inhibitor("gp91ds-tat", 0.4)(base)
    dens = [ic.surface_density for ic in tat.initial if ic.species == "NOX2"]
    assert dens and all(d == pytest.approx(0.6 * bio.PARAMS["nox2_density"].value) for d in dens)
    den = bio.denervation()(base)
    assert all(_k(den, n) == 0 for n in base.tags["NOX2_assembly"])
    sup = bio.supplement()(base)
    assert "VitC" in sup.model.species_names and "VitC" not in base.model.species_names


def test_neuron_rescue_restores_sod1_in_the_neuron_region():
    space = mito_column(nerve=True)
    bm = bio.Recipe([bio.Sod()], interventions=[bio.neuron_sod1_rescue()]).build(space)
    assert bio.NEURON in space.regions
    np.testing.assert_array_equal(np.asarray(space.regions[bio.NEURON]), [False] * 4 + [True] * 3)
    sim = bm.simulation(space, seed=1)
    sod1 = sim.initial_counts("SOD1")
    assert sod1[:3].sum() == 0 and sod1[4:6].sum() > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bio.knockout("Sod9"), "unknown gene 'Sod9'"),
        (lambda: bio.inhibitor("aspirin", 0.5), "unknown drug 'aspirin'"),
        (lambda: bio.inhibitor("auranofin", 1.5), "fraction"),
        (lambda: bio.Nox2(density=-1.0), "Nox2.density"),
        (lambda: bio.Recipe(activity=2.0), "activity"),
        (lambda: bio.HyPer7(name="1bad"), "bad sensor name"),
    ],
)
def test_bad_input_names_the_bad_thing(call, message):
    with pytest.raises(ModelError, match=message):
        call()


def test_sensor_in_a_missing_compartment_is_an_error():
    space = rf.Lattice(shape=(2, 1, 1), spacing=0.5)
    recipe = bio.Recipe([bio.PrxTrx()], [bio.RoGFP2Orp1(compartment="mito_matrix")])
    with pytest.raises(ModelError, match="no compartment 'mito_matrix'"):
        recipe.build(space)
    space.compartment("mito_matrix", "x > 0.5")
    space.region("left", "x < 0.5")
    recipe = bio.Recipe([bio.PrxTrx()], [bio.RoGFP2Orp1(compartment="mito_matrix", region="left")])
    with pytest.raises(ModelError, match="region 'left' holds no subvolume"):
        recipe.build(space)


TOML = """
[geometry]
kind = "lattice"
shape = [4, 1, 1]
spacing = 1.0
[compartments]
extracellular = "x < 1"
[[membranes]]
name = "sarcolemma"
between = ["cytosol", "extracellular"]
[biology]
modules = ["nox2", "prx", "membranes"]
activity = 1.0
{extra}
[run]
t_end = 0.01
dt_sample = 0.01
"""


def test_biology_table_maps_onto_the_python_api():
    extra = """
[biology.nox2]
density = 50.0
[[biology.sensors]]
type = "HyPer7"
[[biology.interventions]]
type = "inhibitor"
drug = "gp91ds-tat"
fraction = 0.5
"""
    sc = parse_scenario(TOML.format(extra=extra))
    recipe = bio.Recipe(
        [bio.Nox2(density=50.0), bio.PrxTrx(), bio.Membranes()],
        [bio.HyPer7()],
        [bio.inhibitor("gp91ds-tat", 0.5)],
        activity=1.0,
    )
    space = rf.Lattice(shape=(4, 1, 1), spacing=1.0)
    space.compartment("extracellular", "x < 1")
    space.membrane("sarcolemma", between=("cytosol", "extracellular"))
    assert sc.model == recipe.build(space).model
    sim = sc.simulation()
    assert sim.initial_counts("NOX2").sum() == 25  # 50 /um^2 x 1 um^2 x (1 - 0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[biology.nox2]\ndensty = 5.0", "unknown key 'densty' in \\[biology.nox2\\]"),
        ("[biology.gpx]\ngpx = 5.0", "not in modules"),
        ("[[biology.sensors]]\ntype = 'HyPer9'", "unknown sensor type 'HyPer9'"),
        ("[[biology.interventions]]\ntype = 'knockout'\ngene = 'Foo'", "unknown gene 'Foo'"),
        ("[[biology.interventions]]\ntype = 'cure'", "unknown intervention 'cure'"),
        ("[biology.nox2]\ndensity = -5.0", "Nox2.density"),
    ],
)
def test_biology_table_errors_name_the_key(extra, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(TOML.format(extra=extra))


def test_parameter_table_is_complete_and_tagged():
    for name, p in bio.PARAMS.items():
        assert p.tag in ("abs", "model", "unverified", "flagged", "derived"), name
        assert p.source and p.unit, name
    assert "| `k_prx` | 4e+07 |" in bio.params.markdown_table()


def test_ensembles_of_a_biology_scenario_keep_its_initial_amounts(tmp_path):
    # The biology's initial amounts are ordinary [[initial]] entries of the scenario,
    # so Ensemble (which rebuilds trajectories from those entries) sees them too.
    pytest.importorskip("redoxfield._core")
    sc = parse_scenario(TOML.format(extra="[[biology.sensors]]\ntype = 'HyPer7'"))
    ens = rf.Ensemble(sc, replicates=1, parameters={"reactions/NOX2 H2O2 production/k": [5.0]})
    res = ens.run(tmp_path / "sweep.h5", serial=True)
    prx = res.counts("Prx", 0, 0)[0].sum()
    assert prx == sc.simulation().initial_counts("Prx").sum() > 0
    assert res.counts("HyPer7", 0, 0)[0].sum() > 0
