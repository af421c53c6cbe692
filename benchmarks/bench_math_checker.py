"""FlowSteer's LaTeX/sympy answer checker against math-verify, on the MATH and AIME files.

Two checkers decide whether a predicted answer equals a gold one; the grader of a reward must say
yes to every true equivalence and no to every other answer. Pairs, per source file:

* **positives** (should match): the ``\\boxed{}`` answer of each reference solution against the
  file's ``answer`` field (MATH-500: two spellings of one answer written by the dataset's authors),
  the whole reference solution text against the gold (the checker must find the answer in it), and
  for AIME's integers ``$N$``, ``N.0`` and ``\\boxed{N}`` against ``N``;
* **negatives** (must not match): each gold against the next item's gold, where the two differ as strings.

``adopted`` is what ``flowsteer.scoring`` grades with since this comparison
(``answer_matches``: the built-in checker, and math-verify for what it does not accept).
Reported per checker: recall on positives, false-positive rate on negatives, exceptions, mean
microseconds per check, and the agreement of the two checkers (same verdict) -- all from one run on
the same pairs. ``--limit`` caps the items per file.

    python benchmarks/bench_math_checker.py [--limit 500] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit  # noqa: E402

from flowsteer.scoring.math import answer_matches, extract_answer, extract_boxed, math_equal  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FILES = {"math500": DATA / "math" / "math500_test.jsonl", "math5000": DATA / "math" / "math_test_5000.jsonl",
         "aime2025": DATA / "aime2025" / "aime_aime2025-i_test.jsonl",
         "aime2025-ii": DATA / "aime2025" / "aime_aime2025-ii_test.jsonl"}


def _rows(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
        if len(rows) >= limit:
            break
    return rows


def pairs(name: str, rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(prediction, gold, should_match) for one file."""
    out: list[tuple[str, str, bool]] = []
    golds = []
    for row in rows:
        solution = row.get("solution", "")
        gold = str(row.get("answer") or extract_boxed(solution) or "").strip()
        if not gold:
            continue
        golds.append(gold)
        boxed = extract_boxed(solution) if solution else None
        if boxed is not None and "answer" in row:
            out.append((f"${boxed}$", gold, True))
        if solution:
            out.append((solution, gold, True))
        if re.fullmatch(r"-?\d+", gold):
            out += [(f"${gold}$", gold, True), (f"{gold}.0", gold, True), (f"The answer is \\boxed{{{gold}}}.", gold, True)]
    for a, b in zip(golds, golds[1:], strict=False):
        if a.replace(" ", "") != b.replace(" ", ""):
            out.append((f"${b}$", a, False))
    return out


def flowsteer_check(pred: str, gold: str) -> bool:
    return math_equal(extract_answer(pred), extract_boxed(gold) or gold)


def adopted_check(pred: str, gold: str) -> bool:
    """What ``flowsteer.scoring`` grades with since this comparison (``answer_matches``)."""
    return answer_matches(pred, extract_boxed(gold) or gold)


def math_verify_check(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(f"${gold}$" if "$" not in gold else gold), parse(pred)))


def measure(check: Callable[[str, str], bool], data: list[tuple[str, str, bool]]) -> tuple[dict[str, Any], list[bool | None]]:
    verdicts: list[bool | None] = []
    errors = 0
    started = time.perf_counter()
    for pred, gold, _ in data:
        try:
            verdicts.append(check(pred, gold))
        except Exception:  # noqa: BLE001 - a checker that raises is a finding, counted
            verdicts.append(None)
            errors += 1
    seconds = time.perf_counter() - started
    pos = [v for v, (_, _, want) in zip(verdicts, data, strict=True) if want]
    neg = [v for v, (_, _, want) in zip(verdicts, data, strict=True) if not want]
    return {"recall": sum(v is True for v in pos) / max(1, len(pos)),
            "false_positive_rate": sum(v is True for v in neg) / max(1, len(neg)),
            "errors": errors, "us_per_check": 1e6 * seconds / max(1, len(data))}, verdicts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=500, help="items per file")
    p.add_argument("--quick", action="store_true", help="30 items per file")
    args = p.parse_args()
    limit = 30 if args.quick else args.limit
    try:
        import math_verify  # noqa: F401
    except ImportError:
        emit("math_checker", {"status": "skipped", "reason": "pip install math-verify"}, quick=args.quick)
        return
    report: dict[str, Any] = {"files": {}, "method": __doc__.split("\n\n")[1].replace("\n", " ")}
    totals: dict[str, list[Any]] = {"pairs": [], "flowsteer": [], "math_verify": [], "adopted": []}
    for name, path in FILES.items():
        if not path.is_file():
            continue
        data = pairs(name, _rows(path, limit))
        ours, ours_v = measure(flowsteer_check, data)
        theirs, theirs_v = measure(math_verify_check, data)
        adopted, adopted_v = measure(adopted_check, data)
        agree = sum(a == b for a, b in zip(ours_v, theirs_v, strict=True)) / max(1, len(data))
        disagreements = [{"prediction": d[0][:160], "gold": d[1], "should_match": d[2], "flowsteer": a,
                          "math_verify": b} for d, a, b in zip(data, ours_v, theirs_v, strict=True) if a != b]
        report["files"][name] = {"pairs": len(data), "positives": sum(d[2] for d in data),
                                 "flowsteer": ours, "math_verify": theirs, "adopted": adopted, "agreement": agree,
                                 "disagreements_sample": disagreements[:8], "disagreements": len(disagreements)}
        totals["pairs"] += data
        totals["flowsteer"] += ours_v
        totals["math_verify"] += theirs_v
        totals["adopted"] += adopted_v
    data = totals["pairs"]

    def overall(verdicts: list[bool | None]) -> dict[str, float]:
        pos = [v for v, d in zip(verdicts, data, strict=True) if d[2]]
        neg = [v for v, d in zip(verdicts, data, strict=True) if not d[2]]
        return {"recall": sum(v is True for v in pos) / max(1, len(pos)),
                "false_positive_rate": sum(v is True for v in neg) / max(1, len(neg)),
                "errors": sum(v is None for v in verdicts)}

    ours_all, theirs_all = overall(totals["flowsteer"]), overall(totals["math_verify"])
    speed = {k: sum(f[k]["us_per_check"] * f["pairs"] for f in report["files"].values()) / max(1, len(data))
             for k in ("flowsteer", "math_verify", "adopted")}
    report["overall"] = {"pairs": len(data), "flowsteer": {**ours_all, "us_per_check": speed["flowsteer"]},
                         "math_verify": {**theirs_all, "us_per_check": speed["math_verify"]},
                         "adopted": {**overall(totals["adopted"]), "us_per_check": speed["adopted"]},
                         "math_verify_over_flowsteer_time": speed["math_verify"] / max(speed["flowsteer"], 1e-9)}
    emit("math_checker", report, quick=args.quick)


if __name__ == "__main__":
    main()
