"""TOML scenarios: one-to-one with the Python API, strict validation, built-ins."""

import numpy as np
import pytest

import redoxfield as rf
from redoxfield.scenario import builtin_scenarios, load_scenario, parse_scenario

TINY = """
name = "tiny"
description = "a tiny test scenario"

[geometry]
kind = "lattice"
shape = [6, 3, 2]
spacing = 0.2
origin = [0.0, 0.0, 0.0]

[regions]
left = "x < 0.4"
corner = { box = { lo = [0.0, 0.0, 0.0], hi = [0.2, 0.2, 0.2] } }
right = { where = "x >= 0.8" }

[[species]]
name = "A"
D = 50.0

[[species]]
name = "B"

[[reactions]]
equation = "A + A -> B"
k = 1e6
name = "dimerise"

[[reactions]]
equation = "B -> 2 A"
k = 3.0

[[reactions]]
equation = "-> A"
flux = 100.0
region = "left"

[[reactions]]
equation = "A ->"
k = 0.5
region = "right"

[[initial]]
species = "A"
concentration = 5.0

[[initial]]
species = "B"
count = 40
region = "corner"

[run]
t_end = 0.02
dt_sample = 0.005
seed = 9
"""


def _python_equivalent():
    m = rf.Model()
    m.species("A", D=50.0)
    m.species("B")
    m.reaction("A + A -> B", k=1e6, name="dimerise")
    m.reaction("B -> 2 A", k=3.0)
    m.reaction("-> A", flux=100.0, region="left")
    m.reaction("A ->", k=0.5, region="right")
    space = rf.Lattice(shape=(6, 3, 2), spacing=0.2)
    space.region("left", lambda x, y, z: x < 0.4)
    space.region("corner", rf.Box((0, 0, 0), (0.2, 0.2, 0.2)))
    space.region("right", "x >= 0.8")
    sim = rf.Simulation(m, space, seed=9)
    sim.set_concentration("A", 5.0)
    sim.set_count("B", 40, region="corner")
    return m, space, sim


def test_tiny_scenario_equals_python_api():
    sc = parse_scenario(TINY)
    m, space, sim = _python_equivalent()
    assert sc.name == "tiny"
    assert sc.model == m
    assert sc.space.shape == space.shape and sc.space.spacing == space.spacing
    assert sc.space.regions.keys() == space.regions.keys()
    for k in space.regions:
        np.testing.assert_array_equal(sc.space.regions[k], space.regions[k])
    ssim = sc.simulation()
    np.testing.assert_array_equal(ssim.counts, sim.counts)
    assert ssim.seed == 9 and ssim.scenario_text == TINY
    for key, val in ssim.problem.engine_kwargs().items():
        other = sim.problem.engine_kwargs()[key]
        if isinstance(val, np.ndarray):
            np.testing.assert_array_equal(val, other, err_msg=key)
        else:
            assert val == other
    assert sc.run_settings.t_end == 0.02 and sc.run_settings.dt_sample == 0.005
    assert sc.simulation(seed=4).seed == 4


def test_builtin_h2o2_burst_is_b1(b1_model):
    assert "h2o2-burst" in builtin_scenarios()
    sc = load_scenario("h2o2-burst")
    assert sc.name == "h2o2-burst"
    assert sc.model == b1_model
    assert sc.space.shape == (40, 40, 40) and sc.space.spacing == (0.1, 0.1, 0.1)
    assert sc.space.origin == (0.0, 0.0, 0.0)
    src = sc.space.regions["source"]
    np.testing.assert_array_equal(src, sc.space.centers[:, 0] < 0.5)
    assert src.sum() == 8000
    sim = sc.simulation()
    assert np.all(sim.initial_counts("Prx") == 12)  # 20 uM -> 12 per voxel
    assert sim.initial_counts("H2O2").sum() == 0 and sim.initial_counts("PrxOx").sum() == 0
    rs = sc.run_settings
    assert (rs.t_end, rs.dt_sample, rs.solver) == (0.05, 0.01, "nsm")
    source = sim.problem.propensity_constants()[:, 2].sum()
    assert source == pytest.approx(2.0e5, rel=1e-3)  # B1: 2e5 molecules/s in total


def test_load_from_path(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(TINY.replace('name = "tiny"\n', ""))
    sc = load_scenario(p)
    assert sc.name == "mine"  # default: file stem


def _bad(fragment_replace, fragment_expected):
    old, new = fragment_replace
    assert old in TINY
    with pytest.raises(ValueError) as exc:
        parse_scenario(TINY.replace(old, new, 1))
    assert fragment_expected in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (("D = 50.0", "D = -1.0"), "diffusion coefficient D of species 'A' = -1.0"),
        (("D = 50.0", 'D = "fast"'), "species[0].D must be"),
        (("D = 50.0", "Dx = 50.0"), "unknown key 'Dx' in species[0]"),
        (("k = 3.0", "k = -3.0"), "rate constant k of reaction 'B -> 2 A' = -3.0"),
        (("k = 3.0", "k = nan"), "rate constant k of reaction 'B -> 2 A' = nan"),
        (("k = 3.0", "k = inf"), "= inf"),
        (('equation = "B -> 2 A"', 'equation = "B -> 2 Q"'), "unknown species 'Q'"),
        (('equation = "B -> 2 A"', 'equation = "A + B + A -> 0"'), "has order 3"),
        (('equation = "B -> 2 A"', 'equation = "B => A"'), "malformed reaction"),
        (('left = "x < 0.4"', 'left = "x < -1"'), "region 'left' is empty"),
        (('left = "x < 0.4"', "left = \"__import__('os')\""), "not allowed"),
        (('right = { where = "x >= 0.8" }', "right = 3"), "[regions].right must be"),
        (("count = 40", "count = -40"), "count of 'B' = -40 must not be negative"),
        (("count = 40", "count = 99999999999999"), "overflows"),
        (('species = "A"\nconcentration', 'species = "Z"\nconcentration'), "unknown species 'Z'"),
        (("concentration = 5.0", "concentration = 5.0\ncount = 3"), "exactly one of"),
        (('region = "corner"', 'region = "middle"'), "unknown region 'middle'"),
        (('region = "right"', 'region = "middle"'), "unknown region 'middle'"),
        (("t_end = 0.02", "t_end = 0.0"), "[run].t_end = 0.0"),
        (("seed = 9", "seed = -9"), "[run].seed = -9"),
        (("seed = 9", 'solver = "ode"'), "[run].solver 'ode'"),
        (('kind = "lattice"', 'kind = "voronoi"'), "kind 'voronoi'"),
        (("shape = [6, 3, 2]", "shape = [6, 3]"), "shape"),
        (("spacing = 0.2", "spacing = 0"), "spacing"),
        (("[run]", "[runs]"), "unknown key 'runs'"),
        (("[run]\n", "[run]\nt_stop = 1\n"), "unknown key 't_stop' in [run]"),
        (("t_end = 0.02", "t_end = 0.02 0.03"), "not valid TOML"),
    ],
)
def test_bad_scenarios_name_the_problem(replace, expected):
    _bad(replace, expected)


def test_missing_sections():
    with pytest.raises(ValueError, match="missing key 'geometry'"):
        parse_scenario("[run]\nt_end = 1\ndt_sample = 1\n")
    text = TINY.replace("[run]\nt_end = 0.02\ndt_sample = 0.005\nseed = 9\n", "")
    with pytest.raises(ValueError, match="missing key 'run'"):
        parse_scenario(text)


def test_unknown_builtin():
    with pytest.raises(ValueError, match="no scenario file or built-in scenario named 'nope'"):
        load_scenario("nope")
