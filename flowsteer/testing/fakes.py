"""Fake chat models for tests, examples and benchmarks (no network, no weights).

* :class:`ScriptedChatModel` replays a script of replies.
* :class:`SimulatedExecutor` plays a noisy executor whose accuracy depends on the workflow's
  structure, reading the layout the built-in operators write (see :mod:`flowsteer.operators.llm`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from flowsteer.errors import UserError
from flowsteer.operators.llm import (
    SECTION_CANDIDATES,
    SECTION_FEEDBACK,
    SECTION_GUIDANCE,
    SECTION_INPUT,
    SECTION_PREVIOUS_ATTEMPT,
    SECTION_TASK,
    reply_text,
)
from flowsteer.operators.parsing import answer_key, extract_code, extract_tag

__all__ = ["ScriptedChatModel", "SimulatedExecutor", "SimulatedCall", "approx_tokens"]

Reply = str | Callable[[list[BaseMessage]], str]


def approx_tokens(text: str) -> int:
    """A rough token count (about four characters per token), at least 1 for non-empty text."""
    return max(1, len(text) // 4) if text else 0


def _check_jitter(model: str, jitter: float) -> None:
    if not 0.0 <= jitter <= 1.0:
        raise UserError(f"{model}: latency_jitter is a relative spread in [0, 1] (0.25 = latency +- 25%), "
                        f"got {jitter!r}")


def _call_latency(latency: float, jitter: float, rng: random.Random) -> float:
    """Seconds one call sleeps: ``latency``, spread uniformly by +- ``jitter`` of itself."""
    if not jitter:
        return latency
    return latency * (1.0 + rng.uniform(-jitter, jitter))


def _reply(messages: list[BaseMessage], text: str, model: str) -> ChatResult:
    prompt = sum(approx_tokens(reply_text(m)) for m in messages)
    output = approx_tokens(text)
    message = AIMessage(
        content=text,
        usage_metadata={"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output},
        response_metadata={"model_name": model},
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays ``replies`` in order (sync and async).

    Each reply is a string or a callable ``(messages) -> str``. Every call is recorded in
    :attr:`calls`. When the script runs out, ``default`` (a string or callable) answers; without
    one the call raises :class:`~flowsteer.errors.UserError` saying how many replies were used.
    ``latency`` seconds are slept per call (``asyncio.sleep`` on the async path), spread by
    ``latency_jitter`` (0.25: uniformly within +- 25%, from a seeded generator) like a remote
    endpoint's; ``fail_every=n`` makes every n-th call raise ``RuntimeError`` without consuming a
    reply (failure injection). Replies carry ``usage_metadata`` with approximate token counts.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    replies: list[Any] = Field(default_factory=list)
    default: Any = None
    latency: float = 0.0
    latency_jitter: float = 0.0
    fail_every: int | None = None
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _latency_rng: random.Random = PrivateAttr(default_factory=lambda: random.Random(0))

    def __init__(self, replies: Sequence[Reply] = (), *, default: Reply | None = None, **kwargs: Any) -> None:
        super().__init__(replies=list(replies), default=default, **kwargs)  # type: ignore[call-arg]
        _check_jitter("ScriptedChatModel", self.latency_jitter)
        self._latency_rng.seed(self._llm_type)  # its own sequence, not the executor's

    @property
    def _llm_type(self) -> str:
        return "flowsteer-scripted"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call so far, in call order."""
        return self._calls

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        return len(self.replies) - self._position

    def _next(self, messages: list[BaseMessage]) -> str:
        with self._lock:
            self._calls.append(list(messages))
            number = len(self._calls)
            if self.fail_every and number % self.fail_every == 0:
                raise RuntimeError(f"ScriptedChatModel: injected failure on call {number}")
            if self._position < len(self.replies):
                reply = self.replies[self._position]
                self._position += 1
            elif self.default is not None:
                reply = self.default
            else:
                raise UserError(f"ScriptedChatModel script exhausted: call {number} but only "
                                f"{len(self.replies)} replies were scripted; add replies or pass default=...")
        return reply(messages) if callable(reply) else str(reply)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if self.latency:
            time.sleep(_call_latency(self.latency, self.latency_jitter, self._latency_rng))
        return _reply(messages, self._next(messages), self._llm_type)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if self.latency:
            await asyncio.sleep(_call_latency(self.latency, self.latency_jitter, self._latency_rng))
        return _reply(messages, self._next(messages), self._llm_type)


# -- the simulated executor -------------------------------------------------------------------

