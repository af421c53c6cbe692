"""The bounded ``<feedback>`` block the director reads after every turn (spec section 6).

Sections, in order: ``[Status]``, ``[Message]``, ``[Current DSL]``, ``[Nodes]`` (id: operator and
a gist of its prompt), ``[Statistics]``, then either the result (truncated to ``result_chars``) or
the first node error with a one-line repair hint, ``[Checks]`` (checker verdicts), a prompt request
with the operator's description and usage hint when the canvas waits for a prompt, and
``[Round]: r/T``. The whole block, tags included, is at most ``feedback_chars`` long.

Text that comes from executions or from the model (results, errors, prompts, echoed names) goes
through :func:`neutralize` first, so it cannot close the feedback block, open an ``<action>`` the
director might copy, or forge a ``[Status]`` header (prompt-injection resistance).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from flowsteer.operators.registry import OperatorRegistry
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult, NodeTrace
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow

__all__ = [
    "PromptRequest",
    "neutralize",
    "truncate",
    "error_hint",
    "render_feedback",
    "prompt_request_text",
    "shrink_feedback",
]

_CONTROL_WORDS = (
    "feedback", "action", "structure", "operators", "operator", "position", "prompt", "condition", "true",
    "false", "on_fail", "on_pass", "count", "target", "answer", "reasoning", "thought", "think",
)
_TAG_LIKE = re.compile(r"[<\[](?=[ \t]{0,4}/?[ \t]{0,4}(?:" + "|".join(_CONTROL_WORDS) + r")\b)", re.I)
_HEADER_LIKE = re.compile(r"(?m)^([ \t]*)\[(?=[A-Za-z][A-Za-z0-9 _-]{0,30}\][ \t]*[:=])")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"<": "‹", "[": "⟦"}
_FEEDBACK_TAG = re.compile(r"<(?=\s*/?\s*feedback)", re.I)


@dataclass(frozen=True)
class PromptRequest:
    """What the canvas asks for while AWAITING_PROMPT."""

    node_id: str
    """The node whose prompt the next turn writes."""
    operator: str
    index: int
    """1-based position of this request among the prompts the last edit needs."""
    total: int
    context: str
    """Where the node sits, e.g. ``"parallel branch 2/3 of node_4"`` (empty for a plain node)."""


def neutralize(text: str) -> str:
    """Make untrusted text inert inside feedback.

    Brackets that would open or close a control tag (``</feedback>``, ``<action>``, ``[think]``, ...)
    become look-alikes (``‹``, ``⟦``); a line that looks like a section header (``[Status]:``) is
    defused the same way; control and bidi-override characters are dropped. Other text is kept.
    """
    text = _CONTROL_CHARS.sub("", text)
    text = _TAG_LIKE.sub(lambda m: _ESCAPES[m.group(0)], text)
    return _HEADER_LIKE.sub(lambda m: m.group(1) + "⟦", text)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its head and tail around `` … ``."""
    if len(text) <= limit:
        return text
    if limit < 8:
        return text[:limit]
    tail = (limit - 3) // 3
    head = limit - 3 - tail
    return text[:head] + " … " + text[len(text) - tail:]


@cache
def _hint_rules() -> tuple[tuple[re.Pattern[str], str], ...]:
    source = resources.files("flowsteer.canvas.prompts").joinpath("error_hints.txt")
    rules = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, hint = line.partition(" => ")
        rules.append((re.compile(pattern.strip(), re.I), hint.strip()))
    return tuple(rules)


@cache
def _template(name: str) -> str:
    return resources.files("flowsteer.canvas.prompts").joinpath(name).read_text(encoding="utf-8").rstrip("\n")


def error_hint(message: str) -> str:
    """A one-line repair hint for an error message (matched on the error type it names)."""
    head = message[:2000]
    for pattern, hint in _hint_rules():
        if pattern.search(head):
            return hint
    return ""


