"""Registering user operators: a class, a function, or any LangChain runnable.

>>> from flowsteer.operators import OperatorResult, Role, register_operator
>>> @register_operator(name="UnitCheck", role=Role.CHECKING, description="Checks the answer has units.")
... def unit_check(call):
...     ok = any(u in call.input for u in ("kg", "m", "s"))
...     return OperatorResult(output=call.input, verdict=ok, feedback="" if ok else "add units")

Once registered, the name is valid in the DSL, in validation, in the director's prompt and in the
reward's role counts, and the :class:`~flowsteer.workflow.interpreter.Interpreter` runs it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from flowsteer.errors import UserError
from flowsteer.operators.base import Operator, OperatorCall, OperatorContext, OperatorResult, Role
from flowsteer.operators.llm import LLMOperator, reply_text, usage_of
from flowsteer.operators.parsing import primary
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec, default_registry

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["register_operator", "operator_spec", "FunctionOperator", "RunnableOperator"]

T = TypeVar("T")


class FunctionOperator(Operator):
    """An operator backed by a plain (sync or async) function.

    The function takes ``(call)``, ``(call, context)`` (the :class:`OperatorContext`, for
    access to the executor model and sandbox) or ``(call, context, config)`` (also the run's
    ``RunnableConfig``: pass it to ``context.model.invoke(..., config=config)`` so the model calls
    nest under the operator's node in traces) and returns a string (the output) or an
    :class:`OperatorResult`. Sync functions run in a worker thread.
    """

    def __init__(self, context: OperatorContext, fn: Callable[..., Any], name: str) -> None:
        super().__init__(context)
        self.fn = fn
        self.name = name
        params = inspect.signature(fn).parameters
        self._config_by_name = "config" in params  # fn(call, config=...) or fn(call, context, config=...)
        positional = [n for n, p in params.items() if n != "config"
                      and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._positional = 3 if len(positional) >= 3 else min(len(positional), 2)

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        args: tuple[Any, ...] = (call, self.context, config)[: max(1, self._positional)]
        kwargs = {"config": config} if self._config_by_name else {}
        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(self.fn, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        return coerce_result(value, call, self.name)


class RunnableOperator(Operator):
    """An operator backed by a LangChain runnable.

    The runnable receives a dict ``{"question", "kind", "input", "prompt", "feedback",
    "entry_point", "public_tests"}`` (``input`` as text, tuples joined by blank lines; the raw
    value in ``"value"``) and may return a string, a chat message, a dict with ``output`` (and
    optionally ``verdict``/``feedback``) or an :class:`OperatorResult`. ``config`` is forwarded,
    so its callbacks see the runnable's inner calls.
    """

    def __init__(self, context: OperatorContext, runnable: Any, name: str) -> None:
        super().__init__(context)
        self.runnable = runnable
        self.name = name

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        text = call.input if isinstance(call.input, str) else "\n\n".join(call.input or ())
        payload = {
            "question": call.task.question, "kind": call.task.kind, "input": text, "value": call.input,
            "prompt": call.prompt, "feedback": call.feedback or "", "entry_point": call.task.entry_point,
            "public_tests": call.task.public_tests,
        }
        value = await self.runnable.ainvoke(payload, config=config)
        return coerce_result(value, call, self.name)


def coerce_result(value: Any, call: OperatorCall, name: str) -> OperatorResult:
    """A user function's return value as an :class:`OperatorResult`."""
    if isinstance(value, OperatorResult):
        return value
    if isinstance(value, str):
        return OperatorResult(output=value)
    if hasattr(value, "content"):  # a chat message
        return OperatorResult(output=reply_text(value), usage=usage_of(value))
    if isinstance(value, Mapping) and "output" in value:
        verdict = value.get("verdict")
        return OperatorResult(output=str(value["output"]), verdict=None if verdict is None else bool(verdict),
                              feedback=value.get("feedback"),
                              data={k: v for k, v in value.items() if k not in ("output", "verdict", "feedback")})
    return OperatorResult(output=primary(call.input), error=f"operator {name} returned {type(value).__name__}; "
                          "return a str, a dict with 'output', or an OperatorResult")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _is_runnable(obj: Any) -> bool:
    from langchain_core.runnables import Runnable

    return isinstance(obj, Runnable)


def operator_spec(
    target: Any,
    *,
    name: str | None = None,
    role: Role | str = Role.SOLVING,
    description: str | None = None,
    inputs: tuple[str, ...] = ("task", "input", "prompt"),
    outputs: tuple[str, ...] = ("output",),
    usage_hint: str = "",
    runs_code: bool = False,
) -> OperatorSpec:
    """Build (without registering) the :class:`OperatorSpec` for a class, function or runnable."""
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"role {role!r} is not valid; use one of {[r.value for r in Role]}") from None
    if isinstance(target, type) and issubclass(target, Operator):
        op_name = name or target.name or target.__name__
        if issubclass(target, LLMOperator):
            target.checked_prompt(op_name)  # a missing prompt fails now, not at the first run
        factory = _class_factory(target, op_name)
    elif _is_runnable(target):
        if not name:
            raise UserError("registering a runnable needs name='MyOperator' (runnables have no stable name)")
        op_name = name
        factory = lambda context: RunnableOperator(context, target, op_name)  # noqa: E731
    elif callable(target) and not isinstance(target, type):
        op_name = name or _camel(getattr(target, "__name__", ""))
        factory = lambda context: FunctionOperator(context, target, op_name)  # noqa: E731
    else:
        raise UserError(f"cannot register {target!r}: give an Operator subclass, a function "
                        "(call) -> str | OperatorResult, or a LangChain Runnable")
    text = description or _first_doc_line(target)
    if not text:
        raise UserError(f"operator {op_name!r}: pass description='one line for the director' or add a docstring")
    module = getattr(target, "__module__", "") if isinstance(target, type) or inspect.isroutine(target) else ""
    return OperatorSpec(op_name, role, text, factory, inputs=inputs, outputs=outputs, runs_code=runs_code,
                        usage_hint=usage_hint, tags=frozenset({"user"}), module=module or "")


def _class_factory(cls: type[Operator], op_name: str) -> Callable[[OperatorContext], Operator]:
    def make(context: OperatorContext) -> Operator:
        op = cls(context)
        if op.name != op_name:
            op.name = op_name
        return op

    return make


def register_operator(
    target: Any = None,
    *,
    name: str | None = None,
    role: Role | str = Role.SOLVING,
    description: str | None = None,
    registry: OperatorRegistry | None = None,
    replace_existing: bool = False,
    **spec_fields: Any,
) -> Any:
    """Register a user operator into ``registry`` (default: :func:`default_registry`).

    Use it as a decorator (``@register_operator(name=..., role=..., description=...)``) on an
    :class:`Operator` subclass or a function ``(call) -> str | OperatorResult``, or call it
    directly with a LangChain runnable: ``register_operator(chain, name="Summarise", role="solving",
    description="...")``. Returns the target unchanged; the spec is ``registry.get(name)``.
    Extra keyword arguments (``inputs``, ``outputs``, ``usage_hint``, ``runs_code``) go into the
    :class:`OperatorSpec`.
    """

    def decorate(obj: T) -> T:
        spec = operator_spec(obj, name=name, role=role, description=description, **spec_fields)
        (registry if registry is not None else default_registry()).register(spec, replace=replace_existing)
        return obj

    if target is None:
        return decorate
    return decorate(target)

