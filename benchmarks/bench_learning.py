"""Has the director learned? The training run's curves and the eval table of the shipped director.

Reads a training run folder (default ``runs/director-cpu``: ``metrics.jsonl``, ``warmstart/``) for
the learning curves and the wall time per step, then evaluates, with the same executor (the
embedded SmolLM2-135M, greedy, 160 new tokens) and one call cache shared by every method, on
held-out test splits of each training family (the recipe's ``data.datasets``: seed 2, never seen
in training, seed 0) and on the GSM8K test file:

* the trained director (the shipped adapter) as served, greedy (``flowsteer``), and sampled at the
  paper's temperature 0.6 (``flowsteer-sampled``), the untrained director (the same base, adapter
  off, greedy like the served director),
* IO, CoT, single-turn (the base model writes the whole workflow as one DSL line),
* every fixed template: the warm start's candidates, the fallback template among them.

Figures per (dataset, method): accuracy with its Wilson 95% interval, the rate of episodes that
end by the director's own ``finish`` (no fallback), the rate with R_div = 1, executor calls per
task. The targets of the issue are checked against the trained director's row.

    python benchmarks/bench_learning.py                      # eval everything (about an hour on 2 cores)
    python benchmarks/bench_learning.py --limit 4 --quick    # smoke sizes
    python benchmarks/bench_learning.py --from-eval runs/learning-eval   # only re-read finished evals
    python benchmarks/bench_learning.py --only flowsteer --keep-rows benchmarks/results/learning.json
        # re-measure one method; every other row is kept from the earlier result (``measured_now``
        # and ``kept_from`` in the output say which is which)
    python benchmarks/bench_learning.py --dataset gsm_synthetic --skip flowsteer   # one dataset only
    ... --keep-rows benchmarks/results/learning.json --drop flowsteer-sampled
        # a retrained adapter: rows of its methods not re-measured are dropped, not kept
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from _common import ROOT, emit, log, parser

from flowsteer.report.learning import DIRECTOR_ROWS

RECIPE = ROOT / "training" / "configs" / "director-cpu.yaml"
"""The shipped director's recipe: its ``data.datasets`` are the training families evaluated here."""


def _families(recipe: Path = RECIPE) -> dict[str, str]:
    """Training family -> task kind (its candidates and its fallback template), from the recipe."""
    from flowsteer.datasets import get_dataset
    from flowsteer.training.config import load_config

    return {name: get_dataset(name).kind for name in load_config(recipe).data.datasets}


FAMILIES = _families()
DIRECTORS = DIRECTOR_ROWS
"""The methods that are directors (their own-finish rate is counted)."""
SAMPLED_TEMPERATURE = 0.6
"""``flowsteer-sampled``: the trained director at the paper's sampling temperature (the served
director, ``DirectorConfig.small_model``, decodes greedily)."""


def _curves(run_dir: Path) -> dict[str, Any]:
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (run_dir / "metrics.jsonl").is_file() else []
    done = run_dir / "warmstart" / "done.json"
    warm = json.loads(done.read_text()) if done.is_file() else {}
    keys = ("step", "reward_mean", "r_div", "answer_score", "finished", "turns", "kl", "time_step",
            "time_rollout", "time_update", "zero_variance_fraction")
    steps = [{k: m.get(k) for k in keys} for m in metrics]
    timing = {}
    timing_file = run_dir / "timing.json"
    if timing_file.is_file():
        timing = json.loads(timing_file.read_text())
    return {"warmstart": warm, "steps": steps, "timing": timing}


def _taught(run_dir: Path) -> dict[str, str]:
    """Family -> the workflow the warm start taught: the run folder's, else the shipped adapter's manifest."""
    done = run_dir / "warmstart" / "done.json"
    if done.is_file():
        return dict(json.loads(done.read_text()).get("best", {}))
    from flowsteer.director.shipped import shipped_manifest
    from flowsteer.errors import UserError

    try:
        return dict(shipped_manifest().get("warmstart_best") or {})
    except UserError:  # no (or a broken) shipped adapter: no taught workflow to put first
        return {}


def _methods(candidates: list[str], first: set[str]) -> list[tuple[str, str | None, str | None]]:
    """(label, baseline spec, director role) per method; the comparisons the targets need first
    (an interrupted run has them), the templates in ``first`` before the others."""
    templates = sorted(candidates, key=lambda dsl: dsl not in first)
    return [
        ("flowsteer", None, "trained"), ("untrained", "untrained", "base"),
        ("flowsteer-sampled", None, "trained"),
        *[(f"template:{dsl}", f"template:{dsl}", None) for dsl in templates if dsl in first],
        ("io", "io", None), ("cot", "cot", None),
        *[(f"template:{dsl}", f"template:{dsl}", None) for dsl in templates if dsl not in first],
        ("single-turn", "single-turn", "base"),
    ]


