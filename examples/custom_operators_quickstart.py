"""Register your own operators and see them everywhere the director looks.

    python examples/custom_operators_quickstart.py              # offline fakes, a few seconds
    python examples/custom_operators_quickstart.py --embedded   # the embedded SmolLM2 designs with them

Two operators go into a registry of their own (a copy of the built-ins):

* ``ListQuantities`` (planning) -- a plain function that lists the numbers the question gives;
* ``WholeNumberCheck`` (checking) -- a LangChain runnable that passes when the answer is a whole
  number and otherwise feeds back what to fix (a checker, so it can guard a conditional).

Then the script shows them in the director's system prompt, in the action parser, in the DSL and its
validation, in the workflow statistics the reward reads, and finally in a workflow the director
designs and the orchestrator runs as a LangGraph graph. To retrain the director so that it learns
when to use them, put the two ``register_operator`` calls (without ``registry=``, so they go into
the process-wide registry) in a module ``my_ops.py`` and run
``python examples/train_embedded_lora.py --custom-operators my_ops``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from _offline import DEMO_ANSWERS, add_model_arguments, models
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from flowsteer.canvas import AddConditional, AddOperator, AddParallel, Finish, parse_action
from flowsteer.director.prompts import system_prompt
from flowsteer.integrations.orchestrator import OrchestratorState, create_orchestrator_node
from flowsteer.operators import OperatorCall, OperatorRegistry, Role, default_registry, register_operator
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.graph import stats
from flowsteer.workflow.validation import validate

QUESTION = next(iter(DEMO_ANSWERS))
CUSTOM_PLAN = (
    AddOperator("ListQuantities"),
    AddParallel(("Programmer", "Custom")),
    AddOperator("ScEnsemble"),
    AddConditional("WholeNumberCheck", "Revise", None),
    AddOperator("Format"),
    Finish(),
)


def custom_registry() -> OperatorRegistry:
    """The built-ins plus the two operators of this example."""
    registry = default_registry().copy()

    @register_operator(name="ListQuantities", role=Role.PLANNING, registry=registry,
                       description="Lists every number the question gives, one per line, before solving.")
    def list_quantities(call: OperatorCall) -> str:
        numbers = re.findall(r"\d+(?:\.\d+)?", call.task.question)
        return "Quantities given:\n" + "\n".join(f"- {n}" for n in numbers)

    def whole_number(payload: dict[str, Any]) -> dict[str, Any]:
        found = re.findall(r"-?\d+(?:\.\d+)?", payload["input"])
        ok = bool(found) and float(found[-1]).is_integer()
        feedback = "The answer is a whole number." if ok else "Counts must be whole numbers: recompute the total."
        return {"output": payload["input"], "verdict": ok, "feedback": feedback}

    register_operator(RunnableLambda(whole_number), name="WholeNumberCheck", role=Role.CHECKING, registry=registry,
                      description="Passes when the answer is a whole number; otherwise says what to fix.")
    return registry


def show_vocabulary(registry: OperatorRegistry) -> None:
    prompt = system_prompt(registry, "math")
    lines = [line for line in prompt.splitlines() if "ListQuantities" in line or "WholeNumberCheck" in line]
    print("director prompt lists:")
    for line in lines[:2]:
        print(f"  {line.strip()}")
    action = parse_action("<action>add</action><operator>WholeNumberCheck</operator>", registry)
    print(f"action parser: {action!r}")
    dsl = "ListQuantities -> Custom -> WholeNumberCheck ? Revise : done -> Format"
    workflow = parse(dsl, registry)
    print(f"DSL round trip: {workflow.dsl == dsl}")
    figures = stats(workflow, registry)
    print(f"reward view: roles {dict(figures.role_counts)}, structure {figures.has_structure}")
    print(f"validation with this registry: {validate(workflow, registry) or 'ok'}")
    unknown = validate(workflow, default_registry())  # the process-wide registry does not know them
    print(f"validation without it: {len(unknown)} violations, e.g. {unknown[0].message[:60]}...")


def run_designed(args: argparse.Namespace, registry: OperatorRegistry) -> None:
    director, executor, max_turns = models(args, registry=registry, plan=CUSTOM_PLAN)
    node = create_orchestrator_node(director=director, executor=executor, registry=registry, max_turns=max_turns)
    builder = StateGraph(OrchestratorState)
    builder.add_node("flowsteer", node)
    builder.add_edge(START, "flowsteer")
    builder.add_edge("flowsteer", END)
    result = builder.compile().invoke({"question": QUESTION})
    used = sorted({op for op in ("ListQuantities", "WholeNumberCheck") if op in result["workflow"]})
    print(f"designed: {result['workflow']}")
    print(f"custom operators used: {', '.join(used) or 'none'}")
    print(f"answer: {result['answer']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    args = parser.parse_args()
    registry = custom_registry()
    show_vocabulary(registry)
    run_designed(args, registry)


if __name__ == "__main__":
    main()
