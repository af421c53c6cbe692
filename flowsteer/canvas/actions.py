"""The director's action space: one frozen dataclass per action, and their canonical XML.

An action is what one BUILDING turn of the director asks the canvas to do. The union
:data:`Action` is dispatched with ``match``. :func:`render_action` gives the canonical XML form
(spec section 4.2) that prompts, worked examples and training demonstrations show the model;
:func:`flowsteer.canvas.parser.parse_action` reads it back (``parse_action(render_action(a)) == a``).

Positions are 1-based, as in the grammar: ``AddOperator("Format", position=1)`` puts Format first.

Conditional polarity follows the DSL ``Verify ? Revise : done``: ``on_fail`` (XML ``<true>``, the
branch after ``?``) runs when the check FAILS; ``on_pass`` (XML ``<false>``, after ``:``) runs when
it passes, and ``None`` (``done``) passes the checked solution through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from flowsteer.errors import UserError

__all__ = [
    "AddOperator",
    "AddParallel",
    "AddConditional",
    "AddLoop",
    "Delete",
    "Modify",
    "SetPrompt",
    "Finish",
    "Action",
    "ACTION_NAMES",
    "render_action",
]

ACTION_NAMES: tuple[str, ...] = ("add", "delete", "modify", "set_prompt", "finish")
"""The values ``<action>`` accepts (structures are ``add`` with a ``<structure>``)."""


@dataclass(frozen=True)
class AddOperator:
    """Add one operator to the top-level chain; its prompt is asked for next unless given."""

    operator: str
    """Registered operator name."""
    position: int | None = None
    """1-based position in the top-level chain (``None`` = append at the end)."""
    prompt: str | None = None
    """The node's prompt when given inline (skips the prompt-writing turn)."""


@dataclass(frozen=True)
class AddParallel:
    """Append a parallel block with one single-operator branch per name (two or more)."""

    operators: tuple[str, ...]


@dataclass(frozen=True)
class AddConditional:
    """Append ``condition ? on_fail : on_pass`` (``on_pass=None`` is ``done``)."""

    condition: str
    """A checker operator."""
    on_fail: str
    """Operator run when the check fails (XML ``<true>``)."""
    on_pass: str | None = None
    """Operator run when the check passes (XML ``<false>``); ``None`` passes through."""


@dataclass(frozen=True)
class AddLoop:
    """Append ``(A -> B) * count``: the body runs up to ``count`` times (1..10)."""

    operators: tuple[str, ...]
    count: int = 3


@dataclass(frozen=True)
class Delete:
    """Remove a node (top-level or nested) by id."""

    target: str


@dataclass(frozen=True)
class Modify:
    """Change an operator node's operator; its new prompt is asked for next."""

    target: str
    operator: str


@dataclass(frozen=True)
class SetPrompt:
    """Replace an operator node's prompt."""

    target: str
    prompt: str


@dataclass(frozen=True)
class Finish:
    """End the episode (accepted only when the finish constraints hold)."""

    answer: str | None = None
    """An optional answer the director states; the scored answer is the last execution's."""


Action: TypeAlias = (
    AddOperator | AddParallel | AddConditional | AddLoop | Delete | Modify | SetPrompt | Finish
)


def _tag(name: str, value: object) -> str:
    return f"<{name}>{value}</{name}>"


def render_action(action: Action) -> str:
    """The canonical XML text of ``action`` (one line, no surrounding prose)."""
    match action:
        case AddOperator(operator=op, position=pos, prompt=prompt):
            text = _tag("action", "add") + _tag("operator", op)
            if pos is not None:
                text += _tag("position", pos)
            if prompt is not None:
                text += _tag("prompt", prompt)
            return text
        case AddParallel(operators=ops):
            return (_tag("action", "add") + _tag("structure", "parallel")
                    + _tag("operators", ", ".join(ops)))
        case AddConditional(condition=cond, on_fail=on_fail, on_pass=on_pass):
            return (_tag("action", "add") + _tag("structure", "conditional")
                    + _tag("condition", cond) + _tag("true", on_fail)
                    + _tag("false", on_pass if on_pass is not None else "done"))
        case AddLoop(operators=ops, count=count):
            return (_tag("action", "add") + _tag("structure", "loop")
                    + _tag("operators", ", ".join(ops)) + _tag("count", count))
        case Delete(target=target):
            return _tag("action", "delete") + _tag("target", target)
        case Modify(target=target, operator=op):
            return _tag("action", "modify") + _tag("target", target) + _tag("operator", op)
        case SetPrompt(target=target, prompt=prompt):
            return _tag("action", "set_prompt") + _tag("target", target) + _tag("prompt", prompt)
        case Finish(answer=answer):
            text = _tag("action", "finish")
            if answer is not None:
                text += _tag("answer", answer)
            return text
    raise UserError(f"{action!r} is not a canvas action; use one of the classes in flowsteer.canvas.actions")
