"""The ``flowsteer`` command line.

Every module in this package that defines ``register(subparsers)`` contributes one subcommand, so a
feature adds its command without editing a central list. ``register`` adds a parser and sets
``func`` (``args -> int`` exit code) with ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from flowsteer.errors import FlowSteerError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsteer",
        description="Design, run, export and train learned agentic workflows.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    for sub in subparsers.choices.values():  # one way to bring custom operators, on every command
        if not any("--operators" in a.option_strings for a in sub._actions):
            sub.add_argument("--operators", action="append", default=[], metavar="MODULE",
                             help="import MODULE first so the operators it registers are known (repeatable; "
                                  "packages listed under the 'flowsteer.operators' entry point load by themselves)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        from flowsteer.operators.registry import load_operator_modules

        load_operator_modules(getattr(args, "operators", None) or ())
        return int(func(args) or 0)
    except FlowSteerError as exc:
        from rich.markup import escape

        from flowsteer.cli._console import console

        # the message is user text: escaped, so advice such as pip install 'flowsteer[vllm]' survives
        console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
