"""The vLLM engine: rollouts sampled by a vLLM server that serves the trained LoRA adapter.

The director talks to the server through :func:`flowsteer.models.serving.chat.vllm_chat_model` (HTTP only;
vLLM runs in its own environment, see ``flowsteer.models.serving``). Before each step's rollouts the engine
pushes the current adapter, and only the adapter (no merge):

1. ``save_pretrained`` to a new folder per version (``step-000012``): an in-place reload from the
   same path would keep prefix-cache blocks computed with the old weights;
2. a version whose weights equal the served one (same SHA-256) is not pushed again;
3. ``load_inplace`` under the same adapter name, then the version check of
   :meth:`~flowsteer.models.serving.AdapterClient.refresh`: the adapter list names the new folder and the
   probe prompt's greedy log-probs changed, and they equal the trainer's own log-probs of the same
   tokens within ``tolerance``. Anything else raises :class:`~flowsteer.models.serving.StaleAdapterError`:
   rollouts from old weights are never used silently.

The sampled-token log-probs the server reports are raw (temperature 1), so keep
``loss.old_logprobs: recompute`` (the default) with this engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError
from flowsteer.models.serving import PROBE_PROMPT, AdapterClient, Probe, ServerConfig, VLLMServer
from flowsteer.models.serving.adapters import check_expected
from flowsteer.models.serving.chat import vllm_chat_model

from ..config import RolloutConfig

__all__ = ["VLLMEngine"]

logger = logging.getLogger(__name__)


class VLLMEngine:
    """Owns the chat model the director uses during rollouts, and the served adapter's version."""

    def __init__(self, model: Any, tokenizer: Any, config: RolloutConfig, *, base_model: str | None = None,
                 base_url: str | None = None, server_config: ServerConfig | None = None,
                 adapter_name: str = "flowsteer-director", work_dir: str | Path | None = None,
                 tolerance: float = 1e-3, probe_tokens: int = 8, keep_versions: int = 2,
                 director: Any = None) -> None:
        if not (hasattr(model, "peft_config") and hasattr(model, "save_pretrained")):
            raise UserError("the vLLM engine serves a LoRA adapter: enable lora in the config (lora.enabled: true)")
        if base_url is None and server_config is None and base_model is None:
            raise UserError("VLLMEngine needs base_url (a running server), server_config or base_model")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.director = director or config.sampling_director()
        """The typed ``DirectorConfig`` whose sampling settings the served director uses."""
        self.adapter_name = adapter_name
        self.tolerance = tolerance
        self.probe_tokens = probe_tokens
        self.keep_versions = max(1, keep_versions)
        self._tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="flowsteer-adapters-")
        self.work_dir = Path(work_dir) if work_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._base_url = base_url
        self._server_config = server_config
        self._base_model = base_model
        self.server: VLLMServer | None = None
        self.versions: list[Path] = []
        self.probe: Probe | None = None
        self._digest: str | None = None
        self._chat_model: Any = None

    # -- server ------------------------------------------------------------------------------------
    def start(self) -> VLLMEngine:
        """Save the initial adapter and start the server (unless one was given by URL)."""
        if self._base_url is not None or self.server is not None:
            return self
        first = self._save(0)
        cfg = self._server_config or ServerConfig(model=str(self._base_model), served_model_name="flowsteer-base")
        cfg = dataclasses.replace(cfg, adapters={**cfg.adapters, self.adapter_name: str(first)}, runtime_lora=True)
        self.server = VLLMServer(cfg).start()
        self._base_url = self.server.base_url
        self._accept(first, self.client.probe(self.adapter_name, self.probe_prompt, max_tokens=self.probe_tokens))
        return self

    def close(self) -> None:
        """Stop the server the engine started and delete its adapter folders."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            self.start()
        assert self._base_url is not None
        return self._base_url

    @property
    def client(self) -> AdapterClient:
        return AdapterClient(self.base_url)

    @property
    def chat_model(self) -> Any:
        """The director's chat model: the served adapter, with token ids and log-probs reported."""
        if self._chat_model is None:
            d = self.director
            self._chat_model = vllm_chat_model(self.adapter_name, self.base_url, temperature=d.temperature,
                                               top_p=d.top_p, max_tokens=d.max_action_tokens)
        return self._chat_model

    # -- refresh -----------------------------------------------------------------------------------
    def before_rollout(self, step: int) -> None:
        """Eval mode, then serve the current adapter (pushed and verified when it changed)."""
        self.model.eval()
        self.refresh(step)

    def refresh(self, step: int) -> Probe | None:
        """Push the adapter as version ``step`` unless the server has these weights already; returns
        the verified probe (None when nothing changed)."""
        folder = self._save(step)
        digest = _digest(folder)
        if digest == self._digest:
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("step %d: adapter unchanged, the served version stays", step)
            return None
        probe = self.client.refresh(self.adapter_name, folder, previous=self.probe, prompt=self.probe_prompt,
                                    max_tokens=self.probe_tokens)
        self._accept(folder, probe, digest)
        return probe

    def _accept(self, folder: Path, probe: Probe, digest: str | None = None) -> None:
        gap = check_expected(probe, self.trainer_logprobs(probe), tolerance=self.tolerance, source=str(folder))
        logger.info("serving adapter %s (probe log-prob gap to the trainer %.2e)", folder.name, gap)
        self.probe, self._digest = probe, digest or _digest(folder)
        self.versions.append(folder)
        for old in self.versions[: -self.keep_versions]:
            shutil.rmtree(old, ignore_errors=True)
        self.versions = self.versions[-self.keep_versions :]

    def _save(self, step: int) -> Path:
        folder = self.work_dir / f"step-{step:06d}"
        if folder.exists():
            shutil.rmtree(folder)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        return folder

    @property
    def probe_prompt(self) -> tuple[int, ...]:
        """The probe prompt as token ids (server and trainer then score the very same input)."""
        return tuple(int(i) for i in self.tokenizer(PROBE_PROMPT)["input_ids"])

    def trainer_logprobs(self, probe: Probe) -> list[float]:
        """The trained model's log-probs of ``probe``'s tokens after its prompt (temperature 1)."""
        import torch

        from ..policy import token_logprobs

        if probe.token_ids is None:
            raise UserError("the probe reply carried no token ids; the server must support return_tokens_as_token_ids")
        prompt = list(probe.prompt) if not isinstance(probe.prompt, str) else list(self.probe_prompt)
        device = next(self.model.parameters()).device
        ids = torch.tensor([prompt + list(probe.token_ids)], device=device)  # [1, T]
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            values = token_logprobs(self.model, ids, torch.ones_like(ids))[0, len(prompt) :]  # [n]
        self.model.train(was_training)
        return [float(v) for v in values]


def _digest(folder: Path) -> str:
    weights = folder / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()
