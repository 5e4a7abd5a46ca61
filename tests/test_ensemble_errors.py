"""Bad input to ensembles: clear errors, and never a partial file that looks complete.

- unknown sweep parameter (section, reaction, species, region, reserved
  interventions/protocols), empty value list, bad values: EnsembleError naming
  the parameter, raised before anything is written;
- unreachable scheduler (a closed loopback port, 1 s timeout): EnsembleError
  naming the address, nothing written;
- a trajectory that fails on its worker: the joined file is written with
  ``complete = False`` and that replicate marked missing; readers refuse it; a
  rerun computes only that trajectory;
- a shard deleted after the join: the joined file is refused (never filled).
"""

from __future__ import annotations

import socket

import h5py
import pytest

import redoxfield as rf
from redoxfield.cli import main
from redoxfield.ensemble import parse_parameter, parse_set_option, replicate_key

from .conftest import needs_core

SCENARIO = """
name = "bd"
[geometry]
shape = [2, 2, 1]
spacing = 0.5
[regions]
left = "x < 0.5"
[[species]]
name = "A"
D = 1.0
[[reactions]]
equation = "0 -> A"
flux = 10.0
name = "birth"
[[reactions]]
equation = "A -> 0"
k = 1.0
name = "death"
[[initial]]
species = "A"
count = 10
[run]
t_end = 1.0
dt_sample = 0.5
seed = 5
"""


@pytest.fixture
def scenario(tmp_path):
    p = tmp_path / "bd.toml"
    p.write_text(SCENARIO)
    return p


def _nothing_written(tmp_path) -> None:
    left = [p.name for p in tmp_path.iterdir() if p.name != "bd.toml"]
    assert left == []


def test_replicate_key_is_one_to_one():
    assert replicate_key(0, 0) == 0
    assert replicate_key(1, 0) == 2**32
    assert replicate_key(3, 5) == 3 * 2**32 + 5
    with pytest.raises(rf.EnsembleError):
        replicate_key(0, 2**32)


def test_parameter_names():
    p = parse_parameter("reactions/A + B -> C @left/k")
    assert (p.section, p.target, p.field) == ("reactions", ("A + B -> C @left",), "k")
    assert parse_parameter("initial/A@left/count").target == ("A", "left")
    assert parse_set_option("reactions/x=y/k=1,2.5") == ("reactions/x=y/k", [1, 2.5])
    for bad in ("rates/birth", "reactions/birth", "reactions/birth/K", "species/A/k", ""):
        with pytest.raises(rf.EnsembleError, match="sweep parameter"):
            parse_parameter(bad)
    with pytest.raises(rf.EnsembleError, match="not part of the model yet"):
        parse_parameter("interventions/sod1_ko/fraction")


@needs_core
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reactions/nope/k": [1.0]}, "no reaction named 'nope'"),
        ({"reactions/birth/k": [1.0]}, "given by flux"),
        ({"species/B/D": [1.0]}, "unknown species 'B'"),
        ({"initial/B/count": [1]}, "unknown species 'B'"),
        ({"initial/A@right/count": [1]}, "unknown region 'right'"),
        ({"initial/A/count": [1.5]}, "must be an integer"),
        ({"reactions/death/k": []}, "value list is empty"),
        ({"reactions/death/k": [-1.0]}, "non-negative"),
        ({"reactions/death/k": ["fast"]}, "not a number"),
        ({"protocols/train/frequency": [10.0]}, "not part of the model yet"),
    ],
)
def test_bad_sweeps_raise_before_writing(scenario, tmp_path, params, message):
    with pytest.raises(rf.EnsembleError, match=message):
        rf.Ensemble(scenario, replicates=2, parameters=params).run(tmp_path / "x.h5", serial=True)
    _nothing_written(tmp_path)


@needs_core
def test_unreachable_scheduler(scenario, tmp_path):
    with socket.socket() as s:  # a loopback port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ens = rf.Ensemble(scenario, replicates=2)
    addr = f"tcp://127.0.0.1:{port}"
    with pytest.raises(rf.EnsembleError, match=f"cannot reach the Dask scheduler at '{addr}'"):
        ens.run(tmp_path / "x.h5", scheduler=addr, timeout=1.0)
    _nothing_written(tmp_path)


