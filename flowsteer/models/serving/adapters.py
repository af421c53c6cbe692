"""LoRA adapters of a running vLLM server: load, unload, swap in place, and prove which version serves.

Runtime loading needs the server started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (what
:class:`~flowsteer.models.serving.server.VLLMServer` does). A training loop saves each new adapter version
to its own folder and calls :meth:`AdapterClient.refresh`, which swaps the weights in under the same
name (``load_inplace``) and then checks that the server really uses them:

* the adapter list (``/v1/models``) names the adapter with the new folder as its root, and
* a fixed greedy probe prompt's log-probs differ from the previous version's (or, with
  ``expected``, equal the trainer's own log-probs for the same tokens).

A version that cannot be confirmed raises :class:`StaleAdapterError`: rollouts from the old weights
would silently train the policy on someone else's samples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsteer.errors import FlowSteerError, UserError
from flowsteer.models.serving._http import HTTPReply, request_json

__all__ = [
    "PROBE_PROMPT",
    "AdapterClient",
    "AdapterError",
    "Probe",
    "ServedModel",
    "StaleAdapterError",
]

logger = logging.getLogger(__name__)

PROBE_PROMPT = "Design a workflow for: What is 12 + 30?\nAction:"
"""A fixed prompt whose greedy continuation's log-probs fingerprint the weights in use."""


class AdapterError(FlowSteerError):
    """The server refused an adapter operation (the message carries its reply)."""


class StaleAdapterError(AdapterError):
    """The server does not (provably) serve the adapter version just pushed."""


@dataclass(frozen=True)
class ServedModel:
    """One entry of ``/v1/models``: the base model (``parent`` None) or a LoRA adapter."""

    name: str
    root: str | None
    parent: str | None


@dataclass(frozen=True)
class Probe:
    """A greedy continuation of a prompt: its tokens and their log-probs under the served weights."""

    model: str
    prompt: str | tuple[int, ...]
    """The probe prompt: text, or token ids (exact: no tokenizer differences between client and server)."""
    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    token_ids: tuple[int, ...] | None = None

    def difference(self, other: Probe) -> float:
        """Largest log-prob difference over the shared prefix; ``inf`` when the tokens differ."""
        if self.tokens != other.tokens:
            return math.inf
        return max((abs(a - b) for a, b in zip(self.logprobs, other.logprobs, strict=True)), default=0.0)


def _parse_token(token: str) -> int | None:
    head, _, tail = token.partition(":")
    return int(tail) if head == "token_id" and tail.lstrip("-").isdigit() else None


