"""Compiled workflows on real LangGraph graphs: structure, routing, loops, concurrency, checkpoints."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.errors import NodeTimeoutError
from langgraph.types import Overwrite, RetryPolicy

from flowsteer.errors import OperatorError, UserError, WorkflowValidationError
from flowsteer.integrations import WorkflowState, build_state_graph, compile_workflow, task_input
from flowsteer.operators.base import Operator, OperatorCall, OperatorResult, Role
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec
from flowsteer.sandbox import Sandbox
from flowsteer.tasks import Task
from flowsteer.testing.fakes import ScriptedChatModel
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter, NodeCache
from flowsteer.workflow.ir import OperatorNode, Workflow

SANDBOX = Sandbox(mode="process")


class Rules(Operator):
    """Readable rule-based operators, so each test can say exactly which route must be taken.

    Solvers ask the model; Revise appends "+fix"; Verify passes text containing "fix" or "ok";
    Review passes text containing "ok"; ScEnsemble joins branch outputs; Format wraps in <>;
    Flaky raises ConnectionError the first ``FAILURES[name]`` calls; Sleepy sleeps 1 s.
    """

    FAILURES: dict[str, int] = {}
    CALLS: dict[str, int] = {}

    async def arun(self, call: OperatorCall, config=None) -> OperatorResult:
        text = call.input if isinstance(call.input, str) else "|".join(call.input or ())
        self.CALLS[call.node_id] = self.CALLS.get(call.node_id, 0) + 1
        match self.name:
            case "Custom" | "Plan":
                reply = await self.context.model.ainvoke([HumanMessage(f"{self.name}: {call.prompt}")], config)
                return OperatorResult(output=str(reply.content))
            case "Revise":
                return OperatorResult(output=f"{text}+fix")
            case "Verify" | "Review":
                ok = "ok" in text or (self.name == "Verify" and "fix" in text)
                return OperatorResult(output=text, verdict=ok, feedback=f"{self.name} says {'ok' if ok else 'no'}")
            case "ScEnsemble":
                return OperatorResult(output="|".join(call.input or ()))
            case "Format":
                return OperatorResult(output=f"<{text}>")
            case "Flaky":
                left = self.FAILURES.get(call.node_id, 0)
                if left:
                    self.FAILURES[call.node_id] = left - 1
                    raise ConnectionError("backend hiccup")
                return OperatorResult(output=f"{text}+flaky")
            case "Sleepy":
                await asyncio.sleep(1.0)
                return OperatorResult(output="slept")
        raise AssertionError(self.name)


ROLES = {"Plan": Role.PLANNING, "Custom": Role.SOLVING, "Revise": Role.REVISING, "Verify": Role.CHECKING,
         "Review": Role.CHECKING, "ScEnsemble": Role.ENSEMBLING, "Format": Role.FORMATTING,
         "Flaky": Role.SOLVING, "Sleepy": Role.SOLVING}


def _factory(name):
    def make(ctx):
        op = Rules(ctx)
        op.name = name
        return op
    return make


REGISTRY = OperatorRegistry([OperatorSpec(n, r, f"rule {n}", _factory(n)) for n, r in ROLES.items()])


@pytest.fixture(autouse=True)
def _reset_rules():
    Rules.FAILURES.clear()
    Rules.CALLS.clear()


def model(*replies, latency=0.0):
    return ScriptedChatModel(list(replies), default=lambda m: f"said({m[-1].content})", latency=latency)


def wf(text: str) -> Workflow:
    return parse(text, REGISTRY)


def compile_(text, executor=None, **kw):
    return compile_workflow(wf(text), executor=executor or model(), sandbox=SANDBOX, registry=REGISTRY, **kw)


def ran(state) -> list[str]:
    return [f"{e['node_id']}#{e['iteration']}" for e in state["trace"]]


# -- shape -------------------------------------------------------------------------------------
def test_node_names_are_readable_and_the_graph_is_a_state_graph():
    graph = build_state_graph(wf("Custom -> [Custom, Custom] -> ScEnsemble -> (Verify ? Revise : done) * 2"),
                              executor=model(), sandbox=SANDBOX, registry=REGISTRY)
    assert not graph.compiled
    nodes = set(graph.nodes)
    assert {"node_1_Custom", "node_2_fanout", "node_3_Custom", "node_4_Custom", "node_2_fanin",
            "node_5_ScEnsemble", "node_8_Verify", "node_9_Revise", "node_6_loop"} <= nodes


def test_nodes_read_only_their_lane_not_the_accumulated_run():
    """Each node's input schema lists the keys it reads: LangGraph reads every one of them per run of
    the node, so ``outputs``/``trace``/``answer`` (which only grow) are read by no node between the
    run's first (which resets what an earlier run left) and its last (which derives ``outputs`` from
    the trace), and a node of a branch reads the branch lanes instead of the main lane's keys."""
    graph = compile_("Custom -> [Custom, Verify ? Revise : done] -> ScEnsemble -> (Verify ? Revise : done) * 2")
    read = {name: set(node.channels) for name, node in graph.nodes.items() if name != "__start__"}
    assert read, graph.nodes
    first = "node_1_Custom"
    last = {name for name in read if name.endswith(("_loop", "_exit"))}  # leaving the loop ends the run
    assert len(last) == 2, read
    for name, channels in read.items():
        if name != first and name not in last:
            assert not channels & {"outputs", "trace", "answer"}, (name, channels)
    assert {"answer", "outputs", "lanes"} <= read[first] and "trace" not in read[first]
    for name in last:
        assert "trace" in read[name] and not read[name] & {"outputs", "answer"}
    assert "lanes" in read["node_5_Verify"] and "value" not in read["node_5_Verify"]
    assert "value" in read["node_1_Custom"]
    assert {"lanes", "value"} <= read["node_2_fanin"]
    state = graph.invoke({"question": "q?"})  # and the run is unchanged
    assert {"node_1#0", "node_3#0", "node_5#0", "node_7#0", "node_10#0"} <= set(state["outputs"])
    assert state["answer"] == state["outputs"][ran(state)[-1]]


