"""``LocalChatModel``: a LangChain chat model over a local transformers causal LM (CPU or GPU).

Why not ``langchain-huggingface``'s ``ChatHuggingFace``: it returns no token counts, ignores
``stop=``, runs ``.batch`` one thread per message instead of batching, raises on ``.ainvoke`` (a
problem inside async LangGraph graphs), cannot take a per-call logits processor and does not report
the sampled token ids and log-probs. Those are exactly what the director and the trainer need, so
this class does them itself (see ``_sampling.py`` for the decoding loop).

Every call (sync or async, from any thread) goes through one worker thread that owns the model:
calls that arrive together with the same decoding settings are run as one left-padded batch, so
``.batch``, ``.abatch`` and many concurrent episodes all get real batching, and the model is never
used by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import ConfigDict, Field, PrivateAttr

from flowsteer.errors import UserError
from flowsteer.models._sampling import PrefixCache, Sampled, SamplingParams, sample_batch

__all__ = ["LocalChatModel", "LogitsProcessorFactory", "messages_to_dicts", "BASE_WEIGHTS"]

logger = logging.getLogger(__name__)

LogitsProcessorFactory = Callable[[list[int], list[BaseMessage]], Any]
"""``(prompt_ids, messages) -> LogitsProcessor | None``: builds one row's logits processor (e.g. the
action grammar for this canvas state). The processor is called as ``proc(ids[1, T], scores[1, V])``."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "chat": "user"}
_seed_counter = itertools.count(1)


def messages_to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the ``{"role", "content"}`` dicts chat templates expect."""
    out = []
    for m in messages:
        role = getattr(m, "role", None) if m.type == "chat" else _ROLES.get(m.type, m.type)
        content = m.content if isinstance(m.content, str) else str(m.content)
        out.append({"role": role or "user", "content": content})
    return out


@dataclass
class _Request:
    prompt_ids: list[int]
    messages: list[BaseMessage]
    params: SamplingParams
    factory: LogitsProcessorFactory | None
    adapter: str | None = None
    future: Future = field(default_factory=Future)

    def batch_key(self) -> tuple[Any, ...]:
        return (self.params.max_new_tokens, self.params.temperature, self.params.top_p, self.params.stop,
                self.adapter)


BASE_WEIGHTS = "__base__"
"""``LocalChatModel.adapter`` value that runs the base weights with every LoRA adapter off."""


@contextlib.contextmanager
def _adapter_active(model: Any, adapter: str | None) -> Iterator[None]:
    """Run with the named LoRA adapter of a peft model, with every adapter off (:data:`BASE_WEIGHTS`)
    or as the model is (``None``: e.g. a trainer's policy with its own active adapter)."""
    if adapter is None or (adapter == BASE_WEIGHTS and not hasattr(model, "peft_config")):
        yield
        return
    if not hasattr(model, "peft_config"):
        raise UserError(f"adapter {adapter!r} was asked for but the model has no LoRA adapters")
    if adapter == BASE_WEIGHTS:
        with model.disable_adapter():
            yield
        return
    if adapter not in model.peft_config:
        raise UserError(f"the model has no adapter {adapter!r}; it has {sorted(model.peft_config)}")
    if model.active_adapter != adapter:
        model.set_adapter(adapter)
    yield


class _Engine:
    """One worker thread that owns a model: it groups pending calls into batches and runs them."""

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int, batch_wait_s: float,
                 prefix_cache_entries: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._pending: list[_Request] = []
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batch_sizes: list[int] = []
        self.prefix_cache = PrefixCache(entries=prefix_cache_entries)
        # keys and values depend on the adapter: one prefix cache per adapter (None = the base)
        self._prefix_caches: dict[str | None, PrefixCache] = {None: self.prefix_cache}

    def submit(self, request: _Request) -> Future:
        with self._cv:
            self._pending.append(request)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="flowsteer-local-lm", daemon=True)
                self._worker.start()
            self._cv.notify_all()
        return request.future

    def _take_batch(self) -> list[_Request] | None:
        with self._cv:
            if not self._pending:
                self._worker = None
                return None
            # wait until calls stop arriving (or the batch is full) so concurrent callers share it
            seen = -1
            while len(self._pending) != seen and len(self._pending) < self.max_batch_size:
                seen = len(self._pending)
                self._cv.wait(self.batch_wait_s)
            key = self._pending[0].batch_key()
            batch = [r for r in self._pending if r.batch_key() == key][: self.max_batch_size]
            for r in batch:
                self._pending.remove(r)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                results = self._run_batch(batch)
            except BaseException as exc:  # hand the failure to every caller, keep serving
                for r in batch:
                    r.future.set_exception(exc)
                continue
            for r, res in zip(batch, results, strict=True):
                r.future.set_result(res)

    def _run_batch(self, batch: list[_Request]) -> list[Sampled]:
        import torch

        self.batch_sizes.append(len(batch))
        processors = [r.factory(list(r.prompt_ids), r.messages) if r.factory else None for r in batch]
        generators = None
        if batch[0].params.temperature > 0:
            generators = []
            for r in batch:
                g = torch.Generator(device=next(self.model.parameters()).device)
                g.manual_seed(r.params.seed if r.params.seed is not None else _fresh_seed())
                generators.append(g)
        started = time.perf_counter()
        adapter = batch[0].adapter
        cache = self._prefix_caches.setdefault(adapter, PrefixCache(entries=self.prefix_cache.entries))
        with _adapter_active(self.model, adapter):
            results = sample_batch(self.model, self.tokenizer, [r.prompt_ids for r in batch], batch[0].params,
                                   processors, self._eos_ids(), generators, cache)
        logger.debug("generated a batch of %d in %.2fs", len(batch), time.perf_counter() - started)
        return results

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return sorted(ids)


