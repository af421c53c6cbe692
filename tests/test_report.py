"""`flowsteer report`: HTML pages from real-format eval and training run folders."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
from director_scripts import policy_director

from flowsteer.cli import main
from flowsteer.director import Director
from flowsteer.errors import UserError
from flowsteer.evaluation import evaluate, wilson_interval
from flowsteer.evaluation.results import trajectory_record
from flowsteer.report import build_report, detect_run, workflow_svg, write_report
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor
from flowsteer.workflow.dsl import parse

DESIGN = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
URL = re.compile(r"""(?:src|href)\s*=\s*["']?(?!data:|#)[a-z]+:|https?://(?!www\.w3\.org/2000/svg)""", re.I)


def math_tasks(n: int) -> list[Task]:
    return [Task(f"What is {i} + 1?", "math", f"m{i}", str(i + 1), source="toy") for i in range(n)]


def wrong_on_odd(messages: list) -> str:
    i = int(str(messages[-1].content).split("What is ")[1].split(" ")[0])
    return f"The answer is \\boxed{{{i + 1 + (7 if i % 2 else 0)}}}"


def make_eval_run(out: Path, *, trajectories: bool = True) -> list[Task]:
    """A real eval folder: an IO baseline and the director on the same toy tasks (+ stored episodes)."""
    tasks = math_tasks(4)
    evaluate(tasks, executor=ScriptedChatModel(default=wrong_on_odd), baseline="io", out_dir=out, concurrency=2)
    executor = SimulatedExecutor({t.question: str(t.answer) for t in tasks}, skill=0.5, seed=3)
    evaluate(tasks, executor=executor, director=policy_director(), label="flowsteer", out_dir=out, concurrency=2)
    if not trajectories:  # the harness stores the director's episodes itself: drop them
        (out / "trajectories.jsonl").unlink()
    else:
        director = Director(policy_director())
        with (out / "trajectories.jsonl").open("w") as fh:
            for task in tasks:
                episode = director.run(task, SimulatedExecutor({task.question: str(task.answer)}, skill=0.5))
                fh.write(json.dumps(trajectory_record("toy", "flowsteer", task.id, episode), default=str) + "\n")
    return tasks


def assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not URL.search(html), URL.search(html)


