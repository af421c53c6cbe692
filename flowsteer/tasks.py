"""The unit of work: one task (a question plus what scoring needs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["Task", "TaskKind", "TASK_KINDS"]

TaskKind = Literal["math", "qa", "code"]
TASK_KINDS: tuple[str, ...] = ("math", "qa", "code")


@dataclass(frozen=True)
class Task:
    """A task the director designs a workflow for.

    Operators see ``question``, ``kind``, ``entry_point`` and ``public_tests`` only. ``answer`` and
    ``hidden_tests`` exist for scoring and are never shown to the workflow.
    """

    question: str
    """The problem statement, including any passages for QA tasks."""
    kind: TaskKind = "math"
    """Task family: selects prompts, finish constraints and the scorer."""
    id: str = ""
    """Stable identifier (dataset task id); used for caching and result files."""
    answer: str | tuple[str, ...] | None = None
    """Gold answer, or several accepted variants (QA). Scoring only."""
    entry_point: str | None = None
    """Code tasks: the function the solution must define."""
    public_tests: str | None = None
    """Code tasks: tests the Test operator may run (visible to the workflow)."""
    hidden_tests: str | None = None
    """Code tasks: tests used only for scoring (HumanEval ``check(candidate)`` or asserts)."""
    source: str = ""
    """Dataset name the task came from (e.g. ``gsm8k``)."""
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Anything else a loader wants to keep (difficulty, level, original record fields)."""

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Task.kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("Task.question must be a non-empty string")
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def golds(self) -> tuple[str, ...]:
        """The gold answer as a tuple of accepted variants (empty when unknown)."""
        if self.answer is None:
            return ()
        if isinstance(self.answer, str):
            return (self.answer,)
        return tuple(self.answer)

    @property
    def key(self) -> str:
        """Cache key: the id when given, else the question itself."""
        return self.id or self.question
