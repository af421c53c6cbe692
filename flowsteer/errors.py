"""Errors split by blame.

* A model's mistake (malformed action, bad DSL from the director) is never raised: it becomes a
  :class:`ParseFailure` value or canvas feedback the model can act on.
* A developer's mistake (unknown operator in code, invalid workflow handed to a compiler, bad
  config) raises :class:`UserError` at build time with the fix in the message.
* A failure while running a node raises :class:`OperatorError`, carrying the node id.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FlowSteerError",
    "UserError",
    "WorkflowValidationError",
    "DSLParseError",
    "OperatorError",
    "ParseFailure",
    "MissingExtraError",
]


class FlowSteerError(Exception):
    """Base class of every exception FlowSteer raises on purpose."""


class UserError(FlowSteerError, ValueError):
    """A developer-facing mistake: the message says what to change."""


class MissingExtraError(FlowSteerError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package. Install it with: pip install 'flowsteer[{extra}]'"
        )
        self.package = package
        self.extra = extra


class WorkflowValidationError(UserError):
    """Raised by ``WorkflowBuilder.build()``; carries every violation at once."""

    def __init__(self, violations: list) -> None:  # list[Violation]; untyped to avoid an import cycle
        self.violations = list(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"workflow is invalid ({len(self.violations)} problem(s)):\n{lines}")


class DSLParseError(UserError):
    """A DSL string could not be parsed; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.text = text
        self.position = position
        self.reason = message
        pointer = " " * min(position, 200) + "^"
        super().__init__(f"{message} at position {position}:\n  {text[:200]}\n  {pointer}")


class OperatorError(FlowSteerError):
    """An operator failed while running (model call raised, timeout, ...)."""

    def __init__(self, node_id: str, operator: str, message: str) -> None:
        super().__init__(f"{operator} ({node_id}) failed: {message}")
        self.node_id = node_id
        self.operator = operator
        self.reason = message


@dataclass(frozen=True)
class ParseFailure:
    """Model output that is not a valid action. A value, fed back to the model, never raised."""

    message: str
    """What was wrong and how to write it correctly."""
    raw: str = ""
    """The text that failed to parse (possibly truncated)."""

    def __str__(self) -> str:
        return self.message
