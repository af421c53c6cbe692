"""The evaluation harness: run a method over tasks concurrently, score, record, resume, summarise.

>>> summary = evaluate(tasks, executor=model, baseline="cot", out_dir="runs/gsm8k-cot")  # doctest: +SKIP
>>> summary.group("gsm8k", "cot").score                                                 # doctest: +SKIP

With ``out_dir`` every finished item is appended to ``results.jsonl`` at once, executor calls are
cached in ``calls.sqlite``, and a re-run with the same directory skips the finished items (those
that raised, or whose workflow run an executor failure aborted, have status ``error``, score 0 and
are run again) and replays the cached calls of the items a crash interrupted. The
summary (``summary.json``, ``summary.md``) is recomputed from the whole results file, so several
methods and datasets evaluated into one directory share one table.

Director and single-turn items also append their episode to ``trajectories.jsonl`` (one
:func:`flowsteer.evaluation.results.trajectory_record` line, written just before the item's result
line). Both files are append-only: an item run again on resume appends a new line to each, and
readers keep the last line per (dataset, method, task id) (:func:`latest`,
:func:`flowsteer.report.evaluation.read_trajectories`), so the surviving trajectory is always the
one of the surviving result.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowsteer.errors import UserError
from flowsteer.evaluation.baselines import (
    Method,
    MethodContext,
    MethodOutput,
    TemplateBaseline,
    method_label,
    needs_director,
    parse_method,
    resolve_template,
    run_method,
    workflow_templates,
)
from flowsteer.evaluation.cache import CachedChatModel, CallStats, CallStore, item_scope
from flowsteer.evaluation.results import (
    CACHE_FILE,
    RESULTS_FILE,
    TRAJECTORIES_FILE,
    EvalSummary,
    ItemResult,
    ResultsWriter,
    latest,
    read_results,
    summarize,
    trajectory_record,
    write_summary,
)
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import Interpreter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from flowsteer.director import Director, DirectorConfig
    from flowsteer.sandbox import Sandbox

__all__ = ["evaluate", "aevaluate", "metric_for", "task_ids", "RESULTS_FILE", "CACHE_FILE", "TRAJECTORIES_FILE",
           "EvalPlan"]

logger = logging.getLogger(__name__)

_KIND_METRICS = {"math": "accuracy", "qa": "f1", "code": "pass@1"}


def metric_for(dataset: str, kind: str) -> str:
    """The metric a dataset is reported with: its registered default, else by task kind."""
    from flowsteer.datasets import get_dataset

    try:
        return get_dataset(dataset).default_metric
    except UserError:
        return _KIND_METRICS[kind]


def task_ids(tasks: Sequence[Task]) -> list[str]:
    """A unique id per task: its own id, else a hash of the question; repeats get ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    out = []
    for task in tasks:
        base = task.id or "q-" + hashlib.sha256(task.question.encode()).hexdigest()[:12]
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


@dataclass(frozen=True)
class EvalPlan:
    """What one evaluation runs: the method, its label, and the items still to do."""

    method: Method
    label: str
    baseline: str | None
    todo: list[tuple[str, Task]]
    skipped: int


def _plan(tasks: Sequence[Task], method: Method, label: str, baseline: str | None, dataset: str | None,
          done: set[tuple[str, str, str]]) -> EvalPlan:
    todo: list[tuple[str, Task]] = []
    skipped = 0
    for tid, task in zip(task_ids(tasks), tasks, strict=True):
        if (dataset or task.source or "tasks", label, tid) in done:
            skipped += 1
        else:
            todo.append((tid, task))
    return EvalPlan(method, label, baseline, todo, skipped)


def _item(tid: str, task: Task, dataset: str, plan: EvalPlan, out: MethodOutput, score: Any, seconds: float,
          stats: CallStats, status: str) -> ItemResult:
    details = dict(out.details)
    if score is not None:
        details["score"] = {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v)[:300])
                            for k, v in score.details.items()}
    d, e = out.director_usage, out.executor_usage
    return ItemResult(
        task_id=tid, dataset=dataset, method=plan.label, kind=task.kind, metric=metric_for(dataset, task.kind),
        answer=out.answer, score=score.value if score is not None else 0.0,
        correct=bool(score.correct) if score is not None else False,
        workflow=out.workflow, f1=score.details.get("f1") if score is not None and task.kind == "qa" else None,
        em=score.details.get("em") if score is not None and task.kind == "qa" else None,
        turns=out.turns, tokens_in=d.input_tokens + e.input_tokens, tokens_out=d.output_tokens + e.output_tokens,
        director_tokens_in=d.input_tokens, director_tokens_out=d.output_tokens, executor_tokens_in=e.input_tokens,
        executor_tokens_out=e.output_tokens, executor_calls=e.calls, cache_hits=stats.hits,
        latency_s=round(seconds, 4), errors=out.errors, stop_reason=out.stop_reason, fallback=out.fallback,
        baseline=plan.baseline, status=status, details=details, question=task.question,  # type: ignore[arg-type]
    )


