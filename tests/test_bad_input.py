"""Bad input: malformed configs, dataset files, DSL strings, workflow JSON and model specs.

Each case runs the real CLI in-process (``flowsteer.cli.main``) and checks: a non-zero exit, an
error on stderr that names the field / line / position and says what to do, no traceback, and that
an existing output (a run folder, an eval folder, an export file) is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from flowsteer.cli import main
from flowsteer.datasets import load_dataset
from flowsteer.errors import DSLParseError, UserError
from flowsteer.models.specs import load_chat_model, parse_spec
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.serialize import from_json

pytestmark = pytest.mark.timeout(120)

Files = dict[str, str]


def snapshot(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under ``root`` (and the folder list), to prove nothing changed."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of one CLI call (argparse errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, " ".join(err.split())  # rich may wrap long lines


# -- `flowsteer train`: config files ------------------------------------------------------------------

TRAIN_CASES = [
    pytest.param("unknown.yaml", "lora:\n  alpah: 16\n", [], r"unknown config field 'lora\.alpah'.*did you mean 'alpha'",
                 id="unknown-field"),
    pytest.param("section.yaml", "optimiser:\n  lr: 0.1\n", [], r"unknown config field 'optimiser'.*did you mean 'optim'",
                 id="unknown-section"),
    pytest.param("type.yaml", "optim:\n  lr: fast\n", [], r"'optim\.lr' must be a number, got 'fast'", id="wrong-type"),
    pytest.param("type2.yaml", "max_steps: ten\n", [], r"'max_steps' must be an integer", id="wrong-type-int"),
    pytest.param("list.yaml", "data:\n  datasets: gsm8k\n", [], r"'data\.datasets' must be a list", id="not-a-list"),
    pytest.param("choice.yaml", "loss:\n  aggregation: mean\n", [], r"loss\.aggregation.*one of", id="bad-choice"),
    pytest.param("range.yaml", "rollout:\n  group_size: 1\n", [], r"group_size must be >= 2", id="out-of-range"),
    pytest.param("lr.yaml", "optim:\n  lr: -1\n", [], r"optim\.lr must be > 0", id="negative-lr"),
    pytest.param("steps.yaml", "max_steps: 0\n", [], r"max_steps must be >= 1", id="zero-steps"),
    pytest.param("scalar.yaml", "just a string\n", [], r"must contain a mapping", id="not-a-mapping"),
    pytest.param("config.json", "{}", [], r"use a \.yaml, \.yml or \.toml file", id="wrong-extension"),
    pytest.param("ok.yaml", "seed: 1\n", ["--set", "optim.lr"], r"--set 'optim\.lr': write KEY=VALUE", id="set-no-value"),
    pytest.param("ok2.yaml", "seed: 1\n", ["--set", "lora.rank=4"], r"unknown config field 'lora\.rank'",
                 id="set-unknown-field"),
    pytest.param("syntax.yaml", "seed: 1\nlora:\n  r: [8\n", [], r"syntax\.yaml.*line", id="yaml-syntax"),
    pytest.param("tab.yaml", "seed: 1\n\tlora: 2\n", [], r"tab\.yaml.*line 2", id="yaml-tab"),
    pytest.param("syntax.toml", "seed = \n", [], r"syntax\.toml.*line 1", id="toml-syntax"),
    pytest.param("ok3.yaml", "seed: 1\n", ["--set", "optim.lr=[1"], r"--set.*optim\.lr", id="set-yaml-syntax"),
]


@pytest.mark.parametrize(("name", "text", "extra", "expected"), TRAIN_CASES)
def test_train_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
                                  extra: list[str], expected: str) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step_000002").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_000002" / "state.json").write_text('{"step": 2}')
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    config = tmp_path / name
    body = text if name.endswith((".json", ".toml")) or text.startswith("just") else (
        text + f"logging:\n  run_dir: {run_dir}\n")
    config.write_text(body)
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", str(config), "--resume", *extra], capsys)
    assert code != 0
    assert err.startswith("error:")
    assert re.search(expected, err), err
    assert snapshot(tmp_path) == before  # the existing run folder is untouched


def test_train_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert code != 0 and "does not exist" in err and "--config PATH" in err


def test_train_unknown_dataset_in_config_leaves_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 3\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  datasets: [nope]\nmodel:\n  name_or_path: {tmp_path / 'no-model'}\n"
                      f"logging:\n  run_dir: {run_dir}\n  progress: false\n")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", str(config)], capsys)
    assert code != 0 and "data.datasets" in err and "'nope'" in err and "gsm8k" in err
    assert snapshot(tmp_path) == before


# -- `flowsteer eval`: dataset files, specs, flags ------------------------------------------------------------
GOOD_LINE = '{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\\n#### 2"}\n'

EVAL_CASES = [
    pytest.param({"data.jsonl": GOOD_LINE + '{"question": "b", "answer": \n'}, [],
                 r"data\.jsonl:2: not valid JSON.*one JSON object", id="bad-json-line"),
    pytest.param({"data.jsonl": GOOD_LINE + '["a list"]\n'}, [], r"data\.jsonl:2: expected a JSON object",
                 id="not-an-object"),
    pytest.param({"data.jsonl": GOOD_LINE + '{"answer": "#### 3"}\n'}, [], r"data\.jsonl:2.*'question'",
                 id="missing-field"),
    pytest.param({"data.jsonl": '{"question": "q", "answer": "no final line"}\n'}, [],
                 r"data\.jsonl:1.*'answer'.*####", id="malformed-field"),
    pytest.param({}, ["--data", "{tmp}/absent.jsonl"], r"absent\.jsonl: no such file", id="missing-file"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--dataset", "gsm9k"], r"unknown dataset 'gsm9k'.*gsm8k",
                 id="unknown-dataset"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--executor", "gpt-4o"], r"unknown model spec 'gpt-4o'.*openai:<model>",
                 id="bad-executor-spec"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--executor", "scripted:{tmp}/replies.json"],
                 r"replies\.json: no such file", id="missing-scripted-file"),
    pytest.param({"data.jsonl": GOOD_LINE, "replies.json": '{"a": 1}'}, ["--executor", "scripted:{tmp}/replies.json"],
                 r"expected a JSON list of strings", id="bad-scripted-file"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--baseline", "magic"], r"unknown baseline 'magic'.*io, cot",
                 id="unknown-baseline"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--baseline", "template:Plan -> -> Format"],
                 r"template", id="bad-template-dsl"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--concurrency", "0"], r"--concurrency must be >= 1", id="concurrency-0"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--limit", "-1"], r"--limit must be >= 0", id="negative-limit"),
    pytest.param({"data.jsonl": GOOD_LINE}, ["--limit", "many"], r"invalid int value: 'many'", id="limit-not-int"),
]


@pytest.mark.parametrize(("files", "extra", "expected"), EVAL_CASES)
def test_eval_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: Files,
                                extra: list[str], expected: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"task_id": "old", "dataset": "gsm8k"}\n')
    (out / "summary.md").write_text("# earlier results\n")
    argv = ["eval", "--dataset", "gsm8k", "--data", str(tmp_path / "data.jsonl"), "--baseline", "io",
            "--executor", f"scripted:{tmp_path / 'good.json'}", "--out", str(out)]
    (tmp_path / "good.json").write_text('["\\\\boxed{2}"]')
    for i in range(0, len(extra), 2):  # later flags override the defaults above
        argv += [extra[i], extra[i + 1].replace("{tmp}", str(tmp_path))]
    before = snapshot(tmp_path)
    code, err = run_cli(argv, capsys)
    assert code != 0
    assert re.search(expected, err), err
    assert snapshot(tmp_path) == before


def test_eval_good_input_does_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control case: the same command line with good input succeeds and writes results."""
    (tmp_path / "data.jsonl").write_text(GOOD_LINE)
    (tmp_path / "good.json").write_text('["\\\\boxed{2}"]')
    argv = ["eval", "--dataset", "gsm8k", "--data", str(tmp_path / "data.jsonl"), "--baseline", "io",
            "--executor", f"scripted:{tmp_path / 'good.json'}", "--out", str(tmp_path / "out")]
    code, _ = run_cli(argv, capsys)
    assert code == 0 and (tmp_path / "out" / "results.jsonl").is_file()


