"""The operator contract: what every operator (built-in or user-registered) takes and returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from flowsteer.operators.calls import OperatorCall, OperatorContext, OperatorResult, Role, Usage, Value

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = [
    "Role",
    "Value",
    "Usage",
    "OperatorCall",
    "OperatorResult",
    "OperatorContext",
    "Operator",
]


class Operator(ABC):
    """Base class for an executable operator bound to an executor model and a sandbox.

    Subclasses implement :meth:`arun`. :meth:`as_runnable` exposes the operator as a LangChain
    runnable (invoke / ainvoke / batch / stream) taking an :class:`OperatorCall`.
    """

    name: str = ""

    def __init__(self, context: OperatorContext) -> None:
        self.context = context

    @abstractmethod
    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        """Execute once. Must not raise for model mistakes; return ``OperatorResult(error=...)``."""

    def as_runnable(self) -> Any:
        from flowsteer.operators.runnable import OperatorRunnable

        return OperatorRunnable(operator=self)
