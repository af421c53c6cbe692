"""Copy a trained director run into the package as the shipped embedded director.

    python scripts/ship_director.py runs/director-cpu [--learning benchmarks/results/learning.json]
    python scripts/ship_director.py --card-only --learning benchmarks/results/learning.json

Writes ``flowsteer/director/adapters/embedded/``: the LoRA weights and config of the run's newest
checkpoint, ``manifest.json`` (prompt/grammar fingerprint, base model, run facts) and
``MODEL_CARD.md`` (data, config, seed, steps, wall time, learning curves, eval table).
``--card-only`` rewrites the model card of the adapter already shipped (a re-measured eval) from its
manifest, the card's own config block and the learning result's curves; the weights stay as they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "flowsteer" / "director" / "adapters" / "embedded"


def _table(learning: dict) -> str:
    from flowsteer.report.learning import DIRECTOR_ROWS  # the directors' rows come first

    lines = []
    for dataset, rows in learning.get("table", {}).items():
        lines += [f"\n**{dataset}** (n = {next(iter(rows.values()))['n']} per method)\n",
                  "| method | accuracy | CI95 | own finish | R_div = 1 | executor calls/task |",
                  "|---|---|---|---|---|---|"]
        order = sorted(rows, key=lambda m: (DIRECTOR_ROWS.index(m) if m in DIRECTOR_ROWS else len(DIRECTOR_ROWS),
                                            -rows[m]["accuracy"]))
        for method in order:
            r = rows[method]
            finish = "" if r["finish_rate"] is None else f"{r['finish_rate']:.2f}"
            lines.append(f"| `{method}` | {r['accuracy']:.2f} | [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] | "
                         f"{finish} | {r['rdiv1_rate']:.2f} | {r['executor_calls']:.1f} |")
    targets = learning.get("targets", {})
    if targets:
        lines.append("\nTargets (trained director):\n")
        for dataset, checks in targets.items():
            met = ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items() if isinstance(v, bool))
            lines.append(f"- {dataset}: {met}")
    measured = learning.get("measured_now")
    if measured:  # a partial re-measurement (bench_learning --keep-rows): say which rows are new
        now = "; ".join(f"{d}: {', '.join(m)}" for d, m in measured.items())
        kept = learning.get("kept_from", {})
        when = (kept.get("machine") or {}).get("date", "an earlier run")
        lines.append(f"\nMeasured for this adapter: {now}. Other rows are kept from {when} "
                     f"(`{kept.get('file', '?')}`).")
    if learning.get("notes"):
        lines.append(f"\n{learning['notes']}")
    return "\n".join(lines)


def _write_card(manifest: dict, warm: dict, metrics: list[dict], run_config: str, learning: dict) -> None:
    curve = "\n".join(
        f"| {m['step']} | {m.get('reward_mean', 0):+.3f} | {m.get('r_div', 0):.2f} | {m.get('answer_score', 0):.2f} | "
        f"{m.get('finished', 0):.2f} | {m.get('kl', 0):.4f} | {m.get('time_step', 0):.0f} |" for m in metrics)
    timing = manifest.get("timing") or {}
    card = (ROOT / "scripts" / "model_card.md.in").read_text().format(
        fingerprint=manifest["fingerprint"], steps=manifest["cwrpo_steps"], best=json.dumps(warm["best"]),
        demos=warm["demos"], losses=", ".join(f"{x:.3f}" for x in warm["losses"]),
        warm_seconds=json.dumps({k: round(v) for k, v in warm.get("seconds", {}).items()}),
        curve=curve or "| - | | | | | | |", config=run_config.strip(), table=_table(learning) or "(not measured)",
        timing=json.dumps(timing, indent=1) if timing else "(not recorded)",
    )
    (TARGET / "MODEL_CARD.md").write_text(card)


def _card_only(learning_file: Path | None) -> int:
    """Rewrite the shipped adapter's card: manifest facts, the card's config block, the result's curves."""
    if learning_file is None or not learning_file.is_file():
        print("--card-only needs --learning FILE (a bench_learning result)", file=sys.stderr)
        return 2
    manifest = json.loads((TARGET / "manifest.json").read_text())
    card = (TARGET / "MODEL_CARD.md").read_text()
    marker = "## Config\n\n```yaml\n"
    if marker not in card:
        print(f"{TARGET / 'MODEL_CARD.md'} has no config block; ship from the run folder instead", file=sys.stderr)
        return 2
    run_config = card.split(marker, 1)[1].rsplit("\n```", 1)[0]
    learning = json.loads(learning_file.read_text())
    curves = learning.get("curves") or {}
    warm = {"best": manifest["warmstart_best"], "demos": manifest["warmstart_demos"],
            "losses": manifest["warmstart_losses"], **(curves.get("warmstart") or {})}
    _write_card(manifest, warm, curves.get("steps") or [], run_config, learning)
    print(f"rewrote {TARGET / 'MODEL_CARD.md'} (eval of {learning_file})")
    return 0