# -- diagrams ------------------------------------------------------------------------------------
def test_workflow_svg_draws_every_operator_and_structure() -> None:
    workflow = parse("Plan -> [Programmer, Custom] -> Verify ? Revise : done -> (Review -> Revise) * 3 -> Format")
    svg = workflow_svg(workflow)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    labels = re.findall(r"<text[^>]*>([^<]+)</text>", svg)
    for name in ("Plan", "Programmer", "Custom", "Verify passed?", "Revise", "Review", "Format", "repeat ≤ 3",
                 "fail", "pass", "repeat", "start", "end"):
        assert name in labels, name
    assert len(re.findall(r'class="fs-op"', svg)) == 8  # Revise twice
    assert svg.count('class="fs-edge fs-back"') == 1  # the loop's back edge
    # parallel branches sit side by side on one layer; the chain before them is above
    xs = {m[1]: float(m[0]) for m in re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">(\w+)<', svg)}
    ys = {m[1]: float(m[0]) for m in re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="middle">(\w+)<', svg)}
    assert ys["Programmer"] == ys["Custom"] > ys["Plan"] and xs["Programmer"] != xs["Custom"]
    width, height = (float(v) for v in re.search(r'width="(\d+)" height="(\d+)"', svg).groups())
    assert all(0 < x < width for x in xs.values()) and all(0 < y < height for y in ys.values())


def test_long_edges_bend_around_nodes() -> None:
    svg = workflow_svg(parse("Verify ? (Revise -> Review) : done -> Format"))
    pass_path = re.search(r'<path d="([^"]+)" class="fs-edge" marker-end="url\(#fs-arrow\)"/><text[^>]*>pass<', svg)
    assert pass_path is not None and pass_path.group(1).count(" L ") >= 2  # waypoints past Revise and Review


# -- eval reports --------------------------------------------------------------------------------
def test_eval_report_sections_numbers_and_turns(tmp_path: Path) -> None:
    run = tmp_path / "eval"
    make_eval_run(run)
    assert detect_run(run) == "eval"
    html = build_report(run)
    assert_self_contained(html)
    for section in ("id='overview'", "id='scores'", "id='designs'", "id='episodes'"):
        assert section in html
    summary = json.loads((run / "summary.json").read_text())
    io = next(g for g in summary["groups"] if g["method"] == "io")
    assert io["correct"] == 2 and io["n"] == 4
    ci = wilson_interval(2, 4)
    assert f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]" in html and "<td class=\"num\">50.0</td>" in html
    director = next(g for g in summary["groups"] if g["method"] == "flowsteer")
    assert f"<td class=\"num\">{100 * director['score']:.1f}</td>" in html
    # the director's design is drawn (SVG) and its mermaid source is there
    assert DESIGN.replace(">", "&gt;") in html and "<svg" in html and "flowchart TD" in html
    assert "4 of 4 items" in html
    # best/worst items with their turns from trajectories.jsonl
    assert html.count("class='episode good'") == 3 and html.count("class='episode bad'") == 1
    assert "What is 0 + 1?" in html and "canvas feedback" in html and "&lt;action&gt;add&lt;/action&gt;" in html


def test_eval_report_without_trajectories_says_so(tmp_path: Path) -> None:
    run = tmp_path / "eval"
    make_eval_run(run, trajectories=False)
    html = build_report(run, episodes=1, designs=1)
    assert "stored no per-turn data (trajectories.jsonl)" in html
    assert html.count("class='episode ") == 2 and "canvas feedback" not in html
    assert "Item details" in html and "valid_action_rate" in html


def test_only_baselines_and_an_unparsable_design(tmp_path: Path) -> None:
    run = tmp_path / "io"
    evaluate(math_tasks(3), executor=ScriptedChatModel(default=wrong_on_odd), baseline="io", out_dir=run)
    html = build_report(run)
    assert "No item recorded a workflow" in html and "<svg" not in html
    line = json.loads((run / "results.jsonl").read_text().splitlines()[0])
    line.update(method="custom", workflow="Plan -> [Programmer, Custom")  # truncated DSL
    with (run / "results.jsonl").open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    html = build_report(run)
    assert "Plan -&gt; [Programmer, Custom</pre>" in html and "not drawn:" in html


# -- training reports ----------------------------------------------------------------------------
def director_metrics(steps: int) -> list[dict]:
    """Lines shaped like CWRPOTrainer's metrics.jsonl for director episodes (a slowly improving run)."""
    out = []
    for s in range(1, steps + 1):
        wobble = 0.03 * math.sin(s)
        out.append({
            "step": s, "reward_mean": 0.2 + 0.01 * s, "reward_std": 0.3 - 0.002 * s + wobble,
            "r_div": 0.4 + 0.005 * s, "r_answer": 0.1 + 0.008 * s + wobble, "answer_score": 0.1 + 0.008 * s,
            "valid_action_rate": min(1.0, 0.5 + 0.005 * s), "turns": 8 - 0.05 * s, "finished": 0.6 + 0.005 * s,
            "fallback": max(0.0, 0.3 - 0.005 * s), "operators": 4 + 0.03 * s, "kl": 0.001 * s * (1 + wobble),
            "clip_fraction": 0.05 + wobble / 3, "grad_norm": 1.5 - 0.01 * s + wobble, "lr": 1e-4, "loss": wobble,
            "episodes": 16.0, "zero_variance_fraction": 0.25, "time_rollout": 30 + 10 * wobble,
            "time_update": 6.0, "time_step": 36 + 10 * wobble,
        })
    return out


def assert_embeds_curves(html: str) -> None:
    """The page holds the curves as an inline PNG of real size."""
    png = base64.b64decode(re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html).group(1))
    assert png[:4] == b"\x89PNG" and len(png) > 10_000