async def _run_one(tid: str, task: Task, dataset: str, plan: EvalPlan, ctx: MethodContext,
                   sandbox: Sandbox | None) -> tuple[ItemResult, Any]:
    """The item's result and, for director methods, its trajectory (None otherwise)."""
    from flowsteer.scoring import ascore

    started = time.perf_counter()
    with item_scope() as stats:
        try:
            out = await run_method(plan.method, task, ctx)
        except UserError:
            raise  # a developer mistake: stop the run and say what to fix
        except Exception as exc:  # noqa: BLE001 - a failing item is recorded, never the end of the run
            logger.warning("item %s failed: %s: %s", tid, type(exc).__name__, exc)
            out = MethodOutput("", errors=(f"{type(exc).__name__}: {exc}",), stop_reason="error")
            return _item(tid, task, dataset, plan, out, None, time.perf_counter() - started, stats, "error"), None
        seconds = time.perf_counter() - started
        if out.errors or out.stop_reason == "error":  # its workflow run was aborted: like a raise, run again
            logger.warning("item %s: run aborted: %s", tid, out.errors[0] if out.errors else out.stop_reason)
            return _item(tid, task, dataset, plan, out, None, seconds, stats, "error"), out.trajectory
        score = await ascore(task, out.answer, sandbox=sandbox)
    return _item(tid, task, dataset, plan, out, score, seconds, stats, "ok"), out.trajectory


def _context(method: Method, executor: BaseChatModel, director: BaseChatModel | Director | None,
             director_config: DirectorConfig | None, registry: OperatorRegistry, sandbox: Sandbox | None,
             max_turns: int | None) -> MethodContext:
    from flowsteer.director import Director, DirectorConfig

    interpreter = Interpreter(executor, sandbox=sandbox, registry=registry)
    built: Director | None = None
    config = director_config or DirectorConfig()
    if max_turns is not None:
        config = _with_turns(config, max_turns)
    if isinstance(director, Director):
        built = director if max_turns is None else Director(director.model, registry=director.registry,
                                                            config=_with_turns(director.config, max_turns))
    elif director is not None:
        built = Director(director, registry=registry, config=config)
    if needs_director(method) and built is None:
        raise UserError(f"method {method_label(method)!r} needs a director model: pass director=")
    canvas_config = (built.config if built is not None else config).canvas_config()
    return MethodContext(executor=executor, interpreter=interpreter, registry=registry, director=built,
                         canvas_config=canvas_config, templates=workflow_templates())


def _with_turns(config: DirectorConfig, max_turns: int) -> DirectorConfig:
    import dataclasses

    return dataclasses.replace(config, max_turns=max_turns)


