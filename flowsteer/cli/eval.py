"""``flowsteer eval``: a method (the director or a baseline) over a dataset, with resumable results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowsteer.cli._remote import add_remote_arguments, director_config, with_remote_retries
from flowsteer.errors import UserError

__all__ = ["register", "run", "director_label"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate the director or a baseline on a dataset",
        description="Run the director (or a baseline on the same executor) over a dataset concurrently, "
                    "score every item, append results to OUT/results.jsonl, cache executor calls in "
                    "OUT/calls.sqlite and write OUT/summary.json and OUT/summary.md. Re-running with the "
                    "same --out skips finished items.",
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="a registered dataset (gsm8k, humaneval, ...)")
    parser.add_argument("--data", metavar="PATH", help="the dataset file or folder (HumanEval needs none)")
    parser.add_argument("--split", help="dataset split, when the loader has several")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate the first N items only")
    parser.add_argument("--director", metavar="SPEC",
                        help="director model: embedded, hf:PATH, openai:MODEL (default: embedded when the "
                             "method needs a director)")
    parser.add_argument("--executor", default="embedded", metavar="SPEC", help="executor model (default: embedded)")
    parser.add_argument("--base-url", metavar="URL", help="OpenAI-compatible server for openai: specs")
    parser.add_argument("--baseline", metavar="NAME",
                        help="io | cot | sc[:K] | template:NAME (or template:DSL) | single-turn | untrained; "
                             "without it the director is evaluated")
    parser.add_argument("--sc-samples", type=int, default=5, metavar="K", help="self-consistency samples (default 5)")
    parser.add_argument("--concurrency", type=int, default=4, metavar="K", help="items run at once (default 4)")
    parser.add_argument("--out", default="runs/eval", metavar="DIR", help="results folder (default runs/eval)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the director's sampling and the bootstrap")
    parser.add_argument("--max-turns", type=int, metavar="N", help="director turn limit")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="executor token limit per call")
    parser.add_argument("--label", metavar="NAME", help="method name in results and tables")
    parser.add_argument("--no-cache", action="store_true", help="do not cache executor calls")
    parser.add_argument("--cache", metavar="FILE", help="executor call cache file (default: <out>/calls.sqlite); "
                        "share one file between methods run with the same executor to pay for a node once")
    parser.add_argument("--no-constrain", action="store_true",
                        help="do not grammar-constrain the director's actions (on by default for local "
                             "directors and for directors served by vLLM)")
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def director_label(spec: str | None, baseline: str | None) -> str | None:
    """``flowsteer`` for the embedded director with its shipped trained adapter, ``untrained`` for the
    base model as the director."""
    if spec is None:
        return None
    from flowsteer.models.specs import parse_spec

    scheme, arg = parse_spec(spec)
    if scheme == "embedded" and (arg == "untrained" or baseline == "untrained"):
        return "untrained"
    return None


def _models(args: argparse.Namespace, needs_director: bool) -> tuple[Any, Any]:
    from flowsteer.models.specs import load_chat_model, load_chat_models

    executor_kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    if args.executor.strip() == "simulated":  # the fake knows the gold answers of the tasks it serves
        executor_kwargs = {"answers": {t.question: t.golds[0] for t in args.tasks if t.golds}}
    if not needs_director:
        executor = load_chat_model(args.executor, base_url=args.base_url, **executor_kwargs)
        return None, with_remote_retries(executor, args.executor, args)
    spec = args.director or "embedded"
    if args.baseline == "untrained" and spec.strip() == "embedded":
        spec = "embedded:untrained"
    director, executor = load_chat_models(spec, args.executor, base_url=args.base_url,
                                          executor_kwargs=executor_kwargs)
    return with_remote_retries(director, spec, args), with_remote_retries(executor, args.executor, args)


def _director_config(args: argparse.Namespace, model: Any) -> Any:
    from flowsteer.models.calls import unwrap_model

    local = getattr(unwrap_model(model), "tokenizer", None) is not None
    overrides: dict[str, Any] = {"extra_call_kwargs": {"seed": args.seed}} if local else {}
    if args.max_turns:
        overrides["max_turns"] = args.max_turns
    spec = args.director or "embedded"
    if not local:  # served: the grammar when the server is vLLM, the small preset on request
        return director_config(spec, model, False if args.no_constrain else None,
                               small_model=args.small_model, **overrides)
    from flowsteer.director import DirectorConfig

    small = spec.strip() in ("embedded", "embedded:untrained", "untrained") or args.small_model
    if small:  # the same preset and grammar as `flowsteer run` (and the shipped director's training)
        return DirectorConfig.small_model(constrained=not args.no_constrain, **overrides)
    config = DirectorConfig(**overrides)
    if not args.no_constrain:
        import dataclasses

        from flowsteer.constrain import action_constraint

        constraint = action_constraint(max_new_tokens=config.max_action_tokens)
        config = dataclasses.replace(config, constraint=constraint)
    return config


def run(args: argparse.Namespace) -> int:
    from flowsteer.cli._console import console
    from flowsteer.datasets import load_dataset
    from flowsteer.evaluation import evaluate, model_identity, parse_method
    from flowsteer.evaluation.baselines import needs_director

    if args.limit is not None and args.limit < 0:
        raise UserError("--limit must be >= 0")
    if args.concurrency < 1:
        raise UserError("--concurrency must be >= 1")
    method = parse_method(args.baseline, director=True, sc_samples=args.sc_samples)
    tasks = load_dataset(args.dataset, args.data, limit=args.limit, split=args.split)
    if not tasks:
        raise UserError(f"dataset {args.dataset!r} gave no tasks (check --data and --limit)")
    args.tasks = tasks
    director, executor = _models(args, needs_director(method))
    label = args.label or director_label(args.director or "embedded", args.baseline)
    err = console(stderr=True)
    with _Progress(err) as progress:
        summary = evaluate(
            tasks, executor=executor, director=director, baseline=args.baseline, concurrency=args.concurrency,
            out_dir=args.out, dataset=args.dataset, sc_samples=args.sc_samples, seed=args.seed, label=label,
            director_config=_director_config(args, director) if director is not None else None,
            executor_identity=f"{args.executor}|{args.base_url or ''}|{model_identity(executor)}",
            cache=not args.no_cache, cache_path=args.cache, on_start=progress.start, on_result=progress.advance,
        )
    out = Path(args.out)
    console().print(summary.markdown(), markup=False, highlight=False)
    err.print(f"ran {summary.ran} item(s), {summary.skipped} already done; results in {out / 'results.jsonl'}, "
              f"summary in {out / 'summary.md'}", markup=False, highlight=False)
    return 0


class _Progress:
    """A rich progress bar fed by the harness's ``on_start`` / ``on_result`` callbacks."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[score]}"), console=console)
        self.task: Any = None
        self.values: list[float] = []

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, total: int, skipped: int) -> None:
        self.task = self.bar.add_task("eval", total=total, completed=skipped, score="")

    def advance(self, item: Any) -> None:
        self.values.append(item.value)
        mean = sum(self.values) / len(self.values)
        self.bar.update(self.task, advance=1, score=f"{item.metric} {100 * mean:.1f} (this run)")

