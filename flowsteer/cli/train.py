"""``flowsteer train`` / ``flowsteer plot`` / ``flowsteer export-director``: CWRPO from the shell.

torch and the training package are imported inside the command functions, so ``flowsteer --help``
stays fast and works without the ``train`` extra.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the three training subcommands."""
    train = subparsers.add_parser(
        "train", help="train the Flow-Director with CWRPO (LoRA)",
        epilog="Metrics go to RUN_DIR/metrics.jsonl (and a live progress line); `flowsteer plot RUN_DIR` draws "
               "them. TensorBoard: --set logging.tensorboard=true (events in RUN_DIR/tensorboard; "
               "`tensorboard --logdir RUN_DIR`). Weights & Biases: --set logging.wandb=true "
               "[--set logging.wandb_project=NAME]; WANDB_MODE=offline keeps the run in RUN_DIR/wandb "
               "(`wandb sync` uploads it later). Both need `pip install 'flowsteer[logging]'`.",
        description="Train the Flow-Director with CWRPO. Launch with torchrun for several GPUs.")
    train.add_argument("--config", required=True, help="YAML or TOML config (see training/configs/)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run")
    train.add_argument("--run-dir", help="override logging.run_dir")
    train.add_argument("--max-steps", type=int, help="override max_steps")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any field, e.g. --set optim.lr=1e-4 (YAML value syntax); repeatable")
    train.set_defaults(func=_train)

    plot = subparsers.add_parser("plot", help="draw a training run's curves to a PNG")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", help="PNG path (default RUN_DIR/training_curves.png)")
    plot.add_argument("--smooth", type=int, default=1, help="moving-average window in steps")
    plot.set_defaults(func=_plot)

    export = subparsers.add_parser("export-director", help="write the trained adapter and a merged model")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("-o", "--output", help="output folder (default RUN_DIR/export)")
    export.add_argument("--checkpoint", help="a specific checkpoint folder (default: the newest)")
    export.add_argument("--no-merge", action="store_true", help="only copy the adapter")
    export.set_defaults(func=_export)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from flowsteer.errors import UserError
    from flowsteer.training.config import parse_yaml

    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set optim.lr=1e-4")
        out[key.strip()] = parse_yaml(value, f"--set {key.strip()!r}: value {value!r}")
    if args.run_dir:
        out["logging.run_dir"] = args.run_dir
    if args.max_steps is not None:
        out["max_steps"] = args.max_steps
    return out


def step_info(m: dict[str, float], times: list[float]) -> str:
    """The progress line after a step: its metrics, where its time went, and the run's times so far
    (``times`` collects each step's seconds)."""
    times.append(float(m.get("time_step", 0)))
    return (f"R {m.get('reward_mean', 0):.3f}  valid {m.get('valid_action_rate', 0):.2f}  "
            f"turns {m.get('turns', 0):.1f}  kl {m.get('kl', 0):.4f}  "
            f"step {times[-1]:.0f}s (rollout {m.get('time_rollout', 0):.0f}s + update "
            f"{m.get('time_update', 0):.0f}s; mean {sum(times) / len(times):.0f}s, total {sum(times):.0f}s)")


def _train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from flowsteer.cli._console import console
    from flowsteer.training.config import load_config
    from flowsteer.training.distributed import init_distributed
    from flowsteer.training.trainer import CWRPOTrainer

    config = load_config(args.config, _overrides(args))
    dist = init_distributed()
    show = config.logging.progress and dist.is_main
    progress = Progress(TextColumn("[bold]CWRPO"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), console=console(), disable=not show)
    bar = progress.add_task("train", total=config.max_steps, info="loading")

    times: list[float] = []

    def on_step(m: dict[str, float]) -> None:
        progress.update(bar, completed=int(m["step"]), info=step_info(m, times))

    with progress:
        trainer = CWRPOTrainer.from_config(config, dist=dist, on_step=on_step)
        progress.update(bar, completed=trainer.step, info="rolling out")
        trainer.train(resume=args.resume)
    if dist.is_main:
        console().print(f"done: metrics in {config.logging.run_dir}/metrics.jsonl; "
                        f"`flowsteer plot {config.logging.run_dir}` draws them")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from flowsteer.cli._console import console
    from flowsteer.report.plot import plot_run

    path = plot_run(args.run_dir, args.output, smooth=args.smooth)
    console().print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from flowsteer.cli._console import console
    from flowsteer.training.export import export_director

    result = export_director(args.run_dir, args.output, checkpoint=args.checkpoint, merge=not args.no_merge)
    out = console()
    out.print(f"checkpoint: {result.checkpoint}")
    if result.adapter_dir is not None:
        out.print(f"adapter:    {result.adapter_dir}")
    if not args.no_merge:
        out.print(f"merged:     {result.merged_dir}")
    out.print("serve it with:")
    for command in result.serve_commands:
        out.print(f"  {command}", markup=False, highlight=False)
    return 0
