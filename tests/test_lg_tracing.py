"""What callback handlers (LangSmith-style tracing) see of a compiled workflow graph.

Each operator node is one LangGraph node run named after the node; the operator's own run
(``"<Operator> <id>"``, as the core interpreter opens it) nests directly under it, and the
executor model's call under that. No node opens a second run of its own name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from flowsteer.integrations import compile_workflow
from flowsteer.sandbox import Sandbox
from flowsteer.tasks import Task
from flowsteer.testing.fakes import ScriptedChatModel
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter

QUESTION = "What is 6 * 7?"


class _Runs(BaseCallbackHandler):
    """Records every chain and chat-model run with its parent."""

    def __init__(self) -> None:
        self.names: dict[UUID, str] = {}
        self.parents: dict[UUID, UUID | None] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        self.names[run_id] = kwargs.get("name") or ""
        self.parents[run_id] = parent_run_id

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.names[run_id] = "chat_model"
        self.parents[run_id] = parent_run_id

    def path(self, run_id: UUID) -> list[str]:
        """Names from the root run down to ``run_id``."""
        names: list[str] = []
        current: UUID | None = run_id
        while current is not None:
            names.append(self.names.get(current, "?"))
            current = self.parents.get(current)
        return names[::-1]

    def chat_paths(self) -> list[list[str]]:
        return [self.path(r) for r, name in self.names.items() if name == "chat_model"]


def _graph():
    interpreter = Interpreter(ScriptedChatModel(default=lambda m: "42"), sandbox=Sandbox(mode="process"))
    return compile_workflow(parse("Custom -> Format"), executor=interpreter)


def _check(runs: _Runs) -> None:
    # the node's run is the operator's run: model calls nest right under it, with no second,
    # nested run per node (the interpreter, which has no node runs, opens "Custom node_1")
    assert runs.chat_paths() == [
        ["flowsteer_workflow", "node_1_Custom", "chat_model"],
        ["flowsteer_workflow", "node_2_Format", "chat_model"],
    ]
    names = list(runs.names.values())
    assert names.count("node_1_Custom") == 1 and names.count("Custom node_1") == 0


def test_the_interpreter_opens_a_named_run_per_operator_node():
    runs = _Runs()
    interpreter = Interpreter(ScriptedChatModel(default=lambda m: "42"), sandbox=Sandbox(mode="process"))
    assert interpreter.run(parse("Custom -> Format"), Task(QUESTION), config={"callbacks": [runs]}).ok
    assert [path[-2:] for path in runs.chat_paths()] == [["Custom node_1", "chat_model"],
                                                          ["Format node_2", "chat_model"]]


def test_sync_invoke_nests_the_model_calls_under_the_node_run():
    runs = _Runs()
    state = _graph().invoke({"question": QUESTION}, config={"callbacks": [runs]})
    assert state["answer"]
    _check(runs)


async def test_async_invoke_nests_the_model_calls_under_the_node_run():
    runs = _Runs()
    state = await _graph().ainvoke({"question": QUESTION}, config={"callbacks": [runs]})
    assert state["answer"]
    _check(runs)


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        type(self).submitted += 1
        return super().submit(*args, **kwargs)


async def test_async_runs_keep_every_node_and_router_on_the_event_loop():
    # Structural nodes and routers are quick dict computations: a worker-thread hop per call (what
    # LangGraph does with a plain sync function under ainvoke) would cost more than the work.
    loop = asyncio.get_running_loop()
    executor = _CountingExecutor(max_workers=1)
    loop.set_default_executor(executor)
    interpreter = Interpreter(ScriptedChatModel(default=lambda m: "42"), sandbox=Sandbox(mode="process"))
    graph = compile_workflow(parse("[Custom, Custom] -> ScEnsemble -> (Review ? Revise : done) * 2"),
                             executor=interpreter)
    state = await graph.ainvoke({"question": QUESTION})
    assert state["answer"] and len(state["trace"]) >= 4
    assert _CountingExecutor.submitted == 0


async def test_messages_stream_tags_each_model_reply_with_its_node():
    chunks = [c async for c in _graph().astream({"question": QUESTION}, stream_mode="messages")]
    assert [(message.content, meta["langgraph_node"]) for message, meta in chunks] == [
        ("42", "node_1_Custom"), ("42", "node_2_Format")]


def _director_episode():
    import flowsteer as fs
    from flowsteer.director import DirectorConfig
    from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

    actions = ["<action>add</action><operator>Programmer</operator>",
               "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
               "<true>Revise</true><false>done</false>",
               "<action>add</action><operator>Format</operator>"]
    task = fs.Task("What is 2 + 3?", answer="5")
    executor = SimulatedExecutor({task.question: "5"}, skill=1.0)
    director = fs.Director(ScriptedChatModel(actions, default="<action>finish</action>"),
                           config=DirectorConfig(write_prompts=False, max_turns=4), target=executor)
    return director, task, executor


def test_a_director_episode_is_one_runnable_trace_with_model_calls_and_nodes_nested():
    from langchain_core.runnables import Runnable
    from langchain_core.tracers.base import BaseTracer

    class Tracer(BaseTracer):
        def __init__(self) -> None:
            super().__init__()
            self.roots: list[Any] = []

        def _persist_run(self, run: Any) -> None:
            self.roots.append(run)

    director, task, executor = _director_episode()
    assert isinstance(director, Runnable)
    tracer = Tracer()
    trajectory = director.invoke(task, {"callbacks": [tracer], "tags": ["episode"]})
    assert trajectory.workflow.dsl == "Programmer -> Verify ? Revise : done -> Format"
    (root,) = tracer.roots
    assert root.name == "Flow-Director" and "episode" in root.tags
    assert root.outputs["workflow"] == trajectory.workflow.dsl
    kinds = [(c.run_type, c.name.split()[0]) for c in root.child_runs]
    assert kinds.count(("llm", "ScriptedChatModel")) == len(trajectory.turns)  # every director call
    nodes = [c for c in root.child_runs if c.run_type == "chain"]
    assert {c.name.split()[0] for c in nodes} >= {"Programmer", "Verify", "Format"}
    assert all(any(g.run_type == "llm" for g in c.child_runs) for c in nodes)  # executor calls nest in nodes

    # the same through arun(config=...) with an explicit target, and a clear error without one
    async def episode():
        again = Tracer()
        await director.arun(task, executor, config={"callbacks": [again]})
        return again.roots

    director, task, executor = _director_episode()
    assert [r.name for r in asyncio.run(episode())] == ["Flow-Director"]
    director.target = None
    import pytest

    from flowsteer.errors import UserError

    with pytest.raises(UserError, match="needs a canvas target"):
        director.invoke(task)