async def _evaluate_all(args: Any, candidates: dict[str, list[str]]) -> Path:
    import dataclasses

    from flowsteer.datasets import load_dataset
    from flowsteer.director import DirectorConfig
    from flowsteer.evaluation import aevaluate
    from flowsteer.models.local import BASE_WEIGHTS
    from flowsteer.models.specs import load_chat_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    embedded = load_chat_model("embedded", max_new_tokens=160)  # executor role: base weights
    base_director = embedded.share(director_adapter=None, adapter=BASE_WEIGHTS)
    config = DirectorConfig.small_model(constrained=True, extra_call_kwargs={"seed": args.seed})
    def wanted(name: str) -> bool:
        return not args.dataset or name in args.dataset

    datasets: dict[str, list[Any]] = {f: load_dataset(f, None, limit=args.limit, split="test")
                                      for f in FAMILIES if wanted(f)}
    if wanted("gsm8k") and args.gsm8k and Path(args.gsm8k).is_file():
        datasets["gsm8k"] = load_dataset("gsm8k", args.gsm8k, limit=args.gsm8k_limit)
    plan = []
    for order, name in enumerate(datasets):
        # GSM8K (not a training family) gets the math fallback and the taught math workflow as templates
        kind = FAMILIES.get(name, "math")
        chosen = candidates[kind] if name in FAMILIES else [c for c in candidates["math"] if c in args.gsm8k_templates]
        plan += [(rank, order, name, *method) for rank, method in enumerate(_methods(chosen, args.first))]
    # one method across every dataset before the next: an interrupted run has whole comparisons
    for _, _, name, label, baseline, role in sorted(plan, key=lambda x: (x[0], x[1])):
        if label in args.skip or (args.only and label not in args.only):
            continue
        folder = out / name / label.replace("/", "_").replace(" ", "")[:80]
        started = time.perf_counter()
        director = {"trained": embedded, "base": base_director, None: None}[role]
        method_config = dataclasses.replace(config) if director is not None else None
        if label == "flowsteer-sampled":
            method_config = dataclasses.replace(config, temperature=SAMPLED_TEMPERATURE)
        summary = await aevaluate(
            datasets[name], executor=embedded, director=director, baseline=baseline, concurrency=args.concurrency,
            out_dir=folder, dataset=name, director_config=method_config, seed=args.seed, label=label,
            cache_path=out / "calls.sqlite", executor_identity="embedded|160")
        log(f"{name} {label}: {summary.groups[0].score:.2f} ({time.perf_counter() - started:.0f} s)")
    return out


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    from flowsteer.evaluation.results import read_results, summarize
    from flowsteer.reward import compute_reward
    from flowsteer.workflow.dsl import parse

    table: dict[str, dict[str, Any]] = {}
    for results in sorted(out.glob("*/*/results.jsonl")):
        records = read_results(results)
        if not records:
            continue
        summary = summarize(records)
        for group in summary.groups:
            items = [r for r in summary.results if (r.dataset, r.method) == (group.dataset, group.method)]
            full = 0
            for r in items:
                try:
                    full += bool(r.workflow) and compute_reward(parse(r.workflow), 0.0).diversity >= 1.0
                except Exception:  # noqa: BLE001 - an unparsable workflow earns no structure
                    pass
            finished = sum(1 for r in items if r.stop_reason == "finish" and not r.fallback)
            table.setdefault(group.dataset, {})[group.method] = {
                "n": group.n, "accuracy": group.score, "ci95": [group.ci.low, group.ci.high],
                "finish_rate": finished / group.n if group.method in DIRECTORS else None,
                "rdiv1_rate": full / group.n,
                "executor_calls": sum(r.executor_calls for r in items) / group.n,
                "turns": group.mean_turns,
            }
    return table


