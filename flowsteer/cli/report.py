"""``flowsteer report``: one self-contained HTML page for an eval or training run folder."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of an eval or training run",
        description="Write one HTML file (inline CSS, embedded PNG curves, SVG workflow diagrams, no network) "
                    "for RUN_DIR: score tables with confidence intervals, common workflow designs and the best "
                    "and worst items of an eval run, the curves, per-step rewards and checkpoints of a "
                    "training run, or the learning curves and eval table of a bench_learning result "
                    "(benchmarks/results/learning.json). The run type is detected from the files in RUN_DIR.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="folder of `flowsteer eval --out` or `flowsteer train`, or a bench_learning JSON")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="HTML file to write (default RUN_DIR/report.html; for a JSON file, its name with .html)")
    parser.add_argument("--type", choices=("auto", "eval", "training", "learning"), default="auto", dest="run_type",
                        help="run type (default: detected)")
    parser.add_argument("--episodes", type=int, default=3, metavar="K",
                        help="best and worst items shown in an eval report (default 3)")
    parser.add_argument("--designs", type=int, default=4, metavar="K",
                        help="most common workflow designs drawn in an eval report (default 4)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    from flowsteer.cli._console import console
    from flowsteer.errors import UserError
    from flowsteer.report import write_report

    if args.episodes < 0 or args.designs < 0:
        raise UserError("--episodes and --designs must be >= 0")
    kind = None if args.run_type == "auto" else args.run_type
    path = write_report(args.run_dir, args.output, kind=kind, episodes=args.episodes, designs=args.designs)
    console().print(f"report written: {path}", highlight=False)
    return 0
