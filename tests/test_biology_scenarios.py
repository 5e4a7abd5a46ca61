"""Every biology scenario of the catalogue runs from the CLI and writes HDF5
(issue 5). Each runs as a tiny variant -- the one-sarcomere r = 1.5 um segment
and 2 ms of simulated time -- so the suite stays fast; the variant keeps every
[biology], [protocol] and sensor entry of the shipped file."""

from __future__ import annotations

import importlib.util
import re
from importlib import resources

import h5py
import pytest

from redoxfield import cli
from redoxfield.scenario import builtin_scenarios

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None
pytestmark = pytest.mark.skipif(not HAVE_CORE, reason="compiled core not built")

BIOLOGY_SCENARIOS = sorted(
    name
    for name in builtin_scenarios()
    if "[biology]" in resources.files("redoxfield.scenarios").joinpath(f"{name}.toml").read_text()
)
REQUIRED = {
    "fiber-contraction",
    "nox2-contraction",
    "p47phox-ko",
    "gp91ds-tat",
    "auranofin-matrix",
    "sod1-ko",
    "sod1-neuron-rescue",
    "vitamin-c",
    "denervation",
    "ageing",
    "sensors-hyper7-rogfp2",
}


def tiny(text: str) -> str:
    """The scenario on a one-sarcomere r = 1.5 um segment for 2 ms."""
    subs = [
        (r"(?m)^radius = 2\.5", "radius = 1.5"),
        (r"(?m)^sarcomeres = 2", "sarcomeres = 1\nss_mito_share = 1.0"),
        (r"(?m)^t_end = [0-9.e+-]+", "t_end = 0.002"),
        (r"(?m)^dt_sample = [0-9.e+-]+", "dt_sample = 0.001"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, pattern
    return text


def test_catalogue_is_complete():
    assert set(BIOLOGY_SCENARIOS) >= REQUIRED


@pytest.mark.parametrize("name", BIOLOGY_SCENARIOS)
def test_scenario_runs_from_cli(name, tmp_path):
    text = resources.files("redoxfield.scenarios").joinpath(f"{name}.toml").read_text()
    src = tmp_path / f"{name}.toml"
    src.write_text(tiny(text))
    out = tmp_path / f"{name}.h5"
    assert cli.main(["run", str(src), "--out", str(out), "--no-picture", "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        assert bool(f.attrs["complete"])
        assert f["samples/time"].shape[0] == 3
        assert "biology" in f.attrs
