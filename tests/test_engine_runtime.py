"""Run-time behaviour of the compiled engine seen from Python: a real Ctrl-C
(SIGINT) during a run, the GIL released while the core runs, and a count
overflow in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import redoxfield as rf

from .conftest import needs_core

pytestmark = needs_core


def _run_b1_script(out: str) -> str:
    return (
        "import redoxfield as rf\n"
        "sc = rf.load_scenario('h2o2-burst')\n"
        "sim = sc.simulation(seed=1)\n"
        "print('started', flush=True)\n"
        f"sim.run(t_end=5.0, dt_sample=0.001, output={out!r})\n"
    )


def _interrupt_script(
    script: str, after_s: float, timeout_s: float
) -> tuple[subprocess.Popen, str, str]:
    """Run `script` in a new interpreter; once it prints "started", wait
    `after_s` and send it a real SIGINT. Returns the process, the rest of its
    stdout and its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout_s)
    return proc, out, err


def test_sigint_stops_run_cleanly_with_keyboard_interrupt(tmp_path):
    """A real SIGINT mid-run: the process ends with KeyboardInterrupt, and the
    file exists under its final name, is marked incomplete and holds the samples
    written so far (each readable, totals consistent with the counts)."""
    out = tmp_path / "interrupted.h5"
    proc, _, err = _interrupt_script(_run_b1_script(str(out)), after_s=2.0, timeout_s=60)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    with rf.Result.load(out) as res:
        assert not res.complete
        n = res.n_samples
        assert 1 <= n < 5001
        counts = res.counts("H2O2")
        assert counts.shape == (n, 64000)
        np.testing.assert_array_equal(counts.sum(axis=1), res.total("H2O2"))
        assert np.all(np.diff(res.times) > 0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "interrupted.h5" in names
    assert not [n for n in names if n.endswith(".part")], names


def test_gil_is_released_while_the_core_runs():
    """While one thread is inside NsmEngine.advance, another Python thread keeps
    running. With the GIL held for the whole call the counter would stay near 0
    (the core never yields it); released, it counts thousands of iterations."""
    m = rf.Model()
    m.species("A", D=1000.0)
    sim = rf.Simulation(m, rf.Lattice((20, 20, 20), spacing=0.1), seed=2)
    sim.set_count("A", 2000)
    engine = sim.make_engine()
    done = threading.Event()

    def work():
        engine.advance(0.02)
        done.set()

    thread = threading.Thread(target=work)
    counter = 0
    thread.start()
    while not done.is_set():
        counter += 1
    thread.join()
    assert engine.total_events > 1_000_000
    assert counter > 10_000


def test_count_overflow_during_run_raises_and_keeps_file(tmp_path):
    """A source into a subvolume already at 2**32 - 1 molecules must stop the run
    with a clear error naming the species, never wrap around."""
    m = rf.Model()
    m.species("A")
    m.reaction("-> A", k=1.0)
    sim = rf.Simulation(m, rf.Lattice((1, 1, 1), spacing=1.0), seed=1)
    sim.set_count("A", 2**32 - 1)
    out = tmp_path / "overflow.h5"
    with pytest.raises(RuntimeError, match="count of 'A' in subvolume 0 would exceed"):
        sim.run(t_end=1000.0, dt_sample=1.0, output=out)
    with rf.Result.load(out) as res:
        assert not res.complete
        assert np.all(res.total("A") == 2**32 - 1)
    assert os.path.exists(out)


_LONG_OPSPLIT_STEP = """
import redoxfield as rf
from redoxfield import _core as core

m = rf.Model()
m.species("A")
m.reaction("A -> A + A", k=1.0)
opts = {"tau": 100.0}
sim = rf.Simulation(
    m, rf.Lattice((1, 1, 1), spacing=1.0), seed=1, solver="opsplit", solver_options=opts
)
sim.set_count("A", 10_000_000)
engine = sim.make_engine()
print("started", flush=True)
try:
    engine.advance(100.0)
except KeyboardInterrupt:
    print("interrupted at", engine.time, flush=True)
try:
    engine.advance(100.0)
except core.CoreError as exc:
    print("refused:", exc, flush=True)
"""


def test_sigint_stops_a_long_opsplit_step():
    """One operator-splitting step of explosive autocatalysis (A -> 2 A from
    1e7 molecules, tau = 100 s) is an exact SSA of about 1e9 events before its
    runaway bound (tens of seconds). A real SIGINT inside that step must raise
    KeyboardInterrupt (without the in-step cancel check the step runs on and
    ends in the runaway ValueError instead), leave the time at the step's start
    and make the solver refuse to go on from its partial state."""
    proc, out, err = _interrupt_script(_LONG_OPSPLIT_STEP, after_s=1.0, timeout_s=120)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "interrupted at 0.0", out
    assert lines[1].startswith("refused: cancelled in the middle of the step from t = 0 s"), out
