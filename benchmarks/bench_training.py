"""Training step: tokens/s and peak memory of one CWRPO update next to TRL's GRPO loss path (CPU).

Models: the tiny random Llama of ``flowsteer.testing.tiny`` and (full mode) the embedded
SmolLM2-135M-Instruct, both with the training package's default LoRA adapter (r=64 on q/k/v/o).
Batch: B sequences of P prompt + C sampled tokens (random ids, seeded), one policy row each.

* ``cwrpo``: ``flowsteer.training.update.fill_logprobs`` + ``ppo_update`` (AdamW) with the default
  ``LossConfig``: behaviour log-probs recomputed and a reference pass for the k3 KL (beta 0.005).
* ``cwrpo_matched``: the same update with the work TRL's defaults do: ``beta=0`` and the engine's
  log-probs as behaviour log-probs (no extra forward passes).
* ``trl_grpo``: TRL 1.16 ``GRPOTrainer._compute_loss`` (loss_type ``bnpo`` = our token-mean, beta 0,
  TRL's defaults otherwise) called on a bare trainer instance, + ``backward`` + clipping + AdamW on the
  same model and tensors. The full ``GRPOTrainer.train()`` is impractical here: it generates its own
  completions (no fixed batch) and patches a fused LM head; so its per-token log-probs come from a
  plain forward + TRL's ``selective_log_softmax`` / ``entropy_from_logits`` helpers.

Each model runs in its own process (imports paid once); its cases run in the order cwrpo,
cwrpo_matched, trl_grpo, each on a freshly loaded model. Memory = peak RSS sampled every 5 ms during
the timed updates minus the RSS just before them (ours first, so memory the allocator kept from an
earlier case can only flatter TRL), plus the process's ru_maxrss so far. Medians over repeats after
one warm-up update.

    python benchmarks/bench_training.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from _common import emit, log, median_of, parser, peak_rss_mb

CASES = ("cwrpo", "cwrpo_matched", "trl_grpo")
SHAPES = {"tiny": (8, 256, 64), "smollm2": (2, 128, 32), "quick": (4, 32, 16)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """Samples this process's RSS every 5 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_model(name: str):
    from flowsteer.training.config import LoRAConfig, ModelConfig
    from flowsteer.training.policy import prepare_policy

    if name == "smollm2":
        from flowsteer.models.embedded import load_embedded_model

        model, tokenizer = load_embedded_model(device="cpu")
    else:
        from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(tokenizer)
    model.float()
    return prepare_policy(model, ModelConfig(device="cpu"), LoRAConfig()), tokenizer


def make_batch(vocab: int, shape: tuple[int, int, int], seed: int = 0):
    import torch

    from flowsteer.training.batch import build_batch

    b, p, c = shape
    gen = torch.Generator().manual_seed(seed)
    trajectories = []
    for _ in range(b):
        record = SimpleNamespace(
            prompt_ids=torch.randint(3, vocab, (p,), generator=gen).tolist(),
            completion_ids=torch.randint(3, vocab, (c,), generator=gen).tolist(),
            logprobs=(-torch.rand(c, generator=gen) * 4).tolist(),
        )
        trajectories.append([record])
    advantages = torch.randn(b, generator=gen).tolist()
    return build_batch(trajectories, advantages), advantages


def cwrpo_step(model, optimizer, batch, matched: bool, step: int) -> None:
    from flowsteer.training.config import LossConfig
    from flowsteer.training.update import UpdateSettings, fill_logprobs, ppo_update

    loss = LossConfig(beta=0.0, old_logprobs="engine") if matched else LossConfig()
    settings = UpdateSettings(loss=loss, micro_batch_size=batch.num_seqs)
    fill_logprobs(model, batch, settings, "cpu")
    ppo_update(model, optimizer, None, batch, settings, "cpu", step=step)


class _Accelerator:
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def trl_trainer(model):
    """A bare ``GRPOTrainer`` whose attributes hold TRL's default loss settings (loss_type bnpo)."""
    import torch
    from trl.trainer import grpo_trainer
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    trainer = object.__new__(grpo_trainer.GRPOTrainer)
    trainer.__dict__.update(
        loss_type="bnpo", epsilon_low=0.2, epsilon_high=0.2, beta=0.0, importance_sampling_level="token",
        off_policy_mask_threshold=None, top_entropy_quantile=1.0, use_vllm=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, accelerator=_Accelerator(),
        model=model, _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False),
    )

    def logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, **_):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, T, V]
        logits = logits[:, -logits_to_keep - 1 : -1, :]  # [B, C, V] predicting the completion
        logps = selective_log_softmax(logits, input_ids[:, -logits_to_keep:])  # [B, C]
        entropies = entropy_from_logits(logits) if compute_entropy else None
        return logps, entropies, None

    trainer._get_per_token_logps_and_entropies = logps_and_entropies
    return trainer, torch