class AdapterClient:
    """Adapter operations against one server (``base_url`` ends in ``/v1``)."""

    def __init__(self, base_url: str, *, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            raise UserError(f"base_url {base_url!r} must end in /v1 (the OpenAI-compatible root)")
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any]) -> HTTPReply:
        reply = request_json("POST", self.base_url + path, body, timeout=self.timeout)
        if reply.status == 0:
            raise AdapterError(f"cannot reach {self.base_url}: {reply.error}")
        return reply

    def served(self) -> dict[str, ServedModel]:
        """Every model the server lists, by name."""
        reply = request_json("GET", self.base_url + "/models", timeout=self.timeout)
        data = reply.json() if reply.ok else None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise AdapterError(f"GET {self.base_url}/models failed: {reply.status} {reply.text[:300] or reply.error}")
        out = {}
        for item in data["data"]:
            if isinstance(item, dict) and item.get("id"):
                out[str(item["id"])] = ServedModel(str(item["id"]), item.get("root"), item.get("parent"))
        return out

    def load(self, name: str, path: str | Path, *, inplace: bool = False) -> None:
        """Load the adapter folder ``path`` as ``name`` (``inplace``: replace the weights of a served name)."""
        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise UserError(f"{folder} has no adapter_config.json: save the adapter with save_pretrained()")
        body: dict[str, Any] = {"lora_name": name, "lora_path": str(folder)}
        if inplace:
            body["load_inplace"] = True
        reply = self._post("/load_lora_adapter", body)
        if not reply.ok:
            hint = ""
            if reply.status == 404:
                hint = " (start the server with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora)"
            raise AdapterError(f"loading adapter {name!r} from {folder} failed: {reply.status} "
                               f"{reply.text[:500]}{hint}")
        logger.info("adapter %s <- %s%s", name, folder, " (in place)" if inplace else "")

    def unload(self, name: str) -> None:
        """Unload the adapter ``name``."""
        reply = self._post("/unload_lora_adapter", {"lora_name": name})
        if not reply.ok:
            raise AdapterError(f"unloading adapter {name!r} failed: {reply.status} {reply.text[:500]}")

    def probe(self, model: str, prompt: str | Sequence[int] = PROBE_PROMPT, *, max_tokens: int = 8) -> Probe:
        """Greedy ``max_tokens`` continuation of ``prompt`` (text or token ids) by ``model`` with each
        token's log-prob."""
        prompt = prompt if isinstance(prompt, str) else tuple(int(i) for i in prompt)
        body = {"model": model, "prompt": prompt if isinstance(prompt, str) else list(prompt), "max_tokens": max_tokens, "temperature": 0.0,
                "logprobs": 1, "return_tokens_as_token_ids": True, "seed": 0}
        reply = self._post("/completions", body)
        data = reply.json() if reply.ok else None
        try:
            logprobs = data["choices"][0]["logprobs"]  # type: ignore[index]
            tokens = tuple(str(t) for t in logprobs["tokens"])
            values = tuple(float(v) for v in logprobs["token_logprobs"])
        except (TypeError, KeyError, IndexError, ValueError):
            raise AdapterError(f"probe of {model!r} failed: {reply.status} {reply.text[:500]}") from None
        ids = [_parse_token(t) for t in tokens]
        token_ids = tuple(i for i in ids if i is not None) if all(i is not None for i in ids) else None
        return Probe(model, prompt, tokens, values, token_ids)

    def verify_listed(self, name: str, path: str | Path) -> ServedModel:
        """Raise :class:`StaleAdapterError` unless ``/v1/models`` lists ``name`` with root ``path``."""
        entry = self.served().get(name)
        if entry is None:
            raise StaleAdapterError(f"adapter {name!r} is not in the server's model list")
        if entry.root is not None and Path(entry.root) != Path(path):
            raise StaleAdapterError(f"adapter {name!r} is served from {entry.root}, not the new version {path}")
        return entry

    def refresh(self, name: str, path: str | Path, *, previous: Probe | None = None,
                expected: Sequence[float] | None = None, tolerance: float = 1e-3, min_change: float = 1e-7,
                prompt: str | Sequence[int] = PROBE_PROMPT, max_tokens: int = 8) -> Probe:
        """Swap ``name``'s weights for the folder ``path`` and prove the server uses them.

        ``previous`` (the probe of the old version) must differ from the new probe by more than
        ``min_change``; ``expected`` (the trainer's log-probs of the new probe's tokens) must match
        within ``tolerance``. Returns the new probe (pass it as ``previous`` next time).
        """
        inplace = name in self.served()
        self.load(name, path, inplace=inplace)
        self.verify_listed(name, path)
        probe = self.probe(name, prompt, max_tokens=max_tokens)
        if previous is not None and probe.difference(previous) <= min_change:
            raise StaleAdapterError(
                f"adapter {name!r}: the probe's log-probs did not change after loading {path} "
                f"(max difference {probe.difference(previous):.2e}); the server still uses the old weights")
        if expected is not None:
            check_expected(probe, expected, tolerance=tolerance, source=str(path))
        return probe


def check_expected(probe: Probe, expected: Sequence[float], *, tolerance: float, source: str) -> float:
    """Raise :class:`StaleAdapterError` when ``probe``'s log-probs are not ``expected`` within ``tolerance``;
    returns the largest difference."""
    if len(expected) != len(probe.logprobs):
        raise UserError(f"expected {len(expected)} log-probs for a probe of {len(probe.logprobs)} tokens")
    gap = max((abs(a - b) for a, b in zip(probe.logprobs, expected, strict=True)), default=0.0)
    if gap > tolerance:
        raise StaleAdapterError(
            f"adapter {probe.model!r}: served log-probs differ from the trainer's by {gap:.2e} "
            f"(> {tolerance:.0e}) after loading {source}; the server is not using these weights")
    return gap
