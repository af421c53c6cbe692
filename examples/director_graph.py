"""The Flow-Director as a LangGraph graph with human approval (for `langgraph dev` and scripts).

`examples/langgraph.json` serves it to LangGraph Studio next to `designed_workflow.py`; from the
repository root:

    langgraph dev --config examples/langgraph.json

Each run designs a workflow for the question, **interrupts with the design** (the platform's
checkpointer keeps the thread), and on resume runs it: `Command(resume=True)` approves,
`Command(resume=False)` rejects, `Command(resume="<edited DSL>")` runs your edit instead. Over HTTP
that is `POST /threads/{id}/runs` with `{"command": {"resume": true}}`.

The director is $FLOWSTEER_DIRECTOR ("embedded": the shipped trained director; unset: the offline
scripted policy of the examples), the executor $FLOWSTEER_EXECUTOR (unset: the SimulatedExecutor
fake, which knows the demo questions' answers).

    python examples/director_graph.py "What is 12 + 30?"   # design, approve, answer (in-memory checkpointer)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _offline, also when `langgraph dev` loads this file

from _offline import DEMO_ANSWERS, policy_director  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402

from flowsteer.integrations import default_executor  # noqa: E402
from flowsteer.integrations.orchestrator import OrchestratorState, create_orchestrator_node  # noqa: E402


def _director():
    spec = os.environ.get("FLOWSTEER_DIRECTOR")
    if not spec:
        return policy_director()
    from flowsteer.models.specs import load_chat_model

    return load_chat_model(spec)


node = create_orchestrator_node(director=_director(), executor=default_executor(answers=DEMO_ANSWERS),
                                max_turns=12, require_approval=True)
builder = StateGraph(OrchestratorState)
builder.add_node("flowsteer", node)
builder.add_edge(START, "flowsteer")
builder.add_edge("flowsteer", END)
graph = builder.compile()  # the platform adds its checkpointer; scripts pass their own (see main)
graph.name = "director"


def main() -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    question = sys.argv[1] if len(sys.argv) > 1 else "What is 12 + 30?"
    app = builder.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "demo"}}
    state = app.invoke({"question": question}, thread)
    (pending,) = state["__interrupt__"]
    print(f"design awaiting approval: {pending.value['workflow']}")
    final = app.invoke(Command(resume=True), thread)
    print(f"approved; answer: {final['answer']}")


if __name__ == "__main__":
    main()