# -- `flowsteer run` / `design`: model specs and flags ---------------------------------------------------------
SPEC_CASES = [
    pytest.param(["--director", "foo:bar"], r"unknown model spec 'foo:bar'.*embedded, hf:", id="unknown-scheme"),
    pytest.param(["--director", "hf:"], r"'hf:' is missing its argument, e\.g\. 'hf:", id="empty-hf"),
    pytest.param(["--director", "openai:"], r"'openai:' is missing its argument", id="empty-openai"),
    pytest.param(["--director", "embedded:big"], r"'embedded' takes no argument but 'untrained'", id="embedded-arg"),
    pytest.param(["--director", "scripted:/nonexistent/replies.json"], r"no such file", id="scripted-missing"),
    pytest.param(["--director", "scripted:{good}", "--executor", "gpt4"], r"unknown model spec 'gpt4'",
                 id="bad-executor"),
    pytest.param(["--director", "scripted:{good}", "--max-turns", "0"], r"--max-turns must be >= 1", id="zero-turns"),
    pytest.param(["--type", "poetry"], r"invalid choice: 'poetry'", id="bad-kind"),
]


@pytest.mark.parametrize("command", ["run", "design"])
@pytest.mark.parametrize(("extra", "expected"), SPEC_CASES)
def test_run_and_design_reject_bad_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
                                         extra: list[str], expected: str) -> None:
    good = tmp_path / "replies.json"
    good.write_text('["<action>finish</action>"]')
    argv = [command, "What is 2 + 2?", *(a.replace("{good}", str(good)) for a in extra)]
    if "--executor" not in extra:
        argv += ["--executor", f"scripted:{good}"]
    code, err = run_cli(argv, capsys)
    assert code != 0
    assert re.search(expected, err), err


