"""Command line: ``redoxfield run|resume|info|scenarios|view|sweep`` (see ``redoxfield --help``).

Errors print one line (``redoxfield: error: ...``) and exit with status 2; set
``REDOXFIELD_DEBUG=1`` to get the traceback instead. Ctrl-C during a run leaves
the output file with ``complete = False`` and exits with status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

DEFAULT_SCENARIO = "h2o2-burst"


def _parser() -> argparse.ArgumentParser:
    from .simulation import SOLVERS

    p = argparse.ArgumentParser(
        prog="redoxfield",
        description="Stochastic spatial reaction-diffusion of H2O2 redox signalling.",
    )
    p.add_argument("--version", action="version", version=f"redoxfield {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run a scenario (TOML file or built-in name)")
    r.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"TOML scenario file or built-in name (default: {DEFAULT_SCENARIO})",
    )
    r.add_argument("--out", "-o", metavar="FILE", help="HDF5 output (default: <scenario name>.h5)")
    r.add_argument("--seed", type=int, metavar="N", help="random seed (overrides the scenario)")
    r.add_argument(
        "--solver",
        choices=SOLVERS,
        help="solver (overrides the scenario's [run] solver, without its solver_options)",
    )
    r.add_argument("--no-picture", action="store_true", help="do not write FILE.png")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    r.add_argument(
        "--max-output",
        type=float,
        metavar="GIB",
        default=50.0,
        help="refuse a run whose output would exceed GIB GiB before compression (default 50)",
    )
    r.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="S",
        default=60.0,
        help="seconds of wall time between checkpoints in the output (default 60)",
    )

    rr = sub.add_parser(
        "resume", help="continue an interrupted run from its last checkpoint (same file)"
    )
    rr.add_argument("file", help="HDF5 result file of an interrupted run")
    rr.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="summarise a result file")
    i.add_argument("file", help="HDF5 result file")

    sub.add_parser("scenarios", help="list the built-in scenarios")

    v = sub.add_parser(
        "view",
        help="render a result file (PyVista, offscreen): PNG and/or MP4/GIF",
        description="Render a field of a result file offscreen. Concentrations in uM; "
        "the colour bar spans the data's range unless --clim is given.",
    )
    v.add_argument("file", help="HDF5 result file")
    v.add_argument("--species", "-s", help="species (default: the first mobile species)")
    v.add_argument(
        "--t",
        metavar="T",
        help="time in s (nearest sample; default the last), 'mean', or T0:T1 (time average)",
    )
    v.add_argument(
        "--kind",
        choices=("slice", "isosurface", "volume", "membrane"),
        default="slice",
        help="picture kind (default: slice)",
    )
    v.add_argument("--log", action="store_true", help="logarithmic colour scale")
    v.add_argument("--smooth", type=float, metavar="SIGMA", help="Gaussian smoothing, um")
    v.add_argument("--clim", type=float, nargs=2, metavar=("LO", "HI"), help="colour range, uM")
    v.add_argument("--out", "-o", metavar="PNG", help="picture (default: FILE.<kind>.png)")
    v.add_argument("--movie", metavar="MP4|GIF", help="also write a movie over the samples")
    v.add_argument("--fps", type=float, default=4.0, help="movie frames per second (default 4)")
    w = sub.add_parser(
        "sweep",
        help="run an ensemble / parameter sweep on Dask (docs/ensembles.md)",
        description="Replicates of a scenario over the Cartesian product of the --set "
        "values, one HDF5 shard per trajectory in FILE.shards/, joined into FILE.",
    )
    w.add_argument("scenario", help="TOML scenario file or built-in name")
    w.add_argument("--replicates", "-n", type=int, required=True, metavar="N")
    w.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=v1,v2,...",
        help="sweep a parameter, e.g. 'reactions/birth/k=1,2' (repeatable; see "
        "docs/ensembles.md for the names)",
    )
    w.add_argument("--out", "-o", metavar="FILE", help="joined HDF5 (default: <scenario>-sweep.h5)")
    w.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler address")
    w.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: cores)"
    )
    w.add_argument("--serial", action="store_true", help="run in this process, without Dask")
    w.add_argument("--seed", type=int, metavar="N", help="random seed (overrides the scenario)")
    w.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="scheduler connect timeout"
    )
    w.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    return p


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .ensemble import Ensemble, parse_set_option
    from .errors import EnsembleError
    from .scenario import load_scenario

    params: dict[str, list[float | int]] = {}
    for text in args.set:
        name, values = parse_set_option(text)
        if name in params:
            raise EnsembleError(f"--set {name} is given twice")
        params[name] = values
    if args.seed is not None and args.seed < 0:
        raise EnsembleError(f"--seed {args.seed} must not be negative")
    sc = load_scenario(args.scenario)
    ens = Ensemble(sc, replicates=args.replicates, parameters=params, seed=args.seed)
    out = Path(args.out) if args.out else Path(f"{sc.name}-sweep.h5")
    if not args.quiet:
        where = (
            "in this process"
            if args.serial
            else f"on {args.scheduler}"
            if args.scheduler
            else f"on a local cluster of {args.workers or os.cpu_count()} processes"
        )
        print(
            f"redoxfield {__version__}: {ens.n_arms} arm(s) x {ens.replicates} replicate(s) of "
            f"{sc.name!r}, seed {ens.seed}, {where} -> {out}",
            file=sys.stderr,
        )
    try:
        res = ens.run(
            out,
            scheduler=args.scheduler,
            workers=args.workers,
            serial=args.serial,
            progress=not args.quiet,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        print(
            f"redoxfield: interrupted; finished trajectories are in {out} (complete = false); "
            "rerun the same command to compute the rest",
            file=sys.stderr,
        )
        return 130
    with res:
        if not args.quiet:
            print(res.summary())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .scenario import load_scenario
    from .viz import plot_summary

    sc = load_scenario(args.scenario)
    out = Path(args.out) if args.out else Path(f"{sc.name}.h5")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed} must not be negative")
    sim = sc.simulation(seed=args.seed, solver=args.solver)
    rs = sc.run_settings
    if not args.quiet:
        print(
            f"redoxfield {__version__}: scenario {sc.name!r}, {sim.graph.n_subvolumes} "
            f"subvolumes, t_end = {rs.t_end:g} s, seed {sim.seed}, solver {sim.solver} -> {out}",
            file=sys.stderr,
        )
    try:
        res = sim.run(
            rs.t_end,
            rs.dt_sample,
            output=out,
            progress=not args.quiet,
            max_output_bytes=int(args.max_output * 2**30),
            checkpoint_interval=args.checkpoint_every,
        )
    except KeyboardInterrupt:
        print(
            f"redoxfield: interrupted; the samples so far are in {out} (complete = false); "
            f"continue with: redoxfield resume {out}",
            file=sys.stderr,
        )
        return 130
    with res:
        if not args.no_picture:
            png = plot_summary(res, out.with_suffix(".png"), sc.picture_species)
        if not args.quiet:
            ev = res.events
            wall = float(res.attrs.get("wall_seconds", 0.0))
            cpu = float(res.attrs.get("cpu_seconds", 0.0))
            print(f"wrote {out}" + ("" if args.no_picture else f" and {png}"))
            print(
                f"events: {ev['total']} ({ev['diffusion']} diffusion, {ev['reaction']} reaction) "
                f"in {wall:.2f} s wall"
                + (f", {ev['total'] / cpu:.3g} events per CPU-second" if cpu > 0 else "")
            )
            t = res.times
            totals = res.totals[-1]
            print(
                f"totals at t = {t[-1]:g} s: "
                + ", ".join(f"{s} {int(n)}" for s, n in zip(res.species, totals, strict=True))
            )
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from .simulation import Simulation

    try:
        res = Simulation.resume(args.file, progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            f"redoxfield: interrupted again; continue with: redoxfield resume {args.file}",
            file=sys.stderr,
        )
        return 130
    with res:
        if not args.quiet:
            print(f"finished {args.file}: {res.n_samples} samples, t = {res.times[-1]:g} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import h5py

    from .result import Result

    try:
        with h5py.File(args.file, "r") as f:
            is_ensemble = f.attrs.get("format") == "redoxfield-ensemble"
    except OSError:
        is_ensemble = False
    if is_ensemble:
        from .ensemble_result import EnsembleResult

        with EnsembleResult.load(args.file) as ens:
            print(ens.summary())
        return 0
    with Result.load(args.file) as res:
        print(res.summary())
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenario import builtin_scenarios

    for name, desc in builtin_scenarios().items():
        print(f"{name:<20} {desc}")
    return 0


def _time_spec(text: str | None) -> float | str | tuple[float, float] | None:
    if text is None or text == "mean":
        return text
    if ":" in text:
        a, b = text.split(":", 1)
        return (float(a), float(b))
    return float(text)


def _cmd_view(args: argparse.Namespace) -> int:
    from .result import Result
    from .viz.render import animate, render

    src = Path(args.file)
    t = _time_spec(args.t)
    opts = {"log": args.log, "smooth": args.smooth, "clim": tuple(args.clim) if args.clim else None}
    with Result.load(src) as res:
        out = Path(args.out) if args.out else src.with_suffix(f".{args.kind}.png")
        r = render(res, args.species, t, args.kind, path=out, **opts)
        print(
            f"wrote {out}: {r.field.description}, {args.kind}, colour range "
            f"{r.clim[0]:.4g} to {r.clim[1]:.4g} {r.field.unit}"
        )
        if args.movie:
            animate(res, args.species, args.movie, args.kind, fps=args.fps, **opts)
            print(f"wrote {args.movie}: {res.n_samples} frames")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``redoxfield`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = {
        "run": _cmd_run,
        "resume": _cmd_resume,
        "info": _cmd_info,
        "scenarios": _cmd_scenarios,
        "view": _cmd_view,
        "sweep": _cmd_sweep,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("redoxfield: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("REDOXFIELD_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"redoxfield: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