class LocalChatModel(BaseChatModel):
    """A chat model over a transformers ``model`` + ``tokenizer`` with token-level records.

    The reply is an ``AIMessage`` with real ``usage_metadata`` and
    ``response_metadata["flowsteer_tokens"] = {"prompt_ids", "completion_ids", "logprobs"}``, the
    log-probs being those of the distribution each token was drawn from (after the logits processor,
    temperature and top-p; for greedy decoding, the processed model distribution at temperature 1).
    Per-call overrides: ``max_new_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop`` and
    ``logits_processor_factory`` (pass them to ``invoke`` or ``bind``).
    """

    constraint_engine: ClassVar[str] = "logits_processor"
    """Takes an action grammar as a ``logits_processor_factory`` call kwarg (see
    :func:`flowsteer.models.calls.constraint_engine`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = Field(exclude=True)
    """A transformers causal LM (``AutoModelForCausalLM``), already on its device."""
    tokenizer: Any = Field(exclude=True)
    """Its tokenizer; must have a chat template."""
    model_name: str = "local"
    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 = greedy."""
    top_p: float = 1.0
    seed: int | None = None
    """Seed of each call's sampler (None: a fresh seed per call)."""
    stop: list[str] | None = None
    logits_processor_factory: LogitsProcessorFactory | None = Field(default=None, exclude=True)
    max_batch_size: int = 8
    batch_wait_s: float = 0.01
    """How long the worker waits for more concurrent calls before running a batch."""
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    prefix_cache_entries: int = 0
    """Keep the KV caches of this many recent prompts and reuse a shared prefix (a director's system
    prompt) for single-prompt calls. 0 = off. Only for fixed weights: while training updates them,
    leave it off or call ``engine.prefix_cache.clear()`` after each update."""

    adapter: str | None = None
    """LoRA adapter of a peft ``model`` used for this model's calls: a name, :data:`BASE_WEIGHTS`
    (every adapter off) or None (the model as it is). Copies made with :meth:`share` can use other
    adapters over the same weights."""
    director_adapter: str | None = None
    """Adapter a :class:`~flowsteer.director.Director` uses when it is given this model
    (:meth:`as_director`); the embedded model ships a trained one."""

    _engine: _Engine | None = PrivateAttr(default=None)

    def director_config(self, **overrides: Any) -> Any:
        """The director settings :attr:`director_adapter` was trained with (the small-model preset
        with the action grammar), or None when this model has no trained director."""
        if self.director_adapter is None:
            return None
        from flowsteer.director import DirectorConfig

        return DirectorConfig.small_model(constrained=True, **overrides)

    def as_director(self) -> LocalChatModel:
        """This model as the Flow-Director sees it: with :attr:`director_adapter` on, when set."""
        if self.director_adapter is None or self.adapter == self.director_adapter:
            return self
        return self.share(adapter=self.director_adapter)

    @property
    def _llm_type(self) -> str:
        return "flowsteer-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p,
                **({"adapter": self.adapter} if self.adapter else {})}

    @property
    def engine(self) -> _Engine:
        """The worker that owns the weights (shared by copies made with :meth:`share`)."""
        if self._engine is None:
            self._engine = _Engine(self.model, self.tokenizer, self.max_batch_size, self.batch_wait_s,
                                   self.prefix_cache_entries)
        return self._engine

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the batches run so far (for tests and benchmarks)."""
        return list(self.engine.batch_sizes)

    def share(self, **overrides: Any) -> LocalChatModel:
        """Another chat model over the same weights and worker with different default settings.

        The director and the executor roles use this so one copy of the model is loaded and every
        call is still serialised through one worker.
        """
        clone = LocalChatModel(model=self.model, tokenizer=self.tokenizer,
                               **{**self.model_dump(exclude={"model", "tokenizer"}),
                                  "logits_processor_factory": self.logits_processor_factory, **overrides})
        clone._engine = self.engine
        return clone

    # -- prompt and params ---------------------------------------------------------------------
    def encode_messages(self, messages: Sequence[BaseMessage]) -> list[int]:
        """The exact prompt token ids: the chat template with the generation prompt, then tokenised."""
        text = self.tokenizer.apply_chat_template(
            messages_to_dicts(messages), tokenize=False, add_generation_prompt=True,
            **self.chat_template_kwargs,
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> SamplingParams:
        stops = tuple(stop if stop is not None else kwargs.get("stop") or self.stop or ())
        return SamplingParams(
            max_new_tokens=int(kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens))),
            temperature=float(kwargs.get("temperature", self.temperature)),
            top_p=float(kwargs.get("top_p", self.top_p)),
            stop=stops,
            seed=kwargs.get("seed", self.seed),
        )

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Request:
        factory = kwargs.get("logits_processor_factory", self.logits_processor_factory)
        return _Request(self.encode_messages(messages), list(messages), self._params(stop, kwargs), factory,
                        self.adapter)

    # -- LangChain interface -------------------------------------------------------------------
    def _result(self, request: _Request, sampled: Sampled) -> ChatResult:
        n_in, n_out = len(request.prompt_ids), len(sampled.completion_ids)
        message = AIMessage(
            content=sampled.text,
            usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out},
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": sampled.finish_reason,
                "flowsteer_tokens": {
                    "prompt_ids": list(request.prompt_ids),
                    "completion_ids": list(sampled.completion_ids),
                    "logprobs": list(sampled.logprobs),
                },
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        return self._result(request, self.engine.submit(request).result())

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        sampled = await asyncio.wrap_future(self.engine.submit(request))
        return self._result(request, sampled)

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Like ``Runnable.batch`` but every input is submitted at once, so they share model batches."""
        configs: list[RunnableConfig] = [
            {**c, "max_concurrency": max(len(inputs), 1)} for c in get_config_list(config, len(inputs))
        ]
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)


def _fresh_seed() -> int:
    return (time.time_ns() + next(_seed_counter) * 7919) % (2**63)
