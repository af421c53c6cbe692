"""Operators as LangChain runnables: ``OperatorCall -> OperatorResult`` with invoke/ainvoke/batch.

The runnable opens a chain run named after the operator and hands the child config to the
operator, which passes it to the executor chat model, so callback handlers (LangSmith tracing,
token counters) see the model call nested under the operator.
"""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    patch_config,
    set_config_context,
)
from langchain_core.runnables.utils import coro_with_context

from flowsteer.errors import UserError
from flowsteer.operators.calls import OperatorCall, OperatorResult
from flowsteer.sync import run_sync  # re-exported: its home before flowsteer.sync

__all__ = ["OperatorRunnable", "run_sync"]

T = TypeVar("T")


class OperatorRunnable(Runnable[OperatorCall, OperatorResult]):
    """A :class:`~flowsteer.operators.base.Operator` as a LangChain ``Runnable``.

    >>> runnable = interpreter.operator("Plan").as_runnable()              # doctest: +SKIP
    >>> runnable.invoke(OperatorCall(task=task, input=None))               # doctest: +SKIP
    """

    def __init__(self, operator: Any, *, name: str | None = None) -> None:
        # Any object with the Operator contract (``async arun(call, config)``): this module does not
        # import the base class, so that ``Operator.as_runnable`` can import this one.
        if not callable(getattr(operator, "arun", None)) or isinstance(operator, type):
            raise UserError(f"OperatorRunnable wraps a flowsteer Operator, got {type(operator).__name__}")
        self.operator = operator
        self.name = name or operator.name or type(operator).__name__

    @property
    def InputType(self) -> type[OperatorCall]:  # noqa: N802 (langchain-core's name)
        return OperatorCall

    @property
    def OutputType(self) -> type[OperatorResult]:  # noqa: N802
        return OperatorResult

    async def _run(self, call: OperatorCall, run_manager: AsyncCallbackManagerForChainRun,
                   config: RunnableConfig) -> OperatorResult:
        if not isinstance(call, OperatorCall):
            raise UserError(f"{self.name} expects an OperatorCall, got {type(call).__name__}; build one "
                            "with OperatorCall(task=..., input=..., prompt=...)")
        return await self.operator.arun(call, config)

    async def ainvoke(self, input: OperatorCall, config: RunnableConfig | None = None,
                      **kwargs: Any) -> OperatorResult:
        """Run the operator once (async); ``config`` callbacks reach the executor model.

        The same chain run as ``Runnable._acall_with_config`` (start/end/error events, the child
        config in the context so nested calls find their parent), spelled out so that no
        ``inspect.signature`` of ``_run`` is taken per call: this runs once per workflow node.
        """
        config = ensure_config(config)
        manager = get_async_callback_manager_for_config(config)
        run_manager = await manager.on_chain_start(None, input, run_type="chain",
                                                   name=config.get("run_name") or self.get_name(),
                                                   run_id=config.pop("run_id", None))
        try:
            child = patch_config(config, callbacks=run_manager.get_child())
            with set_config_context(child) as context:
                output: OperatorResult = await coro_with_context(self._run(input, run_manager, child), context)
        except BaseException as exc:
            await run_manager.on_chain_error(exc)
            raise
        await run_manager.on_chain_end(output)
        return output

    def invoke(self, input: OperatorCall, config: RunnableConfig | None = None, **kwargs: Any) -> OperatorResult:
        """Run the operator once (sync)."""
        return run_sync(self.ainvoke(input, config, **kwargs))