def _keep_rows(table: dict[str, dict[str, Any]], earlier: Path,
               drop: frozenset[str] = frozenset()) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """This run's rows, completed by the rows of ``earlier`` (a learning result) for methods not
    measured now (except those in ``drop``, e.g. a retrained adapter's); returns the table and where
    the kept rows came from (file, machine, methods per dataset)."""
    try:
        document = json.loads(earlier.read_text())
        previous = document["table"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--keep-rows {earlier}: not a learning result with a 'table' ({exc})") from exc
    merged = {d: dict(rows) for d, rows in table.items()}
    kept: dict[str, list[str]] = {}
    for dataset, rows in previous.items():
        for method, row in rows.items():
            if method not in drop and method not in merged.setdefault(dataset, {}):
                merged[dataset][method] = row
                kept.setdefault(dataset, []).append(method)
    return merged, {"file": str(earlier), "machine": document.get("machine"), "rows": kept}


def _targets(table: dict[str, dict[str, Any]], fallbacks: dict[str, str]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for dataset, rows in table.items():
        fallback = fallbacks[FAMILIES.get(dataset, "math")]
        me, base = rows.get("flowsteer"), rows.get("untrained")
        templates = {k: v for k, v in rows.items() if k.startswith("template:")}
        if me is None:
            continue
        best = max((v["accuracy"] for v in templates.values()), default=None)
        worst = min((v["accuracy"] for v in templates.values()), default=None)
        fb = templates.get(f"template:{fallback}")
        checks[dataset] = {
            "finish_rate>=0.95": me["finish_rate"] is not None and me["finish_rate"] >= 0.95,
            "rdiv1_rate>=0.90": me["rdiv1_rate"] >= 0.90,
            "accuracy>=best_template": best is not None and me["accuracy"] >= best - 1e-9,
            "accuracy>=untrained+0.20": base is not None and me["accuracy"] >= base["accuracy"] + 0.20 - 1e-9,
            "calls<fallback_template": fb is not None and me["executor_calls"] < fb["executor_calls"],
            "best_template_accuracy": best,
            # the family teaches something only if the workflow matters: best beats worst by >= 20 points
            "template_gap": None if best is None else round(best - worst, 4),
            "family_qualifies(gap>=0.20)": best is not None and best - worst >= 0.20 - 1e-9,
            "fallback_template_calls": fb["executor_calls"] if fb else None,
        }
    return checks


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--run", default=str(ROOT / "runs" / "director-cpu"), help="training run folder")
    p.add_argument("--out", default=str(ROOT / "runs" / "learning-eval"), help="eval results folder")
    p.add_argument("--limit", type=int, default=8, help="tasks per dataset")
    p.add_argument("--gsm8k", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"),
                   help="GSM8K test file (skipped when absent)")
    p.add_argument("--gsm8k-limit", type=int, default=4, help="GSM8K test items")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", action="append", default=[], metavar="METHOD",
                   help="leave a method out of this run (e.g. flowsteer while its adapter still trains; "
                        "finished methods are skipped anyway, the eval resumes)")
    p.add_argument("--only", action="append", default=[], metavar="METHOD",
                   help="run only these methods (the table still reads every finished one)")
    p.add_argument("--dataset", action="append", default=[], metavar="NAME",
                   help="evaluate only these datasets (a training family or gsm8k)")
    p.add_argument("--drop", action="append", default=[], metavar="METHOD",
                   help="with --keep-rows: do not keep this method's earlier rows (they measured another adapter)")
    p.add_argument("--from-eval", metavar="DIR", help="read finished evals from DIR instead of running them")
    p.add_argument("--keep-rows", metavar="JSON",
                   help="an earlier learning result: rows of methods this eval folder has not measured come from it")
    args = p.parse_args()
    if args.quick:
        args.limit = min(args.limit, 2)
    from flowsteer.evaluation.search import DEFAULT_CANDIDATES
    from flowsteer.fallback import FALLBACK_TEMPLATES

    fallbacks = {kind: FALLBACK_TEMPLATES[f"{kind}-default"] for kind in set(FAMILIES.values())}
    candidates = {kind: list(DEFAULT_CANDIDATES[kind]) for kind in fallbacks}
    for kind, fallback in fallbacks.items():
        if fallback not in candidates[kind]:
            candidates[kind].append(fallback)
    taught = _taught(Path(args.run))
    args.gsm8k_templates = {fallbacks["math"], *(dsl for fam, dsl in taught.items() if FAMILIES.get(fam) == "math")}
    args.fallbacks = set(fallbacks.values())
    args.first = args.gsm8k_templates | args.fallbacks | set(taught.values())  # the targets' templates
    out = Path(args.from_eval) if args.from_eval else asyncio.run(_evaluate_all(args, candidates))
    table = _rows(out)
    provenance: dict[str, Any] = {}
    if args.keep_rows:
        measured = {d: sorted(rows) for d, rows in table.items()}
        table, kept = _keep_rows(table, Path(args.keep_rows), frozenset(args.drop))
        provenance = {"measured_now": measured, "kept_from": kept}
    curves = _curves(Path(args.run))
    if not curves["steps"] and args.keep_rows:  # the run folder is gone: the curves measured with it
        curves = json.loads(Path(args.keep_rows).read_text()).get("curves", curves)
        provenance["curves_from"] = args.keep_rows
    emit("learning", {"curves": curves, "table": table, "targets": _targets(table, fallbacks),
                      **provenance,
                      "fallback_templates": fallbacks, "limit": args.limit,
                      "method": "flowsteer eval harness, embedded executor greedy (160 tokens), held-out test "
                                "splits (seed 2) of the training families and the GSM8K test file, Wilson CI95"},
         quick=args.quick)


if __name__ == "__main__":
    main()
