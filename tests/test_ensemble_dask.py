"""Ensembles on a real dask.distributed LocalCluster of 2 worker processes.

- A 2-arm x 10-replicate sweep: the joined file holds every (arm, replicate)
  exactly once, and every sample (counts, totals, region totals, event counters)
  equals a serial run of the same sweep bit for bit.
- A worker process is killed (SIGKILL by pid) while it runs a trajectory: the
  sweep still completes, the trajectory in flight on the dead worker is
  recomputed elsewhere, and every replicate equals the serial run bit for bit.
- Statistics folded on the workers (chunks merged with Chan's formula) equal
  those folded in process, up to a relative 1e-12 (rounding of the merge order).

Fixed seeds; exact equality is the tolerance for the trajectories.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest

from .conftest import needs_core

pytestmark = [needs_core, pytest.mark.timeout(120)]

distributed = pytest.importorskip("distributed")


def _model(flux: float = 40.0, D: float = 2.0):
    import redoxfield as rf

    m = rf.Model()
    m.species("A", D=D)
    m.reaction("0 -> A", flux=flux, name="birth")
    m.reaction("A -> 0", k=1.0, name="death")
    space = rf.Lattice(shape=(3, 2, 1), spacing=0.5)
    space.region("left", "x < 0.5")
    return m, space


def _ensemble(replicates: int = 10, t_end: float = 2.0, flux: float = 40.0, D: float = 2.0):
    import redoxfield as rf

    m, space = _model(flux, D)
    sim = rf.Simulation(m, space, seed=20261127)
    sim.set_count("A", int(flux))
    return rf.Ensemble(
        sim,
        replicates=replicates,
        parameters={"reactions/death/k": [1.0, 2.0]},
        t_end=t_end,
        dt_sample=0.25,
    )


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    c = distributed.Client(cluster, set_as_default=False)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


def _samples(path) -> dict[str, np.ndarray]:
    """Every sample dataset of a joined file, read through the virtual datasets."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and (
                name.startswith("samples/") or name.startswith("analysis/")
            ):
                out[name] = obj[()]

        f.visititems(visit)
    return out


def _assert_same_trajectories(a, b) -> None:
    sa, sb = _samples(a), _samples(b)
    assert sorted(sa) == sorted(sb)
    assert "samples/counts/A" in sa and "analysis/regions/left/total" in sa
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def _assert_each_once(path, n_arms, n_reps) -> None:
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"])
        assert f["ensemble/complete"][()].all()
        keys = f["ensemble/replicate_key"][()]
        shards = f["ensemble/shard"].asstr()[()]
    assert keys.shape == (n_arms, n_reps)
    assert len(set(keys.ravel().tolist())) == n_arms * n_reps
    seen = set()
    for j in range(n_arms):
        for i in range(n_reps):
            with h5py.File(path.parent / shards[j, i], "r") as s:
                assert (int(s.attrs["ensemble_arm"]), int(s.attrs["ensemble_replicate"])) == (j, i)
                assert int(s.attrs["replicate"]) == int(keys[j, i]) == (j << 32) | i
                assert bool(s.attrs["complete"])
                seen.add((j, i))
    assert len(seen) == n_arms * n_reps
    # no temporary file left behind
    assert not [p for p in (path.parent / f"{path.name}.shards").iterdir() if p.suffix == ".part"]