def _warmstart_adapter(run_dir: Path) -> Path:
    """The warm start's LoRA weights as a peft adapter folder (``<run_dir>/warmstart/adapter``)."""
    from flowsteer.training.checkpoint import load_trainable
    from flowsteer.training.config import load_config
    from flowsteer.training.policy import load_policy

    config = load_config(run_dir / "config.yaml")
    model, _ = load_policy(config.model, config.lora)
    load_trainable(model, run_dir / "warmstart" / "trainable.safetensors")
    out = run_dir / "warmstart" / "adapter"
    model.save_pretrained(str(out))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("--learning", type=Path, help="bench_learning JSON to put in the model card")
    p.add_argument("--timing", type=Path, help="JSON with the run's measured wall times")
    p.add_argument("--card-only", action="store_true",
                   help="rewrite the shipped adapter's model card only (needs --learning)")
    args = p.parse_args()
    if args.card_only:
        return _card_only(args.learning)
    if args.run_dir is None:
        p.error("run_dir is required (or --card-only)")
    sys.path.insert(0, str(ROOT))  # a script of this repository, run from a checkout
    from flowsteer.director.shipped import director_fingerprint
    from flowsteer.training.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(args.run_dir)
    if checkpoint is not None and (checkpoint / "adapter").is_dir():
        adapter, step = checkpoint / "adapter", json.loads((checkpoint / "state.json").read_text())["step"]
    elif (args.run_dir / "warmstart" / "trainable.safetensors").is_file():
        adapter, step = _warmstart_adapter(args.run_dir), 0  # no CWRPO step finished: the warm start's
    else:
        print(f"no checkpoint with an adapter and no warm start under {args.run_dir}", file=sys.stderr)
        return 2
    TARGET.mkdir(parents=True, exist_ok=True)
    shutil.copy(adapter / "adapter_model.safetensors", TARGET / "adapter_model.safetensors")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SmolLM2-135M-Instruct"  # the embedded model, not a local path
    (TARGET / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    run_config = (args.run_dir / "config.yaml").read_text()
    warm = json.loads((args.run_dir / "warmstart" / "done.json").read_text())
    metrics_file = args.run_dir / "metrics.jsonl"
    metrics = [json.loads(x) for x in metrics_file.read_text().splitlines() if x.strip()] if metrics_file.is_file() else []
    timing = json.loads(args.timing.read_text()) if args.timing else {}
    manifest = {
        "fingerprint": director_fingerprint(), "base_model": "SmolLM2-135M-Instruct",
        "adapter_name": "flowsteer-director", "cwrpo_steps": step, "warmstart_best": warm["best"],
        "warmstart_demos": warm["demos"], "warmstart_losses": warm["losses"], "timing": timing,
        "recipe": "training/configs/director-cpu.yaml",
    }
    (TARGET / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    learning = json.loads(args.learning.read_text()) if args.learning and args.learning.is_file() else {}
    _write_card(manifest, warm, metrics, run_config, learning)
    print(f"shipped {adapter} (CWRPO step {step}) -> {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
