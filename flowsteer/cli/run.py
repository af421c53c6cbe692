"""``flowsteer run`` and ``flowsteer design``: the Flow-Director on one task, from the terminal.

``run`` shows each turn live (the action or prompt, whether the canvas accepted it, the gist of its
feedback), then the final workflow (DSL and a mermaid diagram), the answer and the tokens used.
``design`` prints only the designed workflow (DSL, or JSON with ``--json``).

Served (``openai:``) models get bounded retries (``--call-timeout``); a served director gets the
action grammar when its server is vLLM (``--constrain`` / ``--no-constraint`` force it on / off) and
the small-model settings with ``--small-model``; see :mod:`flowsteer.cli._remote`.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from flowsteer.cli._remote import add_remote_arguments, director_config, with_remote_retries
from flowsteer.tasks import TASK_KINDS, Task

__all__ = ["register"]

_MESSAGE = re.compile(r"\[Message\]:\s*(.*)")
_RESULT = re.compile(r"\[Result\]:\s*(.*)")


def register(subparsers: Any) -> None:
    for name, func, help_text in (
        ("run", _run, "design a workflow for TASK with the Flow-Director, run it, show the answer"),
        ("design", _design, "design a workflow for TASK and print it (DSL, or JSON with --json)"),
    ):
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        p.add_argument("task", help="the task text (a question, a problem, a coding prompt)")
        p.add_argument("--type", dest="kind", choices=TASK_KINDS, default="math", help="task kind (default math)")
        p.add_argument("--director", default="embedded", help="director model spec (default: embedded)")
        p.add_argument("--executor", default="embedded", help="executor model spec (default: embedded)")
        p.add_argument("--base-url", default=None, help="OpenAI-compatible server for openai: specs")
        p.add_argument("--max-turns", type=int, default=None,
                       help="turn limit (default: the director's settings, 10 for the embedded director, else 20)")
        p.add_argument("--seed", type=int, default=None, help="sampling seed (local models)")
        p.add_argument("--temperature", type=float, default=None, help="director temperature")
        p.add_argument("--json", action="store_true", help="print JSON instead of the live view")
        p.add_argument("--no-fallback", action="store_true",
                       help="do not run a template workflow when the director leaves no finishable workflow")
        grammar = p.add_mutually_exclusive_group()
        grammar.add_argument("--constrain", dest="constrain", action="store_const", const=True, default=None,
                             help="decode director actions with the action grammar (default: on for local "
                                  "directors and for directors served by vLLM, sent as structured_outputs)")
        grammar.add_argument("--no-constraint", dest="constrain", action="store_const", const=False,
                             help="decode director actions without the action grammar (an untrained small "
                                  "model emits almost no valid action without it)")
        add_remote_arguments(p)
        p.set_defaults(func=func)


def _config(args: argparse.Namespace, director_model: Any) -> Any:
    overrides: dict[str, Any] = {"fallback": not args.no_fallback}
    if args.max_turns is not None:
        overrides["max_turns"] = args.max_turns
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    if args.seed is not None:
        overrides["extra_call_kwargs"] = {"seed": args.seed}
    return director_config(args.director, director_model, args.constrain, small_model=args.small_model or None,
                           **overrides)


def _models(args: argparse.Namespace) -> tuple[Any, Any]:
    from flowsteer.models.specs import load_chat_models, parse_spec

    local = {"embedded", "hf"}
    if parse_spec(args.director)[0] in local or parse_spec(args.executor)[0] in local:
        try:
            import transformers

            transformers.utils.logging.disable_progress_bar()
        except ImportError:
            pass  # load_chat_models raises the MissingExtraError that names the extra
    executor_kwargs: dict[str, Any] = {"max_new_tokens": 128} if parse_spec(args.executor)[0] in local else {}
    if args.seed is not None and parse_spec(args.executor)[0] in local:
        executor_kwargs["seed"] = args.seed
    director, executor = load_chat_models(args.director, args.executor, base_url=args.base_url,
                                          executor_kwargs=executor_kwargs)
    return with_remote_retries(director, args.director, args), with_remote_retries(executor, args.executor, args)


def _episode(args: argparse.Namespace, live: bool) -> Any:
    from flowsteer.cli._console import console
    from flowsteer.director import Director

    out = console()
    if args.max_turns is not None and args.max_turns < 1:
        from flowsteer.errors import UserError

        raise UserError("--max-turns must be >= 1")
    started = time.perf_counter()
    with out.status("loading models...", spinner="dots") if live else _Null():
        director_model, executor = _models(args)
    if live:
        out.print(f"[dim]models ready in {time.perf_counter() - started:.1f}s[/]")
    director = Director(director_model, config=_config(args, director_model),
                        on_turn=_show_turn if live else _show_turn_on_stderr)
    return director.run(Task(args.task, kind=args.kind), executor)


def _show_turn_on_stderr(record: Any) -> None:
    _show_turn(record, stderr=True)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _show_turn(record: Any, stderr: bool = False) -> None:
    from rich.markup import escape

    from flowsteer.cli._console import console

    mark = "[green]ok[/]" if record.accepted else ("[yellow]repaired[/]" if not record.sent else "[red]no[/]")
    if record.kind == "prompt":
        what = f"prompt: {_gist(record.raw_output, 90)}"
    elif record.action is not None:
        from flowsteer.canvas import render_action

        what = render_action(record.action)
    else:
        what = f"no action in: {_gist(record.raw_output, 70)}"
    line = f"[bold]t{record.index:>2}[/] [cyan]{record.kind:<6}[/] {mark} {escape(what)}"
    gist = _feedback_gist(record.feedback)
    console(stderr=stderr).print(line + (f"\n      [dim]{escape(gist)}[/]" if gist else ""), highlight=False)


def _feedback_gist(feedback: str) -> str:
    message = _MESSAGE.search(feedback or "")
    result = _RESULT.search(feedback or "")
    parts = [message.group(1).strip() if message else "", f"result: {_gist(result.group(1), 60)}" if result else ""]
    return _gist(" | ".join(p for p in parts if p), 150)


def _gist(text: str, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from flowsteer.cli._console import console

    trajectory = _episode(args, live=not args.json)
    out = console()
    if args.json:
        out.print_json(trajectory.to_json())
        return 0
    out.rule("workflow")
    out.print(escape(trajectory.workflow.dsl or "(empty)"), highlight=False)
    if trajectory.fallback:
        out.print(f"[yellow]fallback:[/] {escape(trajectory.fallback)}", highlight=False)
    mermaid = _mermaid(trajectory.workflow)
    if mermaid:
        out.rule("mermaid")
        out.print(escape(mermaid), highlight=False)
    out.rule("answer")
    out.print(escape(trajectory.answer or "(no answer)"), highlight=False)
    out.rule()
    d, e = trajectory.usage, trajectory.executor_usage
    out.print(f"stop: {trajectory.stop_reason} | turns: {len({t.index for t in trajectory.turns})} | "
              f"director tokens: {d.input_tokens} in / {d.output_tokens} out ({d.calls} calls) | "
              f"executor tokens: {e.input_tokens} in / {e.output_tokens} out ({e.calls} calls) | "
              f"max context: {trajectory.max_context_tokens} | {trajectory.seconds:.1f}s", highlight=False)
    return 0


def _mermaid(workflow: Any) -> str:
    if workflow.is_empty:
        return ""
    from flowsteer.workflow.graph import to_mermaid

    return to_mermaid(workflow)


def _design(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from flowsteer.cli._console import console

    trajectory = _episode(args, live=False)
    out = console()
    if trajectory.fallback:
        console(stderr=True).print(f"[yellow]fallback:[/] {escape(trajectory.fallback)}", highlight=False)
    if args.json:  # the workflow's JSON plus what happened: nothing is only on stderr
        import json

        from flowsteer.workflow.serialize import to_json

        data = json.loads(to_json(trajectory.workflow))
        data["design"] = {
            "stop_reason": trajectory.stop_reason, "fallback": trajectory.fallback,
            "designed": trajectory.designed.dsl if trajectory.designed is not None else None,
            "turns": len({t.index for t in trajectory.turns}),
            "director_usage": _usage_dict(trajectory.usage),
            "executor_usage": _usage_dict(trajectory.executor_usage),
        }
        out.print_json(json.dumps(data))
    else:
        out.print(escape(trajectory.workflow.dsl or "(empty)"), highlight=False)
    return 0


def _usage_dict(usage: Any) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "calls": usage.calls}