async def aevaluate(
    tasks: Sequence[Task],
    *,
    executor: BaseChatModel,
    director: BaseChatModel | Director | None = None,
    baseline: str | Method | None = None,
    concurrency: int = 8,
    out_dir: str | Path | None = None,
    dataset: str | None = None,
    director_config: DirectorConfig | None = None,
    max_turns: int | None = None,
    registry: OperatorRegistry | None = None,
    sandbox: Sandbox | None = None,
    cache: bool = True,
    cache_path: str | Path | None = None,
    executor_identity: str | None = None,
    sc_samples: int = 5,
    seed: int = 0,
    label: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
) -> EvalSummary:
    """Evaluate one method over ``tasks`` on ``executor``; see the module docstring.

    ``baseline`` is a spec (``io``, ``cot``, ``sc``/``sc:K``, ``template:NAME``, ``single-turn``,
    ``untrained``) or a method object; None evaluates the director. ``dataset`` names the group in
    the results (default: each task's ``source``). ``label`` renames the method in results and
    tables. ``director`` is a chat model (run by a :class:`~flowsteer.director.Director` with
    ``director_config``) or a ready ``Director``. ``executor_identity`` keys the call cache (default: derived from the model's class and
    parameters); ``cache_path`` puts it in a file of its own (default ``<out_dir>/calls.sqlite``), e.g.
    one file shared by every method evaluated with the same executor. ``on_start(total, skipped)`` and ``on_result(item)`` feed a progress display.
    Returns the summary of ``out_dir``'s whole results file, or of this call's items without one.
    """
    if concurrency < 1:
        raise UserError(f"concurrency must be >= 1, got {concurrency}")
    registry = registry or default_registry()
    method = baseline if baseline is not None and not isinstance(baseline, str) else parse_method(
        baseline, director=director is not None, sc_samples=sc_samples)
    baseline_name = baseline if isinstance(baseline, str) else (None if baseline is None else method_label(method))
    out = Path(out_dir) if out_dir is not None else None
    previous = read_results(out / RESULTS_FILE) if out is not None else []
    done = {r.key for r in latest(previous) if r.status == "ok"}
    plan = _plan(tasks, method, label or method_label(method), baseline_name, dataset, done)
    if isinstance(method, TemplateBaseline):  # a bad template name fails now, not once per item
        for kind_task in {t.kind: t for _, t in plan.todo}.values():
            resolve_template(method, kind_task, workflow_templates(), registry)
    if sandbox is None:  # one sandbox for the workflows and the scorer
        from flowsteer.sandbox import Sandbox

        sandbox = Sandbox()
    store_path = Path(cache_path) if cache_path is not None else (out / CACHE_FILE if out is not None else None)
    store = CallStore(store_path) if store_path is not None and cache else None
    cached = CachedChatModel(executor, store, identity=executor_identity) if store is not None else None
    try:
        ctx = _context(method, cached if cached is not None else executor, director, director_config, registry, sandbox, max_turns)
        if on_start is not None:
            on_start(len(plan.todo) + plan.skipped, plan.skipped)
        logger.info("evaluating %s on %d items (%d already done), concurrency %d", plan.label, len(plan.todo),
                    plan.skipped, concurrency)
        fresh = await _run_all(plan, ctx, dataset, concurrency, out, sandbox, on_result)
    finally:
        if store is not None and cached is not None:
            logger.info("executor call cache: %d hits, %d misses", cached.hits, cached.misses)
            store.close()
    summary_source = read_results(out / RESULTS_FILE) if out is not None else fresh
    summary = summarize(summary_source, seed=seed, ran=len(fresh), skipped=plan.skipped)
    if out is not None:
        write_summary(out, summary)
    return summary


async def _run_all(plan: EvalPlan, ctx: MethodContext, dataset: str | None, concurrency: int, out: Path | None,
                   sandbox: Sandbox | None, on_result: Callable[[ItemResult], None] | None) -> list[ItemResult]:

    gate = asyncio.Semaphore(concurrency)
    writer = ResultsWriter(out / RESULTS_FILE) if out is not None else None
    episodes = ResultsWriter(out / TRAJECTORIES_FILE) if out is not None and needs_director(plan.method) else None
    fresh: list[ItemResult] = []

    async def one(tid: str, task: Task) -> None:
        async with gate:
            result, trajectory = await _run_one(tid, task, dataset or task.source or "tasks", plan, ctx, sandbox)
        if episodes is not None and trajectory is not None:  # first: a result line never lacks its episode
            episodes.write_record(trajectory_record(result.dataset, result.method, result.task_id, trajectory))
        if writer is not None:
            writer.write(result)
        fresh.append(result)
        if on_result is not None:
            on_result(result)

    try:
        jobs = [asyncio.ensure_future(one(tid, task)) for tid, task in plan.todo]
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:  # an interrupt or a developer error stops the other items too
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            raise
    finally:
        for handle in (writer, episodes):
            if handle is not None:
                handle.close()
    order = {tid: i for i, (tid, _) in enumerate(plan.todo)}
    return sorted(fresh, key=lambda r: order[r.task_id])


def evaluate(tasks: Sequence[Task], **kwargs: Any) -> EvalSummary:
    """Synchronous :func:`aevaluate` (inside a running event loop, ``await aevaluate(...)``)."""
    return run_sync(aevaluate(tasks, **kwargs), refuse_in_loop="evaluate(): use `await aevaluate(...)` there")
