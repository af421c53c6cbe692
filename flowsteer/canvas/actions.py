"""The director's action space: one frozen dataclass per action, and their canonical XML.

An action is what one BUILDING turn of the director asks the canvas to do. The union
:data:`Action` is dispatched with ``match``. :func:`render_action` gives the canonical XML form
(spec section 4.2) that prompts, worked examples and training demonstrations show the model;
:func:`flowsteer.canvas.parser.parse_action` reads it back (``parse_action(render_action(a)) == a``).

:data:`ACTION_SYNTAX` is the one table of the action language: each action's ``<action>`` word,
its ``<structure>`` and its tags in order, with what each holds. :func:`render_action`, the forms the
parser quotes in its failure messages, and the tag layout of the action grammar
(:mod:`flowsteer.constrain.grammar`) are all read from it.

Positions are 1-based, as in the grammar: ``AddOperator("Format", position=1)`` puts Format first.

Conditional polarity follows the DSL ``Verify ? Revise : done``: ``on_fail`` (XML ``<true>``, the
branch after ``?``) runs when the check FAILS; ``on_pass`` (XML ``<false>``, after ``:``) runs when
it passes, and ``None`` (``done``) passes the checked solution through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

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
    "ACTION_SYNTAX",
    "ActionSyntax",
    "Slot",
    "LIST_SEPARATOR",
    "MAX_LIST_OPERATORS",
    "render_action",
    "syntax_of",
]

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


# -- the action language, as one table ---------------------------------------------------------
MAX_LIST_OPERATORS = 8
"""Most operators one parallel block or loop body may list (parser and grammar alike)."""
LIST_SEPARATOR = ", "
"""How an operator list is written (``<operators>A, B</operators>``)."""

SlotKind = Literal["operator", "operators", "checker", "branch", "node", "text", "count", "position"]


@dataclass(frozen=True)
class Slot:
    """One tag of an action: ``<tag>value</tag>``, the dataclass ``field`` it fills and what it holds."""

    tag: str
    field: str
    kind: SlotKind
    """``operator`` (one name), ``operators`` (a list), ``checker`` (a checking operator),
    ``branch`` (an operator or ``done``), ``node`` (a node id), ``text``, ``count``, ``position``."""
    placeholder: str
    """What the forms in messages show for it (``NAME``, ``A, B``, ``node_ID``, ...)."""
    optional: bool = False
    """Left out of the text when the field is None (and of the forms in messages)."""


@dataclass(frozen=True)
class ActionSyntax:
    """How one action is written: ``<action>word</action>``, an optional ``<structure>`` and its slots."""

    cls: type
    action: str
    structure: str | None = None
    slots: tuple[Slot, ...] = ()

    def head(self) -> str:
        """``<action>add</action><structure>loop</structure>``: the text before the first slot."""
        text = _tag("action", self.action)
        return text + _tag("structure", self.structure) if self.structure else text

    def opening(self) -> str:
        """The head and the first slot's opening tag (where the grammar's first value starts)."""
        return self.head() + (f"<{self.slots[0].tag}>" if self.slots else "")

    def between(self, index: int) -> str:
        """Closes slot ``index`` and opens the next one: ``</condition><true>``."""
        return f"</{self.slots[index].tag}><{self.slots[index + 1].tag}>"

    def closing(self, index: int) -> str:
        """Closes slot ``index``."""
        return f"</{self.slots[index].tag}>"

    def slot(self, field: str) -> Slot:
        """The slot filling ``field``."""
        for slot in self.slots:
            if slot.field == field:
                return slot
        raise UserError(f"{self.cls.__name__} has no slot for {field!r}")

    def render(self, action: Any) -> str:
        """The canonical text of ``action`` (an instance of :attr:`cls`)."""
        text = self.head()
        for slot in self.slots:
            value = getattr(action, slot.field)
            if value is None and slot.optional:
                continue
            text += _tag(slot.tag, _value_text(slot, value))
        return text

    def form(self) -> str:
        """The action with placeholders, its optional slots left out (quoted in messages)."""
        return self.head() + "".join(_tag(s.tag, s.placeholder) for s in self.slots if not s.optional)


def _value_text(slot: Slot, value: Any) -> str:
    if slot.kind == "operators":
        return LIST_SEPARATOR.join(value)
    if slot.kind == "branch" and value is None:
        return "done"
    return str(value)


def _tag(name: str, value: object) -> str:
    return f"<{name}>{value}</{name}>"


ACTION_SYNTAX: tuple[ActionSyntax, ...] = (
    ActionSyntax(AddOperator, "add", None, (
        Slot("operator", "operator", "operator", "NAME"),
        Slot("position", "position", "position", "N", optional=True),
        Slot("prompt", "prompt", "text", "TEXT", optional=True),
    )),
    ActionSyntax(AddParallel, "add", "parallel", (Slot("operators", "operators", "operators", "A, B"),)),
    ActionSyntax(AddConditional, "add", "conditional", (
        Slot("condition", "condition", "checker", "CHECKER"),
        Slot("true", "on_fail", "operator", "RUN_IF_CHECK_FAILS"),
        Slot("false", "on_pass", "branch", "done"),
    )),
    ActionSyntax(AddLoop, "add", "loop", (
        Slot("operators", "operators", "operators", "A, B"),
        Slot("count", "count", "count", "3"),
    )),
    ActionSyntax(Delete, "delete", None, (Slot("target", "target", "node", "node_ID"),)),
    ActionSyntax(Modify, "modify", None, (
        Slot("target", "target", "node", "node_ID"),
        Slot("operator", "operator", "operator", "NAME"),
    )),
    ActionSyntax(SetPrompt, "set_prompt", None, (
        Slot("target", "target", "node", "node_ID"),
        Slot("prompt", "prompt", "text", "TEXT"),
    )),
    ActionSyntax(Finish, "finish", None, (Slot("answer", "answer", "text", "ANSWER", optional=True),)),
)
"""Every action's written form, in the order the forms are listed."""

_BY_CLASS = {syntax.cls: syntax for syntax in ACTION_SYNTAX}

ACTION_NAMES: tuple[str, ...] = tuple(dict.fromkeys(syntax.action for syntax in ACTION_SYNTAX))
"""The values ``<action>`` accepts (structures are ``add`` with a ``<structure>``)."""


def syntax_of(action: Any) -> ActionSyntax:
    """The :class:`ActionSyntax` of an action or action class."""
    syntax = _BY_CLASS.get(action if isinstance(action, type) else type(action))
    if syntax is None:
        raise UserError(f"{action!r} is not a canvas action; use one of the classes in flowsteer.canvas.actions")
    return syntax


def render_action(action: Action) -> str:
    """The canonical XML text of ``action`` (one line, no surrounding prose)."""
    return syntax_of(action).render(action)