def test_two_processes_equal_serial_bit_for_bit(client, tmp_path):
    ens = _ensemble()
    res = ens.run(tmp_path / "dask.h5", client=client)
    ser = ens.run(tmp_path / "serial.h5", serial=True)
    assert res.complete and ser.complete
    _assert_each_once(tmp_path / "dask.h5", 2, 10)
    _assert_same_trajectories(tmp_path / "dask.h5", tmp_path / "serial.h5")
    # both worker processes did work, and none of it in this process
    with h5py.File(tmp_path / "dask.h5", "r") as f:
        shards = f["ensemble/shard"].asstr()[()].ravel()
    pids = set()
    for s in shards:
        with h5py.File(tmp_path / s, "r") as h:
            pids.add(int(h.attrs["ensemble_pid"]))
    assert len(pids) == 2 and os.getpid() not in pids
    # one trajectory rebuilt alone from (seed, arm, replicate) agrees too
    alone = ens.simulation(1, 7).run(2.0, 0.25)
    np.testing.assert_array_equal(alone.counts("A"), res.counts("A", 1, 7))
    # the arms differ (death rate 1 vs 2) and to_xarray has the sweep dims
    ds = res.to_xarray()
    assert ds["counts"].dims == ("arm", "replicate", "time", "subvolume", "species")
    assert ds["counts"].shape == (2, 10, 9, 6, 1)
    np.testing.assert_array_equal(ds["reactions/death/k"].values, [1.0, 2.0])
    np.testing.assert_array_equal(
        ds["counts"].sel(arm=1, replicate=3, species="A").values, ser.counts("A", 1, 3)
    )
    # statistics folded on the workers == folded here (Chan merge vs one Welford pass)
    on_workers = res.stats(by="subvolume", client=client)
    here = res.stats(by="subvolume")
    for v in ("mean", "var"):
        np.testing.assert_allclose(on_workers[v].values, here[v].values, rtol=1e-12, atol=1e-12)
    # a rerun reuses every shard (idempotent) and reproduces the same file content
    done = []
    ens.run(tmp_path / "dask.h5", client=client, on_task_done=done.append)
    assert len(done) == 20 and all(d["reused"] for d in done)
    _assert_same_trajectories(tmp_path / "dask.h5", tmp_path / "serial.h5")
    res.close()
    ser.close()


def test_killed_worker_loses_nothing(client, tmp_path):
    # ~0.15 s trajectories so that tasks are in flight when the worker dies
    ens = _ensemble(replicates=10, t_end=10.0, flux=300.0, D=20.0)
    pids = client.run(os.getpid)  # worker address -> pid
    assert len(pids) == 2
    box: dict = {}

    def sweep():
        try:
            box["result"] = ens.run(tmp_path / "killed.h5", client=client)
        except BaseException as exc:  # pragma: no cover - reported below
            box["error"] = exc

    th = threading.Thread(target=sweep)
    th.start()
    shard_dir = tmp_path / "killed.h5.shards"
    victim, in_flight = None, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and victim is None:
        done = list(shard_dir.glob("a*_r*.h5")) if shard_dir.is_dir() else []
        if len(done) >= 2:
            for addr, keys in client.processing().items():
                if keys and addr in pids:
                    victim, in_flight = addr, list(keys)
                    break
        time.sleep(0.02)
    assert victim is not None, "no task was in flight"
    os.kill(pids[victim], signal.SIGKILL)
    time.sleep(0.05)
    present = {p.name for p in shard_dir.glob("a*_r*.h5")}
    th.join(timeout=90)
    assert not th.is_alive()
    assert "error" not in box, box.get("error")
    res = box["result"]
    assert res.complete
    _assert_each_once(tmp_path / "killed.h5", 2, 10)
    # the trajectories that were running on the dead worker were redone by another process
    with h5py.File(tmp_path / "killed.h5", "r") as f:
        shards = f["ensemble/shard"].asstr()[()].ravel()
    writers = {}
    for s in shards:
        with h5py.File(tmp_path / s, "r") as h:
            writers[h.attrs["ensemble_task"]] = int(h.attrs["ensemble_pid"])
    tasks = {t.token[:16]: t for t in ens.tasks()}
    assigned = [tasks[str(k).rsplit("-", 1)[1]] for k in in_flight if "-traj-" in str(k)]
    lost = [t for t in assigned if t.shard not in present]
    assert lost, "every task of the killed worker had finished before the kill"
    for t in lost:
        assert writers[t.token] != pids[victim]
    wall = res.file["ensemble/wall_seconds"][()]
    print(f"killed worker had {len(lost)} unfinished task(s); trajectories {wall.mean():.2f} s")
    ser = ens.run(tmp_path / "serial.h5", serial=True)
    _assert_same_trajectories(tmp_path / "killed.h5", tmp_path / "serial.h5")
    res.close()
    ser.close()
