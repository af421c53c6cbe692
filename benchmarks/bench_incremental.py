"""Incremental canvas execution: executor calls per 10-edit episode, cached vs full re-runs.

A scripted 10-edit episode (adds, a parallel block, an ensembler, a Verify/Revise conditional,
Format, two prompt changes, an operator swap, a delete) is played on a ``Canvas`` over a
``SimulatedExecutor``; the canvas re-runs the workflow after every edit and serves unchanged nodes
from its per-node cache. The baseline re-runs the whole workflow, without a cache, after each of the
same edits (the reference's behaviour without its cache), on an identical executor. Counted: model
calls the executor received. Repeated over several questions (the simulated verdicts differ, so
Revise runs on some); target: >= 3x fewer calls with the cache.

    python benchmarks/bench_incremental.py [--quick]
"""

from __future__ import annotations

import sys
import time

from _common import emit, log, parser

from flowsteer.canvas import Canvas
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.interpreter import Interpreter

TARGET = 3.0


def _add(op: str, prompt: str) -> str:
    return f"<action>add</action><operator>{op}</operator><prompt>{prompt}</prompt>"


# (turn texts of one edit) x 10 edits; node ids follow the canvas's pre-order numbering
EPISODE: list[list[str]] = [
    [_add("Plan", "Outline the steps.")],
    [_add("Custom", "Solve it.")],
    ["<action>add</action><structure>parallel</structure><operators>Custom, AnswerGenerate</operators>",
     "Solve it one way.", "Solve it another way."],
    [_add("ScEnsemble", "Pick the majority.")],
    ["<action>add</action><structure>conditional</structure><condition>Verify</condition><true>Revise</true>",
     "Check the answer.", "Fix the answer."],
    [_add("Format", "Only the number.")],
    ["<action>set_prompt</action><target>node_10</target><prompt>Only the final number.</prompt>"],
    ["<action>set_prompt</action><target>node_1</target><prompt>Outline it in two steps.</prompt>"],
    ["<action>modify</action><target>node_2</target><operator>AnswerGenerate</operator>", "Answer directly."],
    ["<action>delete</action><target>node_10</target>"],
]


def questions(n: int) -> dict[str, str]:
    return {f"A crate holds {a} apples and {a + 7} pears. How many fruits are in {b} crates?": str(b * (2 * a + 7))
            for a, b in zip(range(11, 11 + n), range(3, 3 + n), strict=True)}


def play(question: str, gold: dict[str, str], seed: int) -> dict:
    cached_exec = SimulatedExecutor(gold, seed=seed)
    full_exec = SimulatedExecutor(gold, seed=seed)
    full = Interpreter(full_exec)
    canvas = Canvas(cached_exec)
    canvas.reset(Task(question))
    edits_run = 0
    start = time.perf_counter()
    for turns in EPISODE:
        for text in turns:
            _, _, info = canvas.step(text)
        if not info.accepted:
            raise RuntimeError(f"edit refused: {info.message}")
        if info.execution is not None:
            edits_run += 1
            result = full.run(canvas.workflow, canvas.task)  # no cache: everything runs again
            if result.answer != info.execution.answer:
                raise RuntimeError("cached and full runs disagree on the answer")
    seconds = time.perf_counter() - start
    return {"cached_calls": len(cached_exec.calls), "full_rerun_calls": len(full_exec.calls),
            "executions": edits_run, "cache_hits": canvas.cache_hits, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20)
    args = p.parse_args(argv)
    n = 3 if args.quick else args.episodes
    gold = questions(n)
    episodes = []
    for i, question in enumerate(gold):
        log(f"incremental episode {i + 1}/{n}")
        episodes.append(play(question, gold, seed=i))
    cached = sum(e["cached_calls"] for e in episodes)
    full = sum(e["full_rerun_calls"] for e in episodes)
    ratio = full / cached
    emit("incremental", {
        "method": "10-edit scripted episode on Canvas(SimulatedExecutor); baseline re-runs the whole "
                  "workflow without a cache after each executed edit on an identical executor; "
                  "answers checked equal",
        "episodes": n,
        "edits_per_episode": len(EPISODE),
        "executions_per_episode": episodes[0]["executions"],
        "cached_calls_per_episode": cached / n,
        "full_rerun_calls_per_episode": full / n,
        "fewer_calls_ratio": ratio,
        "per_episode": episodes,
        "target": f">= {TARGET}x fewer executor calls with the cache",
        "target_met": ratio >= TARGET,
    }, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