# -- `flowsteer export`: DSL strings, workflow JSON, the output file -------------------------------------------
EXPORT_CASES = [
    pytest.param("Plan -> -> Format", r"expected an operator.*position 8", id="dsl-missing-step"),
    pytest.param("Plan -> Nope", r"unknown operator 'Nope'.*valid operators: Plan", id="dsl-unknown-operator"),
    pytest.param("Verify ? Revise", r"expected ':'.*': done'", id="dsl-conditional-no-else"),
    pytest.param("[Custom, ", r"position", id="dsl-unclosed-parallel"),
    pytest.param("(Review -> Revise) * 0", r"loop count 0 is out of range; use 1\.\.10 at position 21", id="dsl-zero-loop"),
    pytest.param("(Review -> Revise) * 1000", r"loop count 1000 is out of range", id="dsl-huge-loop"),
    pytest.param("Plan -> Custom )", r"position", id="dsl-stray-paren"),
    pytest.param("{tmp}/wf_syntax.json", r"wf_syntax\.json: workflow JSON is not valid JSON.*line 2", id="json-syntax"),
    pytest.param("{tmp}/wf_list.json", r"wf_list\.json: a workflow document must be a JSON object", id="json-list"),
    pytest.param("{tmp}/wf_steps.json", r"wf_steps\.json.*steps.*valid list", id="json-wrong-type"),
    pytest.param("{tmp}/wf_extra.json", r"wf_extra\.json.*format.*remove this field", id="json-unknown-field"),
    pytest.param("{tmp}/wf_op.json", r"unknown operator 'Nope'", id="json-unknown-operator"),
    pytest.param("{tmp}/wf_loop.json", r"loop body is empty.*\(Review -> Revise\) \* 3", id="json-empty-loop"),
    pytest.param("{tmp}/wf_par.json", r"parallel block needs at least 2 branches", id="json-empty-parallel"),
    pytest.param("{tmp}/absent.json", r"absent\.json: no such file", id="json-missing-file"),
]
WORKFLOW_FILES = {
    "wf_syntax.json": '{"steps": [\n',
    "wf_list.json": "[]",
    "wf_steps.json": '{"version": 1, "steps": "Plan"}',
    "wf_extra.json": '{"format": "x", "version": 1, "steps": []}',
    "wf_loop.json": '{"version": 1, "steps": [{"type": "loop", "body": []}]}',
    "wf_par.json": '{"version": 1, "steps": [{"type": "parallel", "branches": []}]}',
    "wf_op.json": '{"version": 1, "steps": [{"type": "operator", "id": "node_1", "operator": "Nope"}]}',
}


