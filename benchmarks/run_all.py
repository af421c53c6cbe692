"""Run every ``benchmarks/bench_*.py`` and write ``benchmarks/RESULTS.md``.

Each benchmark runs as a subprocess with a timeout; its stdout is one JSON object, stored in
``benchmarks/results/<name>.json``. ``RESULTS.md`` is then rebuilt from every stored result, so
``--only NAME`` refreshes one benchmark and keeps the others' recorded figures (each with its date).
``benchmarks/results/NOTES.md`` (hand-written: what the figures mean, why a target is missed) is
copied into the report. A recorded ``learning`` result also gets its HTML page,
``benchmarks/results/learning.html`` (``flowsteer report``: learning curves as plots, eval table).

    python benchmarks/run_all.py                 # everything, full size (make bench)
    python benchmarks/run_all.py --quick         # smoke sizes (results go to a temp dir unless --results-dir)
    python benchmarks/run_all.py --only parallel --only context
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import log, machine_info
from _report import render_report

HERE = Path(__file__).resolve().parent
# seconds per benchmark (full mode); quick mode uses QUICK_TIMEOUT for all
TIMEOUTS = {"training": 1800, "demo": 3000, "context": 1800, "constrained": 900}
DEFAULT_TIMEOUT = 600
QUICK_TIMEOUT = 300
# sandbox's own knobs for a smoke run (it has no --quick flag of its own)
QUICK_ARGS = {"sandbox": ["--runs", "3", "--throughput-jobs", "4"]}


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def _accepts_quick(path: Path) -> bool:
    return "--quick" in path.read_text()


def run_one(name: str, path: Path, quick: bool, timeout: float, extra: list[str] = ()) -> dict:
    cmd = [sys.executable, str(path), *extra]
    if quick:
        cmd += ["--quick"] if _accepts_quick(path) else QUICK_ARGS.get(name, [])
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"benchmark": name, "status": "timeout", "timeout_s": timeout, "quick": quick,
                "machine": machine_info()}
    seconds = time.perf_counter() - start
    text = out.stdout.strip()
    try:
        report = json.loads(text[text.index("{"):]) if text else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return {"benchmark": name, "status": "failed", "returncode": out.returncode, "quick": quick,
                "stderr_tail": out.stderr[-3000:], "machine": machine_info()}
    if out.returncode != 0:  # it printed figures but says something could not run: keep both
        report["returncode"] = out.returncode
        report["stderr_tail"] = out.stderr[-3000:]
    report.setdefault("quick", quick)
    if not isinstance(report.get("machine"), dict):  # scripts that do not add it (sandbox: arch string)
        if "machine" in report:
            report["machine_arch"] = report["machine"]
        report["machine"] = machine_info()
    report["status"] = "ok" if out.returncode == 0 else "partial"
    report["runner_seconds"] = round(seconds, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke sizes (fast); does not touch the recorded results")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this benchmark (repeatable; names: bench_NAME.py)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where results/*.json and RESULTS.md go (default: benchmarks/, or a temp dir with --quick)")
    p.add_argument("--timeout", type=float, default=None, help="per-benchmark timeout in seconds")
    p.add_argument("--pass", dest="passthrough", action="append", default=[], metavar="NAME=ARG",
                   help="give ARG to bench_NAME.py (repeatable), e.g. --pass demo=--skip-cold-run")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite RESULTS.md from the recorded results/*.json and NOTES.md")
    args = p.parse_args(argv)
    found = discover()
    unknown = [n for n in args.only if n not in found]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; available: {', '.join(found)}")
    names = [] if args.report_only else args.only or list(found)
    out_dir = args.results_dir or (Path(tempfile.mkdtemp(prefix="flowsteer-bench-")) if args.quick else HERE)
    store = out_dir / "results"
    store.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in names:
        timeout = args.timeout or (QUICK_TIMEOUT if args.quick else TIMEOUTS.get(name, DEFAULT_TIMEOUT))
        log(f"== {name} (timeout {timeout:.0f}s)")
        extra = [a.split("=", 1)[1] for a in args.passthrough if a.split("=", 1)[0] == name]
        report = run_one(name, found[name], args.quick, timeout, extra)
        if extra:
            report["arguments"] = extra
        if report["status"] not in ("ok",):
            failures += 1
            log(f"   {name}: {report['status']}")
        (store / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    results = {p.stem: json.loads(p.read_text()) for p in sorted(store.glob("*.json"))}
    results = {k: v for k, v in results.items() if isinstance(v, dict)}
    notes = store / "NOTES.md"  # hand-written reading of the figures, kept across runs
    (out_dir / "RESULTS.md").write_text(render_report(results, notes.read_text() if notes.exists() else ""))
    log(f"wrote {out_dir / 'RESULTS.md'}")
    learning = store / "learning.json"
    if "table" in results.get("learning", {}):
        # the shipped director's HTML page: learning curves as plots, the eval table, the targets
        from flowsteer.errors import UserError
        from flowsteer.report import write_report

        try:
            log(f"wrote {write_report(learning, store / 'learning.html', kind='learning')}")
        except UserError as exc:  # e.g. matplotlib missing: RESULTS.md still holds the table
            log(f"no learning.html: {exc}")
    sys.stdout.write(json.dumps({"results_dir": str(out_dir), "ran": names, "failures": failures}) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