def trl_step(trainer, model, optimizer, batch, shape, advantages) -> None:
    import torch

    from flowsteer.training.policy import trainable_parameters

    _, p, _c = shape
    inputs = {
        "prompt_ids": batch.input_ids[:, :p], "prompt_mask": batch.attention_mask[:, :p],
        "completion_ids": batch.input_ids[:, p:], "completion_mask": batch.attention_mask[:, p:],
        "advantages": torch.tensor(advantages), "old_per_token_logps": None, "ref_per_token_logps": None,
    }
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = type(trainer)._compute_loss(trainer, model, inputs)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable_parameters(model), 1.0)
    optimizer.step()


def run_case(model_name: str, case: str, shape: tuple[int, int, int], repeats: int) -> dict:
    import torch

    from flowsteer.training.policy import trainable_parameters

    torch.manual_seed(0)
    model, tokenizer = load_model(model_name)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-5)
    vocab = model.get_input_embeddings().weight.shape[0]
    batch, advantages = make_batch(vocab, shape)
    trainer = trl_trainer(model)[0] if case == "trl_grpo" else None

    def step(i: int) -> None:
        if case == "trl_grpo":
            trl_step(trainer, model, optimizer, batch, shape, advantages)
        else:
            cwrpo_step(model, optimizer, batch, case == "cwrpo_matched", i)

    step(0)  # warm-up
    before = _rss_mb()
    samples = []
    with PeakSampler() as sampler:
        for i in range(repeats):
            start = time.perf_counter()
            step(i + 1)
            samples.append(time.perf_counter() - start)
    seconds = median_of(samples)
    b, p, c = shape
    return {"model": model_name, "case": case, "batch": {"sequences": b, "prompt_tokens": p, "completion_tokens": c},
            "update_s": seconds, "samples": samples, "tokens_per_s": b * (p + c) / seconds,
            "trained_tokens_per_s": b * c / seconds, "rss_before_mb": before,
            "update_peak_rss_increase_mb": sampler.peak - before, "process_peak_rss_mb": peak_rss_mb(),
            "trainable_params": sum(x.numel() for x in trainable_parameters(model))}


def run_isolated(model_name: str, shape, repeats: int) -> list[dict]:
    cmd = [sys.executable, str(Path(__file__)), "--case", "all", "--model", model_name, "--repeats", str(repeats),
           "--shape", ",".join(map(str, shape))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1700)
    if out.returncode != 0:
        return [{"model": model_name, "case": "all", "error": out.stderr[-2000:]}]
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--case", choices=[*CASES, "all"], help=argparse_hidden())
    p.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2 (full mode)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--repeats", type=int, default=0)
    p.add_argument("--shape", default="")
    args = p.parse_args(argv)
    if args.case:  # child mode: one model's cases, a JSON list on stdout
        shape = tuple(int(x) for x in args.shape.split(","))
        cases = CASES if args.case == "all" else (args.case,)
        out = []
        for case in cases:
            log(f"training {args.model} {case} {shape}")
            out.append(run_case(args.model, case, shape, args.repeats))
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    repeats = {"tiny": 3, "smollm2": 2}
    plan = ([("tiny", SHAPES["quick"], 2)] if args.quick else
            [(m, SHAPES[m], repeats[m]) for m in args.models.split(",")])
    results = []
    for model_name, shape, n in plan:
        if args.quick:
            for case in CASES:
                log(f"training {model_name} {case} {shape}")
                results.append(run_case(model_name, case, shape, n))
        else:
            log(f"training {model_name} {shape}: one process, cases {', '.join(CASES)}")
            results.extend(run_isolated(model_name, shape, n))
    ratios = {}
    for model_name, _, _ in plan:
        by = {r["case"]: r for r in results if r["model"] == model_name and "error" not in r}
        if "trl_grpo" in by:
            ratios[model_name] = {f"{c}_over_trl_time": by[c]["update_s"] / by["trl_grpo"]["update_s"]
                                  for c in ("cwrpo", "cwrpo_matched") if c in by}
    emit("training", {
        "method": " ".join(__doc__.split("\n\n")[2:4]).replace("\n", " "),
        "device": "cpu (float32)",
        "memory_note": "cases of one model share a process (ours first): process_peak_rss_mb is cumulative; "
                       "update_peak_rss_increase_mb is per case",
        "results": results,
        "time_ratios": ratios,
        "target": "report tokens/s and peak memory next to TRL's GRPO loss path (no numeric target)",
        "target_met": None,
    }, quick=args.quick)
    return 0 if all("error" not in r for r in results) else 1


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
