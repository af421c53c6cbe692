"""A designed FlowSteer workflow served as a LangGraph graph (for `langgraph dev` and scripts).

`examples/langgraph.json` points LangGraph Studio at `graph` below (and at the director graph of
`director_graph.py`); from the repository root, like every example:

    langgraph dev --config examples/langgraph.json

Run it directly to answer one question and see each node's update stream by:

    python examples/designed_workflow.py "What is 12 + 30?"
    python examples/designed_workflow.py --export designed_graph.py   # standalone module

The executor is $FLOWSTEER_EXECUTOR (a backend spec: "embedded", "openai:gpt-4o-mini",
"hf:PATH") or, unset, the shipped SimulatedExecutor fake, so importing this file needs no network;
the fake knows the answers of the demo questions only (any other question gets a noisy guess).
Set $FLOWSTEER_WORKFLOW to a DSL string to serve another design.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _offline, also when `langgraph dev` loads this file

from _offline import DEMO_ANSWERS  # noqa: E402
from langgraph.types import Overwrite

from flowsteer.integrations import compile_workflow, default_executor, export_workflow
from flowsteer.workflow.dsl import parse

# What a Flow-Director designed for a math word problem: plan, solve two ways, vote, check and
# revise up to three times, then format the answer.
DESIGN = os.environ.get(
    "FLOWSTEER_WORKFLOW",
    "Plan -> [Programmer, Custom] -> ScEnsemble -> (Verify ? Revise : done) * 3 -> Format",
)

workflow = parse(DESIGN)
# offline, the fake executor knows the demo questions' answers (anything else gets a noisy guess)
graph = compile_workflow(workflow, executor=default_executor(answers=DEMO_ANSWERS), name="designed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Natalia sold 48 clips in April and half as many "
                        "in May. How many clips did she sell altogether?")
    parser.add_argument("--export", metavar="FILE", help="also write the workflow as a standalone module")
    args = parser.parse_args()
    print(f"workflow: {workflow.dsl}")
    answer = ""
    for update in graph.stream({"question": args.question}, stream_mode="updates"):
        for node, values in update.items():
            values = values or {}
            entries = values.get("trace") or ()  # each operator node's update holds its trace entry
            if isinstance(entries, Overwrite):  # the first node starts the run: it overwrites the key
                entries = entries.value
            shown = "; ".join(f"{e['node_id']}#{e['iteration']}: {e['output'][:60]!r}" for e in entries)
            print(f"  {node:<22} {shown}")
            answer = values.get("answer", answer)
    print(f"answer: {answer}")
    if args.export:
        Path(args.export).write_text(export_workflow(workflow, "langgraph-py"), encoding="utf-8")
        print(f"wrote {args.export}")


if __name__ == "__main__":
    main()
