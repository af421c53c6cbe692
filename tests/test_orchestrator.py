"""The orchestrator node inside real user LangGraph graphs (no mocking of LangGraph)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from director_scripts import DESIGN, QUESTION, policy_director, scripted_director
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from flowsteer.errors import UserError
from flowsteer.integrations.orchestrator import OrchestratorState, create_orchestrator_node, read_task
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor
from flowsteer.workflow.serialize import from_json


def _executor() -> SimulatedExecutor:
    return SimulatedExecutor({QUESTION: "72"}, skill=1.0)


class AppState(OrchestratorState, total=False):
    raw: str
    report: str
    visited: Annotated[list[str], operator.add]


def _app(node: Any, checkpointer: Any = None) -> Any:
    """A user graph: clean the input, orchestrate, then write a report from the results."""

    def intake(state: AppState) -> dict[str, Any]:
        return {"question": state["raw"].strip(), "visited": ["intake"]}

    def report(state: AppState) -> dict[str, Any]:
        return {"report": f"{state['answer']} via {state['workflow']}", "visited": ["report"]}

    builder = StateGraph(AppState)
    builder.add_node("intake", intake)
    builder.add_node("flowsteer", node)
    builder.add_node("report", report)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "flowsteer")
    builder.add_edge("flowsteer", "report")
    builder.add_edge("report", END)
    return builder.compile(checkpointer=checkpointer)


def test_node_between_user_nodes_designs_runs_and_reports():
    executor = _executor()
    app = _app(create_orchestrator_node(director=scripted_director(), executor=executor))
    result = app.invoke({"raw": f"  {QUESTION}  "})
    assert result["answer"] == "72" and result["status"] == "auto"
    assert result["workflow"] == DESIGN
    assert from_json(result["workflow_json"]).dsl == DESIGN
    assert result["report"] == f"72 via {DESIGN}"
    assert result["visited"] == ["intake", "report"]
    usage = result["usage"]
    assert usage["director"]["calls"] == 13 and usage["turns"] == 13 and usage["stop_reason"] == "finish"
    # every executor call is accounted for once: design-time runs plus the compiled run's uncached nodes
    assert usage["executor"]["calls"] == len(executor.calls) > 0


def test_design_runs_through_the_compiled_langgraph_as_a_subgraph():
    app = _app(create_orchestrator_node(director=scripted_director(), executor=_executor()))
    namespaces, inner_nodes = set(), set()
    for namespace, update in app.stream({"raw": QUESTION}, stream_mode="updates", subgraphs=True):
        if namespace:
            namespaces.add(namespace[0].split(":")[0])
            inner_nodes.update(update)
    assert namespaces == {"flowsteer"}
    assert {"node_1_Plan", "node_2_fanout", "node_7_Verify", "node_9_Format"} <= inner_nodes


async def test_messages_state_reads_the_last_human_message_and_appends_the_reply():
    class ChatState(MessagesState, total=False):
        answer: str
        workflow: str

    builder = StateGraph(ChatState)
    builder.add_node("flowsteer", create_orchestrator_node(director=scripted_director(), executor=_executor()))
    builder.add_edge(START, "flowsteer")
    builder.add_edge("flowsteer", END)
    history = [HumanMessage("Hi, can you help with arithmetic?"), AIMessage("Sure."), HumanMessage(QUESTION)]
    result = await builder.compile().ainvoke({"messages": history})
    assert result["answer"] == "72" and result["workflow"] == DESIGN
    assert [m.type for m in result["messages"]] == ["human", "ai", "human", "ai"]
    assert result["messages"][-1].content == "72" and result["messages"][-1].name == "flowsteer"


def test_canvas_edits_stream_as_custom_events():
    app = _app(create_orchestrator_node(director=scripted_director(), executor=_executor()))
    events = [chunk for chunk in app.stream({"raw": QUESTION}, stream_mode="custom")]
    edits = [e for e in events if e["event"] == "flowsteer.canvas_edit"]
    assert [e["turn"] for e in edits] == list(range(1, 14))
    assert [e["kind"] for e in edits[:3]] == ["action", "prompt", "action"]
    assert edits[0]["action"] == "<action>add</action><operator>Plan</operator>" and edits[0]["workflow"] == "Plan"
    assert all(e["accepted"] for e in edits) and edits[-1]["workflow"] == DESIGN
    assert [e["event"] for e in events[-2:]] == ["flowsteer.designed", "flowsteer.answered"]
    assert events[-2]["workflow"] == DESIGN and events[-1]["answer"] == "72"


def _interrupted(app: Any, config: dict[str, Any]) -> dict[str, Any]:
    first = app.invoke({"raw": QUESTION}, config)
    (pending,) = first["__interrupt__"]
    assert "answer" not in first and "report" not in first
    return pending.value


def test_approval_interrupts_with_the_design_and_runs_it_once_approved():
    director, executor = scripted_director(), _executor()
    app = _app(create_orchestrator_node(director=director, executor=executor, require_approval=True),
               InMemorySaver())
    config = {"configurable": {"thread_id": "approve"}}
    request = _interrupted(app, config)
    assert request["workflow"] == DESIGN and from_json(request["workflow_json"]).dsl == DESIGN
    calls = len(director.calls)
    result = app.invoke(Command(resume=True), config)
    assert result["status"] == "approved" and result["answer"] == "72"
    assert result["report"] == f"72 via {DESIGN}"
    assert len(director.calls) == calls == 13  # the design was checkpointed, not redone on resume


def test_rejected_design_is_not_run():
    executor = _executor()
    app = _app(create_orchestrator_node(director=scripted_director(), executor=executor, require_approval=True),
               InMemorySaver())
    config = {"configurable": {"thread_id": "reject"}}
    _interrupted(app, config)
    executed = len(executor.calls)
    result = app.invoke(Command(resume=False), config)
    assert result["status"] == "rejected" and result["answer"] == ""
    assert len(executor.calls) == executed


def test_approval_survives_a_restart_with_a_sqlite_checkpointer(tmp_path):
    db = str(tmp_path / "threads.sqlite")
    config = {"configurable": {"thread_id": "restart"}}
    with SqliteSaver.from_conn_string(db) as saver:
        saver.serde = JsonPlusSerializer(allowed_msgpack_modules=None)  # strict: plain data only
        app = _app(create_orchestrator_node(director=scripted_director(), executor=_executor(),
                                            require_approval=True), saver)
        assert _interrupted(app, config)["workflow"] == DESIGN
    # a new process: a fresh node whose director has nothing to say (it must not be asked again)
    with SqliteSaver.from_conn_string(db) as saver:
        app = _app(create_orchestrator_node(director=ScriptedChatModel([]), executor=_executor(),
                                            require_approval=True), saver)
        result = app.invoke(Command(resume=True), config)
    assert result["status"] == "approved" and result["answer"] == "72" and result["workflow"] == DESIGN


async def test_edited_design_runs_the_edit_and_an_invalid_edit_asks_again():
    app = _app(create_orchestrator_node(director=scripted_director(), executor=_executor(), require_approval=True),
               InMemorySaver())
    config = {"configurable": {"thread_id": "edit"}}
    await app.ainvoke({"raw": QUESTION}, config)
    again = await app.ainvoke(Command(resume="Programmer -> -> Format"), config)
    (pending,) = again["__interrupt__"]
    assert "error" in pending.value and pending.value["workflow"] == DESIGN
    unknown = await app.ainvoke(Command(resume="Programmer -> Telepathy"), config)
    assert "Telepathy" in unknown["__interrupt__"][0].value["error"]
    result = await app.ainvoke(Command(resume="Programmer -> Format"), config)
    assert result["status"] == "edited" and result["workflow"] == "Programmer -> Format"
    assert result["answer"] == "72"


async def test_concurrent_runs_of_one_node_in_a_graph_keep_their_own_designs():
    executor = SimulatedExecutor({"What is 12 + 30?": "42", "What is 2 + 3?": "5"}, skill=1.0)
    builder = StateGraph(OrchestratorState)
    builder.add_node("flowsteer", create_orchestrator_node(director=policy_director(latency=0.001),
                                                           executor=executor))
    builder.add_edge(START, "flowsteer")
    builder.add_edge("flowsteer", END)
    results = await builder.compile().abatch([{"question": "What is 12 + 30?"}, {"question": "What is 2 + 3?"}])
    assert [r["answer"] for r in results] == ["42", "5"]
    assert all(r["workflow"] == DESIGN for r in results)


def test_output_keys_rename_and_drop_fields():
    class Renamed(TypedDict, total=False):
        question: str
        final: str
        workflow: str
        usage: dict[str, Any]

    node = create_orchestrator_node(director=scripted_director(), executor=_executor(),
                                    output_keys={"answer": "final", "usage": None})
    builder = StateGraph(Renamed)
    builder.add_node("flowsteer", node)
    builder.add_edge(START, "flowsteer")
    builder.add_edge("flowsteer", END)
    result = builder.compile().invoke({"question": QUESTION})
    assert result["final"] == "72" and result["workflow"] == DESIGN and "usage" not in result


def test_developer_mistakes_raise_with_the_fix():
    with pytest.raises(UserError, match="valid fields"):
        create_orchestrator_node(director=scripted_director(), executor=_executor(), output_keys={"anser": "x"})
    with pytest.raises(UserError, match="chat model"):
        create_orchestrator_node(director="embedded", executor=_executor())  # type: ignore[arg-type]
    with pytest.raises(UserError, match="human message"):
        read_task({"messages": [AIMessage("no question here")]})
    assert read_task({"question": "Why?"}, task_kind="qa") == Task("Why?", kind="qa")
    assert read_task({"q": "Why?"}, input_key="q").question == "Why?"


def test_the_turn_limit_comes_from_the_director_unless_given():
    from flowsteer.director import Director, DirectorConfig
    from flowsteer.integrations.orchestrator import Orchestration

    own = Director(ScriptedChatModel(["<action>finish</action>"]), config=DirectorConfig(max_turns=7))
    assert Orchestration(director=own, executor=_executor()).max_turns == 7  # not a default of 20
    capped = Orchestration(director=own, executor=_executor(), max_turns=3)
    assert capped.max_turns == 3 and capped.director.config.max_turns == 3
    assert own.config.max_turns == 7  # the caller's director is left alone

    class Preset(ScriptedChatModel):
        """A chat model that ships director settings (as the embedded model does: small_model, 10 turns)."""

        def director_config(self, **overrides):
            return DirectorConfig.small_model(**overrides)

    model = Preset(["<action>finish</action>"])
    assert Orchestration(director=model, executor=_executor()).max_turns == 10
    assert Orchestration(director=model, executor=_executor(), max_turns=4).max_turns == 4
    with pytest.raises(UserError, match="max_turns must be >= 1"):
        Orchestration(director=own, executor=_executor(), max_turns=0)
