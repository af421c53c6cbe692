"""Tolerant parsing of the director's text into one :data:`~flowsteer.canvas.actions.Action`.

:func:`parse_action` never raises on model text: anything it cannot read becomes a
:class:`~flowsteer.errors.ParseFailure` whose message says how to write the action correctly.

What is tolerated (spec section 4.2):

* tags in any case, written ``<tag>`` or ``[tag]``; a missing closing tag ends at the next tag;
* fenced code blocks (the fences are removed, their content kept);
* ``<think>...</think>`` and ``<reasoning>``/``<thought>`` blocks (removed; an unterminated
  ``<think>`` with no action outside it is a "think-only" failure);
* several actions in one output (only the first is used);
* operator lists separated by commas, semicolons, ``->``, ``|`` or whitespace;
* operator names in any case, resolved against the registry (unknown names are failures that list
  the valid ones; nothing is silently mapped to another operator);
* node ids written ``node_3``, ``Node 3`` or ``3``.

With ``lenient=True`` (the default), text with no ``<action>`` tag at all falls back to the spec's
non-strict reading: an explicit finish phrase ("let's finish", "workflow complete", ...) is
:class:`Finish`, and text naming exactly one operator (case-sensitive, whole word) adds it. Pass
``lenient=False`` to demand the XML form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowsteer.canvas.actions import (
    ACTION_NAMES,
    ACTION_SYNTAX,
    MAX_LIST_OPERATORS,
    Action,
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Delete,
    Finish,
    Modify,
    SetPrompt,
    render_action,
    syntax_of,
)
from flowsteer.errors import ParseFailure, UserError
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.workflow.ir import MAX_LOOP_ITERATIONS, MIN_LOOP_ITERATIONS

__all__ = [
    "parse_action",
    "extract_prompt",
    "action_forms",
    "strip_reasoning",
    "MAX_LIST_OPERATORS",
    "DEFAULT_LOOP_COUNT",
    "MAX_TEXT_CHARS",
]

DEFAULT_LOOP_COUNT = 3
"""Loop count used when ``<count>`` is missing."""
MAX_TEXT_CHARS = 200_000
"""Model text beyond this many characters is ignored."""

# the tags of the action language (ACTION_SYNTAX), the aliases read leniently, the reasoning blocks
_TAG_NAMES = tuple(sorted({"action", "structure", *(slot.tag for syntax in ACTION_SYNTAX for slot in syntax.slots),
                           "on_fail", "on_pass", "reasoning", "thought", "think"}, key=lambda t: (-len(t), t)))
_TAG_RE = re.compile(r"[<\[][ \t]{0,4}(/?)[ \t]{0,4}(" + "|".join(_TAG_NAMES) + r")[ \t]{0,4}[>\]]", re.I)
_BRACKETS = re.compile(r"[<>\[\]]")
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+.-]{0,20}")
_SPLIT_RE = re.compile(r"\s*(?:->|=>|[,;|+\s])\s*")
_NODE_RE = re.compile(r"(?:node)?[\s_#:-]{0,3}(\d{1,9})", re.I)
_INT_RE = re.compile(r"([-+]?\d{1,9})(?: ?(?:x|times))?\.?", re.I)
_FINISH_RE = re.compile(
    r"\b(?:let'?s\s+finish|finish\s+the\s+workflow|workflow\s+(?:is\s+)?(?:complete|completed|done|finished)"
    r"|ready\s+to\s+finish|i\s+(?:will|'ll)\s+finish|action\s*[:=]\s*finish)\b",
    re.I,
)
_ACTION_ALIASES = {
    "add": "add", "add_operator": "add", "insert": "add", "append": "add",
    "delete": "delete", "remove": "delete", "del": "delete",
    "modify": "modify", "replace": "modify", "change": "modify",
    "set_prompt": "set_prompt", "setprompt": "set_prompt", "prompt": "set_prompt",
    "finish": "finish", "done": "finish", "stop": "finish", "end": "finish",
    "parallel": "parallel", "add_parallel": "parallel",
    "conditional": "conditional", "add_conditional": "conditional",
    "loop": "loop", "add_loop": "loop",
}
_STRUCTURE_ALIASES = {
    "parallel": "parallel", "par": "parallel", "ensemble": "parallel",
    "conditional": "conditional", "condition": "conditional", "if": "conditional", "branch": "conditional",
    "loop": "loop", "repeat": "loop",
}
_DSL_CONDITIONAL = re.compile(r"\s*(\w+)\s*\?\s*(\w+)\s*(?::\s*(\w+)\s*)?")
_DONE_WORDS = frozenset({"", "done", "none", "pass", "nothing", "-", "null", "end"})


def action_forms() -> str:
    """The eight action forms of the grammar, one per line (shown in parse-failure messages)."""
    position = syntax_of(AddOperator).slot("position")
    lines = [syntax.form() for syntax in ACTION_SYNTAX]
    lines[0] += f" (optional <{position.tag}>{position.placeholder}</{position.tag}>, 1-based)"
    return "\n".join(lines)


_FORMS = {syntax.cls: syntax.form() for syntax in ACTION_SYNTAX}


@dataclass(frozen=True)
class _Tag:
    closing: bool
    name: str
    start: int
    end: int


def _tags(text: str) -> list[_Tag]:
    return [_Tag(m.group(1) == "/", m.group(2).lower(), m.start(), m.end()) for m in _TAG_RE.finditer(text)]


def _named_tag_re(name: str) -> re.Pattern[str]:
    return re.compile(r"[<\[][ \t]{0,4}(/?)[ \t]{0,4}" + name + r"[ \t]{0,4}[>\]]", re.I)


_BLOCK_RES = {name: _named_tag_re(name) for name in ("think", "reasoning", "thought")}


def _strip_block(text: str, name: str) -> tuple[str, bool]:
    """Remove every ``<name>...</name>`` block; report whether one was left unterminated.

    A closing tag with no opening tag before it drops everything before it (the model began
    mid-thought, as when a chat template opens the think block in the prompt).
    """
    pieces: list[str] = []
    pos = 0
    opened_at: int | None = None
    for match in _BLOCK_RES[name].finditer(text):
        closing = match.group(1) == "/"
        if not closing and opened_at is None:
            pieces.append(text[pos:match.start()])
            opened_at = match.start()
        elif closing and opened_at is not None:
            opened_at = None
            pos = match.end()
        elif closing:
            pieces = []
            pos = match.end()
    if opened_at is not None:
        return "".join(pieces), True
    pieces.append(text[pos:])
    return "".join(pieces), False


def strip_reasoning(text: str) -> tuple[str, bool]:
    """Remove fences, think and reasoning blocks; return ``(text, think_unterminated)``.

    Text beyond ``MAX_TEXT_CHARS`` is ignored (no model writes that much within a turn's budget).
    """
    text = _FENCE_RE.sub("", text[:MAX_TEXT_CHARS])
    text, think_open = _strip_block(text, "think")
    for name in ("reasoning", "thought"):
        text, _ = _strip_block(text, name)
    return text, think_open


class _Fields:
    """Field lookup within the first action's region of the text."""

    def __init__(self, text: str, tags: list[_Tag]) -> None:
        self.text = text
        self.tags = tags

    def get(self, name: str) -> str | None:
        for i, tag in enumerate(self.tags):
            if tag.name != name or tag.closing:
                continue
            end = len(self.text)
            for later in self.tags[i + 1:]:
                if later.name == name and later.closing:
                    end = later.start
                    break
            else:  # unclosed: the value ends at the next tag
                if i + 1 < len(self.tags):
                    end = self.tags[i + 1].start
            return self.text[tag.end:end].strip()
        return None


def _first_action(text: str) -> tuple[str, _Fields] | None:
    """The first ``<action>`` value and the fields that belong to it (up to the next action)."""
    tags: list[_Tag] = []
    seen_action = False
    region_end = len(text)
    for match in _TAG_RE.finditer(text):
        tag = _Tag(match.group(1) == "/", match.group(2).lower(), match.start(), match.end())
        if tag.name == "action" and not tag.closing:
            if seen_action:  # a second action: it and everything after it are ignored
                region_end = tag.start
                break
            seen_action = True
        tags.append(tag)
    if not seen_action:
        return None
    fields = _Fields(text[:region_end], tags)
    return fields.get("action") or "", fields


class _Failure(Exception):
    """Internal: carries a failure message up to :func:`parse_action` (never escapes it)."""


def parse_action(text: str, registry: OperatorRegistry, *, lenient: bool = True) -> Action | ParseFailure:
    """Parse the first action in ``text``; any problem is a :class:`ParseFailure`, never an exception."""
    if not isinstance(text, str):
        raise UserError(f"parse_action expects the model's text as str, got {type(text).__name__}")
    raw = text[:300]
    if not text.strip():
        return ParseFailure("empty output: write exactly one action, e.g.\n" + action_forms(), raw)
    cleaned, think_open = strip_reasoning(text)
    found = _first_action(cleaned)
    if found is None:
        if think_open:
            return ParseFailure(
                "think-only: the output ended inside <think> without an action. Keep the thinking "
                "short, close it with </think>, then write one action such as " + _FORMS[AddOperator],
                raw,
            )
        if lenient:
            return _lenient(cleaned, registry, raw)
        return ParseFailure("no <action> tag found; write exactly one action:\n" + action_forms(), raw)
    value, fields = found
    try:
        return _build(value, fields, registry)
    except _Failure as exc:
        return ParseFailure(str(exc), raw)


def _build(value: str, fields: _Fields, registry: OperatorRegistry) -> Action:
    key = re.sub(r"[\s-]+", "_", value.strip().lower())
    kind = _ACTION_ALIASES.get(key)
    if kind is None:
        raise _Failure(f"unknown action {_echo(value)}; valid actions: {', '.join(ACTION_NAMES)}. "
                       "Forms:\n" + action_forms())
    if kind == "add":
        structure = fields.get("structure")
        if structure is None:
            return _add_operator(fields, registry)
        kind = _STRUCTURE_ALIASES.get(structure.strip().lower(), "")
        if not kind:
            raise _Failure(f"unknown structure {_echo(structure)}; use parallel, conditional or loop, e.g. "
                           + _FORMS[AddParallel])
    match kind:
        case "parallel":
            return AddParallel(_operator_list(fields, registry, "parallel", minimum=2))
        case "conditional":
            return _add_conditional(fields, registry)
        case "loop":
            return AddLoop(_operator_list(fields, registry, "loop", minimum=1), _loop_count(fields))
        case "delete":
            return Delete(_target(fields, _FORMS[Delete]))
        case "modify":
            form = _FORMS[Modify]
            return Modify(_target(fields, form), _one_operator(fields.get("operator"), registry, form))
        case "set_prompt":
            form = _FORMS[SetPrompt]
            target = _target(fields, form)
            prompt = fields.get("prompt")
            if not prompt:
                raise _Failure(f"set_prompt needs the new prompt text: {form}")
            return SetPrompt(target, prompt)
    answer = fields.get("answer")
    return Finish(answer if answer else None)


def _add_operator(fields: _Fields, registry: OperatorRegistry) -> AddOperator:
    form = _FORMS[AddOperator]
    name = fields.get("operator")
    if name is None:
        listed = fields.get("operators")
        if listed and len(_split(listed)) == 1:
            name = listed
    operator = _one_operator(name, registry, form)
    position = None
    pos_text = fields.get("position")
    if pos_text is not None and pos_text.strip():
        match = _INT_RE.fullmatch(pos_text.strip())
        if match is None or int(match.group(1)) < 1:
            raise _Failure(f"position {_echo(pos_text)} is not a positive integer; positions are 1-based: "
                           f"{render_action(AddOperator('NAME', position=1))} puts the operator first")
        position = int(match.group(1))
    prompt = fields.get("prompt")
    return AddOperator(operator, position, prompt if prompt else None)


def _add_conditional(fields: _Fields, registry: OperatorRegistry) -> AddConditional:
    form = _FORMS[AddConditional]
    condition_text = fields.get("condition")
    on_fail_text = fields.get("true")
    if on_fail_text is None:
        on_fail_text = fields.get("on_fail")
    on_pass_text = fields.get("false")
    if on_pass_text is None:
        on_pass_text = fields.get("on_pass")
    dsl = _DSL_CONDITIONAL.fullmatch(condition_text or "")
    if dsl is not None and on_fail_text is None:  # the DSL form inside <condition>: "Verify ? Revise : done"
        condition_text, on_fail_text, on_pass_text = dsl.group(1), dsl.group(2), dsl.group(3)
    condition = _one_operator(condition_text, registry, form, what="<condition>")
    on_fail = _one_operator(on_fail_text, registry, form, what="<true> (the operator run when the check fails)")
    on_pass = None
    if on_pass_text is not None and _clean_name(on_pass_text).lower() not in _DONE_WORDS:
        on_pass = _one_operator(on_pass_text, registry, form, what="<false>")
    return AddConditional(condition, on_fail, on_pass)


def _operator_list(fields: _Fields, registry: OperatorRegistry, structure: str, *, minimum: int) -> tuple[str, ...]:
    form = _FORMS[AddLoop if structure == "loop" else AddParallel]
    text = fields.get("operators")
    if text is None:
        text = fields.get("operator")
    names = _split(text or "")
    if len(names) < minimum:
        need = "at least 2 operators" if minimum == 2 else "at least 1 operator"
        raise _Failure(f"a {structure} structure needs {need} in <operators>, got {len(names)}: {form}")
    if len(names) > MAX_LIST_OPERATORS:
        raise _Failure(f"a {structure} structure takes at most {MAX_LIST_OPERATORS} operators, got "
                       f"{len(names)}: {form}")
    return tuple(_resolve(n, registry, form) for n in names)


def _loop_count(fields: _Fields) -> int:
    text = fields.get("count")
    if text is None or not text.strip():
        return DEFAULT_LOOP_COUNT
    match = _INT_RE.fullmatch(text.strip())
    if match is None:
        raise _Failure(f"loop count {_echo(text)} is not an integer; write <count>3</count> with a "
                       f"number from {MIN_LOOP_ITERATIONS} to {MAX_LOOP_ITERATIONS}")
    count = int(match.group(1))
    if not MIN_LOOP_ITERATIONS <= count <= MAX_LOOP_ITERATIONS:
        raise _Failure(f"loop count must be between {MIN_LOOP_ITERATIONS} and {MAX_LOOP_ITERATIONS}, "
                       f"got {count}; e.g. <count>3</count>")
    return count


def _target(fields: _Fields, form: str) -> str:
    text = fields.get("target")
    if text is None or not text.strip():
        raise _Failure(f"this action needs the node id in <target>: {form}")
    text = text.strip().strip("`'\"")
    match = _NODE_RE.fullmatch(text)
    if match is not None:
        return f"node_{int(match.group(1))}"
    return " ".join(_BRACKETS.sub("", text).split())[:40]


def _echo(text: str, limit: int = 40) -> str:
    """Model text quoted in a message: short, one line, and without brackets that could form a tag."""
    return repr(_BRACKETS.sub("", text.strip()[:limit]))


def _split(text: str) -> list[str]:
    return [p for p in (_clean_name(x) for x in _SPLIT_RE.split(text)) if p]


def _clean_name(text: str) -> str:
    return text.strip().strip("`'\"*.:()[]{}<>!?").strip()


def _one_operator(text: str | None, registry: OperatorRegistry, form: str, *, what: str = "<operator>") -> str:
    if text is None or not _clean_name(text):
        raise _Failure(f"missing operator name in {what}: {form}; valid operators: {', '.join(registry.names())}")
    names = _split(text)
    if len(names) != 1:
        raise _Failure(f"{what} takes exactly one operator, got {len(names)} ({_echo(text, 60)}); use "
                       "<structure>parallel</structure> or <structure>loop</structure> for several: " + form)
    return _resolve(names[0], registry, form)


def _resolve(name: str, registry: OperatorRegistry, form: str) -> str:
    spec = registry.lookup_case_insensitive(name)
    if spec is None:
        raise _Failure(f"unknown operator {_echo(name)}; valid operators: {', '.join(registry.names())}. "
                       f"Form: {form}")
    return spec.name


def _lenient(text: str, registry: OperatorRegistry, raw: str) -> Action | ParseFailure:
    """The spec's non-strict fallback for text without any ``<action>`` tag."""
    if _FINISH_RE.search(text):
        return Finish()
    names = registry.names()
    if names:
        pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b")
        mentioned = sorted(set(pattern.findall(text)))
        if len(mentioned) == 1:
            return AddOperator(mentioned[0])
        if len(mentioned) > 1:
            return ParseFailure(
                f"no <action> tag found and several operators are mentioned ({', '.join(mentioned)}); "
                "write one explicit XML action:\n" + action_forms(),
                raw,
            )
    return ParseFailure("no <action> tag found; write exactly one action:\n" + action_forms(), raw)


def extract_prompt(text: str) -> str | ParseFailure:
    """The node prompt in a prompt-writing turn (state AWAITING_PROMPT).

    The content of ``<prompt>...</prompt>`` when present, else the whole text; fences, think and
    reasoning blocks and stray grammar tags are removed and whitespace is trimmed. Text holding an
    ``<action>`` (and no ``<prompt>``) is refused: the model answered with an action while the
    canvas waited for a prompt. Length rules are the canvas's (see ``CanvasConfig``).
    """
    if not isinstance(text, str):
        raise UserError(f"extract_prompt expects the model's text as str, got {type(text).__name__}")
    raw = text[:300]
    cleaned, think_open = strip_reasoning(text)
    tags = _tags(cleaned)
    prompt = _Fields(cleaned, tags).get("prompt")
    if prompt is None:
        if any(t.name == "action" for t in tags):
            return ParseFailure(
                "the canvas is waiting for a node prompt, not an action: reply with the prompt text "
                "only (or <prompt>TEXT</prompt>)",
                raw,
            )
        prompt = _TAG_RE.sub(" ", cleaned)
    prompt = prompt.strip()
    if not prompt and think_open:
        return ParseFailure(
            "think-only: the output ended inside <think> without a prompt; close </think> and then "
            "write the prompt text",
            raw,
        )
    return prompt
