"""A persistent cache of executor chat-model calls, so a re-run is cheap and a crash resumes.

:class:`CachedChatModel` wraps any LangChain chat model. A call's key is the wrapped model's
identity, the messages, the stop words and the call's keyword arguments, plus the *occurrence* of
that exact request within the current evaluation item: the second identical request of an item
(two identical parallel branches, the k samples of self-consistency) is a different entry from the
first, so sampling stays sampling, and a re-run replays the same sequence. Entries live in a SQLite
file (:class:`CallStore`) committed per call, so what a killed run already paid for is kept.

Why a wrapper and not ``langchain_core.caches.BaseCache``: a ``BaseCache`` is keyed by the prompt
and the model's params only, so repeated identical requests would all get the first sample, and
setting ``cache=`` would mutate the user's model object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from flowsteer.errors import UserError

__all__ = ["CallStore", "CachedChatModel", "CallStats", "model_identity", "item_scope"]

logger = logging.getLogger(__name__)

_DROPPED_METADATA = ("flowsteer_tokens",)
"""Response metadata not worth keeping for an executor reply (token ids are only for training)."""


@dataclass
class CallStats:
    """Cache hits and misses of one evaluation item (or of a whole run)."""

    hits: int = 0
    misses: int = 0
    occurrences: Counter[str] = field(default_factory=Counter)
    """How often each request key was seen (numbers the repeats of identical requests)."""


_ITEM: ContextVar[CallStats | None] = ContextVar("flowsteer_eval_item", default=None)


@contextlib.contextmanager
def item_scope() -> Iterator[CallStats]:
    """Count cache hits/misses and number repeated requests per item (asyncio tasks started inside
    inherit the scope, so parallel branches count too)."""
    stats = CallStats()
    token = _ITEM.set(stats)
    try:
        yield stats
    finally:
        _ITEM.reset(token)


class CallStore:
    """Key -> serialised reply, in a SQLite file (WAL, committed per entry; thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a usable call cache ({exc}); delete it or choose another "
                            "--out directory") from exc

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, default=str)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", (key, text))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _stable(value: Any) -> Any:
    """A JSON-ready, run-independent view of a parameter (callables by name, objects by type)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if callable(value):
        return f"<callable {getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}>"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def model_identity(model: BaseChatModel) -> str:
    """What makes two chat models answer alike: the class, its ``_identifying_params``, and (when
    those are empty) the fields the class adds to ``BaseChatModel`` (e.g. a fake's seed)."""
    params = dict(model._identifying_params)
    if not params:
        own = set(type(model).model_fields) - set(BaseChatModel.model_fields)
        params = {name: getattr(model, name) for name in sorted(own)}
    payload = {"class": f"{type(model).__module__}.{type(model).__qualname__}", "type": model._llm_type,
               "params": _stable(params)}
    return json.dumps(payload, sort_keys=True)


def _message_view(message: BaseMessage) -> dict[str, Any]:
    return {"type": message.type, "content": _stable(message.content),
            "tool_calls": _stable(getattr(message, "tool_calls", None) or [])}


def _serialise(message: BaseMessage) -> dict[str, Any]:
    metadata = {k: v for k, v in dict(message.response_metadata or {}).items() if k not in _DROPPED_METADATA}
    return {"content": message.content, "usage_metadata": getattr(message, "usage_metadata", None),
            "response_metadata": metadata, "additional_kwargs": dict(message.additional_kwargs or {})}


def _restore(value: dict[str, Any]) -> ChatResult:
    metadata = {**value.get("response_metadata", {}), "flowsteer_cached": True}
    message = AIMessage(content=value["content"], usage_metadata=value.get("usage_metadata"),
                        response_metadata=metadata, additional_kwargs=value.get("additional_kwargs", {}))
    return ChatResult(generations=[ChatGeneration(message=message)])


class CachedChatModel(BaseChatModel):
    """``inner`` with every call looked up in ``store`` first (see the module docstring).

    Replayed replies carry their original ``usage_metadata`` (the tokens the call cost when it was
    made) and ``response_metadata["flowsteer_cached"] = True``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    store: Any = Field(exclude=True)
    """A :class:`CallStore`."""
    identity: str = ""
    """Overrides :func:`model_identity` (e.g. the backend spec string)."""
    _run: CallStats = PrivateAttr(default_factory=CallStats)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _pending: dict[str, Any] = PrivateAttr(default_factory=dict)
    """Key -> future of a call in flight: a concurrent identical request waits for it instead of
    paying for the same (greedy) answer twice."""

    def __init__(self, inner: BaseChatModel, store: CallStore, *, identity: str | None = None, **kwargs: Any) -> None:
        super().__init__(inner=inner, store=store, identity=identity or model_identity(inner),  # type: ignore[call-arg]
                         **kwargs)

    @property
    def _llm_type(self) -> str:
        return "flowsteer-cached"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"inner": self.identity}

    @property
    def hits(self) -> int:
        """Calls answered from the store since this wrapper was made."""
        return self._run.hits

    @property
    def misses(self) -> int:
        """Calls that reached the wrapped model since this wrapper was made."""
        return self._run.misses

    def key(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> str:
        """The store key of this request (its occurrence number within the item included)."""
        request = json.dumps({"model": self.identity, "messages": [_message_view(m) for m in messages],
                              "stop": stop, "params": _stable(kwargs)}, sort_keys=True)
        digest = hashlib.sha256(request.encode()).hexdigest()
        scope = _ITEM.get() or self._run
        with self._lock:
            occurrence = scope.occurrences[digest]
            scope.occurrences[digest] += 1
        return f"{digest}:{occurrence}"

    def _count(self, hit: bool) -> None:
        item = _ITEM.get()
        with self._lock:
            for stats in (self._run,) if item is None else (self._run, item):
                if hit:
                    stats.hits += 1
                else:
                    stats.misses += 1

    def _lookup(self, key: str) -> ChatResult | None:
        value = self.store.get(key)
        self._count(value is not None)
        return _restore(value) if value is not None else None

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        key = self.key(messages, stop, kwargs)
        stored = self.store.get(key)
        waiting = self._pending.get(key) if stored is None else None
        self._count(stored is not None or waiting is not None)
        if stored is not None:
            return _restore(stored)
        if waiting is not None:  # the same request is being answered right now: share its reply
            return _restore(await asyncio.shield(waiting))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            # the wrapped model's own _agenerate under this call's run manager: one traced run, not two
            result = await self.inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
            value = _serialise(result.generations[0].message)
            self.store.put(key, value)
            future.set_result(value)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a request nobody waits for logs no warning
            raise
        finally:
            self._pending.pop(key, None)
        return result

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        key = self.key(messages, stop, kwargs)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        result = self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        self.store.put(key, _serialise(result.generations[0].message))
        return result
