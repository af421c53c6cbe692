"""A ``ChatOpenAI`` for vLLM servers that reports the sampled tokens, as the trainer needs them.

vLLM answers ``return_token_ids`` with the prompt's token ids (``prompt_token_ids``) and each
choice's generated ids (``token_ids``), and ``logprobs`` with one log-prob per generated token. This
model asks for both on every call and puts them in ``AIMessage.response_metadata["flowsteer_tokens"]``
(``{"prompt_ids", "completion_ids", "logprobs"}``), the contract the director's
:class:`~flowsteer.director.TokenRecord` reads. Per-call ``extra_body`` (e.g. the action grammar's
``structured_outputs``) is merged with the model's own rather than replacing it.

The log-probs are vLLM's default ``raw_logprobs``: the model's distribution before temperature and
top-p, so a trainer using them must recompute behaviour log-probs at its temperature
(``loss.old_logprobs: recompute``, the default).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flowsteer.errors import MissingExtraError

__all__ = ["vllm_chat_model", "tokens_from_choice"]

logger = logging.getLogger(__name__)


def tokens_from_choice(choice: dict[str, Any], prompt_ids: list[int] | None) -> dict[str, list[Any]] | None:
    """``flowsteer_tokens`` from one choice of a vLLM chat response (None when ids are missing)."""
    content = ((choice.get("logprobs") or {}).get("content")) or []
    completion = choice.get("token_ids")
    if completion is None:  # fall back on "token_id:N" strings (return_tokens_as_token_ids)
        parsed = [str(c.get("token", "")).partition("token_id:")[2] for c in content]
        completion = [int(p) for p in parsed] if parsed and all(p.isdigit() for p in parsed) else None
    if prompt_ids is None or completion is None:
        return None
    logprobs = [float(c.get("logprob", 0.0)) for c in content]
    if len(logprobs) != len(completion):
        logger.warning("vLLM returned %d log-probs for %d tokens; dropping the token record",
                       len(logprobs), len(completion))
        return None
    return {"prompt_ids": list(prompt_ids), "completion_ids": list(completion), "logprobs": logprobs}


def vllm_chat_model(model: str, base_url: str, *, api_key: str = "EMPTY", **kwargs: Any) -> Any:
    """A ``ChatOpenAI`` over the vLLM server at ``base_url`` that reports token ids and log-probs.

    ``kwargs`` go to ``ChatOpenAI`` (``temperature``, ``top_p``, ``max_tokens``, ``extra_body``, ...).
    """
    try:
        import openai
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise MissingExtraError("langchain-openai", "local", "Talking to a vLLM server") from None

    class VLLMChatOpenAI(ChatOpenAI):
        """ChatOpenAI that asks vLLM for token ids and log-probs and reports them."""

        loop_id: int | None = None
        """The event loop the async client belongs to (see :meth:`_agenerate`)."""

        async def _agenerate(self, *args: Any, **kw: Any) -> Any:
            # langchain-openai shares one cached async HTTP client per base URL across event loops,
            # so the second asyncio.run() (the next Director.run, the next training step) fails
            # with "Event loop is closed". Give every event loop its own client.
            loop = id(asyncio.get_running_loop())
            if loop != self.loop_id:
                self.root_async_client = openai.AsyncOpenAI(
                    api_key=api_key, base_url=self.openai_api_base, max_retries=int(self.max_retries or 0),
                    timeout=self.request_timeout)  # type: ignore[arg-type]
                self.async_client = self.root_async_client.chat.completions
                self.loop_id = loop
            return await super()._agenerate(*args, **kw)

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kw: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kw)
            extra = {**(self.extra_body or {}), **(kw.get("extra_body") or {}), "return_token_ids": True}
            payload["extra_body"] = extra
            payload["logprobs"] = True
            return payload

        def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> Any:
            result = super()._create_chat_result(response, generation_info)
            data = response if isinstance(response, dict) else response.model_dump()
            prompt_ids = data.get("prompt_token_ids")
            for generation, choice in zip(result.generations, data.get("choices") or [], strict=False):
                tokens = tokens_from_choice(choice, prompt_ids)
                if tokens is not None:
                    generation.message.response_metadata["flowsteer_tokens"] = tokens
            return result

    return VLLMChatOpenAI(model=model, base_url=base_url, api_key=api_key,  # type: ignore[arg-type]
                          max_retries=1, **kwargs)
