"""The director's prompts, built from package-data templates and the operator registry.

Nothing here lists operator names: the operator table, the example actions and the role lists in the
rules all come from the registry, so a user-registered operator appears in every prompt.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from flowsteer.canvas.actions import (
    Action,
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Delete,
    Finish,
    Modify,
    SetPrompt,
    render_action,
)
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec

__all__ = [
    "load_template",
    "operator_table",
    "example_actions",
    "first_action",
    "system_prompt",
    "single_turn_prompt",
    "task_hint",
]


@cache
def load_template(name: str) -> str:
    """A prompt template from ``flowsteer/director/prompts`` (package data)."""
    return resources.files("flowsteer.director").joinpath("prompts").joinpath(name).read_text(encoding="utf-8")


def operator_table(registry: OperatorRegistry, *, usage_hints: bool = True, compact: bool = False) -> str:
    """One line per operator: name, role, description and (optionally) usage hint. ``compact``:
    one line per role naming its operators (every operator still listed, no descriptions)."""
    if compact:
        return "\n".join(f"- {role.value}: {_names(registry, role)}" for role in Role if registry.by_role(role))
    lines = []
    for spec in registry:
        hint = f" {spec.usage_hint.strip()}" if usage_hints and spec.usage_hint.strip() else ""
        lines.append(f"- {spec.name} ({spec.role.value}): {spec.description.strip()}{hint}")
    return "\n".join(lines)


def _pick(registry: OperatorRegistry, *roles: Role, avoid: tuple[str, ...] = (), code: bool | None = None) -> str:
    """The first registered operator with one of ``roles`` (in that order), else any operator.

    ``code`` prefers operators that run code (True) or that do not (False), e.g. Test vs Verify.
    """
    for role in roles:
        specs = [s for s in registry.by_role(role) if s.name not in avoid]
        if code is not None:
            specs.sort(key=lambda s: s.runs_code != code)
        if specs:
            return specs[0].name
    names = [n for n in registry.names() if n not in avoid] or registry.names()
    return names[0]


def _names(registry: OperatorRegistry, role: Role) -> str:
    specs: list[OperatorSpec] = registry.by_role(role)
    return ", ".join(s.name for s in specs) if specs else "none registered"


def first_action(registry: OperatorRegistry) -> Action:
    """The opening move of the worked example: add a planner (or a solver)."""
    return AddOperator(_pick(registry, Role.PLANNING, Role.SOLVING))


def example_actions(registry: OperatorRegistry, kind: str = "math") -> list[tuple[str, Action]]:
    """One canonical example per action form, with what it does, using registered operators."""
    solver = _pick(registry, Role.SOLVING)
    other = _pick(registry, Role.SOLVING, avoid=(solver,))
    checker = _pick(registry, Role.CHECKING, code=kind == "code")
    reviser = _pick(registry, Role.REVISING, Role.SOLVING)
    return [
        ("add an operator", AddOperator(_pick(registry, Role.PLANNING, Role.SOLVING))),
        ("add a parallel block", AddParallel((solver, other))),
        ("add a conditional (the second operator runs when the check fails)",
         AddConditional(checker, reviser, None)),
        ("add a loop", AddLoop((_pick(registry, Role.CHECKING, avoid=(checker,), code=False), reviser), 2)),
        ("delete a node", Delete("node_3")),
        ("change a node's operator", Modify("node_2", other)),
        ("rewrite a node's prompt", SetPrompt("node_1", "Solve it step by step and state the number.")),
        ("finish when the workflow is complete", Finish()),
    ]


def task_hint(kind: str) -> str:
    try:
        return load_template(f"hint_{kind}.txt").strip()
    except FileNotFoundError:
        return ""


def _role_lists(registry: OperatorRegistry) -> dict[str, str]:
    return {
        "ensemblers": _names(registry, Role.ENSEMBLING),
        "checkers": _names(registry, Role.CHECKING),
        "formatters": _names(registry, Role.FORMATTING),
    }


PROMPT_RULES = {
    True: "- After you add or modify an operator, your next reply is that node's prompt: plain text, 1-3 sentences.",
    False: "- New operators run on their own instructions: no prompt to write, the canvas runs the workflow at once.",
}
"""The rule about node prompts, by ``DirectorConfig.write_prompts``."""


def system_prompt(registry: OperatorRegistry, kind: str, *, template: str = "system.txt",
                  hints: bool = True, usage_hints: bool = True, write_prompts: bool = True,
                  compact: bool = False) -> str:
    """The BUILDING-turn system prompt for a task kind (``compact``: the operator table as one
    line per role, for context budgets the full table does not fit)."""
    actions = "\n".join(f"- {what}: {render_action(a)}" for what, a in example_actions(registry, kind))
    return load_template(template).format(
        operators=operator_table(registry, usage_hints=usage_hints, compact=compact),
        actions=actions,
        hint=task_hint(kind) if hints else "",
        prompt_rule=PROMPT_RULES[write_prompts],
        **_role_lists(registry),
    ).strip()


def single_turn_prompt(registry: OperatorRegistry, kind: str, *, hints: bool = True,
                       usage_hints: bool = True) -> str:
    """The system prompt of the single-turn baseline (the whole workflow as one DSL line)."""
    solver = _pick(registry, Role.SOLVING)
    other = _pick(registry, Role.SOLVING, avoid=(solver,))
    checker = _pick(registry, Role.CHECKING, code=kind == "code")
    reviser = _pick(registry, Role.REVISING, Role.SOLVING)
    ensembler = _pick(registry, Role.ENSEMBLING)
    formatter = _pick(registry, Role.FORMATTING)
    example = f"[{solver}, {other}] -> {ensembler} -> {checker} ? {reviser} : done -> {formatter}"
    return load_template("single_turn.txt").format(
        operators=operator_table(registry, usage_hints=usage_hints), example=example,
        hint=task_hint(kind) if hints else "", **_role_lists(registry),
    ).strip()