def test_a_plain_chain_carries_only_the_channels_it_uses():
    """A node between the first and the last of a chain reads the task and the flow only, and a run
    writes no channel it does not use (each available channel costs LangGraph a sweep per step);
    the result has the same keys as any other run's."""
    graph = compile_("Custom -> Revise -> Revise -> Format", model("draft"))
    read = {name: set(node.channels) for name, node in graph.nodes.items()}
    assert read["node_2_Revise"] == read["node_3_Revise"] == {"task", "value", "feedback", "verdict"}
    updates = [next(iter(u.values())) for u in graph.stream({"question": "q"}, stream_mode="updates")]
    written = set().union(*updates)
    assert not written & {"lanes", "checks", "route", "loops"}, written
    assert not any("outputs" in u for u in updates[:-1])  # written once, by the node that ends the run
    state = compile_("Custom -> Revise -> Revise -> Format", model("draft")).invoke({"question": "q"})
    assert state["outputs"] == {"node_1#0": "draft", "node_2#0": "draft+fix", "node_3#0": "draft+fix+fix",
                                "node_4#0": "<draft+fix+fix>"}
    assert state["feedback"] is None and state["verdict"] is None and state["loops"] == {}
    loop = compile_("Custom -> (Review ? Revise : done) * 2", model("a"))
    assert set(state) == set(loop.invoke({"question": "q"}))


