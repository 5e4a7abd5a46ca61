"""Make every picture of docs/gallery.md, and time a 1M-subvolume frame.

    python benches/make_gallery.py            # writes docs/img/gallery_*.png
    python benches/make_gallery.py --quick    # skip the 1M-subvolume timing

Runs the built-in scenario B1 (`h2o2-burst`) exactly as shipped except that it is
sampled every 1 ms instead of 10 ms (sampling does not change the trajectory's
law; more samples make honest time averages), twice (seeds 1 and 2) for the
ensemble bands. About a minute on two cores. Prints the render timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import redoxfield as rf
from redoxfield import viz

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
MAX_BYTES = 300_000


def _shrink(path: Path) -> Path:
    """Keep a PNG under MAX_BYTES (palette quantisation when needed)."""
    from PIL import Image

    if path.stat().st_size > MAX_BYTES * 0.93:
        im = Image.open(path).convert("RGB")
        im.quantize(colors=200, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    size = path.stat().st_size
    print(f"  {path.relative_to(ROOT)}  {size / 1e3:.0f} kB")
    assert size < MAX_BYTES, path
    return path


def b1_runs(tmp: Path) -> list[rf.Result]:
    sc = rf.load_scenario("h2o2-burst")
    out = []
    for seed in (1, 2):
        t0 = time.perf_counter()
        res = sc.simulation(seed=seed).run(
            sc.run_settings.t_end, 0.001, output=tmp / f"b1_seed{seed}.h5"
        )
        print(f"B1 seed {seed}: {time.perf_counter() - t0:.1f} s")
        out.append(res)
    return out


def gallery(runs: list[rf.Result]) -> None:
    res = runs[0]
    win = (0.01, 0.05)  # after the ~5 ms H2O2 lifetime: quasi-steady, average it
    size = (900, 680)
    print("pictures:")
    for kind, species, t, smooth, name in (
        ("slice", "H2O2", win, 0.2, "gallery_b1_slice.png"),
        ("isosurface", "H2O2", win, 0.3, "gallery_b1_isosurface.png"),
        ("volume", "H2O2", win, 0.2, "gallery_b1_volume.png"),
        ("membrane", "PrxOx", None, None, "gallery_b1_membrane.png"),
    ):
        res.plot(species, t=t, kind=kind, smooth=smooth, window_size=size, path=IMG / name)
        _shrink(IMG / name)
    res.plot(
        "H2O2",
        t=win,
        kind="slice",
        log=True,
        smooth=0.1,
        window_size=size,
        path=IMG / "gallery_b1_log.png",
    )
    _shrink(IMG / "gallery_b1_log.png")
    # B1 has no genetically encoded sensor: Prx/PrxOx is the oxidisable pair it has
    viz.plot_virtual_microscopy(
        res,
        "PrxOx",
        "Prx",
        IMG / "gallery_b1_microscopy.png",
        t=(0.04, 0.05),
        microscope=viz.Microscope(pixel_size=0.2),
        smooth_truth=0.2,
    )
    _shrink(IMG / "gallery_b1_microscopy.png")
    viz.plot_timecourse(runs, IMG / "gallery_b1_timecourse.png", mean_species="H2O2")
    _shrink(IMG / "gallery_b1_timecourse.png")
    viz.plot_profile(runs, IMG / "gallery_b1_profile.png", "H2O2", "source", t=win)
    _shrink(IMG / "gallery_b1_profile.png")


def time_1m(tmp: Path) -> None:
    """Render a 160 x 160 x 40 lattice (1,024,000 subvolumes): slice and volume."""
    space = rf.Lattice(shape=(160, 160, 40), spacing=0.1)
    space.region("source", "x < 0.5")
    m = rf.Model()
    m.species("X")
    sim = rf.Simulation(m, space, seed=1)
    sim.set_count("X", 3_000_000)
    res = sim.run(0.001, 0.001, output=tmp / "big.h5")
    print(f"1M-subvolume frame ({res.n_subvolumes} subvolumes), 1024 x 768 offscreen:")
    for kind in ("slice", "volume", "slice", "volume"):
        t0 = time.perf_counter()
        res.plot("X", kind=kind, window_size=(1024, 768))
        print(f"  {kind:<7} {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    viz.field(res, "X", smooth=0.2)
    print(f"  field read + Gaussian smoothing {time.perf_counter() - t0:.2f} s")
    res.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1M-subvolume timing")
    args = ap.parse_args(argv)
    IMG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = b1_runs(tmp)
        gallery(runs)
        for r in runs:
            r.close()
        if not args.quick:
            time_1m(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
