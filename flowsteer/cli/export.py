"""``flowsteer export``: a workflow as a LangGraph Python module, JSON or a Mermaid diagram."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowsteer.errors import UserError
from flowsteer.workflow.ir import Workflow

__all__ = ["register", "load_workflow_arg"]

_FORMATS = ("langgraph-py", "json", "mermaid")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a workflow as a LangGraph module, JSON or Mermaid",
        description="Export a workflow (a DSL string or a workflow JSON file) as a standalone LangGraph "
                    "Python module, as JSON, or as a Mermaid diagram of its compiled graph.",
    )
    parser.add_argument("workflow", metavar="WORKFLOW",
                        help="a DSL string such as 'Plan -> Custom -> Verify ? Revise : done -> Format', "
                             "or the path of a workflow JSON file")
    parser.add_argument("--to", required=True, choices=_FORMATS, help="output format")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    parser.add_argument("--force", action="store_true", help="overwrite FILE when it already exists")
    parser.set_defaults(func=run)


def load_workflow_arg(text: str) -> Workflow:
    """A workflow from a CLI argument: a JSON file path (``*.json`` or an existing file) or DSL text."""
    path = Path(text)
    if text.strip().endswith(".json") or path.is_file():
        if not path.is_file():
            raise UserError(f"{text}: no such file; give a DSL string or the path of a workflow JSON file")
        from flowsteer.workflow.serialize import from_json

        try:
            return from_json(path.read_text(encoding="utf-8"))
        except UserError as exc:
            raise UserError(f"{text}: {exc}") from None
    from flowsteer.workflow.dsl import parse

    return parse(text)


def run(args: argparse.Namespace) -> int:
    from flowsteer.cli._console import console
    from flowsteer.integrations import export_workflow

    text = export_workflow(load_workflow_arg(args.workflow), args.to)
    if not args.output:
        # Raw text, not rich: the output is code/JSON/Mermaid meant for pipes and files, and rich
        # would expand the tabs of draw_mermaid().
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    if target.is_dir():
        raise UserError(f"{target} is a directory; give a file name with -o")
    try:
        with target.open("w" if args.force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UserError(f"{target} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from None
    console(stderr=True).print(f"wrote {target} ({args.to})", markup=False, highlight=False)
    return 0
