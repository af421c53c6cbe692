"""Rollout throughput: episodes/s with 1, 8, 32, 64 concurrent director episodes.

The director model is a ``ScriptedChatModel`` whose reply is computed from the turn it sees (it
builds ``Plan -> [Custom, AnswerGenerate] -> ScEnsemble -> Verify ? Revise : done -> Format`` and
finishes: 13 turns, prompt turns included); the executor is a ``SimulatedExecutor``. Both sleep
``latency`` seconds per call (asyncio), like remote LLM endpoints. ``Director.arun_many`` runs c
episodes at concurrency c. Concurrency efficiency = throughput(c) / (c * throughput(1)); target:
>= 0.8 at c = 64. Medians over repeats.

    python benchmarks/bench_rollout.py [--quick]
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

from _common import emit, log, median_of, parser

from flowsteer.director import Director, DirectorConfig
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

TARGET = 0.8
_DSL_RE = re.compile(r"^Workflow: (.*)$", re.MULTILINE)
_PLAN = [
    ("", "<action>add</action><operator>Plan</operator>"),
    ("[", "<action>add</action><structure>parallel</structure><operators>Custom, AnswerGenerate</operators>"),
    ("ScEnsemble", "<action>add</action><operator>ScEnsemble</operator>"),
    ("Verify", "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
               "<true>Revise</true><false>done</false>"),
    ("Format", "<action>add</action><operator>Format</operator>"),
]


def scripted_director_reply(messages) -> str:
    """The next action of a fixed design policy, read off the canvas state in the prompt."""
    system = str(messages[0].content)
    if system.startswith("You write the prompt"):
        return "Work through the task carefully and state the final number."
    match = _DSL_RE.search(str(messages[-1].content))
    dsl = match.group(1) if match and match.group(1) != "(empty)" else ""
    for marker, action in _PLAN:
        if (marker == "" and not dsl) or (marker and dsl and marker not in dsl):
            return action
    return "<action>finish</action>"


def tasks(n: int, offset: int) -> list[str]:
    return [f"Sam reads {7 + i + offset} pages a day for {3 + i % 5} days. How many pages?" for i in range(n)]


async def wave(c: int, latency: float, offset: int) -> tuple[float, list]:
    director = Director(ScriptedChatModel(default=scripted_director_reply, latency=latency),
                        config=DirectorConfig(max_turns=20))
    executor = SimulatedExecutor(latency=latency)
    start = time.perf_counter()
    trajectories = await director.arun_many(tasks(c, offset), executor, concurrency=c)
    seconds = time.perf_counter() - start
    return seconds, trajectories


def measure(c: int, latency: float, repeats: int) -> dict:
    samples, turns, finished = [], [], 0
    for r in range(repeats):
        seconds, trajectories = asyncio.run(wave(c, latency, offset=r * 100))
        samples.append(seconds)
        turns.extend(len(t.turns) for t in trajectories)
        finished += sum(t.stop_reason == "finish" for t in trajectories)
    wall = median_of(samples)
    return {"concurrency": c, "episodes_per_wave": c, "repeats": repeats, "wave_wall_s": wall,
            "episodes_per_s": c / wall, "mean_turns": sum(turns) / len(turns),
            "finished_fraction": finished / (c * repeats), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.2, help="seconds per director and executor call")
    args = p.parse_args(argv)
    latency = 0.02 if args.quick else args.latency
    levels = (1, 8, 32, 64)
    repeats = {1: 3, 8: 3, 32: 2, 64: 2} if not args.quick else {c: 1 for c in levels}
    results = []
    for c in levels:
        log(f"rollout concurrency {c}")
        results.append(measure(c, latency, repeats[c]))
    base = results[0]["episodes_per_s"]
    for r in results:
        r["efficiency"] = r["episodes_per_s"] / (r["concurrency"] * base)
    at_64 = results[-1]["efficiency"]
    emit("rollout", {
        "method": f"Director.arun_many, c episodes at concurrency c; ScriptedChatModel director and "
                  f"SimulatedExecutor both sleeping {latency}s per call; efficiency = eps(c) / (c * eps(1)); "
                  "median wave time over repeats",
        "latency_s": latency,
        "results": results,
        "efficiency_at_64": at_64,
        "target": f"efficiency >= {TARGET} at 64 concurrent episodes",
        "target_met": at_64 >= TARGET,
    }, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
