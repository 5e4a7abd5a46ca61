"""Build and run ``benches/reference_nsm.rs``, the independent textbook NSM for
B1 (shared by bench_nsm.py, bench_suite.py and tests/test_reference_kernel.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REFERENCE_SOURCE = Path(__file__).resolve().parent / "reference_nsm.rs"


def build_reference(directory: Path) -> Path:
    """Compile the kernel with ``rustc -O`` into ``directory``; RuntimeError
    when rustc is not on PATH."""
    rustc = shutil.which("rustc")
    if rustc is None:
        raise RuntimeError("the reference kernel (benches/reference_nsm.rs) needs rustc on PATH")
    binary = directory / "reference_nsm"
    cmd = [rustc, "-O", "--edition", "2021", str(REFERENCE_SOURCE), "-o", str(binary)]
    subprocess.run(cmd, check=True)
    return binary


def run_reference(
    binary: Path,
    seed: int,
    shape: tuple[int, int, int] = (40, 40, 40),
    t_end: float = 0.05,
) -> dict[str, float]:
    """B1's chemistry on a box of ``shape`` 0.1 µm voxels to ``t_end`` (B1
    itself by default): every ``key=value`` the kernel prints."""
    out = subprocess.run(
        [str(binary), str(seed), *map(str, shape), str(t_end)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", out)}
