"""The values operators exchange: roles, calls, results, usage and the build context.

Torch- and LangChain-free data; :mod:`.base` defines the :class:`~flowsteer.operators.base.Operator`
contract over them and re-exports every name here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from flowsteer.tasks import Task

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from flowsteer.sandbox import Sandbox

__all__ = ["Role", "Value", "Usage", "OperatorCall", "OperatorResult", "OperatorContext"]


class Role(enum.StrEnum):
    """The six operator roles of the paper."""

    PLANNING = "planning"
    SOLVING = "solving"
    CHECKING = "checking"
    REVISING = "revising"
    ENSEMBLING = "ensembling"
    FORMATTING = "formatting"


Value: TypeAlias = str | tuple[str, ...] | None
"""What flows between steps: a string, the tuple of a Parallel's branch outputs, or None (start)."""


@dataclass(frozen=True)
class Usage:
    """Token accounting, summed over model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.calls + other.calls,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class OperatorCall:
    """Everything an operator receives for one execution."""

    task: Task
    """The task (every node sees it; gold answers and hidden tests must not be used)."""
    input: Value
    """The previous step's output (None for the first step; a tuple after a Parallel)."""
    prompt: str = ""
    """The director's guidance for this node."""
    feedback: str | None = None
    """The most recent checker's feedback upstream of this node (what Revise acts on)."""
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    node_id: str = ""


@dataclass(frozen=True)
class OperatorResult:
    """What an operator returns. Failures are values too (``error`` set), never crashes."""

    output: str
    """What flows downstream: the current answer/solution text."""
    verdict: bool | None = None
    """Checkers only: True when the check passed."""
    feedback: str | None = None
    """Checkers: why the check passed or failed (fed to a following Revise)."""
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Operator-specific structured fields (``code``, ``steps``, ``raw`` model text, ...)."""
    usage: Usage = Usage()
    error: str | None = None
    """Set when the operator could not do its job (parse failure, sandbox error, ...)."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class OperatorContext:
    """What an operator factory gets to build a runnable operator."""

    model: BaseChatModel
    """The executor chat model for LLM operators."""
    sandbox: Sandbox
    """The code sandbox for Programmer/Test (and user operators that run code)."""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