def test_training_report_from_metrics(tmp_path: Path) -> None:
    run = tmp_path / "train"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in director_metrics(60)))
    (run / "config.yaml").write_text("seed: 42\nmax_steps: 60\n")
    assert detect_run(run) == "training"
    html = build_report(run)
    assert_self_contained(html)
    for section in ("id='overview'", "id='curves'", "id='steps'", "id='checkpoints'", "id='config'"):
        assert section in html
    assert_embeds_curves(html)
    assert not (run / "training_curves.png").exists()  # the report does not write into the run
    assert "0.210 → 0.800" in html and "best reward (step 60)" in html and "80.0%" in html
    assert "30 of 60 steps shown" in html and "No complete checkpoint yet" in html
    assert "seed: 42" in html
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", html)
    assert rows[0] == "1" and rows[-1] == "60" and len(rows) == 30


def test_training_report_shows_samples_and_operator_use_per_step(tmp_path: Path) -> None:
    run = tmp_path / "train"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in director_metrics(2)))
    early = {"step": 1, "family": "arithmetic", "task": "arithmetic/0/3", "workflow": "Custom -> Format",
             "answer": "12", "reward": -0.5, "stop_reason": "max_turns"}
    late = {"step": 2, "family": "arithmetic", "task": "arithmetic/0/4",
            "workflow": "[Programmer, Programmer] -> ScEnsemble -> Verify ? Revise : done -> Format",
            "answer": "42", "reward": 1.0, "stop_reason": "finish"}
    lines = [early, early, late, late]
    (run / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"step": 2, "torn')
    html = build_report(run)
    samples = html[html.index("id='samples'"):html.index("id='checkpoints'")]
    usage_table = samples[:samples.index("<h3>")]
    header = re.findall(r"<th[^>]*>([^<]+)</th>", usage_table)
    assert header[:2] == ["step", "episodes"] and {"Custom", "Programmer", "ScEnsemble", "Verify"} <= set(header)
    first = re.findall(r"<td[^>]*>([^<]*)</td>", usage_table)
    usage = dict(zip(header, first, strict=False))
    assert usage["step"] == "1" and usage["episodes"] == "2" and usage["Custom"] == "1.00"
    assert usage["Programmer"] == "0.00"  # step 1 built no program; step 2 two per workflow
    assert "2.00" in samples and "arithmetic/0/4" in samples and "+1.00" in samples and "finish" in samples


@pytest.mark.slow
def test_training_report_of_a_real_tiny_run(tmp_path: Path) -> None:
    """A real (tiny-model, toy-reward) CWRPO run: ~50 s on 2 busy cores, mostly importing torch/peft."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from test_training_checkpoint import make_trainer

    run = tmp_path / "run"
    make_trainer(run, max_steps=2).train()
    out = tmp_path / "pages" / "train.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    html = out.read_text()
    assert_self_contained(html)
    assert "step_000002" in html and "LoRA adapter" in html and "trainable.safetensors" in html
    assert "data:image/png;base64," in html
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and "2 steps logged" in html


def test_training_report_lists_the_latest_complete_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "train"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in director_metrics(4)))
    for step in (2, 4):  # the folders save_checkpoint writes (state.json is written last, then renamed)
        ckpt = run / "checkpoints" / f"step_{step:06d}"
        (ckpt / "adapter").mkdir(parents=True)
        (ckpt / "trainable.safetensors").write_bytes(b"\0" * 4096)
        (ckpt / "state.json").write_text(json.dumps({"step": step, "data_state": {"position": 2 * step}}))
        (ckpt / "adapter" / "adapter_config.json").write_text(json.dumps(
            {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "x"}))
    (run / "checkpoints" / ".tmp_step_000006_99").mkdir()  # a crashed write: never reported as latest
    html = build_report(run)
    assert "step_000004</code> (step 4)" in html and "all: step_000002, step_000004." in html
    assert "trainable.safetensors" in html and "<td class=\"num\">4.0</td>" in html
    assert "&quot;position&quot;: 8" in html and "q_proj" in html and "LoRA adapter" in html


# -- errors and the CLI ----------------------------------------------------------------------------
def test_bad_run_folders_name_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="does not exist"):
        detect_run(tmp_path / "nope")
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(UserError, match=r"no results\.jsonl.*no metrics\.jsonl.*stray\.txt"):
        build_report(tmp_path)
    empty_eval = tmp_path / "e"
    empty_eval.mkdir()
    (empty_eval / "results.jsonl").write_text("")
    with pytest.raises(UserError, match="no readable result lines"):
        build_report(empty_eval)
    empty_train = tmp_path / "t"
    empty_train.mkdir()
    (empty_train / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="no records yet"):
        build_report(empty_train)
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_writes_into_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "eval"
    make_eval_run(run, trajectories=False)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file() and "report written" in capsys.readouterr().out
    assert write_report(run, tmp_path / "x.html", kind="eval").read_text().startswith("<!DOCTYPE html>")


def _learning_result() -> dict:
    def row(acc, finish=None, rdiv=1.0, calls=2.0):
        return {"n": 8, "accuracy": acc, "ci95": [acc / 2, 1.0], "finish_rate": finish, "rdiv1_rate": rdiv,
                "executor_calls": calls, "turns": 5}

    steps = [{"step": s, "reward_mean": r, "r_div": 1.0, "answer_score": a, "finished": 1.0, "kl": 0.1 * s,
              "time_step": 300 + s, "time_rollout": 80, "time_update": 220 + s}
             for s, r, a in ((1, 0.5, 0.5), (2, 0.75, 1.0), (3, 1.0, 1.0))]
    return {
        "benchmark": "learning", "method": "eval harness, n = 8",
        "curves": {"steps": steps, "timing": {"total_wall_s": 4246, "cores": 2}},
        "table": {"simple_functions": {"io": row(0.75), "flowsteer-sampled": row(0.875, 1.0, 0.875),
                                       "flowsteer": row(1.0, 1.0), "untrained": row(0.5, 0.0, 0.0, 8.6)}},
        "targets": {"simple_functions": {"finish_rate>=0.95": True, "accuracy>=untrained+0.20": True,
                                         "rdiv1_rate>=0.90": False, "best_template_accuracy": 1.0}},
        "measured_now": {"simple_functions": ["flowsteer", "flowsteer-sampled", "untrained"]},
        "kept_from": {"file": "old.json", "machine": {"date": "2026-12-06 23:22 UTC"}},
        "notes": "Greedy is the served decoding.", "machine": {"date": "2026-12-07 17:00 UTC", "commit": "abc1234"},
    }


def test_learning_report_plots_the_curves_and_tables_the_eval(tmp_path: Path) -> None:
    result = tmp_path / "learning.json"
    result.write_text(json.dumps(_learning_result()))
    assert detect_run(result) == "learning"
    html = build_report(result)
    assert_self_contained(html)
    for section in ("id='overview'", "id='curves'", "id='eval'", "id='targets'", "id='notes'"):
        assert section in html
    assert_embeds_curves(html)
    assert "2 / 3" in html and "70.8 min" in html  # targets met (numbers only) and the training time
    methods = re.findall(r"<tr><td>([\w-]+)(?: \(kept\))?</td>", html)
    assert methods[:4] == ["flowsteer", "flowsteer-sampled", "untrained", "io"]  # directors first
    assert "io (kept)" in html and "flowsteer (kept)" not in html and "2026-12-06 23:22 UTC" in html
    assert "MISSED" in html and "Greedy is the served decoding." in html
    assert main(["report", str(result)]) == 0 and (tmp_path / "learning.html").is_file()


def test_a_json_that_is_not_a_learning_result_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "overhead.json"
    other.write_text(json.dumps({"benchmark": "overhead"}))
    with pytest.raises(UserError, match="bench_learning result"):
        detect_run(other)
    with pytest.raises(UserError, match="not a bench_learning result"):
        build_report(other, kind="learning")
    unfinished = tmp_path / "partial.json"
    unfinished.write_text(json.dumps({"benchmark": "learning"}))
    with pytest.raises(UserError, match="no eval table"):
        build_report(unfinished)