def prompt_request_text(request: PromptRequest, registry: OperatorRegistry, task: Task | None = None) -> str:
    """The instruction shown while waiting for a node prompt, with the operator's guidance.

    For a code task and an operator that runs code, the required entry point and the first lines of
    the public tests are added (the spec's code-task context; hidden tests are never shown).
    """
    context = f", {request.context}" if request.context else ""
    extra = _template("parallel_hint.txt") if request.context.startswith("parallel") else ""
    text = _template("prompt_request.txt").format(
        node_id=request.node_id, operator=request.operator, context=context, extra=extra
    )
    spec = registry.lookup_case_insensitive(request.operator)
    if spec is not None:
        text += f"\n[Operator]: {spec.name}: {spec.description}"
        if spec.usage_hint:
            text += f" {spec.usage_hint}"
        if task is not None and task.kind == "code" and spec.runs_code:
            text += _code_context(task)
    return text


def _code_context(task: Task) -> str:
    text = ""
    if task.entry_point:
        text += f"\n[Code]: the solution must define `{neutralize(task.entry_point)[:60]}`."
    if task.public_tests:
        lines = [line for line in task.public_tests.splitlines() if line.strip()][:8]
        text += "\n[Public Tests]: " + truncate(neutralize("\n".join(lines)), 300)
    return text


@lru_cache(maxsize=1024)
def _gist(prompt: str, limit: int = 40) -> str:
    # cached: every turn re-renders the gist of every node, and most prompts did not change
    prompt = " ".join(prompt.split())
    if not prompt:
        return "no prompt yet"
    return truncate(neutralize(prompt), limit)


def _structure(workflow: Workflow) -> tuple[str, str]:
    """The ``[Nodes]`` and ``[Statistics]`` values, from one walk over the workflow.

    The statistics are :func:`flowsteer.workflow.graph.stats`'s operator count, unique operator types and
    structure kinds (checkers of conditionals count as operators).
    """
    items: list[str] = []
    names: list[str] = []
    kinds: set[str] = set()
    for ref in workflow.walk():
        node = ref.node
        where = f" in {ref.parent.id}" if ref.parent is not None else ""
        match node:
            case OperatorNode():
                names.append(node.operator)
                items.append(f"{node.id}: {node.operator}{where} ({_gist(node.prompt)})")
            case Parallel(branches=branches):
                kinds.add("parallel")
                items.append(f"{node.id}: parallel of {len(branches)}{where}")
            case Conditional(check=check):
                kinds.add("conditional")
                items.append(f"{node.id}: conditional on {check.id}{where}")
            case Loop(max_iterations=count):
                kinds.add("loop")
                items.append(f"{node.id}: loop x{count}{where}")
    shown = [kind for kind in ("parallel", "conditional", "loop") if kind in kinds]
    statistics = (f"{len(names)} operators, {len(set(names))} unique types; structures: "
                  f"{', '.join(shown) if shown else 'none'}")
    return ("; ".join(items) if items else "none"), statistics


def _checks(trace: tuple[NodeTrace, ...]) -> str:
    last: dict[str, NodeTrace] = {}
    for t in trace:
        if t.result.verdict is not None:
            last[t.node_id] = t
    parts = []
    for t in last.values():
        verdict = "passed" if t.result.verdict else "failed"
        why = f": {truncate(neutralize(' '.join((t.result.feedback or '').split())), 100)}" if t.result.feedback else ""
        parts.append(f"{t.node_id} {t.operator} {verdict}{why}")
    return "; ".join(parts)


