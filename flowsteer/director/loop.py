"""The Flow-Director loop: any LangChain chat model edits a canvas until it finishes.

Each turn the context is rebuilt from scratch (system prompt, task, canvas state, one line per
earlier turn, the last feedback) and fitted to ``context_budget``; see :mod:`.context`. A BUILDING
turn whose output holds no valid action gets ``repair_attempts`` short re-asks; every call, repaired
or not, is recorded with the messages it saw and (when the engine reports them) its tokens.

A director call that raises (a server error, retries exhausted) ends :meth:`Director.arun` with that
error; in :meth:`Director.arun_many` it ends only its own episode, with ``stop_reason="error"`` and
the error in :attr:`Trajectory.error`, while the other episodes finish. Developer mistakes
(:class:`~flowsteer.errors.UserError`, e.g. an unreachable server) always raise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig

from flowsteer.canvas import Canvas, CanvasState, Observation, render_action
from flowsteer.canvas.env import initial_feedback
from flowsteer.director._calls import CallResult, call_model, call_seed
from flowsteer.director.config import CONSTRAINT_RECORD_KEY, DirectorConfig
from flowsteer.director.context import (
    BudgetParts,
    fit_messages,
    token_counter,
    truncate_middle,
)
from flowsteer.director.prompts import first_action, load_template, system_prompt
from flowsteer.director.trajectory import Trajectory, TurnKind, TurnRecord
from flowsteer.errors import ParseFailure, UserError
from flowsteer.models.calls import generation_kwargs, unwrap_model
from flowsteer.operators.base import Usage
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import Interpreter

__all__ = ["Director", "CanvasTarget"]

logger = logging.getLogger(__name__)
_BUDGET_WARNED: set[tuple[object, ...]] = set()

CanvasTarget = Canvas | BaseChatModel | Interpreter
"""What an episode runs against: a ready canvas, or an executor (a fresh canvas is built for it)."""

_REPAIR_ECHO_CHARS = 300

OnError = Literal["raise", "record"]
"""What a raising director call does to its episode: re-raise, or end it with ``stop_reason="error"``."""


class _CallFailed(Exception):
    """A director model call raised ``error`` (carried out of the turn to end the episode)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Episode:
    task: Task
    canvas: Canvas
    system: str
    example: list[dict[str, str]]
    records: list[TurnRecord] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    calls: int = 0
    on_error: OnError = "raise"
    error: str | None = None


