"""Shared helpers of the benchmark scripts: machine info, repeated timing with medians, JSON output.

Every ``bench_*.py`` prints exactly one JSON object on stdout (``emit``) holding its figures, the
ratios against a baseline measured in the same run, and ``machine``. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "machine_info", "median_of", "time_repeats", "amedian_seconds", "emit", "parser",
           "peak_rss_mb", "log", "shared_data"]


def shared_data() -> Path:
    """The real benchmark files: ``$FLOWSTEER_SHARED_DATA``, else ``../shared/data`` beside the
    repository (where CI lays them); benchmarks that need a file fall back or skip when it is absent."""
    env = os.environ.get("FLOWSTEER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _mem_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Where and when the figures were taken."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _mem_gb(),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": _git_commit(),
    }


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def time_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def amedian_seconds(make: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median seconds (and all samples) of awaiting ``make()`` ``repeats`` times after a warm-up."""
    for _ in range(warmup):
        await make()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await make()
        samples.append(time.perf_counter() - start)
    return median_of(samples), samples


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--quick`` flag."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a fast smoke run (fewer repeats, smaller sizes)")
    return p


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if value == value else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def emit(name: str, report: dict[str, Any], *, quick: bool) -> None:
    """Print the benchmark's one JSON object (with machine info) on stdout."""
    out = {"benchmark": name, "quick": quick, **report, "machine": machine_info()}
    sys.stdout.write(json.dumps(_clean(out), indent=2) + "\n")
    sys.stdout.flush()