def _execution_sections(execution: ExecutionResult, result_chars: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    failure = execution.error
    if failure is None and execution.node_errors:
        t = execution.node_errors[0]
        failure = f"{t.node_id} {t.operator}: {t.result.error}"
    if failure is not None:
        out.append(("Error", truncate(neutralize(failure), 300)))
        hint = error_hint(failure)
        if hint:
            out.append(("Hint", hint))
    if execution.error is None:
        out.append(("Result", truncate(neutralize(execution.answer.strip()), result_chars) or "(empty)"))
    checks = _checks(execution.trace)
    if checks:
        out.append(("Checks", checks))
    return out


def render_feedback(
    *,
    status: str,
    message: str,
    workflow: Workflow,
    registry: OperatorRegistry,
    turn: int,
    max_turns: int,
    execution: ExecutionResult | None = None,
    prompt_request: PromptRequest | None = None,
    result_chars: int = 500,
    feedback_chars: int = 1500,
    task: Task | None = None,
    dsl: str | None = None,
) -> str:
    """Assemble the feedback block. ``message`` is trusted canvas text; everything else that came
    from the model or an execution is neutralised here. ``dsl`` is ``workflow.dsl`` when the caller
    has already rendered it (it is rendered here otherwise)."""
    if workflow.is_empty:
        dsl = "(empty)"
    elif dsl is None:
        dsl = workflow.dsl
    nodes, statistics = _structure(workflow)
    sections: list[tuple[str, str]] = [
        ("Status", status),
        ("Message", message),
        ("Current DSL", truncate(dsl, 300)),
        ("Nodes", truncate(nodes, 500)),
        ("Statistics", statistics),
    ]
    if execution is not None:
        sections.extend(_execution_sections(execution, result_chars))
    if prompt_request is not None:
        sections.append(("Prompt Request", prompt_request_text(prompt_request, registry, task)))
    sections.append(("Round", f"{turn}/{max_turns}"))
    opening, closing = _OPENING, _CLOSING
    body = _fit(sections, feedback_chars - len(opening) - len(closing))
    # Our own text never contains a feedback tag: a last guard against anything that slipped in.
    body = _FEEDBACK_TAG.sub("‹", body)
    return opening + body + closing


def _fit(sections: list[tuple[str, str]], budget: int, keep: tuple[str, ...] = ()) -> str:
    """Join sections, shrinking the longest values first until the text fits ``budget``.

    With ``keep``, the other sections shrink first, then go whole (:data:`_DROP_ORDER`), and only
    then do the kept ones shrink."""
    values = [value for _, value in sections]
    dropped: set[int] = set()

    def joined() -> str:
        return "\n".join(f"[{name}]: {values[k]}" for k, (name, _) in enumerate(sections) if k not in dropped)

    def shrink(pool: list[int]) -> str:
        text = joined()
        while len(text) > budget and pool:
            i = max(pool, key=lambda k: len(values[k]))
            target = max(40, len(values[i]) - (len(text) - budget))
            if target >= len(values[i]):
                break
            values[i] = truncate(values[i], target)
            text = joined()
        return text

    others = [k for k, (name, _) in enumerate(sections) if name not in keep]
    text = shrink(others)
    if keep:
        for i in sorted(others, key=lambda k: _DROP_ORDER.get(sections[k][0], -1)):
            if len(text) <= budget:
                break
            dropped.add(i)
            text = joined()
        text = shrink([k for k in range(len(values)) if k not in dropped])
    return text if len(text) <= budget else text[:budget]


_DROP_ORDER = {name: rank for rank, name in enumerate(
    ("Hint", "Statistics", "Nodes", "Prompt Request", "Checks", "Result", "Message", "Error"))}


_OPENING, _CLOSING = "<feedback>\n", "\n</feedback>"
_SECTION_START = re.compile(r"(?m)^\[([A-Z][A-Za-z ]{0,30})\]: ")
KEPT_SECTIONS = ("Status", "Current DSL", "Round")
"""What a shrunk feedback block keeps longest: where the episode stands and what the canvas holds."""


def shrink_feedback(text: str, limit: int) -> str | None:
    """A feedback block cut to at most ``limit`` characters with its structure intact: every
    section keeps its header, the longest values shrink first, and :data:`KEPT_SECTIONS` only
    when nothing else is left to cut. ``None`` when ``text`` is not a feedback block.

    (Untrusted text inside the block cannot fake a section header: :func:`neutralize` defused it.)
    """
    if len(text) <= limit:
        return text
    if not (text.startswith(_OPENING) and text.endswith(_CLOSING)):
        return None
    body = text[len(_OPENING): len(text) - len(_CLOSING)]
    starts = list(_SECTION_START.finditer(body))
    if not starts or starts[0].start() != 0:
        return None
    ends = [m.start() - 1 for m in starts[1:]] + [len(body)]
    sections = [(m.group(1), body[m.end(): end]) for m, end in zip(starts, ends, strict=True)]
    budget = limit - len(_OPENING) - len(_CLOSING)
    if budget < 20 * len(sections):
        return None
    return _OPENING + _fit(sections, budget, keep=KEPT_SECTIONS) + _CLOSING
