"""An in-process fake OpenAI-compatible chat server on 127.0.0.1 for backend and CLI tests.

Keep-alive HTTP/1.1 like uvicorn (vLLM) and Ollama, so pooled connections outlive a request: the
condition under which a client bound to a closed event loop breaks. ``owned_by`` is what
``/v1/models`` reports (``"vllm"`` for a vLLM server). ``fail_first`` chat calls answer 500 and
``hang_first`` chat calls sleep ``hang_s`` before answering. Every chat request body is kept in
``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


class FakeOpenAI:
    """``with FakeOpenAI(reply) as server: ... server.base_url ...``"""

    def __init__(self, reply: Reply | str = "The answer is 72.", *, owned_by: str = "vllm",
                 fail_first: int = 0, hang_first: int = 0, hang_s: float = 30.0) -> None:
        self.reply = reply if callable(reply) else (lambda _body, text=reply: text)
        self.owned_by = owned_by
        self.fail_first = fail_first
        self.hang_first = hang_first
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self.chat_calls = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        with self.lock:
            self.chat_calls += 1
            n = self.chat_calls
            self.requests.append(body)
        if n <= self.fail_first:
            return 500, {"error": {"message": f"injected failure of call {n}"}}, 0.0
        delay = self.hang_s if n <= self.fail_first + self.hang_first else 0.0
        text = self.reply(body)
        return 200, {"id": f"c{n}", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}, delay

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    return self.send(200, {"object": "list", "data": [
                        {"id": "director", "object": "model", "owned_by": server.owned_by}]})
                self.send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self.send(404, {"error": {"message": "not found"}})
                status, reply, delay = server._chat(body)
                if delay:
                    time.sleep(delay)
                self.send(status, reply)

        return Handler


def policy_reply(actions: Any = None) -> Reply:
    """A server-side director: :func:`director_scripts.policy_director` answering each request body."""
    from director_scripts import ACTIONS, policy_director
    from langchain_core.messages import HumanMessage

    policy = policy_director(actions or ACTIONS)

    def reply(body: dict[str, Any]) -> str:
        messages = [HumanMessage(str(m.get("content", ""))) for m in body.get("messages", [])]
        return str(policy.invoke(messages).content)

    return reply
