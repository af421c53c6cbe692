"""The value every scorer returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Score"]


@dataclass(frozen=True)
class Score:
    """The deterministic grade of one answer."""

    value: float
    """In [0, 1]: 0/1 for math and code, token F1 for QA. This is R_answer."""
    correct: bool
    """Math: equivalent; QA: exact match after normalisation; code: every hidden test passed."""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """What was compared (extracted prediction, matched gold, F1/EM, sandbox status, ...)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"Score.value must be in [0, 1], got {self.value!r}")
        if not isinstance(self.details, MappingProxyType):
            object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