_HEADER_RE = re.compile(r"FlowSteer operator:\s*(\w+)")
_PLAN_MARK = "Identify exactly what the task asks for."
_DECOMPOSE_MARK = "Find the quantities the task gives."
_SOLVERS = ("Custom", "AnswerGenerate", "Programmer")


_SAID_RE = re.compile(r"(?:answer|result) is:?\s*([^\n]+?)\.?\s*$", re.IGNORECASE | re.MULTILINE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ENTRY_RE = re.compile(r"defines the function (\w+)\.")
_CANDIDATE_RE = re.compile(r"^Candidate [A-Z]:\s*$", re.MULTILINE)
_HANDLERS = {"Plan": "_plan", "Decompose": "_decompose", "Review": "_review", "Verify": "_verify",
             "Revise": "_revise", "ScEnsemble": "_scensemble", "Aggregate": "_aggregate", "Format": "_format"}
"""Operator name -> the simulator method that answers it (anything else is a solver)."""


def _sections(text: str) -> dict[str, str]:
    """``## Title`` sections of an operator's user message (a repeated title keeps its last body)."""
    out: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            lines = out[line.strip()] = []
        elif lines is not None:
            lines.append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def answer_in(text: str) -> str:
    """The answer a piece of operator output states (how the simulator reads solutions)."""
    tagged = extract_tag(text, "answer") or extract_tag(text, "solution")
    if tagged:
        return answer_in(tagged) if "<answer>" in tagged.lower() else tagged.strip()
    code = extract_code(text) if "def " in text else None
    if code:
        return code.strip()
    stripped = text.strip()
    said = _SAID_RE.findall(stripped)
    if said:
        return said[-1].strip()
    if "\n" not in stripped and len(stripped.split()) <= 4:
        return stripped.rstrip(".")
    numbers = _NUMBER_RE.findall(stripped)
    return numbers[-1] if numbers else stripped.splitlines()[-1].strip()


class SimulatedExecutor(BaseChatModel):
    """A noisy executor whose accuracy depends on the workflow's structure.

    It reads ``FlowSteer operator: <Name>`` from the system prompt and the task, guidance, input
    and feedback sections from the user message, and replies in the format that operator parses.
    Gold answers come from ``answers`` (question -> answer; for code tasks the reference code);
    for an unknown question the simulator invents a fixed gold number from its hash. Its model:

    * **Solvers** (Custom, AnswerGenerate, Programmer, unknown names) are right with probability
      ``skill``, plus ``plan_bonus`` when the input holds a Plan/Decompose output, plus 0.05 with
      director guidance, and at least 0.9 when the input already states the right answer. Wrong
      answers are near misses (gold + a small offset, or ``"wrong answer k"``), so parallel
      solvers sometimes agree on a wrong value. Programmer replies with a program
      (``def solve(): return ...``, or the gold / a broken function for code tasks).
    * **Checkers** (Review, Verify) fail a wrong answer with probability ``detect`` and a right one
      with probability ``false_alarm``; Verify also reports its own answer (right with
      probability ``skill``; high confidence only when right, half the time).
    * **Revise** fixes a wrong answer with probability ``fix`` when the feedback reports a failure
      (``fix / 3`` otherwise) and keeps a right one.
    * **ScEnsemble / Aggregate** vote: the most common answer among the candidates (ties broken at
      random). **Format** extracts the stated answer faithfully. **Plan / Decompose** write steps.

    Every draw is deterministic given ``seed`` and the call's operator, question, guidance, input,
    feedback and retry context, so identical nodes agree and reruns reproduce. ``latency`` seconds
    are slept per call (async sleep on the async path), spread by ``latency_jitter`` as in
    :class:`ScriptedChatModel`, for concurrency benchmarks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answers: dict[str, str] = Field(default_factory=dict)
    skill: float = 0.6
    seed: int = 0
    latency: float = 0.0
    latency_jitter: float = 0.0
    detect: float = 0.9
    false_alarm: float = 0.1
    fix: float = 0.7
    plan_bonus: float = 0.15
    handlers: dict[str, Any] = Field(default_factory=dict)
    """Custom operator name -> ``fn(call: SimulatedCall) -> str``, the reply text (in the format the
    operator's ``parse`` reads). ``call`` carries ``question``, ``gold``, ``input``, ``sections``,
    a seeded ``rng`` and helpers (``is_right``, ``wrong``, ``program``, ``candidates``)."""
    behaves_like: dict[str, str] = Field(default_factory=dict)
    """Custom operator name -> the built-in whose simulated behaviour it borrows (e.g.
    ``{"UnitCheck": "Review"}``); unknown names are simulated as solvers."""
    _calls: list[str] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _latency_rng: random.Random = PrivateAttr(default_factory=lambda: random.Random(0))

    def __init__(self, answers: Mapping[str, str] | None = None, *, skill: float = 0.6, seed: int = 0,
                 latency: float = 0.0, **kwargs: Any) -> None:
        gold = {q.strip(): str(a) for q, a in (answers or {}).items()}
        super().__init__(answers=gold, skill=skill, seed=seed, latency=latency, **kwargs)  # type: ignore[call-arg]
        for field in ("skill", "detect", "false_alarm", "fix"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise UserError(f"SimulatedExecutor: {field} must be a probability in [0, 1]")
        _check_jitter("SimulatedExecutor", self.latency_jitter)
        self._latency_rng.seed(f"{self._llm_type}-{self.seed}")

    @property
    def _llm_type(self) -> str:
        return "flowsteer-simulated"

    @property
    def calls(self) -> list[str]:
        """The operator name of every call so far."""
        return self._calls

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if self.latency:
            time.sleep(_call_latency(self.latency, self.latency_jitter, self._latency_rng))
        return _reply(messages, self.respond(messages), self._llm_type)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if self.latency:
            await asyncio.sleep(_call_latency(self.latency, self.latency_jitter, self._latency_rng))
        return _reply(messages, self.respond(messages), self._llm_type)

    # -- the model ---------------------------------------------------------------------------
    def respond(self, messages: list[BaseMessage]) -> str:
        """The reply to one operator call."""
        system = reply_text(messages[0]) if len(messages) > 1 else ""
        match = _HEADER_RE.search(system)
        operator = match.group(1) if match else "Custom"
        with self._lock:
            self._calls.append(operator)
        sections = _sections(reply_text(messages[-1]))
        question = sections.get(SECTION_TASK, reply_text(messages[-1])).strip()
        rng = self._rng(operator, question, sections)
        call = _Call(operator, question, self._gold(question), sections, rng)
        custom = self.handlers.get(operator)
        if custom is not None:
            return str(custom(call))
        borrowed = self.behaves_like.get(operator, operator)
        handler: Callable[[_Call], str] = getattr(self, _HANDLERS.get(borrowed, "_solve"))
        return handler(call)

    def _rng(self, operator: str, question: str, sections: dict[str, str]) -> random.Random:
        keys = (SECTION_GUIDANCE, SECTION_INPUT, SECTION_CANDIDATES, SECTION_FEEDBACK, SECTION_PREVIOUS_ATTEMPT)
        payload = "\x1f".join([str(self.seed), operator, question, *(sections.get(k, "") for k in keys)])
        return random.Random(int(hashlib.sha256(payload.encode()).hexdigest()[:16], 16))

    def _gold(self, question: str) -> str:
        if question in self.answers:
            return self.answers[question]
        return str(int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 1000)

    def _solve(self, call: _Call) -> str:
        p = self.skill
        given = call.input
        if _PLAN_MARK in given or _DECOMPOSE_MARK in given:
            p += self.plan_bonus
        if call.sections.get(SECTION_GUIDANCE):
            p += 0.05
        if given and call.is_right(answer_in(given)):
            p = max(p, 0.9)
        answer = call.gold if call.rng.random() < min(p, 0.98) else call.wrong()
        match call.operator:
            case "AnswerGenerate":
                return f"<thought>Working through the task step by step.</thought>\n<answer>{answer}</answer>"
            case "Programmer":
                return f"<code>\n{call.program(answer)}\n</code>"
            case _:
                return f"Working through the task step by step.\nThe answer is {answer}.\n<answer>{answer}</answer>"

    def _plan(self, call: _Call) -> str:
        return (f"<approach>Work from the given facts to the answer.</approach>\n<plan>\n1. {_PLAN_MARK}\n"
                "2. Set up the computation.\n3. Compute the result and check it.\n</plan>")

    def _decompose(self, call: _Call) -> str:
        return (f"<reasoning>Two smaller steps are easier to get right.</reasoning>\n<sub_problems>\n"
                f"1. {_DECOMPOSE_MARK}\n2. Combine them into the final answer.\n</sub_problems>")

    def _review(self, call: _Call) -> str:
        stated = answer_in(call.input)
        failed = self._flags(call, stated)
        feedback = f"The answer {stated} is wrong; recompute it carefully." if failed else "The solution is correct."
        return f"<verdict>{'fail' if failed else 'pass'}</verdict>\n<feedback>{feedback}</feedback>"

    def _verify(self, call: _Call) -> str:
        stated = answer_in(call.input)
        failed = self._flags(call, stated)
        own_right = call.rng.random() < self.skill
        own = call.gold if own_right else call.wrong()
        confidence = "high" if own_right and call.rng.random() < 0.5 else "medium"
        feedback = f"The answer {stated} does not match my computation." if failed else "The answer checks out."
        return (f"<steps>Recomputed independently.</steps>\n<answer>{own}</answer>\n"
                f"<verdict>{'fail' if failed else 'pass'}</verdict>\n<confidence>{confidence}</confidence>\n"
                f"<feedback>{feedback}</feedback>")

    def _flags(self, call: _Call, stated: str) -> bool:
        if call.is_right(stated):
            return call.rng.random() < self.false_alarm
        return call.rng.random() < self.detect

    def _revise(self, call: _Call) -> str:
        stated = answer_in(call.input)
        feedback = call.sections.get(SECTION_FEEDBACK, "").lower()
        flagged = any(w in feedback for w in ("wrong", "fail", "error", "incorrect", "does not match"))
        if call.is_right(stated):
            answer = stated
        else:
            answer = call.gold if call.rng.random() < (self.fix if flagged else self.fix / 3) else stated
        if call.is_code:
            return f"<solution>\n```python\n{call.program(answer)}\n```\n</solution>"
        return f"<solution>{answer}</solution>"

    def _scensemble(self, call: _Call) -> str:
        stated = [answer_in(c) for c in call.candidates()]
        if not stated:
            return "<choice>A</choice>"
        index = call.vote(stated)
        return f"<reasoning>Most candidates agree on {stated[index]}.</reasoning>\n<choice>{chr(65 + index)}</choice>"

    def _aggregate(self, call: _Call) -> str:
        stated = [answer_in(c) for c in call.candidates()] or [answer_in(call.input)]
        return f"<reasoning>Majority answer.</reasoning>\n<answer>{stated[call.vote(stated)]}</answer>"

    def _format(self, call: _Call) -> str:
        stated = answer_in(call.input)
        if call.is_code:
            return f"<code>\n{extract_code(call.input) or stated}\n</code>"
        return f"<answer>{stated}</answer>"


class _Call:
    """One simulated operator call: what the simulator knows and its random draws (the argument of
    a ``SimulatedExecutor(handlers=...)`` function, exported as ``SimulatedCall``)."""

    def __init__(self, operator: str, question: str, gold: str, sections: dict[str, str],
                 rng: random.Random) -> None:
        self.operator = operator
        self.question = question
        self.gold = gold
        self.sections = sections
        self.rng = rng
        self.input = sections.get(SECTION_INPUT, "")
        entry = _ENTRY_RE.search("\n".join(sections.values()))
        self.entry_point = entry.group(1) if entry else None
        self.is_code = self.entry_point is not None

    def is_right(self, stated: str) -> bool:
        if self.is_code:
            return stated.strip() == self.gold.strip()
        return answer_key(stated) == answer_key(self.gold)

    def wrong(self) -> str:
        """A near-miss wrong answer (a few distinct values, so wrong branches may agree)."""
        if self.is_code:
            return f"def {self.entry_point}(*args, **kwargs):\n    return None"
        offset = self.rng.choice((-2, -1, 1, 2, 10))
        try:
            value = float(self.gold.replace(",", ""))
        except ValueError:
            return f"wrong answer {abs(offset)}"
        number = value + offset
        return str(int(number)) if number == int(number) else str(number)

    def program(self, answer: str) -> str:
        if self.is_code:
            return answer
        return f"def solve():\n    return {answer!r}"

    def candidates(self) -> list[str]:
        block = self.sections.get(SECTION_CANDIDATES) or self.sections.get(SECTION_INPUT, "")
        parts = _CANDIDATE_RE.split(block)
        return [p.strip() for p in parts[1:]] if len(parts) > 1 else ([block] if block else [])

    def vote(self, stated: list[str]) -> int:
        counts = Counter(answer_key(s) for s in stated)
        best = max(counts.values())
        tied = [i for i, s in enumerate(stated) if counts[answer_key(s)] == best]
        winners = list(dict.fromkeys(answer_key(stated[i]) for i in tied))
        chosen = self.rng.choice(winners)
        return next(i for i in tied if answer_key(stated[i]) == chosen)


SimulatedCall = _Call
"""What a ``SimulatedExecutor.handlers`` function receives."""
