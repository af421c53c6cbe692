"""``flowsteer eval`` end to end, offline, with the embedded SmolLM2 model (slow: minutes on 2 cores).

Limits are tiny on purpose: these tests prove every path runs for real (model loading, batching,
the grammar-constrained director, the sandbox, scoring, result files, resume), not accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowsteer.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
FIXTURE_GSM8K = Path(__file__).parent / "fixtures" / "data" / "gsm8k" / "test.jsonl"


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_eval_humaneval_io_with_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "he"
    args = ["eval", "--dataset", "humaneval", "--limit", "2", "--baseline", "io", "--executor", "embedded",
            "--max-new-tokens", "48", "--concurrency", "2", "--out", str(out)]
    assert main(args) == 0
    rows = records(out)
    assert sorted(r["task_id"] for r in rows) == ["HumanEval/0", "HumanEval/1"]
    for row in rows:
        assert row["metric"] == "pass@1" and row["status"] == "ok" and row["executor_calls"] == 1
        assert 0 < row["executor_tokens_out"] <= 48 and row["answer"].strip()
        assert "status" in row["details"]["score"]  # the hidden tests ran in the sandbox
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"][0]["n"] == 2 and summary["groups"][0]["metric"] == "pass@1"
    assert "| humaneval | io | pass@1 |" in (out / "summary.md").read_text()

    started = time.perf_counter()
    assert main(args) == 0  # everything finished: nothing runs again (the model still loads)
    assert len(records(out)) == 2 and time.perf_counter() - started < 120


def test_eval_gsm8k_untrained_director_with_the_embedded_model(tmp_path: Path) -> None:
    data = SHARED_GSM8K if SHARED_GSM8K.is_file() else FIXTURE_GSM8K
    out = tmp_path / "gsm8k"
    args = ["eval", "--dataset", "gsm8k", "--data", str(data), "--limit", "2", "--director", "untrained",
            "--executor", "embedded", "--max-turns", "2", "--max-new-tokens", "32", "--concurrency", "2",
            "--out", str(out)]
    assert main(args) == 0
    rows = records(out)
    assert sorted(r["task_id"] for r in rows) == ["gsm8k/test/0", "gsm8k/test/1"]
    for row in rows:
        assert row["method"] == "untrained" and row["metric"] == "accuracy" and row["status"] == "ok"
        assert 1 <= row["turns"] <= 2 and row["director_tokens_in"] > 0 and row["director_tokens_out"] > 0
        assert row["details"]["valid_action_rate"] == 1.0  # the grammar constraint makes every action valid
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"][0]["method"] == "untrained" and summary["groups"][0]["n"] == 2
