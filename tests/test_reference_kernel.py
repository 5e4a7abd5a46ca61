"""B1's chemistry against an independent kernel.

``benches/reference_nsm.rs`` is a textbook next-subvolume method written with
nothing but Rust's std and none of redoxfield's code (its own lattice, rates,
random numbers and queues). Both run B1's chemistry (BENCHMARKS.md) on a
2 x 1 x 1 µm box of 0.1 µm voxels with the H2O2 source in x < 0.5 µm, to
t = 0.02 s, 48 seeds each. Tolerance: every mean (diffusion events,
oxidations, reductions, births, final H2O2 and PrxOx) within 4 standard errors
of the difference (Welch); with six statistics a correct engine fails this
with probability about 4e-4.

What it catches that the analytic validation tests do not: the whole B1 path
from the Python model (unit conversions of k in 1/(M s) and µM/s, the region
mask, rounding of the Prx concentration, wall faces) to the core's counters.
The hop count is the time integral of H2O2 times the per-molecule hop rate:
an error in D, in the source rate or in the scavenging rate moves it. With 48
seeds each the test resolves about 7 % in the hop count (4 se of the
difference) and 6 % in oxidations; the birth counts are also held to their
exact Poisson mean.

The engine side runs with both exact solvers, "nsm" and "molecules" (H2O2 is the
one moving species and no reaction takes two of it), against the same 48
reference runs (computed once), same seeds and tolerance.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import redoxfield as rf

from .conftest import needs_core

pytestmark = needs_core

# The benches' build-and-run helpers (benches/ is not a package).
_spec = importlib.util.spec_from_file_location(
    "_reference", Path(__file__).resolve().parents[1] / "benches" / "_reference.py"
)
assert _spec is not None and _spec.loader is not None
_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reference)

SHAPE = (20, 10, 10)
T_END = 0.02
REPLICATES = 48
STATS = ("diffusion", "oxidations", "reductions", "births", "H2O2", "PrxOx")


@pytest.fixture(scope="module")
def reference_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("rustc") is None:
        pytest.skip("rustc is not installed (needed to build benches/reference_nsm.rs)")
    return _reference.build_reference(tmp_path_factory.mktemp("reference"))


def run_reference(binary: Path, seed: int) -> dict[str, float]:
    out = _reference.run_reference(binary, seed, SHAPE, T_END)
    return {k: out[k] for k in STATS}


def table(rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[row[k] for k in STATS] for row in rows])


@pytest.fixture(scope="module")
def reference_table(reference_binary: Path) -> np.ndarray:
    """(REPLICATES, len(STATS)) of the reference kernel, shared by both solvers."""
    return table([run_reference(reference_binary, 5000 + s) for s in range(REPLICATES)])


def run_engine(b1_model: rf.Model, seed: int, solver: str = "nsm") -> dict[str, float]:
    space = rf.Lattice(shape=SHAPE, spacing=0.1)
    space.region("source", lambda x, y, z: x < 0.5)
    sim = rf.Simulation(b1_model, space, seed=seed, solver=solver)
    sim.set_concentration("Prx", 20.0)
    engine = sim.make_engine()
    engine.advance(T_END)
    # Reactions in the order b1_model declares them.
    oxidations, reductions, births = (float(v) for v in engine.reaction_events())
    totals = engine.totals()
    return {
        "diffusion": float(engine.diffusion_events().sum()),
        "oxidations": oxidations,
        "reductions": reductions,
        "births": births,
        "H2O2": float(totals[0]),
        "PrxOx": float(totals[2]),
    }


@pytest.mark.parametrize("solver", ["nsm", "molecules"])
def test_b1_chemistry_matches_an_independent_kernel(b1_model, reference_table, solver):
    ours = table([run_engine(b1_model, 1000 + s, solver) for s in range(REPLICATES)])
    ref = reference_table
    diff = ours.mean(axis=0) - ref.mean(axis=0)
    se = np.sqrt((ours.var(axis=0, ddof=1) + ref.var(axis=0, ddof=1)) / REPLICATES)
    z = diff / se
    report = {
        k: (round(float(a), 1), round(float(b), 1), round(float(zk), 2))
        for k, a, b, zk in zip(STATS, ours.mean(axis=0), ref.mean(axis=0), z, strict=True)
    }
    print(solver, "engine mean, reference mean, z:", report)
    # The source alone is known exactly: births are Poisson with mean
    # 500 voxels x 41.5 µM/s x N_A V x t, in both codes.
    births_mean = 500 * 41.5e-6 * 6.02214076e23 * 1e-18 * T_END
    for name, sample in (("engine", ours[:, 3]), ("reference", ref[:, 3])):
        z_births = (sample.mean() - births_mean) / np.sqrt(births_mean / REPLICATES)
        assert abs(z_births) < 4, (name, sample.mean(), births_mean)
    assert np.all(np.abs(z) < 4), report