@needs_core
def test_cli_sweep_errors_and_success(scenario, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    base = ["sweep", str(scenario), "-n", "2", "-o", str(out)]
    assert main([*base, "--set", "reactions/x/k=1"]) == 2
    assert "no reaction named 'x'" in capsys.readouterr().err
    assert main([*base, "--set", "species/A/D="]) == 2
    assert "value list is empty" in capsys.readouterr().err
    _nothing_written(tmp_path)
    argv = ["sweep", str(scenario), "-n", "3", "--set", "reactions/death/k=1,2", "--serial"]
    assert main([*argv, "-q", "-o", str(out)]) == 0
    with rf.EnsembleResult.load(out) as res:
        assert res.complete and res.complete_mask.shape == (2, 3)
    assert main(["info", str(out)]) == 0
    assert "2 arm(s) x 3 replicate(s)" in capsys.readouterr().out


@needs_core
def test_failed_trajectory_is_marked_and_recomputed(scenario, tmp_path):
    ens = rf.Ensemble(scenario, replicates=3, parameters={"reactions/death/k": [1.0, 2.0]})
    out = tmp_path / "sweep.h5"
    shard_dir = tmp_path / "sweep.h5.shards"
    shard_dir.mkdir()
    (shard_dir / "a00001_r000002.h5").mkdir()  # the writer's final rename will fail here
    with pytest.raises(rf.EnsembleError, match="1 of 6 trajectories failed"):
        ens.run(out, serial=True)
    with h5py.File(out, "r") as f:
        assert not bool(f.attrs["complete"])
        assert int(f.attrs["n_complete"]) == 5
        status = f["ensemble/status"].asstr()[()]
        assert status[1, 2].startswith("failed:")
        assert f["samples/counts/A"][1, 2].max() == 2**32 - 1  # the fill, never zeros
    res = rf.EnsembleResult.load(out)
    assert not res.complete
    with pytest.raises(rf.EnsembleError, match="not complete"):
        res.counts("A", 1, 2)
    with pytest.raises(rf.EnsembleError, match="not complete"):
        res.to_xarray()
    with pytest.raises(rf.EnsembleError, match="not complete"):
        res.stats()
    ds = res.to_xarray(allow_incomplete=True)
    assert bool(ds["counts"].isel(arm=1, replicate=2).isnull().all())
    assert int(res.stats(allow_incomplete=True)["n"].sel(arm=1)) == 2
    res.close()
    # the rerun computes only the missing trajectory
    (shard_dir / "a00001_r000002.h5").rmdir()
    done = []
    res = ens.run(out, serial=True, on_task_done=done.append)
    assert res.complete
    assert [(d["arm"], d["replicate"]) for d in done if not d["reused"]] == [(1, 2)]
    res.close()
    # a shard that disappears after the join is never read as fill values
    (shard_dir / "a00000_r000001.h5").unlink()
    with pytest.raises(rf.EnsembleError, match="gone"):
        rf.EnsembleResult.load(out)


@needs_core
def test_arguments(scenario, tmp_path):
    ens = rf.Ensemble(scenario, replicates=1)
    with pytest.raises(rf.EnsembleError, match="does not exist"):
        ens.run(tmp_path / "no" / "x.h5", serial=True)
    with pytest.raises(rf.EnsembleError, match="local cluster only"):
        ens.run(tmp_path / "x.h5", scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(rf.EnsembleError, match="replicates"):
        rf.Ensemble(scenario, replicates=0)
    with pytest.raises(rf.EnsembleError, match="either parameters"):
        rf.Ensemble(scenario, replicates=1, parameters={}, arms=[{}])
    with pytest.raises(rf.EnsembleError, match="t_end and dt_sample"):
        rf.Ensemble(rf.load_scenario(scenario).simulation(), replicates=1)
    _nothing_written(tmp_path)
