"""The CLI against a served model (a fake OpenAI-compatible server on 127.0.0.1): the action grammar
goes to vLLM servers only, the small-model preset on request, and served calls are retried within
bounds (a failing or hung first call does not end the run)."""

from __future__ import annotations

import argparse
import json
import re
import time

import pytest
from director_scripts import QUESTION
from fake_openai import FakeOpenAI, policy_reply

from flowsteer.cli import main
from flowsteer.cli._remote import REMOTE_ATTEMPTS, with_remote_retries
from flowsteer.models.retry import RetryingChatModel
from flowsteer.models.specs import load_chat_model, served_by_vllm
from flowsteer.testing import ScriptedChatModel

pytestmark = pytest.mark.timeout(120)


def _roles(owned_by: str = "vllm", **kw) -> FakeOpenAI:
    """A server whose model ``director`` plays the policy and whose model ``executor`` answers 72."""
    director = policy_reply()

    def reply(body: dict) -> str:
        return director(body) if body.get("model") == "director" else "The answer is 72."

    return FakeOpenAI(reply, owned_by=owned_by, **kw)


def _run(server: FakeOpenAI, *extra: str, capsys) -> dict:
    argv = ["run", QUESTION, "--director", "openai:director", "--executor", "openai:executor",
            "--base-url", server.base_url, "--json", "--no-fallback", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _limit(body: dict) -> int | None:
    """The token limit a request asked for (langchain-openai sends max_completion_tokens)."""
    return body.get("max_completion_tokens", body.get("max_tokens"))


def _director_bodies(server: FakeOpenAI) -> list[dict]:
    return [b for b in server.requests if b.get("model") == "director"]


# -- the action grammar and the small-model preset for served directors ------------------------------------
def test_a_vllm_served_director_gets_the_grammar_per_turn(capsys):
    with _roles("vllm") as server:
        data = _run(server, capsys=capsys)
    assert data["stop_reason"] == "finish"
    bodies = _director_bodies(server)
    assert bodies and all("regex" in b.get("structured_outputs", {}) for b in bodies)
    first = bodies[0]
    assert re.fullmatch(first["structured_outputs"]["regex"], "<action>add</action><operator>Plan</operator>")
    assert _limit(first) == 512  # full-size settings unless --small-model
    executor_bodies = [b for b in server.requests if b.get("model") == "executor"]
    assert executor_bodies and not any("structured_outputs" in b for b in executor_bodies)


def test_small_model_preset_gives_a_served_director_short_turns(capsys):
    with _roles("vllm") as server:
        data = _run(server, "--small-model", capsys=capsys)
    assert data["stop_reason"] == "finish"
    bodies = _director_bodies(server)
    actions = [b for b in bodies if "Write the prompt" not in b["messages"][-1]["content"]]
    prompts = [b for b in bodies if "Write the prompt" in b["messages"][-1]["content"]]
    # the preset runs nodes on their operators' own instructions: one turn per action, no prompt turns
    assert actions and not prompts
    assert {_limit(b) for b in actions} == {64}
    assert all("structured_outputs" in b for b in bodies)
    assert max(t["context_tokens"] for t in data["turns"]) <= 2048 - 64


@pytest.mark.parametrize(("owned_by", "flag", "expect"), [
    ("openai", None, False),             # not vLLM: OpenAI would reject structured_outputs
    ("openai", "--constrain", True),     # forced on
    ("vllm", "--no-constraint", False),  # forced off
])
def test_grammar_flags_and_server_detection(owned_by, flag, expect, capsys):
    with _roles(owned_by) as server:
        _run(server, *([flag] if flag else []), capsys=capsys)
    bodies = _director_bodies(server)
    assert bodies and all(("structured_outputs" in b) is expect for b in bodies)


def test_served_by_vllm_reads_the_model_listing():
    with FakeOpenAI(owned_by="vllm") as vllm, FakeOpenAI(owned_by="openai") as other:
        assert served_by_vllm(load_chat_model("openai:director", base_url=vllm.base_url))
        assert not served_by_vllm(load_chat_model("openai:director", base_url=other.base_url))
    assert not served_by_vllm(load_chat_model("openai:director", base_url="http://127.0.0.1:9/v1"), timeout=1)
    assert not served_by_vllm(ScriptedChatModel(["x"]))


# -- bounded retries for served models --------------------------------------------------------------------
def test_failing_first_calls_are_retried(capsys):
    # the first two calls answer 500: the OpenAI client's own single retry is not enough
    with _roles("openai", fail_first=2) as server:
        data = _run(server, capsys=capsys)
    assert data["stop_reason"] == "finish" and "72" in data["answer"]
    assert server.chat_calls >= 3 and len(data["turns"]) == 13


def test_a_hung_call_is_cut_off_by_call_timeout(capsys):
    with _roles("openai", hang_first=1, hang_s=30.0) as server:
        started = time.perf_counter()
        data = _run(server, "--call-timeout", "1", capsys=capsys)
        elapsed = time.perf_counter() - started
    assert data["stop_reason"] == "finish"
    assert elapsed < 20  # the hung call waited ~1 s, not 30


def test_only_served_models_are_wrapped_and_the_timeout_is_checked():
    args = argparse.Namespace(call_timeout=7.0)
    local = ScriptedChatModel(["x"])
    assert with_remote_retries(local, "scripted:x.json", args) is local
    wrapped = with_remote_retries(local, "openai:gpt-4o-mini", args)
    assert isinstance(wrapped, RetryingChatModel)
    assert wrapped.attempts == REMOTE_ATTEMPTS and wrapped.timeout == 7.0 and wrapped.inner is local
    from flowsteer.errors import UserError

    with pytest.raises(UserError, match="--call-timeout"):
        with_remote_retries(local, "openai:x", argparse.Namespace(call_timeout=0))


def test_eval_wraps_a_served_executor(tmp_path, monkeypatch, capsys):
    import flowsteer.evaluation

    seen = {}
    real = flowsteer.evaluation.evaluate

    def spy(tasks, **kwargs):
        seen["executor"] = kwargs["executor"]
        return real(tasks, **kwargs)

    monkeypatch.setattr(flowsteer.evaluation, "evaluate", spy)
    data = tmp_path / "gsm.jsonl"
    data.write_text(json.dumps({"question": "What is 70 + 2?", "answer": "#### 72"}) + "\n")
    with FakeOpenAI("The answer is 72.", fail_first=2) as server:
        code = main(["eval", "--dataset", "gsm8k", "--data", str(data), "--baseline", "io", "--executor",
                     "openai:executor", "--base-url", server.base_url, "--out", str(tmp_path / "out"),
                     "--no-cache", "--call-timeout", "5"])
    assert code == 0
    assert isinstance(seen["executor"], RetryingChatModel)
    results = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 1 and results[0]["score"] == 1.0 and not results[0]["errors"]


def test_error_messages_keep_their_brackets(monkeypatch, capsys):
    """Rich markup used to eat `[vllm]` from advice such as pip install 'flowsteer[vllm]'."""
    from flowsteer.cli import export as export_cli
    from flowsteer.cli import main
    from flowsteer.errors import MissingExtraError

    def fail(args):
        raise MissingExtraError("vllm", "vllm", "flowsteer serve")

    monkeypatch.setattr(export_cli, "run", fail)
    assert main(["export", "Custom", "--to", "json"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'flowsteer[vllm]'" in err


def test_eval_takes_the_simulated_executor_like_training_configs(tmp_path, capsys):
    from flowsteer.cli import main

    out = tmp_path / "sim"
    assert main(["eval", "--dataset", "arithmetic", "--limit", "3", "--executor", "simulated", "--baseline",
                 "template:math-default", "--out", str(out)]) == 0
    assert (out / "results.jsonl").read_text().count("\n") == 3


def test_a_dataset_that_needs_a_file_names_the_flag(capsys):
    from flowsteer.cli import main

    assert main(["eval", "--dataset", "gsm8k", "--executor", "simulated", "--baseline", "io"]) == 2
    assert "--data PATH" in capsys.readouterr().err


def test_design_json_says_what_happened_and_turns_go_to_stderr(tmp_path, capsys):
    import json as _json

    from flowsteer.cli import main

    replies = tmp_path / "replies.json"
    replies.write_text(_json.dumps(["<action>add</action><operator>Custom</operator>", "Solve it.",
                                    "<action>finish</action>"]))
    assert main(["design", "What is 2 + 3?", "--director", f"scripted:{replies}", "--executor", "simulated",
                 "--json", "--max-turns", "3"]) == 0
    captured = capsys.readouterr()
    data = _json.loads(captured.out)
    assert data["design"]["stop_reason"] in ("finish", "max_turns") and "fallback" in data["design"]
    assert data["design"]["director_usage"]["calls"] >= 1
    assert "t 1" in captured.err  # live turns, kept off stdout so the JSON stays parseable