class Director(Runnable[Any, Trajectory]):
    """The Flow-Director: designs a workflow for a task by editing a :class:`~flowsteer.canvas.Canvas`.

    >>> director = Director(load_chat_model("embedded"))             # doctest: +SKIP
    >>> trajectory = director.run("What is 12 + 30?", executor_model)  # doctest: +SKIP
    >>> trajectory.workflow.dsl, trajectory.answer                     # doctest: +SKIP

    It is a LangChain :class:`~langchain_core.runnables.Runnable` too: ``director.invoke(task,
    config)`` with the canvas target given as ``Director(model, target=executor)``, or
    ``invoke({"task": task, "target": executor})``. Every episode (``run``, ``arun``, ``invoke``)
    is one ``Flow-Director`` run for callback handlers and LangSmith, with the director's model
    calls and the workflow's node runs nested under it.
    """

    name: str | None = "Flow-Director"

    def __init__(self, model: BaseChatModel, *, registry: OperatorRegistry | None = None,
                 config: DirectorConfig | None = None,
                 on_turn: Callable[[TurnRecord], None] | None = None,
                 target: CanvasTarget | None = None) -> None:
        """``on_turn`` is called with each record as soon as the canvas answered (live display);
        ``target`` is the canvas (or executor) ``invoke`` uses when its input names none.

        A model that declares a director role (``as_director()``, e.g. the embedded model with its
        shipped trained adapter) is used in that role."""
        as_director = getattr(model, "as_director", None)
        self.model = as_director() if callable(as_director) else model
        self.registry = registry or default_registry()
        self.config = config or DirectorConfig()
        self.on_turn = on_turn
        self.target = target
        self.count_tokens = token_counter(model)

    # -- public API ---------------------------------------------------------------------------
    def run(self, task: Task | str, target: CanvasTarget, *, config: RunnableConfig | None = None) -> Trajectory:
        """One episode (sync). Inside a running event loop use :meth:`arun`. ``config``
        (callbacks, tags, metadata) reaches every model call and node run of the episode."""
        return run_sync(self.arun(task, target, config=config),
                        refuse_in_loop="Director.run(): use `await director.arun(...)` there")

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Trajectory:
        """Runnable entry point: ``input`` is a task (``Task``, question string or task dict) or
        ``{"task": ..., "target": ...}``; returns the :class:`Trajectory`."""
        task, target = self._episode_input(input)
        return self.run(task, target, config=config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Trajectory:
        """Async :meth:`invoke`."""
        task, target = self._episode_input(input)
        return await self.arun(task, target, config=config)

    def _episode_input(self, value: Any) -> tuple[Task | str, CanvasTarget]:
        target = self.target
        if isinstance(value, dict) and "task" in value:
            target = value.get("target") or target
            value = value["task"]
        if isinstance(value, dict):
            try:
                value = Task(**value)
            except TypeError as exc:
                raise UserError(f"Director input: not a task dict ({exc}); give at least 'question'") from exc
        if not isinstance(value, (Task, str)):
            raise UserError(f"Director input must be a Task, a question string or {{'task': ..., 'target': ...}}, "
                            f"got {type(value).__name__}")
        if target is None:
            raise UserError("Director.invoke needs a canvas target: pass Director(model, target=executor) "
                            "or invoke({'task': task, 'target': executor})")
        return value, target

    async def arun(self, task: Task | str, target: CanvasTarget, *, on_error: OnError = "raise",
                   config: RunnableConfig | None = None) -> Trajectory:
        """One episode: reset the canvas, take turns until it finishes, return the trajectory.

        ``on_error="record"``: a director call that raises ends the episode with
        ``stop_reason="error"`` and the error in :attr:`Trajectory.error` instead of raising.
        ``config``: the episode is one run (named ``Flow-Director``) under the caller's callbacks,
        with every director model call and workflow node run nested in it.
        """
        from langchain_core.callbacks.manager import AsyncCallbackManager
        from langchain_core.runnables.config import ensure_config, patch_config, set_config_context
        from langchain_core.runnables.utils import coro_with_context

        task = Task(task) if isinstance(task, str) else task
        config = ensure_config(config)
        manager = AsyncCallbackManager.configure(config.get("callbacks"), None, inheritable_tags=config.get("tags"),
                                                 inheritable_metadata=config.get("metadata"))
        run = await manager.on_chain_start(None, {"question": task.question, "kind": task.kind},
                                           name=config.get("run_name") or self.get_name(),
                                           run_id=config.get("run_id"))
        child = patch_config(config, callbacks=run.get_child())
        try:
            with set_config_context(child) as context:
                trajectory = await coro_with_context(self._episode(task, target, on_error), context)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end({"workflow": trajectory.workflow.dsl, "answer": trajectory.answer,
                                "stop_reason": trajectory.stop_reason, "turns": len(trajectory.turns)})
        return trajectory

    async def _episode(self, task: Task, target: CanvasTarget, on_error: OnError) -> Trajectory:
        started = time.perf_counter()
        canvas = self.make_canvas(target)
        obs = await canvas.areset(task)
        example = self._example_turn(task) if self.config.example_turn else []
        system, example = self._fitting_prompt(task, example)
        ep = _Episode(task, canvas, system, example, on_error=on_error)
        try:
            while not canvas.done:  # the canvas enforces the turn limit (its config's max_turns)
                obs = await self._turn(ep, obs)
        except _CallFailed as failed:  # only raised with on_error="record"
            ep.error = f"{type(failed.error).__name__}: {str(failed.error)[:500]}"
            logger.warning("director call failed; episode %r ends with stop_reason 'error': %s",
                           task.id or task.question[:40], ep.error)
        return await self._finish(ep, started)

    async def arun_many(self, tasks: Sequence[Task | str], make_canvas: Callable[[], CanvasTarget] | CanvasTarget,
                        concurrency: int = 8, *, on_error: OnError = "record") -> list[Trajectory]:
        """Run one episode per task concurrently, at most ``concurrency`` at a time (order kept).

        ``make_canvas`` builds a fresh canvas (or executor) per episode; an executor model or
        interpreter given directly is shared, with one new canvas per episode. By default a failed
        director call ends only its own episode (``stop_reason="error"``, see :meth:`arun`);
        ``on_error="raise"`` re-raises the first failure and cancels the other episodes.
        """
        if concurrency < 1:
            raise UserError("arun_many: concurrency must be >= 1")
        gate = asyncio.Semaphore(concurrency)

        async def one(task: Task | str) -> Trajectory:
            async with gate:
                target = make_canvas() if callable(make_canvas) and not _is_target(make_canvas) else make_canvas
                return await self.arun(task, target, on_error=on_error)  # type: ignore[arg-type]

        running = [asyncio.ensure_future(one(t)) for t in tasks]
        try:
            return list(await asyncio.gather(*running))
        except BaseException:
            for job in running:  # a raised episode (or our cancellation) stops the others too
                job.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

    def make_canvas(self, target: CanvasTarget) -> Canvas:
        """``target`` itself when it is a canvas, else a new canvas over that executor."""
        if isinstance(target, Canvas):
            return target
        if isinstance(target, (BaseChatModel, Interpreter)):
            return Canvas(target, registry=self.registry, config=self.config.canvas_config())
        raise UserError(f"Director needs a Canvas, an executor chat model or an Interpreter, got "
                        f"{type(target).__name__}")

    # -- turns --------------------------------------------------------------------------------
    async def _turn(self, ep: _Episode, obs: Observation) -> Observation:
        turn = ep.canvas.turn + 1
        if obs.state is CanvasState.AWAITING_PROMPT:
            records = [await self._prompt_call(ep, obs, turn)]
            text = records[0].visible
        else:
            records, text = await self._action_calls(ep, obs, turn)
        state = obs.state.value
        if obs.state is not CanvasState.AWAITING_PROMPT and _takes_parsed(type(ep.canvas)):
            # parsed once, by the canvas's own rules (a subclass overriding astep(text) gets the text)
            obs, _done, info = await ep.canvas.astep(text, parsed=records[-1].parsed)
        else:
            obs, _done, info = await ep.canvas.astep(text)
        *earlier, last = records
        new = [_record(p, state) for p in earlier]
        new.append(_record(last, state, feedback=obs.text, accepted=info.accepted, action=info.action,
                           failure=info.parse_failure))
        ep.records.extend(new)
        ep.history.append(f"t{turn}: {new[-1].summary()}")
        if self.on_turn is not None:
            for record in new:
                self.on_turn(record)
        return obs

    def _kwargs(self, ep: _Episode, obs: Observation, max_tokens: int) -> dict[str, Any]:
        cfg = self.config
        temperature = cfg.temperature
        if temperature == 0 and ep.records and not ep.records[-1].accepted:
            # greedy on an unchanged canvas would repeat the action the canvas just refused
            temperature = cfg.refused_temperature
        kwargs = generation_kwargs(self.model, max_tokens=max_tokens, temperature=temperature,
                                   top_p=cfg.top_p)
        kwargs.update(cfg.extra_call_kwargs)
        if "seed" in kwargs and kwargs["seed"] is not None:
            # reproducible, yet different per call and per task
            kwargs["seed"] = call_seed(int(kwargs["seed"]), ep.task, ep.calls)
        ep.calls += 1
        if cfg.constraint is not None:
            # the canvas itself, not only its observation: exact node ids and the finish verdict
            # the model that decodes (a retry wrapper has no tokenizer and is no OpenAI client)
            kwargs.update(cfg.constraint(ep.canvas, self.registry, unwrap_model(self.model)) or {})
        return kwargs

    def _reserve(self) -> int:
        """Tokens of the context budget kept free for the reply (and a repair turn's echo)."""
        cfg = self.config
        reserve = cfg.max_action_tokens
        if cfg.repair_attempts:
            reserve = max(reserve, cfg.max_repair_tokens + _REPAIR_ECHO_CHARS + 200)
        return reserve

    def _fitting_prompt(self, task: Task, example: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
        """The system prompt and worked example of an episode, fitted to the context budget.

        The operator table is never cut silently: when the full prompt and the shortest possible
        turn do not fit, the worked example goes, then the table is listed one line per role
        (every operator still named), each with a warning; when even that does not fit, a
        :class:`UserError` says the budget it needs."""
        cfg = self.config

        def system(compact: bool) -> str:
            return system_prompt(self.registry, task.kind, template=cfg.system_prompt_file, hints=cfg.task_hints,
                                 usage_hints=cfg.usage_hints and not compact, write_prompts=cfg.write_prompts,
                                 compact=compact)

        shortest = load_template("turn.txt").format(kind=task.kind, question=task.question[:200], history="(none)",
                                                    feedback="(none)").strip()

        def need(text: str, shown: list[dict[str, str]]) -> int:
            return self.count_tokens([{"role": "system", "content": text}, *shown,
                                      {"role": "user", "content": shortest}])

        budget = cfg.context_budget - self._reserve()
        full = system(False)
        if need(full, example) <= budget:
            return full, example
        compact = system(True)
        for text, shown, what in ((full, [], "without its worked example"),
                                  (compact, example, "with the operator table as one line per role"),
                                  (compact, [], "with a one-line-per-role operator table and no worked example")):
            if need(text, shown) <= budget:
                key = (cfg.context_budget, what, tuple(self.registry.names()))
                if key not in _BUDGET_WARNED:
                    _BUDGET_WARNED.add(key)
                    logger.warning("context_budget %d: the director's prompt runs %s (the full prompt needs %d "
                                   "tokens)", cfg.context_budget, what, need(full, example) + self._reserve())
                return text, shown
        smallest = need(compact, []) + self._reserve()
        raise UserError(
            f"context_budget {cfg.context_budget} is too small for the director: its system prompt with "
            f"{len(self.registry.names())} operators (one line per role) and the shortest turn need {smallest} "
            f"tokens with the {self._reserve()} kept for the reply; raise context_budget to at least {smallest} "
            "(or register fewer operators)")

    async def _action_calls(self, ep: _Episode, obs: Observation, turn: int) -> tuple[list[_Pending], str]:
        cfg = self.config
        reserve = self._reserve()
        parts = BudgetParts(history=ep.history[-cfg.history_turns:],
                            omitted=max(0, len(ep.history) - cfg.history_turns),
                            feedback=obs.text, question=ep.task.question)  # the canvas fitted it already
        messages, used = fit_messages(parts, lambda p: self._building_messages(ep, obs, p, turn),
                                      self.count_tokens, cfg.context_budget - reserve)
        result = await self._call(ep, messages, self._kwargs(ep, obs, cfg.max_action_tokens), used)
        pending = [_Pending(turn, messages, result, "action", used, self._parse(ep, result))]
        for _ in range(cfg.repair_attempts):
            if not isinstance(pending[-1].parsed, ParseFailure):
                break
            failed = pending[-1]
            repair_messages = self._repair_messages(messages, failed)
            used = self.count_tokens(repair_messages)
            if used + cfg.max_repair_tokens > cfg.context_budget:  # never over budget: drop the echo
                repair_messages[-2] = {"role": "assistant", "content": "(no action)"}
                used = self.count_tokens(repair_messages)
            kwargs = self._kwargs(ep, obs, cfg.max_repair_tokens)
            result = await self._call(ep, repair_messages, kwargs, used)
            pending.append(_Pending(turn, repair_messages, result, "repair", used, self._parse(ep, result)))
        for p in pending[:-1]:
            p.sent = False
        return pending, pending[-1].visible

    async def _call(self, ep: _Episode, messages: list[dict[str, str]], kwargs: dict[str, Any],
                    used: int) -> CallResult:
        """One director call; when errors are recorded, a failure other than a developer mistake
        becomes :class:`_CallFailed` (which ends the episode)."""
        kwargs = dict(kwargs)
        constraint = kwargs.pop(CONSTRAINT_RECORD_KEY, None)
        try:
            result = await call_model(self.model, messages, kwargs, used)
            if constraint is not None and result.tokens is not None:
                tokens = dataclasses.replace(result.tokens, constraint=constraint)
                result = dataclasses.replace(result, tokens=tokens)
            return result
        except UserError:
            raise
        except Exception as exc:
            if ep.on_error == "raise":
                raise
            raise _CallFailed(exc) from exc

    def _parse(self, ep: _Episode, result: CallResult) -> Any:
        if result.unterminated_think and not result.visible:
            return ParseFailure("think-only: the output ended inside <think> without an action", result.raw[:300])
        return ep.canvas.parse(result.visible)

    def _repair_messages(self, messages: list[dict[str, str]], failed: _Pending) -> list[dict[str, str]]:
        reason = failed.parsed.message if isinstance(failed.parsed, ParseFailure) else "no action"
        echo = truncate_middle(failed.visible or failed.result.raw, _REPAIR_ECHO_CHARS)
        text = load_template("repair.txt").format(reason=truncate_middle(reason, 200),
                                                  example=render_action(first_action(self.registry)))
        return [*messages, {"role": "assistant", "content": echo}, {"role": "user", "content": text.strip()}]

    async def _prompt_call(self, ep: _Episode, obs: Observation, turn: int) -> _Pending:
        request = obs.prompt_request
        if request is None:
            raise UserError("the canvas awaits a prompt but its observation has no prompt_request")
        spec = self.registry.get(request.operator)
        parts = BudgetParts(history=[], feedback="", question=ep.task.question)

        def render(p: BudgetParts) -> list[dict[str, str]]:
            extra = f" (prompt {request.index} of {request.total})" if request.total > 1 else ""
            user = load_template("prompt_turn.txt").format(
                kind=ep.task.kind, question=p.question, dsl=obs.dsl or "(empty)", node_id=request.node_id,
                operator=request.operator, context=f", {request.context}" if request.context else "",
                description=spec.description, request=f"Write its prompt now{extra}.",
            )
            return [{"role": "system", "content": load_template("prompt_system.txt").strip()},
                    {"role": "user", "content": user.strip()}]

        messages, used = fit_messages(parts, render, self.count_tokens,
                                      self.config.context_budget - self.config.max_prompt_tokens)
        result = await self._call(ep, messages, self._kwargs(ep, obs, self.config.max_prompt_tokens), used)
        return _Pending(turn, messages, result, "prompt", used, None)

    def _building_messages(self, ep: _Episode, obs: Observation, parts: BudgetParts,
                           turn: int) -> list[dict[str, str]]:
        history = list(parts.history)
        if parts.omitted:
            history.insert(0, f"({parts.omitted} earlier turns not shown)")
        user = load_template("turn.txt").format(
            kind=ep.task.kind, question=parts.question,
            history="\n".join(history) or "(none)", feedback=parts.feedback or "(none)",
        )
        return [{"role": "system", "content": ep.system}, *ep.example, {"role": "user", "content": user.strip()}]

    def _example_turn(self, task: Task) -> list[dict[str, str]]:
        """One worked example turn: the empty canvas for a sample task and a correct first action."""
        feedback = initial_feedback(self.registry, self.config.canvas_config())
        user = load_template("turn.txt").format(kind="math", question=load_template("example_task.txt").strip(),
                                                history="(none)", feedback=feedback)
        return [{"role": "user", "content": user.strip()},
                {"role": "assistant", "content": render_action(first_action(self.registry))}]

    # -- end of episode -------------------------------------------------------------------------
    async def _finish(self, ep: _Episode, started: float) -> Trajectory:
        canvas, task = ep.canvas, ep.task
        execution = canvas.last_execution
        if not canvas.done and not canvas.workflow.is_empty and ep.error is None:
            # the director's own turn limit came first: run what is on the canvas (cached nodes are free)
            execution = await canvas.interpreter.arun(canvas.workflow, task, cache=canvas.cache)
        executor_usage = sum((i.execution.usage for i in canvas.history if i.execution is not None), Usage())
        if execution is not None and not canvas.done:
            executor_usage = executor_usage + execution.usage
        usage = sum((r.usage for r in ep.records), Usage())
        trajectory = Trajectory(
            task=task, turns=ep.records, workflow=canvas.workflow,
            answer=execution.answer if execution is not None else "",
            stop_reason="error" if ep.error else canvas.stop_reason or "max_turns", execution=execution,
            usage=usage, error=ep.error,
            executor_usage=executor_usage,
            max_context_tokens=max((r.context_tokens for r in ep.records), default=0),
            designed=canvas.workflow, seconds=time.perf_counter() - started,
        )
        if self.config.fallback:
            from flowsteer.fallback import aapply_fallback

            finish = getattr(canvas.config, "finish", None)
            trajectory = await aapply_fallback(trajectory, canvas, templates=self.config.fallback_templates,
                                               registry=self.registry, finish=finish)
            # the episode's time includes the fallback run (it can be most of a CPU demo's wall time)
            trajectory = dataclasses.replace(trajectory, seconds=time.perf_counter() - started)
        return trajectory


def _is_target(obj: object) -> bool:
    return isinstance(obj, (Canvas, BaseChatModel, Interpreter))


_TAKES_PARSED: dict[type, bool] = {}


def _takes_parsed(canvas_type: type[Canvas]) -> bool:
    """Whether this canvas class's ``astep`` takes the director's parsed action (cached per class)."""
    known = _TAKES_PARSED.get(canvas_type)
    if known is None:
        known = _TAKES_PARSED[canvas_type] = "parsed" in inspect.signature(canvas_type.astep).parameters
    return known


@dataclass
class _Pending:
    """A call whose canvas outcome is not known yet."""

    turn: int
    messages: list[dict[str, str]]
    result: CallResult
    kind: TurnKind
    context_tokens: int
    parsed: Any
    sent: bool = True

    @property
    def visible(self) -> str:
        return self.result.visible


def _record(p: _Pending, state: str, *, feedback: str = "", accepted: bool = False,
            action: Any = None, failure: ParseFailure | None = None) -> TurnRecord:
    """The frozen record of a call; unsent calls keep their own parse result."""
    if not p.sent:
        action = None if isinstance(p.parsed, ParseFailure) else p.parsed
        failure = p.parsed if isinstance(p.parsed, ParseFailure) else None
    r = p.result
    return TurnRecord(
        index=p.turn, messages=p.messages, raw_output=r.raw, thinking=r.thinking, action=action,
        parse_failure=failure, feedback=feedback, usage=r.usage, state=state, tokens=r.tokens,
        kind=p.kind, sent=p.sent, accepted=accepted, context_tokens=p.context_tokens, seconds=r.seconds,
    )
