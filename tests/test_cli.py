"""The redoxfield command line."""

import subprocess
import sys

import h5py
import pytest

from redoxfield.cli import main

from .conftest import needs_core
from .test_scenario import TINY


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


@needs_core
def test_run_writes_h5_and_png_then_info(tiny, tmp_path, capsys):
    out = tmp_path / "res.h5"
    assert main(["run", str(tiny), "--out", str(out), "--seed", "3"]) == 0
    assert out.exists()
    png = tmp_path / "res.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "events:" in printed and "totals at t = 0.02 s" in printed
    with h5py.File(out, "r") as f:
        assert f.attrs["seed"] == 3 and f.attrs["complete"]
        assert f.attrs["scenario_name"] == "tiny"
        assert f["scenario"].asstr()[()] == TINY
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    for needle in (
        "complete:    yes",
        "seed 3",
        "solver nsm",
        "lattice 6 x 3 x 2 voxels",
        "dimerise",
        "totals at t = 0.02 s",
        "reaction:dimerise",
        "scenario:    tiny",
    ):
        assert needle in info, needle


@needs_core
def test_run_quiet_no_picture_default_name(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "--quiet", "--no-picture"]) == 0
    assert (tmp_path / "tiny.h5").exists()
    assert not (tmp_path / "tiny.png").exists()
    captured = capsys.readouterr()
    assert captured.out == ""


def test_scenarios_lists_builtins(capsys):
    assert main(["scenarios"]) == 0
    assert "h2o2-burst" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "no-such-scenario"], "no scenario file or built-in scenario named"),
        (["info", "/no/such/file.h5"], "no such result file"),
    ],
)
def test_errors_one_line_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("redoxfield: error: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_scenario_file_exit_2_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("k = 3.0", "k = -3.0"))
    proc = subprocess.run(
        [sys.executable, "-m", "redoxfield.cli", "run", str(bad), "--out", str(tmp_path / "x.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "rate constant k of reaction 'B -> 2 A' = -3.0" in proc.stderr
    assert not (tmp_path / "x.h5").exists()


@needs_core
def test_run_with_another_solver(tiny, tmp_path, capsys):
    """--solver overrides the scenario's [run] solver; one the model cannot use
    is a one-line error (exit 2) naming why."""
    out = tmp_path / "b1.h5"
    argv = ["run", "h2o2-burst", "--out", str(out), "--quiet", "--no-picture"]
    argv += ["--solver", "molecules", "--seed", "2"]
    assert main(argv) == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["solver"] == "molecules" and f.attrs["complete"]
        assert "checkpoint" not in f
    capsys.readouterr()
    assert main(["run", str(tiny), "--quiet", "--solver", "molecules"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("redoxfield: error: ") and "'dimerise'" in err
    assert err.count("\n") == 1 and "Traceback" not in err
