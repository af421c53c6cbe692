"""The CLI's rich consoles (the only place FlowSteer writes to the terminal)."""

from __future__ import annotations

from functools import cache

from rich.console import Console

__all__ = ["console"]


@cache
def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=True)
