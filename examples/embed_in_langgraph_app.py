"""Embed learned orchestration in your own LangGraph app, and in an LCEL chain.

    python examples/embed_in_langgraph_app.py              # offline fakes, a few seconds
    python examples/embed_in_langgraph_app.py --embedded   # the embedded SmolLM2 designs (CPU, minutes)

1. A user graph ``intake -> flowsteer -> reply``: the orchestrator node reads the question from the
   state, the director designs a workflow on the canvas (its edits stream as custom events), the
   design runs as a compiled LangGraph subgraph, and the answer flows on to the next node.
2. The same node with human approval: the graph interrupts with the designed workflow and resumes
   with ``Command(resume=True)`` (a checkpointer keeps the design, so it is not redone).
3. ``prompt | FlowSteerRunnable | StrOutputParser()`` in LCEL, with ``invoke`` and ``batch``.
"""

from __future__ import annotations

import argparse
from typing import Any

from _offline import DEMO_ANSWERS, add_model_arguments, models
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from flowsteer.integrations.orchestrator import OrchestratorState, create_orchestrator_node
from flowsteer.integrations.runnable import FlowSteerRunnable

QUESTIONS = list(DEMO_ANSWERS)


class AppState(OrchestratorState, total=False):
    """Your app's state: the orchestrator's keys plus your own."""

    user_input: str
    reply: str


def build_app(node: Any, *, checkpointer: Any = None) -> Any:
    """intake -> flowsteer -> reply."""

    def intake(state: AppState) -> dict[str, Any]:
        return {"question": state["user_input"].strip()}

    def reply(state: AppState) -> dict[str, Any]:
        return {"reply": f"The answer is {state['answer']} (workflow: {state['workflow']})."}

    builder = StateGraph(AppState)
    builder.add_node("intake", intake)
    builder.add_node("flowsteer", node)
    builder.add_node("reply", reply)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "flowsteer")
    builder.add_edge("flowsteer", "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=checkpointer)


def stream_app(args: argparse.Namespace) -> None:
    director, executor, max_turns = models(args)
    app = build_app(create_orchestrator_node(director=director, executor=executor, max_turns=max_turns))
    print("== 1. orchestrator node inside a user graph ==")
    for mode, chunk in app.stream({"user_input": QUESTIONS[0]}, stream_mode=["custom", "updates"]):
        if mode == "custom" and chunk["event"] == "flowsteer.canvas_edit":
            verdict = "" if chunk["accepted"] else "  (refused)"
            print(f"  canvas turn {chunk['turn']:>2} {chunk['kind']:<6} | {chunk['workflow'] or '(empty)'}{verdict}")
        elif mode == "updates" and "reply" in chunk:
            print(f"reply: {chunk['reply']['reply']}")
        elif mode == "updates" and "flowsteer" in chunk:
            usage = chunk["flowsteer"]["usage"]
            print(f"usage: director calls {usage['director']['calls']}, executor calls {usage['executor']['calls']}")


def approve(args: argparse.Namespace) -> None:
    director, executor, max_turns = models(args)
    node = create_orchestrator_node(director=director, executor=executor, max_turns=max_turns,
                                    require_approval=True)
    app = build_app(node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "demo"}}
    print("== 2. human approval before the designed workflow runs ==")
    paused = app.invoke({"user_input": QUESTIONS[1]}, config)
    request = paused["__interrupt__"][0].value
    print(f"approval requested for: {request['workflow']}")
    done = app.invoke(Command(resume=True), config)
    print(f"approved -> {done['reply']}")


def lcel(args: argparse.Namespace) -> None:
    director, executor, max_turns = models(args)
    flowsteer = FlowSteerRunnable(director=director, executor=executor, max_turns=max_turns, max_concurrency=2)
    prompt = ChatPromptTemplate.from_messages([("system", "Answer with a number."), ("human", "{question}")])
    chain = prompt | flowsteer | StrOutputParser()
    print("== 3. LCEL: prompt | FlowSteerRunnable | StrOutputParser ==")
    print(f"invoke: {chain.invoke({'question': QUESTIONS[1]})}")
    batch = QUESTIONS if not args.embedded else []  # a CPU director: keep the demo to a few episodes
    for question, answer in zip(batch, chain.batch([{"question": q} for q in batch]), strict=True):
        print(f"batch: {question[:50]!r} -> {answer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    args = parser.parse_args()
    stream_app(args)
    approve(args)
    lcel(args)


if __name__ == "__main__":
    main()
