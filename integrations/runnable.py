"""FlowSteer as a LangChain runnable for LCEL chains.

>>> flowsteer = FlowSteerRunnable(director=director_model, executor=executor_model)   # doctest: +SKIP
>>> chain = prompt | flowsteer | StrOutputParser()                                    # doctest: +SKIP
>>> chain.invoke({"topic": "..."})                                                    # doctest: +SKIP

Each input (a question string, a dict with ``"question"``, a :class:`~flowsteer.tasks.Task`, a
prompt value or a list of messages) is one episode: the director designs a workflow on a canvas,
the workflow runs as a compiled LangGraph graph, and the answer comes back (or a
:class:`FlowSteerResult` with the workflow and usage, with ``output="result"`` / ``"dict"``).
``batch``/``abatch`` run episodes concurrently, at most ``max_concurrency`` at a time (the config's
``max_concurrency`` wins). Callbacks in the config reach the director's model calls and the workflow
graph; every director turn is also dispatched as a custom event (see ``astream_events``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_config_list
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from flowsteer.errors import UserError
from flowsteer.workflow.serialize import from_json

from .orchestrator import Orchestration, read_task, run_sync

__all__ = ["FlowSteerRunnable", "FlowSteerResult"]


class FlowSteerResult(BaseModel):
    """What one episode produced."""

    question: str
    answer: str
    workflow: str
    """The workflow that ran, in the DSL."""
    workflow_json: str
    usage: dict[str, Any]
    """``director`` and ``executor`` token usage, ``turns``, ``stop_reason``, ``fallback``."""
    status: str
    """``auto``, or ``empty`` when the director built nothing to run."""


class FlowSteerRunnable(RunnableSerializable[Any, Any]):
    """Design-and-run as a runnable: ``invoke``/``ainvoke``/``batch``/``abatch``/``stream`` (see the
    module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    director: Any
    """A :class:`~flowsteer.director.Director` or a chat model to wrap in one."""
    executor: Any
    """The chat model operators call, or an :class:`~flowsteer.workflow.interpreter.Interpreter`."""
    registry: Any = None
    """Operator registry (default: the director's)."""
    sandbox: Any = None
    """Code sandbox for Programmer/Test (default: a new ``Sandbox()``)."""
    max_turns: int | None = None
    """Canvas turns per design (default: the director's own)."""
    task_kind: str = "math"
    """``math``, ``qa`` or ``code`` for string inputs."""
    input_key: str = "question"
    """The key holding the question in dict inputs."""
    output: Literal["answer", "result", "dict"] = "answer"
    """Return the answer string, a :class:`FlowSteerResult`, or that result as a dict."""
    max_concurrency: int = Field(default=4, ge=1)
    """Episodes at a time in ``batch``/``abatch`` unless the config sets ``max_concurrency``."""
    name: str | None = "flowsteer"
    _engine: Orchestration | None = PrivateAttr(default=None)

    @property
    def engine(self) -> Orchestration:
        """The shared design-and-run machinery (built on first use)."""
        if self._engine is None:
            self._engine = Orchestration(director=self.director, executor=self.executor, registry=self.registry,
                                         sandbox=self.sandbox, max_turns=self.max_turns, name=self.name or "flowsteer")
        return self._engine

    # -- the one real implementation ------------------------------------------------------------
    async def _arun(self, value: Any, run_manager: AsyncCallbackManagerForChainRun,
                    config: RunnableConfig) -> Any:
        task = read_task(value, self.task_kind, self.input_key)
        engine = self.engine
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []

        def emit(event: dict[str, Any]) -> None:
            pending.append(loop.create_task(adispatch_custom_event(event["event"], event, config=config)))

        design = await engine.design(task, emit)
        await asyncio.gather(*pending)
        workflow = from_json(design["workflow_json"])
        answer, run_usage, status = design["design_answer"], dict[str, int](), "empty"
        if not workflow.is_empty:
            answer, run_usage = await engine.aexecute(workflow, task, design["design_id"], config)
            status = "auto"
        await adispatch_custom_event("flowsteer.answered", {"event": "flowsteer.answered", "answer": answer,
                                                            "status": status}, config=config)
        result = FlowSteerResult(question=task.question, **engine.outcome(design, workflow, answer, run_usage, status))
        match self.output:
            case "answer":
                return result.answer
            case "result":
                return result
            case "dict":
                return result.model_dump()
        raise UserError(f"FlowSteerRunnable.output must be 'answer', 'result' or 'dict', got {self.output!r}")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """One episode (async)."""
        return await self._acall_with_config(self._arun, input, config, run_type="chain", **kwargs)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """One episode (runs the async path; from inside a running loop it uses a worker thread)."""
        return run_sync(self.ainvoke(input, config, **kwargs))

    # -- concurrency -------------------------------------------------------------------------------
    def _limited(self, config: RunnableConfig | list[RunnableConfig] | None, n: int) -> list[RunnableConfig]:
        configs = get_config_list(config, n)
        return [c if c.get("max_concurrency") is not None else {**c, "max_concurrency": self.max_concurrency}
                for c in configs]

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Episodes concurrently, at most ``max_concurrency`` at a time; results in input order."""
        if not inputs:
            return []
        return await super().abatch(inputs, self._limited(config, len(inputs)),
                                    return_exceptions=return_exceptions, **kwargs)

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """:meth:`abatch` from sync code (one event loop, not a thread per episode)."""
        return run_sync(self.abatch(inputs, config, return_exceptions=return_exceptions, **kwargs))
