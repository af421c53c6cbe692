"""Export a designed workflow as a LangGraph graph: a standalone module, Mermaid, LangGraph Studio.

    python examples/export_workflow.py --out exported            # offline fakes, a few seconds
    python examples/export_workflow.py --out exported --embedded  # the embedded SmolLM2 designs it
    python examples/export_workflow.py --workflow "Custom -> Review ? Revise : done" --out exported

Steps: the director designs a workflow for the question (or ``--workflow`` gives one); the design
runs in memory as a compiled graph; it is exported as a Python module that rebuilds the graph with
the public API (which we import and run: same answer), as a Mermaid diagram and as JSON; a
``langgraph.json`` next to the module lets ``langgraph dev`` serve it in LangGraph Studio. The same
exports are one CLI command each: ``flowsteer export "<DSL>" --to langgraph-py|json|mermaid``.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
from pathlib import Path

from _offline import DEMO_ANSWERS, add_model_arguments, models

from flowsteer.integrations import compile_workflow, export_workflow
from flowsteer.integrations.runnable import FlowSteerRunnable
from flowsteer.scoring.math import extract_answer
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.ir import Workflow
from flowsteer.workflow.serialize import from_json

HERE = Path(__file__).resolve().parent
QUESTION = next(iter(DEMO_ANSWERS))


def design(args: argparse.Namespace, executor: object, director: object, max_turns: int) -> Workflow:
    """The workflow to export: ``--workflow`` or what the director designs for the question."""
    if args.workflow:
        return parse(args.workflow)
    flowsteer = FlowSteerRunnable(director=director, executor=executor, max_turns=max_turns, output="result")
    result = flowsteer.invoke(args.question)
    print(f"designed in {result.usage['turns']} canvas turns (answer on the canvas: {result.answer})")
    return from_json(result.workflow_json)


def studio_config(out: Path, module: Path) -> Path:
    """A ``langgraph.json`` serving the exported module's ``graph`` (``cd OUT && langgraph dev``)."""
    project = os.path.relpath(HERE.parent, out)
    config = {"dependencies": [project], "graphs": {"designed": f"./{module.name}:graph"},
              "env": {"HF_HUB_OFFLINE": "1"}}
    path = out / "langgraph.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def _shown(answer: str) -> str:
    """The answer span of a workflow's output (the output itself when it has no marked answer)."""
    return extract_answer(answer) or " ".join(answer.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="flowsteer_export", help="directory for the exported files")
    parser.add_argument("--workflow", help="export this DSL instead of designing one")
    parser.add_argument("--question", default=QUESTION)
    add_model_arguments(parser)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    director, executor, max_turns = models(args)

    workflow = design(args, executor, director, max_turns)
    print(f"workflow: {workflow.dsl}")
    in_memory = compile_workflow(workflow, executor=executor).invoke({"question": args.question})["answer"]
    # a workflow without a Format step answers with its last node's full text: show the answer in it
    print(f"in-memory graph answer: {_shown(in_memory)}")

    module = out / "designed_graph.py"
    module.write_text(export_workflow(workflow, "langgraph-py"), encoding="utf-8")
    exported = runpy.run_path(str(module), run_name="designed_graph")
    answer = exported["build_graph"](executor).invoke({"question": args.question})["answer"]
    print(f"exported module: {module} (answer {_shown(answer)}; matches in-memory: {answer == in_memory})")

    mermaid = out / "designed_graph.mmd"
    mermaid.write_text(export_workflow(workflow, "mermaid"), encoding="utf-8")
    edges = [line.strip() for line in mermaid.read_text(encoding="utf-8").splitlines() if "-->" in line or ".->" in line]
    shown = next((e for e in edges if "fail" in e), edges[0])
    print(f"mermaid: {mermaid} ({len(edges)} edges, e.g. {shown})")
    (out / "designed_graph.json").write_text(export_workflow(workflow, "json"), encoding="utf-8")
    print(f"json: {out / 'designed_graph.json'}")

    print(f"studio: {studio_config(out, module)} -> cd {out} && langgraph dev")
    # examples/langgraph.json serves examples/designed_workflow.py, which reads the design from
    # $FLOWSTEER_WORKFLOW: check that it builds this design too.
    os.environ["FLOWSTEER_WORKFLOW"] = workflow.dsl
    served = runpy.run_path(str(HERE / "designed_workflow.py"), run_name="designed_workflow")["graph"]
    print(f"studio (examples/langgraph.json): FLOWSTEER_WORKFLOW={shlex.quote(workflow.dsl)} "
          f"langgraph dev --config examples/langgraph.json  ({len(served.get_graph().nodes)} graph nodes)")
    print(f"cli: flowsteer export {shlex.quote(workflow.dsl)} --to mermaid -o {out / 'designed_graph.mmd'}")


if __name__ == "__main__":
    main()
