"""Models for the examples: offline fakes by default, the embedded SmolLM2 director with --embedded.

The fake director is a *policy* over the canvas state (it reads the ``Workflow:`` line of each turn
and takes the next action of a plan), so one fake can play many concurrent episodes. The fake
executor is :class:`flowsteer.testing.SimulatedExecutor`, which knows the answers of the demo
questions and otherwise behaves like a noisy model whose accuracy depends on the workflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from flowsteer.canvas import Action, AddConditional, AddOperator, AddParallel, Finish, render_action
from flowsteer.operators import OperatorRegistry
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

__all__ = ["DEMO_ANSWERS", "DEMO_PLAN", "add_model_arguments", "models", "policy_director"]

DEMO_ANSWERS = {
    "Natalia sold 48 clips in April and half as many in May. How many clips did she sell altogether?": "72",
    "What is 12 + 30?": "42",
    "A train travels 60 km per hour for 3 hours. How many km does it travel?": "180",
}
DEMO_PLAN: tuple[Action, ...] = (
    AddOperator("Plan"),
    AddParallel(("Programmer", "Custom")),
    AddOperator("ScEnsemble"),
    AddConditional("Verify", "Revise", None),
    AddOperator("Format"),
    Finish(),
)
"""What the fake director builds: ``Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format``."""
_PROMPT = "Work through the task step by step and state the final answer."


def policy_director(plan: Sequence[Action] = DEMO_PLAN) -> ScriptedChatModel:
    """A fake director taking the ``k``-th action of ``plan`` when the canvas holds ``k`` steps."""
    rendered = [render_action(a) for a in plan]

    def reply(messages: list[BaseMessage]) -> str:
        last = str(messages[-1].content)
        if "## Write the prompt for" in last:
            return _PROMPT
        found = re.search(r"^\[Current DSL\]: (.*)$", last, re.M)
        dsl = found.group(1).strip() if found else "(empty)"
        return rendered[min(_steps(dsl), len(rendered) - 1)]

    return ScriptedChatModel(default=reply)


def _steps(dsl: str) -> int:
    if dsl == "(empty)":
        return 0
    depth, count = 0, 1
    for i, ch in enumerate(dsl):
        depth += (ch in "[(") - (ch in "])")
        if depth == 0 and dsl.startswith(" -> ", i):
            count += 1
    return count


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--embedded`` and ``--executor`` options shared by the examples."""
    parser.add_argument("--embedded", action="store_true",
                        help="use the embedded SmolLM2 as the director (grammar-constrained, CPU, slower)")
    parser.add_argument("--executor", default="simulated",
                        help="executor: 'simulated' (offline fake, default) or a backend spec such as 'embedded'")
    parser.add_argument("--max-turns", type=int, default=None, help="canvas turns per design")


def models(args: argparse.Namespace, *, registry: OperatorRegistry | None = None,
           plan: Sequence[Action] = DEMO_PLAN, answers: dict[str, str] | None = None) -> tuple[Any, Any, int]:
    """(director, executor, max_turns) for the command-line options."""
    from flowsteer.models.specs import load_chat_model

    executor = (SimulatedExecutor({**DEMO_ANSWERS, **(answers or {})}, skill=0.9)
                if args.executor == "simulated" else load_chat_model(args.executor))
    if not args.embedded:
        return policy_director(plan), executor, args.max_turns or 20
    from flowsteer.constrain import action_constraint
    from flowsteer.director import Director, DirectorConfig

    max_turns = args.max_turns or 8
    config = DirectorConfig.small_model(max_turns=max_turns)
    config = dataclasses.replace(config, constraint=action_constraint(
        registry, max_new_tokens=config.max_action_tokens))
    return Director(load_chat_model("embedded"), registry=registry, config=config), executor, max_turns