def test_a_run_on_a_thread_resets_only_what_an_earlier_run_left():
    graph = compile_("(Review ? Revise : done) * 2 -> Format", model("a"), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    first = [next(iter(u.values())) for u in graph.stream({"question": "q1"}, config, stream_mode="updates")][0]
    assert not set(first) & {"value", "lanes", "checks", "answer", "outputs"}  # nothing to reset yet
    second = [next(iter(u.values())) for u in graph.stream({"question": "q2"}, config, stream_mode="updates")][0]
    assert second["answer"] == "" and second["value"] is None
    assert isinstance(second["outputs"], Overwrite) and second["outputs"].value == {}
    assert isinstance(second["loops"], Overwrite)
    state = graph.get_state(config).values
    assert state["question"] == "q2" and set(state["outputs"]) == {f"{e['node_id']}#{e['iteration']}"
                                                                   for e in state["trace"]}


def test_plain_chain_passes_values_and_answers_with_the_last_output():
    state = compile_("Custom -> Revise -> Format", model("draft")).invoke({"question": "q?"})
    assert state["answer"] == "<draft+fix>"
    assert state["outputs"] == {"node_1#0": "draft", "node_2#0": "draft+fix", "node_3#0": "<draft+fix>"}
    assert state["question"] == "q?"


def test_empty_workflow_answers_empty():
    state = compile_workflow(Workflow(), executor=model(), sandbox=SANDBOX, registry=REGISTRY).invoke(
        {"question": "q?"})
    assert state["answer"] == ""


# -- conditional -------------------------------------------------------------------------------
def test_conditional_runs_on_fail_when_the_check_fails():
    state = compile_("Custom -> Review ? Revise : Format", model("draft")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_3#0", "node_4#0"]
    assert state["answer"] == "draft+fix"
    assert state["feedback"] == "Review says no"


def test_conditional_runs_on_pass_when_the_check_passes():
    state = compile_("Custom -> Review ? Revise : Format", model("ok draft")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_3#0", "node_5#0"]
    assert state["answer"] == "<ok draft>"


def test_conditional_with_done_passes_through():
    state = compile_("Custom -> Review ? Revise : done -> Format", model("ok")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_3#0", "node_5#0"]
    assert state["answer"] == "<ok>"


# -- loop --------------------------------------------------------------------------------------
def test_loop_leaves_early_when_the_last_checker_passes():
    # iteration 0: Review fails -> Revise; iteration 1: Verify passes on "+fix" -> exit
    state = compile_("Custom -> (Verify ? Revise : done) * 5 -> Format", model("draft")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_4#0", "node_5#0", "node_4#1", "node_6#0"]
    assert state["answer"] == "<draft+fix>"
    assert state["loops"] == {"node_2": 0}  # reset on exit


def test_loop_runs_max_iterations_when_no_checker_passes():
    state = compile_("Custom -> (Review ? Revise : done) * 3", model("draft")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_4#0", "node_5#0", "node_4#1", "node_5#1", "node_4#2", "node_5#2"]
    assert state["answer"] == "draft+fix+fix+fix"


def test_loop_without_checker_runs_every_iteration():
    state = compile_("Custom -> (Revise) * 3", model("d")).invoke({"question": "q"})
    assert state["answer"] == "d+fix+fix+fix"


def test_nested_loops_reset_the_inner_counter():
    state = compile_("Custom -> ((Revise) * 2 -> Review) * 2", model("d")).invoke({"question": "q"})
    assert ran(state) == ["node_1#0", "node_4#0", "node_4#1", "node_5#0", "node_4#0", "node_4#1", "node_5#1"]
    assert state["answer"] == "d+fix+fix+fix+fix"


# -- parallel ----------------------------------------------------------------------------------
def test_fan_in_collects_branch_outputs_in_branch_order():
    state = compile_("[Custom -> Revise -> Revise, Custom] -> ScEnsemble",
                     model("a", "b")).invoke({"question": "q"})
    # branch 1 is longer than branch 2: the fan-in must still wait for it
    outs = state["outputs"]
    assert state["answer"] == f"{outs['node_4#0']}|{outs['node_5#0']}"
    assert state["answer"].count("+fix") == 2


def test_parallel_branches_ending_in_conditionals_and_loops_join_once():
    text = "Custom -> [Review ? Revise : done, (Revise -> Verify) * 3, Custom] -> ScEnsemble -> Format"
    state = compile_(text, model("x", "y")).invoke({"question": "q"})
    assert state["answer"] == "<x+fix|x+fix|y>"
    assert sum(1 for e in state["trace"] if e["operator"] == "ScEnsemble") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_parallel_branches_run_concurrently(mode):
    graph = compile_("[Custom, Custom, Custom] -> ScEnsemble", model(latency=0.3))
    if mode == "sync":
        state = graph.invoke({"question": "q"})
    else:
        state = asyncio.run(graph.ainvoke({"question": "q"}))
    spans = [(e["started"], e["ended"]) for e in state["trace"] if e["operator"] == "Custom"]
    assert len(spans) == 3
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end, f"branches did not overlap: {spans}"


def test_nested_parallel_inside_a_loop_inside_a_branch():
    text = "Plan -> [([Custom, Revise] -> ScEnsemble -> Verify ? Revise : done) * 2, Custom -> Revise] -> ScEnsemble"
    graph = compile_(text, model("plan", "c1", "c2"))
    state = graph.invoke({"question": "q"})
    ref = Interpreter(model("plan", "c1", "c2"), sandbox=SANDBOX, registry=REGISTRY).run(wf(text), Task("q"))
    assert state["answer"] == ref.answer
    assert state["outputs"] == {f"{n}#{i}": o for (n, i), o in ref.outputs().items()}


# -- streaming ---------------------------------------------------------------------------------
def test_stream_updates_yield_one_update_per_node():
    graph = compile_("Custom -> Review ? Revise : done -> Format", model("draft"))
    updates = list(graph.stream({"question": "q"}, stream_mode="updates"))
    names = [next(iter(u)) for u in updates]
    # no node beyond the workflow's own: the first starts the run, the last writes the answer
    assert names == ["node_1_Custom", "node_3_Review", "node_4_Revise", "node_5_Format"]
    first = updates[0]["node_1_Custom"]
    assert isinstance(first["trace"], Overwrite) and [e["output"] for e in first["trace"].value] == ["draft"]
    assert first["question"] == "q" and "answer" not in updates[2]["node_4_Revise"]
    last = updates[-1]["node_5_Format"]
    assert last["answer"] == "<draft+fix>" and last["outputs"]["node_5#0"] == "<draft+fix>"
    assert set(last["outputs"]) == {"node_1#0", "node_3#0", "node_4#0", "node_5#0"}


async def test_astream_updates():
    graph = compile_("[Custom, Custom] -> ScEnsemble", model("a", "b"))
    names = [next(iter(u)) async for u in graph.astream({"question": "q"}, stream_mode="updates")]
    assert names[0] == "node_1_fanout" and names[-1] == "node_4_ScEnsemble"
    assert set(names[1:3]) == {"node_2_Custom", "node_3_Custom"}


# -- runs start and end inside the workflow's own nodes --------------------------------------------
SHAPES = [
    "Custom -> Format",
    "Review ? Revise : done -> Format",            # starts at a checker
    "[Custom, Custom] -> ScEnsemble",              # starts at a fan-out
    "(Review ? Revise : done) * 2",                # starts with a loop: a prepare node
    "Custom -> Review ? Revise : done",            # ends at a checker or after its fail branch
    "Custom -> (Verify ? Revise : done) * 2",      # ends at a loop's exit or gate
    "Custom -> [Custom, Revise]",                  # ends at a fan-in
]


@pytest.mark.parametrize("text", SHAPES)
def test_each_run_on_a_checkpointed_thread_starts_afresh_and_ends_with_its_answer(text):
    graph = compile_(text, model(), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    nodes = set(graph.get_graph().nodes)
    assert ("prepare" in nodes) == text.startswith("("), nodes
    assert "finalize" not in nodes
    for question in ("first question", "second ok question", "first question"):
        state = graph.invoke({"question": question}, config)
        ref = Interpreter(model(), sandbox=SANDBOX, registry=REGISTRY).run(wf(text), Task(question))
        assert ref.ok, ref.error
        assert state["answer"] == ref.answer and state["answer"], (text, question)
        # only this run's nodes: the accumulating keys were reset by the run's first node
        assert ran(state) == [f"{t.node_id}#{t.iteration}" for t in ref.trace]
        assert state["outputs"] == {f"{n}#{i}": o for (n, i), o in ref.outputs().items()}
        assert graph.get_state(config).values.get("task") is None  # the next run reads its own input


def test_a_task_given_as_input_is_read_by_the_first_node():
    graph = compile_("Custom -> Format", model("x"))
    state = graph.invoke({"task": {"question": "q", "kind": "math", "id": "t-1"}})
    assert state["answer"] == "<x>" and state["question"] == "q"


# -- checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("saver", ["memory", "sqlite"])
def test_interrupt_before_a_node_and_resume(saver, tmp_path, caplog):
    text = "Custom -> Review ? Revise : done -> Format"
    expected = compile_(text, model("draft")).invoke({"question": "q"})["answer"]
    Rules.CALLS.clear()
    config = {"configurable": {"thread_id": "t1"}}
    with SqliteSaver.from_conn_string(str(tmp_path / "ck.sqlite")) as sqlite:
        # strict msgpack: the state must be plain data that any checkpointer can store
        strict = JsonPlusSerializer(allowed_msgpack_modules=None)
        checkpointer = InMemorySaver(serde=strict) if saver == "memory" else sqlite
        graph = compile_(text, model("draft"), checkpointer=checkpointer, interrupt_before=["node_4_Revise"])
        paused = graph.invoke({"question": "q"}, config)
        assert not paused.get("answer")
        assert graph.get_state(config).next == ("node_4_Revise",)
        assert Rules.CALLS == {"node_1": 1, "node_3": 1}
        final = graph.invoke(None, config)
    assert final["answer"] == expected == "<draft+fix>"
    assert Rules.CALLS == {"node_1": 1, "node_3": 1, "node_4": 1, "node_5": 1}  # nothing ran twice
    assert "Blocked deserialization" not in caplog.text


def test_failed_node_resumes_from_the_checkpoint_with_sqlite(tmp_path):
    text = "Custom -> [Flaky, Revise] -> ScEnsemble -> Format"
    Rules.FAILURES["node_3"] = 1
    db = str(tmp_path / "checkpoints.sqlite")
    config = {"configurable": {"thread_id": "run-1"}}
    with SqliteSaver.from_conn_string(db) as saver:
        with pytest.raises(OperatorError, match="backend hiccup"):
            compile_(text, model("draft"), checkpointer=saver).invoke({"question": "q"}, config)
    assert Rules.CALLS == {"node_1": 1, "node_3": 1, "node_4": 1}
    # a fresh graph and a fresh connection: only the failed branch runs again
    with SqliteSaver.from_conn_string(db) as saver:
        final = compile_(text, model("unused"), checkpointer=saver).invoke(None, config)
    assert final["answer"] == "<draft+flaky|draft+fix>"
    assert Rules.CALLS == {"node_1": 1, "node_3": 2, "node_4": 1, "node_5": 1, "node_6": 1}


def test_second_run_on_the_same_thread_starts_fresh():
    graph = compile_("Custom -> (Review ? Revise : done) * 2", model("a", "b"), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    first = graph.invoke({"question": "first"}, config)
    second = graph.invoke(task_input(Task("second", id="s2")), config)
    assert first["answer"] == "a+fix+fix" and second["answer"] == "b+fix+fix"
    assert second["question"] == "second"
    assert len(second["trace"]) == len(first["trace"])


# -- options -----------------------------------------------------------------------------------
def test_retry_policy_retries_a_failing_operator():
    Rules.FAILURES["node_2"] = 2
    graph = compile_("Custom -> Flaky", model("d"), retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01))
    assert graph.invoke({"question": "q"})["answer"] == "d+flaky"
    assert Rules.CALLS["node_2"] == 3


def test_without_retry_policy_a_failure_raises_operator_error_naming_the_node():
    Rules.FAILURES["node_2"] = 1
    with pytest.raises(OperatorError) as info:
        compile_("Custom -> Flaky", model("d")).invoke({"question": "q"})
    assert info.value.node_id == "node_2"


async def test_node_timeout_applies_to_async_runs():
    graph = compile_("Custom -> Sleepy", model("d"), node_timeout=0.2)
    with pytest.raises(NodeTimeoutError):
        await graph.ainvoke({"question": "q"})


def test_shared_node_cache_skips_unchanged_nodes():
    cache = NodeCache()
    executor = ScriptedChatModel(default=lambda m: "same")
    graph = compile_("Custom -> Revise", executor, cache=cache)
    graph.invoke({"question": "q"})
    second = graph.invoke({"question": "q"})
    assert [e["cached"] for e in second["trace"]] == [True, True]
    assert len(executor.calls) == 1


def test_invoke_from_inside_a_running_event_loop():
    async def main():
        return compile_("Custom -> Format", model("d")).invoke({"question": "q"})

    assert asyncio.run(main())["answer"] == "<d>"


def test_executor_can_be_an_interpreter():
    interp = Interpreter(model("d"), sandbox=SANDBOX, registry=REGISTRY)
    state = compile_workflow(wf("Custom -> Format"), executor=interp).invoke({"question": "q"})
    assert state["answer"] == "<d>"
    with pytest.raises(UserError, match="give sandbox= and registry= to the Interpreter"):
        build_state_graph(wf("Custom"), executor=interp, registry=REGISTRY)


def test_custom_state_schema_keeps_user_keys():
    class MyState(WorkflowState, total=False):
        user_note: str

    graph = compile_("Custom", model("d"), state_schema=MyState)
    state = graph.invoke({"question": "q", "user_note": "hello"})
    assert state["user_note"] == "hello" and state["answer"] == "d"

    from typing import TypedDict

    class Bad(TypedDict):
        question: str

    with pytest.raises(UserError, match="lacks the keys"):
        compile_("Custom", model("d"), state_schema=Bad)


# -- developer mistakes ------------------------------------------------------------------------
def test_invalid_workflow_is_rejected_at_build_time():
    bad = Workflow((OperatorNode("Nope", id="node_1"),), next_id=2)
    with pytest.raises(WorkflowValidationError, match="unknown operator 'Nope'"):
        compile_workflow(bad, executor=model(), sandbox=SANDBOX, registry=REGISTRY)


def test_workflow_without_ids_is_rejected():
    with pytest.raises(UserError, match="WorkflowBuilder"):
        compile_workflow(Workflow((OperatorNode("Custom"),)), executor=model(), sandbox=SANDBOX,
                         registry=REGISTRY)


def test_missing_executor_and_missing_input_are_explained():
    with pytest.raises(UserError, match="executor= is required"):
        compile_workflow(wf("Custom"), executor=None, sandbox=SANDBOX, registry=REGISTRY)
    with pytest.raises(UserError, match="needs an input"):
        compile_("Custom").invoke({})


def test_sync_nodes_run_on_worker_threads_for_sync_invoke():
    seen: set[int] = set()

    def reply(messages):
        seen.add(threading.get_ident())
        return "x"

    compile_("[Custom, Custom] -> ScEnsemble", ScriptedChatModel(default=reply, latency=0.05)).invoke(
        {"question": "q"})
    assert len(seen) >= 1


def test_sync_invoke_runs_every_branch_of_a_wide_parallel_at_once():
    """Python's default pool (6 threads on 2 cores) used to run an 8-way parallel in two waves."""
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    class Wait(Operator):
        name = "Wait"

        async def arun(self, call: OperatorCall, config=None) -> OperatorResult:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0.3)
            with lock:
                state["now"] -= 1
            return OperatorResult(output="x")

    def make(ctx):
        op = Wait(ctx)
        return op

    registry = OperatorRegistry([OperatorSpec("Wait", Role.SOLVING, "waits", make),
                                 OperatorSpec("ScEnsemble", Role.ENSEMBLING, "rule", _factory("ScEnsemble"))])
    graph = compile_workflow(parse("[" + ", ".join(["Wait"] * 8) + "] -> ScEnsemble", registry),
                             executor=model(), sandbox=SANDBOX, registry=registry)
    graph.invoke(task_input(Task("q")))
    assert state["peak"] == 8
