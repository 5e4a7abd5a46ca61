"""Command line: ``redoxfield run|info|scenarios`` (see ``redoxfield --help``).

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
    r.add_argument("--no-picture", action="store_true", help="do not write FILE.png")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")

    i = sub.add_parser("info", help="summarise a result file")
    i.add_argument("file", help="HDF5 result file")

    sub.add_parser("scenarios", help="list the built-in scenarios")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .scenario import load_scenario
    from .viz import plot_summary

    sc = load_scenario(args.scenario)
    out = Path(args.out) if args.out else Path(f"{sc.name}.h5")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed} must not be negative")
    sim = sc.simulation(seed=args.seed)
    rs = sc.run_settings
    if not args.quiet:
        print(
            f"redoxfield {__version__}: scenario {sc.name!r}, {sim.graph.n_subvolumes} "
            f"subvolumes, t_end = {rs.t_end:g} s, seed {sim.seed} -> {out}",
            file=sys.stderr,
        )
    try:
        res = sim.run(rs.t_end, rs.dt_sample, output=out, progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            f"redoxfield: interrupted; the samples so far are in {out} (complete = false)",
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


def _cmd_info(args: argparse.Namespace) -> int:
    from .result import Result

    with Result.load(args.file) as res:
        print(res.summary())
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenario import builtin_scenarios

    for name, desc in builtin_scenarios().items():
        print(f"{name:<20} {desc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``redoxfield`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = {"run": _cmd_run, "info": _cmd_info, "scenarios": _cmd_scenarios}[args.command]
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
