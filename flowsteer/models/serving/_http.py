"""A minimal JSON-over-HTTP client (standard library only) for talking to a vLLM server.

The serving package never imports vLLM: everything it does to a running server goes through these
two calls, so it works the same against the CPU build in its own virtual environment, a GPU server
on another machine, or the small fake server the tests start.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["HTTPReply", "request_json"]


@dataclass(frozen=True)
class HTTPReply:
    """A reply: the status (0 when the server could not be reached), the body text and its JSON."""

    status: int
    text: str
    error: str | None = None
    """Why no reply came (connection refused, timeout), when ``status`` is 0."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def request_json(method: str, url: str, body: Any = None, *, timeout: float = 30.0) -> HTTPReply:
    """Send ``body`` as JSON (when given) and return the reply; never raises on HTTP or network errors."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HTTPReply(resp.status, resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return HTTPReply(exc.code, exc.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return HTTPReply(0, "", error=f"{type(exc).__name__}: {reason}")
