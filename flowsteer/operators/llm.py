"""The shared machinery of LLM-backed operators: prompt files, message layout, model calls.

Every LLM operator sends two messages: a system prompt loaded from
``flowsteer/operators/prompts/<file>.txt`` (first line ``FlowSteer operator: <Name>``) and a user
message made of ``## `` sections (task, answer conventions, director guidance, input, feedback).
The section titles are constants here so fakes such as
:class:`~flowsteer.testing.SimulatedExecutor` can read the same layout the operators write.
"""

from __future__ import annotations

import logging
import sys
from abc import abstractmethod
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from langchain_core.runnables.config import var_child_runnable_config

from flowsteer.errors import UserError
from flowsteer.operators.base import Operator, OperatorCall, OperatorResult, Usage
from flowsteer.operators.parsing import candidates

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableConfig

__all__ = [
    "LLMOperator",
    "load_prompt",
    "prompt_source",
    "operator_header",
    "reply_text",
    "usage_of",
    "SECTION_TASK",
    "SECTION_CONVENTIONS",
    "SECTION_GUIDANCE",
    "SECTION_INPUT",
    "SECTION_CANDIDATES",
    "SECTION_FEEDBACK",
    "SECTION_PREVIOUS_ATTEMPT",
]

logger = logging.getLogger(__name__)

SECTION_TASK = "## Task"
SECTION_CONVENTIONS = "## Answer conventions"
SECTION_GUIDANCE = "## Guidance from the director"
SECTION_INPUT = "## Input (the previous step's result)"
SECTION_CANDIDATES = "## Candidates"
SECTION_FEEDBACK = "## Feedback from the last check"
SECTION_PREVIOUS_ATTEMPT = "## Your previous attempt and its error"

_HEADER_PREFIX = "FlowSteer operator:"
_MAX_INPUT_CHARS = 6000
"""Longer inputs keep their head and tail: models need the end (the answer) more than the middle."""


def operator_header(name: str) -> str:
    """The first line of every LLM operator's system prompt."""
    return f"{_HEADER_PREFIX} {name}"


BUILTIN_PROMPTS = "flowsteer.operators.prompts"


@lru_cache(maxsize=128)
def load_prompt(filename: str, package: str = BUILTIN_PROMPTS) -> str:
    """The text of ``<filename>`` in the package ``package`` (package data read with
    :mod:`importlib.resources`; default: flowsteer's own ``flowsteer/operators/prompts``)."""
    try:
        path = resources.files(package).joinpath(filename)
    except ModuleNotFoundError:
        raise UserError(f"operator prompt package {package!r} cannot be imported; set prompt_package to "
                        "an importable package that holds the prompt file") from None
    if not path.is_file():
        raise UserError(f"operator prompt file {filename!r} is missing from package {package!r} "
                        f"({path}); ship it as package data there or set prompt_package")
    return path.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=256)
def prompt_source(cls: type) -> tuple[str, str]:
    """``(package, filename)`` of an LLM operator class's system prompt: its ``prompt_package``,
    else the package of the module that defines it when the file is there, else flowsteer's own."""
    filename = getattr(cls, "prompt_file", "")
    explicit = getattr(cls, "prompt_package", None)
    if explicit:
        return explicit, filename
    module = cls.__module__
    package = module if getattr(sys.modules.get(module), "__path__", None) else module.rpartition(".")[0]
    if package and not package.startswith("flowsteer"):
        try:
            if resources.files(package).joinpath(filename).is_file():
                return package, filename
        except (ModuleNotFoundError, TypeError):
            pass
    return BUILTIN_PROMPTS, filename


def reply_text(message: Any) -> str:
    """The text of a chat model reply (string content or a list of content blocks)."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def usage_of(message: Any) -> Usage:
    """Token usage from a reply's ``usage_metadata`` (zeros when the model reports none)."""
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)), 1)


