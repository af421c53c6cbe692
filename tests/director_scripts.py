"""Scripted Flow-Directors for the orchestrator and runnable tests.

:func:`policy_director` answers from the canvas state the director sees (the ``Workflow:`` line of
the turn message), so concurrent episodes sharing one fake model do not consume each other's
script, unlike a plain reply list.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from flowsteer.canvas import Action, AddConditional, AddOperator, AddParallel, Finish, render_action
from flowsteer.testing import ScriptedChatModel

QUESTION = "Natalia sold 48 clips in April and half as many in May. How many clips in total?"
DESIGN = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
ACTIONS: tuple[Action, ...] = (
    AddOperator("Plan"),
    AddParallel(("Programmer", "Custom")),
    AddOperator("ScEnsemble"),
    AddConditional("Verify", "Revise", None),
    AddOperator("Format"),
    Finish(),
)
PROMPTS = ("Identify the quantities and the relation.", "Compute it with Python.", "Reason step by step.",
           "Pick the majority answer.", "Re-solve and compare.", "Fix the error the check found.",
           "Output only the number.")
PROMPT = "Solve the task step by step and state the final answer."


def episode_script() -> list[str]:
    """The replies of one episode building :data:`DESIGN` (actions and node prompts in order)."""
    actions = [render_action(a) for a in ACTIONS]
    return [actions[0], PROMPTS[0], actions[1], PROMPTS[1], PROMPTS[2], actions[2], PROMPTS[3],
            actions[3], PROMPTS[4], PROMPTS[5], actions[4], PROMPTS[6], actions[5]]


def scripted_director() -> ScriptedChatModel:
    """A director that can play exactly one episode (a second one raises: the script is exhausted)."""
    return ScriptedChatModel(episode_script())


class PolicyLog:
    """When each question's director calls happened (to measure overlapping episodes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def record(self, question: str) -> None:
        with self._lock:
            self.calls.append((question, time.perf_counter()))

    def max_overlap(self) -> int:
        """Most episodes whose [first call, last call] spans overlap at one time."""
        spans: dict[str, list[float]] = {}
        for question, at in self.calls:
            spans.setdefault(question, []).append(at)
        edges = sorted([(min(t), 1) for t in spans.values()] + [(max(t), -1) for t in spans.values()],
                       key=lambda e: (e[0], e[1]))
        best = live = 0
        for _, delta in edges:
            live += delta
            best = max(best, live)
        return best


def policy_director(actions: Sequence[Action] = ACTIONS, *, latency: float = 0.0,
                    log: PolicyLog | None = None) -> ScriptedChatModel:
    """A director that takes the ``k``-th action when the canvas holds the first ``k`` steps."""
    rendered = [render_action(a) for a in actions]

    def reply(messages: list[BaseMessage]) -> str:
        last = str(messages[-1].content)
        if log is not None:
            log.record(last.split("\n")[1])
        if "## Write the prompt for" in last:
            return PROMPT
        found = re.search(r"^\[Current DSL\]: (.*)$", last, re.M)
        dsl = found.group(1).strip() if found else "(empty)"
        steps = 0 if dsl == "(empty)" else _top_level_steps(dsl)
        return rendered[min(steps, len(rendered) - 1)]

    return ScriptedChatModel(default=reply, latency=latency)


def _top_level_steps(dsl: str) -> int:
    depth, count = 0, 1
    for i, ch in enumerate(dsl):
        depth += ch in "[("
        depth -= ch in "])"
        if depth == 0 and dsl.startswith(" -> ", i):
            count += 1
    return count
