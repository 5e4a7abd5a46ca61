"""Build and run ``benches/reference_nsm.rs``, the independent textbook NSM for
B1 (shared by bench_nsm.py and bench_suite.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REFERENCE_SOURCE = Path(__file__).resolve().parent / "reference_nsm.rs"


def build_reference(directory: Path) -> Path:
    rustc = shutil.which("rustc")
    if rustc is None:
        raise SystemExit("the reference kernel (benches/reference_nsm.rs) needs rustc on PATH")
    binary = directory / "reference_nsm"
    cmd = [rustc, "-O", "--edition", "2021", str(REFERENCE_SOURCE), "-o", str(binary)]
    subprocess.run(cmd, check=True)
    return binary


def run_reference(binary: Path, seed: int) -> dict[str, float]:
    """B1 (40 x 40 x 40 voxels, t = 0.05 s) on the reference kernel."""
    out = subprocess.run(
        [str(binary), str(seed), "40", "40", "40", "0.05"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", out)}
