"""The evaluation harness (``flowsteer eval``): the director and the baselines on the same executor.

>>> from flowsteer.evaluation import evaluate                                  # doctest: +SKIP
>>> summary = evaluate(tasks, executor=model, baseline="io", out_dir="runs/io")  # doctest: +SKIP
>>> print(summary.markdown())                                                   # doctest: +SKIP

* :mod:`~flowsteer.evaluation.harness`: :func:`evaluate` / :func:`aevaluate` (concurrency, resume).
* :mod:`~flowsteer.evaluation.baselines`: the methods (director, single-turn, IO, CoT,
  self-consistency, fixed templates).
* :mod:`~flowsteer.evaluation.cache`: the persistent executor-call cache.
* :mod:`~flowsteer.evaluation.results`: per-item records, the summary and its confidence intervals.
"""

from flowsteer.evaluation.baselines import (
    BASELINE_NAMES,
    CoTBaseline,
    DirectorMethod,
    IOBaseline,
    Method,
    MethodOutput,
    SelfConsistency,
    SingleTurn,
    TemplateBaseline,
    method_label,
    parse_method,
    workflow_templates,
)
from flowsteer.evaluation.cache import CachedChatModel, CallStore, model_identity
from flowsteer.evaluation.harness import CACHE_FILE, RESULTS_FILE, aevaluate, evaluate, metric_for
from flowsteer.evaluation.results import (
    EvalSummary,
    GroupSummary,
    Interval,
    ItemResult,
    bootstrap_interval,
    read_results,
    render_markdown,
    summarize,
    wilson_interval,
)

__all__ = [
    "BASELINE_NAMES",
    "CACHE_FILE",
    "RESULTS_FILE",
    "CachedChatModel",
    "CallStore",
    "CoTBaseline",
    "DirectorMethod",
    "EvalSummary",
    "GroupSummary",
    "IOBaseline",
    "Interval",
    "ItemResult",
    "Method",
    "MethodOutput",
    "SelfConsistency",
    "SingleTurn",
    "TemplateBaseline",
    "aevaluate",
    "bootstrap_interval",
    "evaluate",
    "method_label",
    "metric_for",
    "model_identity",
    "parse_method",
    "read_results",
    "render_markdown",
    "summarize",
    "wilson_interval",
    "workflow_templates",
]
