"""Train a LoRA adapter on the embedded SmolLM2-135M director for a few CWRPO steps, on CPU.

Shows the valid-action rate and reward of the director before and after training, on the same
held-out tasks with the same sampling seeds. It is slow on a laptop CPU (minutes per step: every step
plays B x G full canvas episodes and then trains on them), and a handful of steps is far too few for
a 135M model to become a good designer -- it demonstrates the loop, not a result.

    python examples/train_embedded_lora.py --steps 4                     # unconstrained director
    python examples/train_embedded_lora.py --steps 4 --constrain         # grammar-constrained actions
    python examples/train_embedded_lora.py --custom-operators my_ops     # retrain on custom operators

``--custom-operators MODULE`` imports a module that registers operators with
``flowsteer.operators.register_operator``; the director's prompts, the canvas, the action grammar and
the reward then use them with no other change (retraining the director for a custom vocabulary).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import tempfile

from flowsteer.datasets import load_dataset
from flowsteer.training.config import config_from_dict
from flowsteer.training.policy import load_policy
from flowsteer.training.setup import build_rollout
from flowsteer.training.trainer import CWRPOTrainer, seed_everything


def evaluate(rollout, tasks, label: str) -> dict[str, float]:
    """Play one episode per task with the current adapter (fixed seeds) and average the metrics."""
    episodes = asyncio.run(rollout.collect(tasks, 1, step=10_000))  # a step number training never uses
    keys = ("reward", "valid_action_rate", "r_div", "answer_score", "operators", "turns")
    out = {k: sum(e.metrics.get(k, 0.0) for e in episodes) / len(episodes) for k in keys}
    print(f"{label:>7}: " + "  ".join(f"{k} {v:.3f}" for k, v in out.items()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tasks-per-step", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--eval-tasks", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--constrain", action="store_true", help="grammar-constrain the director's actions")
    parser.add_argument("--custom-operators", action="append", default=[], metavar="MODULE")
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    for module in args.custom_operators:
        importlib.import_module(module)
    config = config_from_dict({
        "seed": 0,
        "max_steps": args.steps,
        "model": {"name_or_path": "embedded", "device": "cpu"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "director": {
            "temperature": 0.8, "top_p": 1.0, "max_turns": args.max_turns, "max_action_tokens": 64,
            "context_budget": 2048, "constrain": args.constrain, "max_prompt_tokens": 32, "usage_hints": False,
        },
        "rollout": {
            "tasks_per_step": args.tasks_per_step, "group_size": args.group_size,
            "concurrency": args.tasks_per_step * args.group_size,
        },
        "loss": {"beta": 0.005},
        "optim": {"lr": args.lr, "warmup_steps": 1, "micro_batch_size": 2},
        "data": {"datasets": ["gsm_synthetic"], "limit": 64, "custom_operators": args.custom_operators},
        "logging": {"run_dir": args.run_dir or tempfile.mkdtemp(prefix="flowsteer-lora-"), "save_every": 0},
    })
    seed_everything(config.seed)
    tasks = load_dataset("gsm_synthetic", limit=64)
    train_tasks, eval_tasks = tasks[args.eval_tasks:], tasks[: args.eval_tasks]
    print("loading the embedded SmolLM2-135M-Instruct and adding a LoRA adapter ...")
    model, tokenizer = load_policy(config.model, config.lora)
    rollout = build_rollout(config, model, tokenizer, train_tasks)
    before = evaluate(rollout, eval_tasks, "before")

    def show(m: dict[str, float]) -> None:
        print(f"step {int(m['step'])}: reward {m['reward_mean']:.3f}  valid {m.get('valid_action_rate', 0):.2f}  "
              f"kl {m.get('kl', 0):.4f}  clip {m.get('clip_fraction', 0):.3f}  "
              f"rollout {m['time_rollout']:.0f}s  update {m['time_update']:.0f}s")

    trainer = CWRPOTrainer(config, model=model, tokenizer=tokenizer, rollout=rollout, tasks=train_tasks, on_step=show)
    trainer.train()
    after = evaluate(rollout, eval_tasks, "after")
    print(f"valid-action rate {before['valid_action_rate']:.3f} -> {after['valid_action_rate']:.3f}; "
          f"reward {before['reward']:.3f} -> {after['reward']:.3f}")
    print(f"run folder: {config.logging.run_dir}  (flowsteer plot / flowsteer export-director)")


if __name__ == "__main__":
    main()
