"""The declaration of an operator (:class:`OperatorSpec`): its name, role and how to build it.

:mod:`.builtins` declares the twelve built-in operators with it, :mod:`.registry` holds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flowsteer.errors import UserError
from flowsteer.operators.base import Operator, OperatorContext, Role

__all__ = ["OperatorSpec", "RESERVED_NAMES"]

_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
# Words the DSL and the action grammar use; an operator may not be called like them.
RESERVED_NAMES = frozenset({"done", "Done", "DONE"})


@dataclass(frozen=True)
class OperatorSpec:
    """Declaration of an operator: its place in the vocabulary and how to build it."""

    name: str
    """CamelCase name used in the DSL and in actions."""
    role: Role
    """One of the six roles; checkers can head a Conditional, ensemblers reduce a Parallel."""
    description: str
    """One line shown to the director."""
    factory: Callable[[OperatorContext], Operator]
    """Builds the executable operator for an executor model and a sandbox."""
    inputs: tuple[str, ...] = ("task", "input")
    """What the operator reads (documentation for the director and users)."""
    outputs: tuple[str, ...] = ("output",)
    """What the operator produces."""
    runs_code: bool = False
    """True when the operator executes code in the sandbox (Programmer, Test)."""
    usage_hint: str = ""
    """Optional longer advice shown to the director (when to use it, what to put in its prompt)."""
    task_kinds: frozenset[str] = field(default_factory=frozenset)
    """The task kinds the operator has something to do on (empty: every kind). Validation with a
    task kind refuses it elsewhere, with the reason (``Test`` runs code tests: a math answer has
    no program, so ``Test ? Programmer : done`` would re-run Programmer on every math task)."""
    max_in_row: int | None = None
    """At most this many of the operator may follow each other in a chain the canvas builds (None:
    the canvas's ``max_repeats`` alone). ``Format`` has 1: a formatted answer needs no second
    formatting, so ``Format -> Format`` only costs an executor call."""
    ends_workflow: bool = False
    """The operator ends the workflow the canvas builds: nothing is appended after it at the top level
    (an operator may still be inserted before it). ``Format`` does: it extracts the final answer, so
    any step after it would work on the bare answer span and only cost executor calls."""
    tags: frozenset[str] = field(default_factory=frozenset)
    """Free-form labels (e.g. ``{"builtin"}``)."""
    module: str = ""
    """The module that defines the operator ("" for built-ins): exported graphs import it."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name) or self.name in RESERVED_NAMES:
            raise UserError(
                f"operator name {self.name!r} is invalid: use a CamelCase identifier such as 'MyChecker'"
            )
        if not isinstance(self.role, Role):
            raise UserError(f"operator {self.name!r}: role must be a flowsteer.Role, got {self.role!r}")
        if not self.description.strip():
            raise UserError(f"operator {self.name!r}: give a one-line description for the director")
        if isinstance(self.task_kinds, str) or not all(isinstance(k, str) and k for k in self.task_kinds):
            raise UserError(f"operator {self.name!r}: task_kinds must be a set of task kinds such as "
                            f"{{'code'}}, got {self.task_kinds!r}")
        object.__setattr__(self, "task_kinds", frozenset(self.task_kinds))
        if self.max_in_row is not None and (
            isinstance(self.max_in_row, bool) or not isinstance(self.max_in_row, int) or self.max_in_row < 1
        ):
            raise UserError(f"operator {self.name!r}: max_in_row must be an integer >= 1 or None, "
                            f"got {self.max_in_row!r}")
        if not isinstance(self.ends_workflow, bool):
            raise UserError(f"operator {self.name!r}: ends_workflow must be True or False, "
                            f"got {self.ends_workflow!r}")

    def applies_to(self, kind: str | None) -> bool:
        """Whether the operator has something to do on a task of ``kind`` (None: unknown, yes)."""
        return kind is None or not self.task_kinds or kind in self.task_kinds

    @property
    def is_checker(self) -> bool:
        return self.role is Role.CHECKING

    @property
    def is_ensembler(self) -> bool:
        return self.role is Role.ENSEMBLING

    @property
    def is_solver(self) -> bool:
        return self.role in (Role.SOLVING, Role.REVISING)
