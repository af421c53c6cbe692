"""Framework overhead: per-node cost of the interpreter and the compiled LangGraph graph.

A 20-node chain of LLM operators runs against a zero-latency ``SimulatedExecutor``. Four runners
make the very same operator calls:

* ``floor``: a hand-written asyncio chain, ``await operator.arun(OperatorCall(...))`` node after
  node, passing each output (and checker feedback) on, nothing else;
* ``interpreter``: ``Interpreter.arun`` (tracing, runnable config per node, result assembly);
* ``graph``: the compiled LangGraph graph's ``ainvoke``;
* ``langgraph_floor`` (for reference): a hand-written LangGraph ``StateGraph`` of 20 nodes, each
  making the same operator call, so the part of the graph's cost that is LangGraph's own runtime
  (channels, supersteps, checkpoint-free Pregel loop) is visible apart from our compiler.

Per-node overhead = (median wall - median floor wall) / 20. Target: the compiled graph's overhead
<= 1.1x that of the hand-written ``StateGraph`` (``langgraph_floor``): what the compiler adds on top
of LangGraph's own runtime (the ``outputs``/``trace`` channels, lanes, the run started by the first
node and ended by the last) stays within 10 %. Runs are interleaved so load changes hit all runners
alike; medians quoted. The interpreter's overhead is reported beside it (no LangGraph runtime).

    python benchmarks/bench_overhead.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TypedDict

from _common import emit, log, median_of, parser

from flowsteer.integrations.langgraph import compile_workflow
from flowsteer.operators.base import OperatorCall
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter
from flowsteer.workflow.ir import OperatorNode, Workflow

TARGET = 1.1
NODES = 20
QUESTION = "A shop sells 12 pencils a day for 9 days. How many pencils does it sell?"
_CYCLE = ("Custom", "AnswerGenerate", "Review", "Revise", "Custom")


def workflow_text(nodes: int = NODES) -> str:
    ops = ["Plan", *(_CYCLE[i % len(_CYCLE)] for i in range(nodes - 2)), "Format"]
    return " -> ".join(ops)


def make_floor(interpreter: Interpreter, workflow: Workflow, task: Task):
    nodes = [step for step in workflow.steps if isinstance(step, OperatorNode)]
    assert len(nodes) == len(workflow.steps), "the overhead workflow must be a flat chain"

    async def run() -> str:
        value, feedback = None, None
        for node in nodes:
            call = OperatorCall(task=task, input=value, prompt=node.prompt, feedback=feedback,
                                params=node.params, node_id=node.id)
            result = await interpreter.operator(node.operator).arun(call)
            if result.verdict is not None:
                feedback = result.feedback
            value = result.output
        return str(value)

    return run


class State(TypedDict, total=False):
    """State of the hand-written LangGraph chain."""

    value: Any
    feedback: str | None


def make_langgraph_floor(interpreter: Interpreter, workflow: Workflow, task: Task):
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    previous = START
    for node in workflow.steps:
        assert isinstance(node, OperatorNode)

        async def step(state: State, node: OperatorNode = node) -> State:
            call = OperatorCall(task=task, input=state.get("value"), prompt=node.prompt,
                                feedback=state.get("feedback"), params=node.params, node_id=node.id)
            result = await interpreter.operator(node.operator).arun(call)
            update: State = {"value": result.output}
            if result.verdict is not None:
                update["feedback"] = result.feedback
            return update

        graph.add_node(node.id, step)
        graph.add_edge(previous, node.id)
        previous = node.id
    graph.add_edge(previous, END)
    compiled = graph.compile()

    async def run() -> None:
        await compiled.ainvoke({"value": None, "feedback": None})

    return run


async def measure(repeats: int) -> dict:
    workflow = parse(workflow_text())
    task = Task(QUESTION)
    executor = SimulatedExecutor({QUESTION: "108"}, latency=0.0)
    interpreter = Interpreter(executor)
    graph = compile_workflow(workflow, executor=interpreter)

    async def run_interpreter():
        result = await interpreter.arun(workflow, task)
        assert result.ok, result.error

    async def run_graph():
        await graph.ainvoke({"question": QUESTION})

    runners = {"floor": make_floor(interpreter, workflow, task), "interpreter": run_interpreter,
               "graph": run_graph, "langgraph_floor": make_langgraph_floor(interpreter, workflow, task)}
    before = len(executor.calls)
    await run_interpreter()
    calls = len(executor.calls) - before
    for fn in runners.values():  # warm-up
        await fn()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            await runners[name]()
            samples[name].append(time.perf_counter() - start)
    med = {name: median_of(v) for name, v in samples.items()}
    per_node_ms = {name: med[name] / NODES * 1000 for name in med}
    over_interp = (med["interpreter"] - med["floor"]) / NODES * 1000
    over_graph = (med["graph"] - med["floor"]) / NODES * 1000
    over_lg = (med["langgraph_floor"] - med["floor"]) / NODES * 1000
    structural = over_lg + over_interp
    return {
        "workflow": workflow_text(),
        "nodes": NODES,
        "executor_calls_per_run": calls,
        "wall_s": med,
        "per_node_ms": per_node_ms,
        "overhead_per_node_ms": {"interpreter": over_interp, "graph": over_graph, "langgraph_floor": over_lg,
                                 "structural_floor": structural},
        "graph_over_interpreter_overhead_ratio": over_graph / over_interp if over_interp > 0 else None,
        "langgraph_floor_over_interpreter_overhead_ratio": over_lg / over_interp if over_interp > 0 else None,
        "graph_over_structural_floor": over_graph / structural if structural > 0 else None,
        "graph_over_langgraph_floor_overhead_ratio": over_graph / over_lg if over_lg > 0 else None,
        "graph_over_interpreter_wall_ratio": med["graph"] / med["interpreter"],
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    repeats = 10 if args.quick else args.repeats
    log(f"overhead: {repeats} interleaved repeats")
    result = asyncio.run(measure(repeats))
    ratio = result["graph_over_langgraph_floor_overhead_ratio"]
    emit("overhead", {
        "method": f"median of {repeats} interleaved runs per runner after a warm-up; overhead = "
                  "(runner - hand-written asyncio floor) / nodes; zero-latency SimulatedExecutor; "
                  "structural_floor = langgraph_floor + interpreter overhead",
        "repeats": repeats,
        **result,
        "target": f"graph per-node overhead <= {TARGET}x the hand-written LangGraph StateGraph's",
        "target_met": ratio is not None and ratio <= TARGET,
    }, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
