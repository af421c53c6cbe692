"""FlowSteerRunnable in LCEL chains: inputs, outputs, async, batch concurrency, callbacks."""

from __future__ import annotations

from typing import Any

import pytest
from director_scripts import DESIGN, QUESTION, PolicyLog, policy_director, scripted_director
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from flowsteer.errors import UserError
from flowsteer.integrations.runnable import FlowSteerResult, FlowSteerRunnable
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.serialize import from_json

SUMS = {f"What is {a} + {b}?": str(a + b) for a, b in [(12, 30), (2, 3), (7, 8), (20, 5), (1, 1), (9, 9)]}


def _executor(**kwargs: Any) -> SimulatedExecutor:
    return SimulatedExecutor({QUESTION: "72", **SUMS}, skill=1.0, **kwargs)


def test_lcel_chain_with_prompt_template_and_output_parser():
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=_executor())
    prompt = ChatPromptTemplate.from_messages([("system", "You are careful."), ("human", "{question}")])
    chain = prompt | flowsteer | StrOutputParser() | RunnableLambda(lambda s: f"Answer: {s}")
    assert chain.invoke({"question": QUESTION}) == "Answer: 72"


@pytest.mark.parametrize("value", [
    QUESTION,
    {"question": QUESTION},
    Task(QUESTION),
    [SystemMessage("Be brief."), HumanMessage("earlier"), HumanMessage(QUESTION)],
    HumanMessage(QUESTION),
])
def test_accepted_inputs(value: Any):
    assert FlowSteerRunnable(director=scripted_director(), executor=_executor()).invoke(value) == "72"


def test_result_output_holds_workflow_and_usage():
    executor = _executor()
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=executor, output="result")
    result = flowsteer.invoke(QUESTION)
    assert isinstance(result, FlowSteerResult)
    assert (result.question, result.answer, result.workflow, result.status) == (QUESTION, "72", DESIGN, "auto")
    assert from_json(result.workflow_json).dsl == DESIGN
    assert result.usage["director"]["calls"] == 13 and result.usage["executor"]["calls"] == len(executor.calls)
    as_dict = FlowSteerRunnable(director=scripted_director(), executor=_executor(), output="dict").invoke(QUESTION)
    assert as_dict["answer"] == "72" and as_dict["workflow"] == DESIGN


async def test_ainvoke_and_abatch_keep_input_order():
    flowsteer = FlowSteerRunnable(director=policy_director(), executor=_executor())
    assert await flowsteer.ainvoke("What is 12 + 30?") == "42"
    questions = list(SUMS)
    assert await flowsteer.abatch(questions) == [SUMS[q] for q in questions]


@pytest.mark.parametrize("limit", [1, 2])
def test_batch_runs_episodes_concurrently_up_to_the_limit(limit: int):
    log = PolicyLog()
    flowsteer = FlowSteerRunnable(director=policy_director(latency=0.002, log=log), executor=_executor(),
                                  max_concurrency=limit)
    questions = list(SUMS)[:4]
    assert flowsteer.batch(questions) == [SUMS[q] for q in questions]
    assert log.max_overlap() == limit


def test_config_max_concurrency_wins():
    log = PolicyLog()
    flowsteer = FlowSteerRunnable(director=policy_director(latency=0.002, log=log), executor=_executor(),
                                  max_concurrency=1)
    flowsteer.batch(list(SUMS)[:3], config={"max_concurrency": 3})
    assert log.max_overlap() == 3


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: list[str] = []
        self.chat_models = 0
        self.custom: list[str] = []
        self.tags: set[str] = set()

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.chains.append(kwargs.get("name") or "")
        self.tags.update(kwargs.get("tags") or [])

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.chat_models += 1

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.custom.append(name)


def test_config_callbacks_reach_director_executor_and_workflow_graph():
    recorder = _Recorder()
    executor = _executor()
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=executor)
    answer = flowsteer.invoke(QUESTION, config={"callbacks": [recorder], "tags": ["mine"]})
    assert answer == "72"
    assert "flowsteer" in recorder.chains and "flowsteer_workflow" in recorder.chains
    assert recorder.chat_models >= 13 + 1  # every director call and the executor calls of the compiled run
    assert "mine" in recorder.tags
    assert recorder.custom.count("flowsteer.canvas_edit") == 13
    assert recorder.custom[-2:] == ["flowsteer.designed", "flowsteer.answered"]


async def test_astream_events_show_canvas_edits():
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=_executor())
    names = [e["name"] async for e in flowsteer.astream_events(QUESTION, version="v2")
             if e["event"] == "on_custom_event"]
    assert names.count("flowsteer.canvas_edit") == 13 and names[-1] == "flowsteer.answered"


def test_invalid_input_raises_with_the_fix():
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=_executor())
    with pytest.raises(UserError, match="question"):
        flowsteer.invoke({"topic": "nothing"})
    with pytest.raises(UserError, match="chat model"):
        FlowSteerRunnable(director=scripted_director(), executor="embedded").invoke(QUESTION)


async def test_sync_invoke_inside_a_running_loop_keeps_callbacks():
    recorder = _Recorder()
    flowsteer = FlowSteerRunnable(director=scripted_director(), executor=_executor())
    assert flowsteer.invoke(QUESTION, config={"callbacks": [recorder]}) == "72"  # runs in a worker thread
    assert recorder.custom.count("flowsteer.canvas_edit") == 13 and "flowsteer_workflow" in recorder.chains