@pytest.mark.parametrize(("workflow", "expected"), EXPORT_CASES)
def test_export_rejects_bad_workflows_and_keeps_the_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           workflow: str, expected: str) -> None:
    for name, text in WORKFLOW_FILES.items():
        (tmp_path / name).write_text(text)
    target = tmp_path / "graph.py"
    target.write_text("# an earlier export\n")
    before = snapshot(tmp_path)
    code, err = run_cli(["export", workflow.replace("{tmp}", str(tmp_path)), "--to", "langgraph-py", "-o",
                         str(target), "--force"], capsys)
    assert code != 0 and err.startswith("error:")
    assert re.search(expected, err), err
    assert snapshot(tmp_path) == before


def test_export_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "wf.json"
    target.write_text("keep me")
    code, err = run_cli(["export", "Plan -> Custom -> Format", "--to", "json", "-o", str(target)], capsys)
    assert code != 0 and "already exists" in err and "--force" in err
    assert target.read_text() == "keep me"
    code, err = run_cli(["export", "Plan -> Custom", "--to", "json", "-o", str(tmp_path)], capsys)
    assert code != 0 and "is a directory" in err
    code, _ = run_cli(["export", "Plan -> Custom -> Format", "--to", "json", "-o", str(target), "--force"], capsys)
    assert code == 0 and from_json(target.read_text()).dsl == "Plan -> Custom -> Format"


# -- the same inputs through the Python API ----------------------------------------------------------------
BAD_DSL = ["", "   ", "->", "Plan ->", "Plan -> -> Custom", "[Plan, ]", "[Plan", "Plan]", "(Review -> Revise) * ",
           "(Review -> Revise) * x", "Verify ?", "Verify ? Revise", "Verify ? : done", "Plan Custom",
           "Plan -> Custom ) -> Format", "Plan -> \x00", "Plan -> Ωμέγα", "Plan; rm -rf /", "<action>add</action>"]


@pytest.mark.parametrize("text", BAD_DSL)
def test_bad_dsl_raises_a_positioned_error(text: str) -> None:
    try:
        workflow = parse(text)
    except DSLParseError as exc:
        assert 0 <= exc.position <= len(text)
        assert "position" in str(exc) and exc.reason
    except UserError as exc:  # parsed, but not a valid workflow: the message names the problem
        assert str(exc)
    else:
        assert text.strip() == "" and workflow.is_empty  # only the empty text is the empty workflow


@pytest.mark.parametrize("spec", ["", "gpt-4", "embedded:x", "hf:", "openai:", "scripted:", "HF", "ollama:llama3"])
def test_bad_model_spec_strings(spec: str) -> None:
    with pytest.raises(UserError, match=r"spec|argument"):
        parse_spec(spec)


def test_scripted_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_chat_model(f"scripted:{tmp_path / 'none.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")  # (text that is not JSON is read as '---'-separated replies, by design)
    with pytest.raises(UserError, match="expected a JSON list of strings"):
        load_chat_model(f"scripted:{bad}")


@pytest.mark.parametrize(("content", "expected"), [
    ('{"question": "q", "answer": "#### 1"}\n{"question": 5\n', r"x\.jsonl:2"),
    ('{"question": "q"}\n', r"x\.jsonl:1.*'answer'"),
    ("not json at all\n", r"x\.jsonl:1: not valid JSON"),
])
def test_dataset_api_errors_name_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=expected):
        load_dataset("gsm8k", path)


def _json_cases() -> list[tuple[str, Callable[[str], bool]]]:
    return [("{", lambda m: "not valid JSON" in m), ("[]", lambda m: "JSON object" in m),
            ('{"version": 1, "steps": [{"type": "operator", "id": "node_1", "operator": "Plan"}, '
             '{"type": "operator", "id": "node_1", "operator": "Custom"}]}', lambda m: "duplicate id" in m),
            ('{"version": 1, "steps": [{"type": "spiral"}]}', lambda m: "spiral" in m or "type" in m)]


@pytest.mark.parametrize(("text", "check"), _json_cases())
def test_workflow_json_api_errors(text: str, check: Callable[[str], bool]) -> None:
    with pytest.raises(UserError) as info:
        from_json(text)
    assert check(str(info.value)), str(info.value)
