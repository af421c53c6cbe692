"""Serving the Flow-Director with vLLM: a managed OpenAI-compatible server and its LoRA adapters.

Nothing here imports vLLM. The server runs as a subprocess in whatever environment has vLLM (the
``vllm`` extra on a GPU machine, ``.venv-vllm`` made by ``scripts/setup_vllm_cpu.sh`` on CPU), and
everything else talks to it over HTTP, so vLLM's own pins never meet the toolkit's.

>>> from flowsteer.models.serving import ServerConfig, VLLMServer              # doctest: +SKIP
>>> with VLLMServer(ServerConfig("path/to/base", adapters={"director": "run/export/adapter"})) as srv:
...     model = load_chat_model("openai:director", base_url=srv.base_url)  # doctest: +SKIP
"""

from flowsteer.models.serving.adapters import (
    PROBE_PROMPT,
    AdapterClient,
    AdapterError,
    Probe,
    ServedModel,
    StaleAdapterError,
)
from flowsteer.models.serving.chat import tokens_from_choice, vllm_chat_model
from flowsteer.models.serving.server import (
    BASE_ALIAS,
    ServerConfig,
    ServerStartError,
    VLLMServer,
    find_free_port,
    lora_rank_of,
    resolve_python,
    write_zero_adapter,
)

__all__ = [
    "BASE_ALIAS",
    "PROBE_PROMPT",
    "AdapterClient",
    "AdapterError",
    "Probe",
    "ServedModel",
    "ServerConfig",
    "ServerStartError",
    "StaleAdapterError",
    "VLLMServer",
    "find_free_port",
    "lora_rank_of",
    "resolve_python",
    "tokens_from_choice",
    "vllm_chat_model",
    "write_zero_adapter",
]
