"""The Flow-Director as a node of your own LangGraph graph.

>>> node = create_orchestrator_node(director=director_model, executor=executor_model)  # doctest: +SKIP
>>> builder = StateGraph(MyState)                                                    # doctest: +SKIP
>>> builder.add_node("flowsteer", node)                                              # doctest: +SKIP

Each call reads the task from the state (``state[input_key]``, else the last human message of
``messages``), lets the director design a workflow on a fresh canvas, compiles the design with
:func:`~flowsteer.integrations.compile_workflow` and runs that graph (as a subgraph of yours, so your
callbacks and ``subgraphs=True`` streaming see its nodes), then writes back the answer, the workflow
(DSL and JSON), usage and a status; when the state has ``messages``, the reply is written there
as a one-element list holding an :class:`~langchain_core.messages.AIMessage` (appended by the
``add_messages`` reducer of ``MessagesState``; a key without a reducer would be replaced).

*Streaming.* Every director turn is written with ``langgraph.config.get_stream_writer()``: stream
the parent graph with ``stream_mode="custom"`` to watch the canvas being edited (events are dicts
whose ``"event"`` is one of :data:`CANVAS_EVENTS`).

*Approval.* With ``require_approval=True`` the node calls ``langgraph.types.interrupt`` with the
designed workflow before running it; resume with ``Command(resume=True)`` (run it),
``Command(resume=False)`` (do not run it) or ``Command(resume="<edited DSL>")`` (run the edit; an
invalid edit interrupts again with the error). The graph needs a checkpointer. The design itself
runs inside a LangGraph ``@task``, so it is checkpointed and not repeated when the node resumes.

Keys the node writes but your state schema lacks are ignored by LangGraph: subclass
:class:`OrchestratorState` (or add the keys you want) to keep them.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic-readable on 3.11 (the platform's /schemas)

from flowsteer.canvas import Canvas, render_action
from flowsteer.director import Director, DirectorConfig, TurnRecord
from flowsteer.errors import UserError
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import Interpreter, NodeCache
from flowsteer.workflow.ir import Workflow
from flowsteer.workflow.serialize import from_json, to_json

from .langgraph import compile_workflow, task_input
from .langgraph.state import task_from_state, task_to_state

__all__ = [
    "CANVAS_EVENTS",
    "DEFAULT_OUTPUT_KEYS",
    "Orchestration",
    "OrchestratorState",
    "create_orchestrator_node",
    "read_task",
]

logger = logging.getLogger(__name__)

CANVAS_EVENTS = ("flowsteer.canvas_edit", "flowsteer.designed", "flowsteer.answered")
"""Custom stream events: one per director turn, one when the design is done, one with the answer."""

DEFAULT_OUTPUT_KEYS: Mapping[str, str] = {
    "answer": "answer",
    "workflow": "workflow",
    "workflow_json": "workflow_json",
    "usage": "usage",
    "status": "status",
}
"""What the node writes (field -> state key). ``status`` is ``auto``, ``approved``, ``edited``,
``rejected`` or ``empty`` (the director built nothing to run)."""

_CACHE_SLOTS = 64
T = TypeVar("T")


class OrchestratorState(TypedDict, total=False):
    """A state schema holding everything the node reads and writes (subclass it to add keys)."""

    question: str
    messages: Annotated[list[AnyMessage], add_messages]
    answer: str
    workflow: str
    """The designed workflow in the DSL."""
    workflow_json: str
    """The designed workflow as :func:`flowsteer.workflow.serialize.to_json` text."""
    usage: dict[str, Any]
    """``director`` and ``executor`` token usage, ``turns``, ``stop_reason``, ``fallback``."""
    status: str


def read_task(value: Any, task_kind: str = "math", input_key: str = "question") -> Task:
    """The task in ``value``: a string, a :class:`Task`, a mapping with ``input_key`` (or ``task`` /
    ``messages``), a prompt value, or messages (the last human message)."""
    match value:
        case Task():
            return value
        case str() if value.strip():
            return Task(value, kind=task_kind)  # type: ignore[arg-type]
        case PromptValue():
            return read_task(value.to_messages(), task_kind, input_key)
        case BaseMessage():
            return read_task([value], task_kind, input_key)
        case Mapping():
            return _task_in_mapping(value, task_kind, input_key)
        case list() | tuple() if value:
            human = [m for m in convert_to_messages(value) if isinstance(m, HumanMessage)]
            if human and human[-1].text.strip():
                return Task(human[-1].text, kind=task_kind)  # type: ignore[arg-type]
    raise UserError(f"no task found in {value!r:.200}: give a non-empty question string, a Task, a dict with "
                    f"{input_key!r}, a prompt value or messages ending with a human message")


def _task_in_mapping(value: Mapping[str, Any], task_kind: str, input_key: str) -> Task:
    found = value.get(input_key)
    if isinstance(found, Task):
        return found
    if isinstance(found, str) and found.strip():
        return Task(found, kind=task_kind)  # type: ignore[arg-type]
    if isinstance(value.get("task"), (Task, Mapping)):
        task = value["task"]
        return task if isinstance(task, Task) else task_from_state(task)
    if value.get("messages"):
        return read_task(list(value["messages"]), task_kind, input_key)
    raise UserError(f"the state has no task: set {input_key!r} to the question, or add a human message "
                    f"to 'messages' (keys present: {sorted(value)})")


def usage_dict(usage: Any) -> dict[str, int]:
    """A :class:`~flowsteer.operators.Usage` as plain data."""
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "calls": usage.calls}


class Orchestration:
    """Design a workflow for a task on a canvas, then run it as a compiled LangGraph graph.

    Shared by :func:`create_orchestrator_node` and :class:`~flowsteer.integrations.FlowSteerRunnable`.
    ``director`` is a :class:`Director` or a chat model (wrapped in a ``Director``); ``executor`` a
    chat model or an :class:`Interpreter`.
    """

    def __init__(self, *, director: Director | BaseChatModel, executor: BaseChatModel | Interpreter,
                 registry: OperatorRegistry | None = None, sandbox: Any = None, max_turns: int | None = None,
                 name: str = "flowsteer") -> None:
        if max_turns is not None and max_turns < 1:
            raise UserError(f"max_turns must be >= 1, got {max_turns}")
        turns: dict[str, Any] = {} if max_turns is None else {"max_turns": max_turns}
        if isinstance(director, BaseChatModel):
            # a model that ships a trained director (the embedded one) says which settings it was trained with
            preset = getattr(director, "director_config", None)
            config = preset(**turns) if callable(preset) else None
            director = Director(director, registry=registry, config=config or DirectorConfig(**turns))
        elif isinstance(director, Director) and max_turns is not None:
            director = copy.copy(director)  # the caller's director keeps its own limit
            director.config = dataclasses.replace(director.config, max_turns=max_turns)
        elif not isinstance(director, Director):
            raise UserError(f"director= must be a flowsteer Director or a LangChain chat model, got "
                            f"{type(director).__name__}")
        interpreter = Interpreter.of(executor, registry=registry or director.registry, sandbox=sandbox)
        self.director = director
        self.interpreter = interpreter
        self.registry = registry or director.registry
        self.max_turns = director.config.max_turns
        """The turn limit of each design: ``max_turns`` when given, else the director's own."""
        self.name = name
        self._caches: OrderedDict[str, NodeCache] = OrderedDict()

    async def design(self, task: Task, emit: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
        """One director episode; returns the design as plain data (checkpointable)."""
        canvas = Canvas(self.interpreter, registry=self.registry, config=self.director.config.canvas_config())
        director = copy.copy(self.director)
        previous = self.director.on_turn

        def on_turn(record: TurnRecord) -> None:
            if previous is not None:
                previous(record)
            if emit is not None:
                emit(_edit_event(self.name, record, canvas))

        director.on_turn = on_turn
        trajectory = await director.arun(task, canvas)
        design_id = uuid.uuid4().hex
        self._caches[design_id] = canvas.cache
        while len(self._caches) > _CACHE_SLOTS:
            self._caches.popitem(last=False)
        design = {
            "design_id": design_id,
            "workflow": trajectory.workflow.dsl,
            "workflow_json": to_json(trajectory.workflow, indent=None),
            "design_answer": trajectory.answer,
            "stop_reason": trajectory.stop_reason,
            "fallback": trajectory.fallback,
            "turns": len(trajectory.turns),
            "director_usage": usage_dict(trajectory.usage),
            "executor_usage": usage_dict(trajectory.executor_usage),
        }
        if emit is not None:
            emit({"event": "flowsteer.designed", "node": self.name, "workflow": design["workflow"],
                  "turns": design["turns"], "stop_reason": design["stop_reason"], "fallback": design["fallback"]})
        return design

    def _graph(self, workflow: Workflow, design_id: str | None) -> Any:
        cache = self._caches.get(design_id or "") or NodeCache()
        return compile_workflow(workflow, executor=self.interpreter, cache=cache, name=f"{self.name}_workflow")

    async def aexecute(self, workflow: Workflow, task: Task, design_id: str | None = None,
                       config: RunnableConfig | None = None) -> tuple[str, dict[str, int]]:
        """Run ``workflow`` through its compiled LangGraph graph; returns the answer and the executor
        usage of this run. Nodes the canvas already ran for this design come from its cache."""
        result = await self._graph(workflow, design_id).ainvoke(task_input(task), config=config)
        return result.get("answer", ""), _run_usage(result)

    def execute(self, workflow: Workflow, task: Task, design_id: str | None = None,
                config: RunnableConfig | None = None) -> tuple[str, dict[str, int]]:
        """:meth:`aexecute` on LangGraph's sync path (sync-only checkpointers such as SqliteSaver)."""
        result = self._graph(workflow, design_id).invoke(task_input(task), config=config)
        return result.get("answer", ""), _run_usage(result)

    def outcome(self, design: Mapping[str, Any], workflow: Workflow | None, answer: str,
                run_usage: Mapping[str, int], status: str) -> dict[str, Any]:
        """The fields the node and the runnable report."""
        executor = {k: design["executor_usage"][k] + run_usage.get(k, 0) for k in design["executor_usage"]}
        return {
            "answer": answer,
            "workflow": workflow.dsl if workflow is not None else design["workflow"],
            "workflow_json": to_json(workflow) if workflow is not None else design["workflow_json"],
            "usage": {"director": dict(design["director_usage"]), "executor": executor,
                      "turns": design["turns"], "stop_reason": design["stop_reason"],
                      "fallback": design["fallback"]},
            "status": status,
        }


def _run_usage(result: Mapping[str, Any]) -> dict[str, int]:
    """Executor usage of the nodes a graph run executed (cache hits cost nothing)."""
    usage = {"input_tokens": 0, "output_tokens": 0, "calls": 0}
    for entry in result.get("trace", []):
        if not entry["cached"]:
            for key in usage:
                usage[key] += entry["usage"].get(key, 0)
    return usage


def _edit_event(name: str, record: TurnRecord, canvas: Canvas) -> dict[str, Any]:
    return {
        "event": "flowsteer.canvas_edit",
        "node": name,
        "turn": record.index,
        "kind": record.kind,
        "action": render_action(record.action) if record.action is not None else None,
        "accepted": record.accepted,
        "summary": record.summary(),
        "workflow": canvas.workflow.dsl,
    }


class _Node:
    """The orchestrator node's behaviour (see :func:`create_orchestrator_node`)."""

    def __init__(self, engine: Orchestration, *, input_key: str, task_kind: str,
                 output_keys: Mapping[str, str], require_approval: bool) -> None:
        from langgraph.func import task as as_task

        task: Any = as_task  # its overloads do not type methods or lambdas
        self.engine = engine
        self.input_key = input_key
        self.task_kind = task_kind
        self.output_keys = output_keys
        self.require_approval = require_approval
        # The design runs as a LangGraph task: its result is checkpointed, so resuming after the
        # approval interrupt does not ask the director again.
        self._adesign = task(name=f"{engine.name}_design")(self._design)
        self._sdesign = task(name=f"{engine.name}_design")(lambda data: run_sync(self._design(data)))

    async def _design(self, task_data: dict[str, Any]) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        return await self.engine.design(task_from_state(task_data), get_stream_writer())

    async def ainvoke(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        task = read_task(state, self.task_kind, self.input_key)
        design = await self._adesign(dict(task_to_state(task)))
        workflow, status = self._review(design)
        answer, usage = "", dict[str, int]()
        if workflow is not None and not workflow.is_empty:
            answer, usage = await self.engine.aexecute(workflow, task, design["design_id"], config)
        return self._update(state, design, workflow, answer, usage, status)

    def invoke(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        task = read_task(state, self.task_kind, self.input_key)
        design = self._sdesign(dict(task_to_state(task))).result()
        workflow, status = self._review(design)
        answer, usage = "", dict[str, int]()
        if workflow is not None and not workflow.is_empty:
            answer, usage = self.engine.execute(workflow, task, design["design_id"], config)
        return self._update(state, design, workflow, answer, usage, status)

    def _update(self, state: Mapping[str, Any], design: Mapping[str, Any], workflow: Workflow | None,
                answer: str, usage: Mapping[str, int], status: str) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        if workflow is not None and workflow.is_empty:
            status = "empty"
        get_stream_writer()({"event": "flowsteer.answered", "node": self.engine.name, "answer": answer,
                             "status": status})
        values = self.engine.outcome(design, workflow, answer, usage, status)
        update = {key: values[field] for field, key in self.output_keys.items()}
        if "messages" in state:
            update["messages"] = [AIMessage(content=_reply(answer, status), name=self.engine.name)]
        return update

    def _review(self, design: Mapping[str, Any]) -> tuple[Workflow | None, str]:
        """Ask a human about the design (when configured); returns the workflow to run and the status."""
        from langgraph.types import interrupt

        from flowsteer.workflow.dsl import parse
        from flowsteer.workflow.validation import validate

        workflow = from_json(design["workflow_json"])
        if not self.require_approval or workflow.is_empty:
            return workflow, "auto"
        request: dict[str, Any] = {"event": "flowsteer.approval", "node": self.engine.name,
                                   "workflow": design["workflow"], "workflow_json": design["workflow_json"],
                                   "resume_with": "True to run it, False to skip it, or an edited DSL string"}
        while True:
            reply = interrupt(request)
            match reply:
                case True:
                    return workflow, "approved"
                case False | None:
                    return None, "rejected"
                case str():
                    try:
                        edited = parse(reply, self.engine.registry)
                    except UserError as exc:
                        request = {**request, "error": str(exc)}
                        continue
                    problems = validate(edited, self.engine.registry)
                    if not problems and not edited.is_empty:
                        return edited, "edited"
                    request = {**request, "error": "; ".join(str(p) for p in problems) or "the workflow is empty"}
                case _:
                    request = {**request, "error": f"cannot resume with {reply!r}: {request['resume_with']}"}


def _reply(answer: str, status: str) -> str:
    if status == "rejected":
        return "The designed workflow was not approved, so it was not run."
    return answer


def create_orchestrator_node(
    *,
    director: Director | BaseChatModel,
    executor: BaseChatModel | Interpreter,
    registry: OperatorRegistry | None = None,
    sandbox: Any = None,
    max_turns: int | None = None,
    input_key: str = "question",
    task_kind: str = "math",
    output_keys: Mapping[str, str | None] | None = None,
    require_approval: bool = False,
    name: str = "flowsteer",
) -> RunnableLambda:
    """A node for your own ``StateGraph`` that designs and runs a workflow per task.

    Args:
        director: the Flow-Director (a :class:`Director`, or a chat model to wrap in one).
        executor: the chat model the workflow's operators call, or an :class:`Interpreter`.
        registry: operator registry (default: the director's).
        sandbox: code sandbox for Programmer/Test (default: a new ``Sandbox()``).
        max_turns: canvas turns per design (default: the director's own, e.g. the trained embedded
            director's 10).
        input_key: the state key holding the question (else the last human message of ``messages``).
        task_kind: ``math``, ``qa`` or ``code`` for string questions.
        output_keys: field -> state key overrides of :data:`DEFAULT_OUTPUT_KEYS` (``None`` drops one).
        require_approval: interrupt with the design before running it (needs a checkpointer).
        name: the node's run name and the prefix of its events.

    Returns a runnable with sync and async paths; pass it to ``builder.add_node(name, node)``.
    """
    keys: dict[str, str | None] = dict(DEFAULT_OUTPUT_KEYS)
    unknown = sorted(set(output_keys or {}) - set(keys))
    if unknown:
        raise UserError(f"unknown output_keys {unknown}; valid fields: {sorted(keys)}")
    keys.update(output_keys or {})
    engine = Orchestration(director=director, executor=executor, registry=registry, sandbox=sandbox,
                           max_turns=max_turns, name=name)
    node = _Node(engine, input_key=input_key, task_kind=task_kind,
                 output_keys={f: k for f, k in keys.items() if k}, require_approval=require_approval)
    afunc: Callable[..., Awaitable[dict[str, Any]]] = node.ainvoke
    return RunnableLambda(node.invoke, afunc=afunc, name=name)
