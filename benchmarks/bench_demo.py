"""Embedded demo: wall time of ``flowsteer run`` on the demo task with the embedded SmolLM2 model.

Runs the ``make demo`` command (its task and ``--type`` read from the Makefile's ``demo`` target,
with ``--json --seed 0``; director, the shipped trained one, and executor both the embedded model,
CPU) as a subprocess twice:

* ``cold``: ``FLOWSTEER_CACHE_DIR`` points at an empty temporary folder, so the GGUF is converted to
  safetensors again before loading (the first run on a fresh machine); the real cache is untouched;
* ``cached``: the usual cache.

Also timed alone: loading the model in a fresh process, cold and cached. Tokens/s = output tokens
(director + executor, from the trajectory's usage) / the episode's own seconds (model load
excluded). ``--quick`` runs the cached case only, with 2 turns. ``--skip-cold-run`` keeps the cold
model-load timing but skips the second full episode (for a machine too slow to run it twice); the
JSON then says the cold run was not measured.

    python benchmarks/bench_demo.py [--quick]
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

from _common import ROOT, emit, log, parser


def demo_task() -> tuple[str, str]:
    """``(task, kind)`` of the Makefile's ``demo`` target: its ``printf`` lines joined, and ``--type``."""
    text = (ROOT / "Makefile").read_text()
    line = next(x for x in text.split("\ndemo:", 1)[1].splitlines() if "flowsteer run" in x)
    printf = re.search(r"printf '%s\\n%s\\n%s' (.*?)\)\"", line)
    if printf is None:
        raise SystemExit("bench_demo: the Makefile's demo target no longer has the printf form it reads")
    task = "\n".join(shlex.split(printf.group(1).replace("$$", "$")))
    kind = re.search(r"--type (\w+)", line)
    return task, kind.group(1) if kind else "auto"


TASK, KIND = demo_task()
LOAD_SNIPPET = ("import time; t=time.perf_counter(); "
                "from flowsteer.models.embedded import load_embedded_model; "
                "load_embedded_model(); print(time.perf_counter()-t)")


def _env(cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if cache_dir is not None:
        env["FLOWSTEER_CACHE_DIR"] = cache_dir
    return env


def time_load(cache_dir: str | None) -> float | None:
    try:
        out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], capture_output=True, text=True,
                             env=_env(cache_dir), timeout=900, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def run_demo(cache: str, cache_dir: str | None, max_turns: int, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "flowsteer", "run", TASK, "--type", KIND, "--json", "--seed", "0"]
    if max_turns:
        cmd += ["--max-turns", str(max_turns)]
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=_env(cache_dir), timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"cache": cache, "wall_s": None, "ok": False, "max_turns": max_turns,
                "timed_out_after_s": timeout}
    wall = time.perf_counter() - start
    result: dict = {"cache": cache, "wall_s": wall, "ok": out.returncode == 0, "max_turns": max_turns}
    if out.returncode != 0:
        result["stderr_tail"] = out.stderr[-1500:]
        return result
    text = out.stdout
    trajectory = json.loads(text[text.index("{"):])
    director_out = trajectory["usage"]["output_tokens"]
    executor_out = trajectory["executor_usage"]["output_tokens"]
    episode_s = trajectory["seconds"]
    director_s = sum(t["seconds"] for t in trajectory["turns"])
    result.update({
        "episode_s": episode_s,
        "load_and_startup_s": wall - episode_s,
        "turns": len({t["index"] for t in trajectory["turns"]}),
        "director_calls": len(trajectory["turns"]),
        "workflow": trajectory["workflow"],
        "answer": trajectory["answer"],
        "stop_reason": trajectory["stop_reason"],
        "fallback": trajectory["fallback"],
        "director_output_tokens": director_out,
        "executor_output_tokens": executor_out,
        "director_tokens_per_s": director_out / director_s if director_s else None,
        "output_tokens_per_s": (director_out + executor_out) / episode_s if episode_s else None,
        "max_context_tokens": trajectory["max_context_tokens"],
    })
    return result


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--skip-cold-run", action="store_true", help="time the cold model load only, not a cold episode")
    p.add_argument("--max-turns", type=int, default=0, help="director turn limit (0: the demo's own default)")
    p.add_argument("--run-timeout", type=float, default=2400, help="seconds allowed per flowsteer run")
    args = p.parse_args(argv)
    runs, loads = [], {}
    if args.quick:
        log("demo (quick): cached, 2 turns")
        runs.append(run_demo("cached", None, 2, args.run_timeout))
    else:
        with tempfile.TemporaryDirectory(prefix="flowsteer-cold-") as cold:
            log("demo: cold model load alone")
            loads["cold_s"] = time_load(cold)
        log("demo: cached model load alone")
        loads["cached_s"] = time_load(None)
        if not args.skip_cold_run:
            with tempfile.TemporaryDirectory(prefix="flowsteer-cold-") as cold:
                log("demo: flowsteer run, cold cache")
                runs.append(run_demo("cold", cold, args.max_turns, args.run_timeout))
        log("demo: flowsteer run, cached")
        runs.append(run_demo("cached", None, args.max_turns, args.run_timeout))
    emit("demo", {
        "method": "`flowsteer run` (embedded director + executor, CPU, --seed 0) as a subprocess; cold = empty "
                  "FLOWSTEER_CACHE_DIR (GGUF converted again); tokens/s over the episode's own seconds",
        "command": f"flowsteer run {TASK!r} --type {KIND} --json --seed 0"
                   + (f" --max-turns {2 if args.quick else args.max_turns}" if args.quick or args.max_turns else ""),
        "cold_run": "not measured (--skip-cold-run): see model_load_s for the cold load" if args.skip_cold_run
                    and not args.quick else ("not measured (--quick)" if args.quick else "measured"),
        "model_load_s": loads,
        "runs": runs,
        "target": "report wall time (cold and cached) and tokens/s (no numeric target)",
        "target_met": None,
    }, quick=args.quick)
    return 0  # a run that failed or timed out is a measured outcome, recorded in the JSON


if __name__ == "__main__":
    sys.exit(main())