def _clip(text: str, limit: int = _MAX_INPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n...[{len(text) - limit} characters omitted]...\n{text[-half:]}"


def task_conventions(call: OperatorCall) -> str:
    """The per-task-kind answer conventions (``kind_<kind>.txt``), with the entry point filled in."""
    text = load_prompt(f"kind_{call.task.kind}.txt")
    return text.replace("{entry_point}", call.task.entry_point or "the requested function")


def render_candidates(call: OperatorCall) -> str:
    """Candidates labelled ``Candidate A:``, ``Candidate B:``, ... (for ensemblers)."""
    options = candidates(call.input)
    limit = max(800, _MAX_INPUT_CHARS // max(1, len(options)))
    return "\n\n".join(f"Candidate {chr(ord('A') + i)}:\n{_clip(o.strip(), limit)}" for i, o in enumerate(options))


class LLMOperator(Operator):
    """Base of the operators that ask the executor chat model once and parse its reply.

    Subclasses set :attr:`name` and :attr:`prompt_file` and implement :meth:`parse`; they may
    override :meth:`sections` to change what the user message carries.
    """

    prompt_file: str = ""
    """System prompt file name (package data; see :attr:`prompt_package`)."""
    prompt_package: str | None = None
    """Package that holds :attr:`prompt_file` (None: the package of the module defining the class
    when the file is there, else ``flowsteer.operators.prompts``)."""
    takes_candidates: bool = False
    """Render the input as labelled candidates (ensemblers) instead of one text."""

    def system_prompt(self, call: OperatorCall) -> str:
        """The system prompt (begins with ``FlowSteer operator: <Name>``)."""
        return type(self).checked_prompt(self.name)

    @classmethod
    def checked_prompt(cls, name: str) -> str:
        """The system prompt text; a :class:`UserError` when the file cannot be read or does not
        begin with ``FlowSteer operator: <name>`` (registration calls it, so that fails early)."""
        if not cls.prompt_file:
            raise UserError(f"LLM operator {name!r} sets no prompt_file: name its system prompt file")
        package, filename = prompt_source(cls)
        text = load_prompt(filename, package)
        if not text.startswith(operator_header(name)):
            raise UserError(f"prompt {filename} (package {package}) must begin with {operator_header(name)!r}")
        return text

    def sections(self, call: OperatorCall) -> list[tuple[str, str]]:
        """``(title, body)`` pairs of the user message; empty bodies are dropped."""
        out = [(SECTION_TASK, call.task.question.strip()), (SECTION_CONVENTIONS, task_conventions(call))]
        if call.prompt.strip():
            out.append((SECTION_GUIDANCE, call.prompt.strip()))
        if self.takes_candidates:
            out.append((SECTION_CANDIDATES, render_candidates(call)))
        elif isinstance(call.input, tuple):
            out.append((SECTION_INPUT, render_candidates(call)))
        elif call.input and call.input.strip():
            out.append((SECTION_INPUT, _clip(call.input.strip())))
        if call.feedback and call.feedback.strip():
            out.append((SECTION_FEEDBACK, _clip(call.feedback.strip(), 2000)))
        return out

    def messages(self, call: OperatorCall, extra: list[tuple[str, str]] | None = None) -> list[BaseMessage]:
        from langchain_core.messages import HumanMessage, SystemMessage

        parts = [*self.sections(call), *(extra or [])]
        user = "\n\n".join(f"{title}\n{body}" for title, body in parts if body.strip())
        return [SystemMessage(self.system_prompt(call)), HumanMessage(user)]

    async def ask(self, messages: list[BaseMessage], config: RunnableConfig | None) -> tuple[str, Usage]:
        """One executor call; returns the reply text and its usage. Backend errors propagate
        (the interpreter turns them into an :class:`~flowsteer.errors.OperatorError` naming the node)."""
        if config is not None and config is var_child_runnable_config.get():
            # already the context's config (a LangGraph node's), where the model reads it; passed
            # as well, the call would copy it (its callbacks) a second time
            config = None
        reply = await self.context.model.ainvoke(messages, config=config)
        return reply_text(reply), usage_of(reply)

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        text, usage = await self.ask(self.messages(call), config)
        result = self.parse(text, call)
        if result.error:
            logger.debug("%s (%s): %s", self.name, call.node_id, result.error)
        return _with_usage(result, usage, text)

    @abstractmethod
    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        """Turn the model's reply into a result; a missing field is ``OperatorResult(error=...)``."""


def _with_usage(result: OperatorResult, usage: Usage, raw: str) -> OperatorResult:
    data = dict(result.data)
    data.setdefault("raw", raw)
    return replace(result, usage=result.usage + usage, data=data)
