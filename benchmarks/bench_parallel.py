"""Parallel efficiency: wall time / critical-path time of k = 2, 4, 8 parallel LLM branches.

The workflow is ``[Custom, AnswerGenerate, Custom, ...] -> ScEnsemble`` (k branches, then one
ensembler), run against a ``SimulatedExecutor`` whose every call sleeps ``latency`` seconds
(``asyncio.sleep``). Its critical path is two model calls (one branch, then the ensembler), so the
ideal wall time is ``2 * latency``. Measured for the core interpreter and for the compiled LangGraph
graph (``ainvoke``); target: ratio <= 1.15 for both. Medians over repeats; the two runners alternate
(interpreter, graph, graph, interpreter, ...) so that load changes on a shared machine hit both alike.

    python benchmarks/bench_parallel.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time

from _common import emit, log, median_of, parser

from flowsteer.integrations.langgraph import compile_workflow
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter

TARGET = 1.15
QUESTION = "A farmer has 17 sheep and buys 25 more. How many sheep does he have now?"


def workflow_text(k: int) -> str:
    branches = ", ".join("Custom" if i % 2 == 0 else "AnswerGenerate" for i in range(k))
    return f"[{branches}] -> ScEnsemble"


async def measure(k: int, latency: float, repeats: int) -> dict:
    workflow = parse(workflow_text(k))
    task = Task(QUESTION)
    executor = SimulatedExecutor({QUESTION: "42"}, latency=latency)
    interpreter = Interpreter(executor)
    graph = compile_workflow(workflow, executor=interpreter)
    critical = 2 * latency

    async def run_interpreter():
        result = await interpreter.arun(workflow, task)
        assert result.ok, result.error

    async def run_graph():
        await graph.ainvoke({"question": QUESTION})

    calls_before = len(executor.calls)
    await run_interpreter()
    calls_per_run = len(executor.calls) - calls_before
    await run_graph()  # warm-up
    samples: dict[str, list[float]] = {"interpreter": [], "graph": []}
    runners = [("interpreter", run_interpreter), ("graph", run_graph)]
    for i in range(repeats):
        for name, run in runners if i % 2 == 0 else runners[::-1]:
            start = time.perf_counter()
            await run()
            samples[name].append(time.perf_counter() - start)
    interp_s, graph_s = median_of(samples["interpreter"]), median_of(samples["graph"])
    return {
        "k": k,
        "workflow": workflow_text(k),
        "executor_calls_per_run": calls_per_run,
        "critical_path_s": critical,
        "interpreter_wall_s": interp_s,
        "graph_wall_s": graph_s,
        "interpreter_ratio": interp_s / critical,
        "graph_ratio": graph_s / critical,
        "sequential_would_be_s": calls_per_run * latency,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.2, help="seconds per simulated model call")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    latency = 0.05 if args.quick else args.latency
    results = []
    for k in (2, 4, 8):
        log(f"parallel k={k}")
        results.append(asyncio.run(measure(k, latency, repeats)))
    worst_interp = max(r["interpreter_ratio"] for r in results)
    worst_graph = max(r["graph_ratio"] for r in results)
    emit("parallel", {
        "method": f"median of {repeats} runs per runner (after 1 warm-up), interpreter and graph runs "
                  f"alternating; per k; SimulatedExecutor latency "
                  f"{latency}s via asyncio.sleep; critical path = 2 sequential calls (branch, ensembler)",
        "latency_s": latency,
        "repeats": repeats,
        "results": results,
        "worst_interpreter_ratio": worst_interp,
        "worst_graph_ratio": worst_graph,
        "target": f"wall/critical <= {TARGET} (interpreter and graph)",
        "target_met": worst_interp <= TARGET and worst_graph <= TARGET,
    }, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
