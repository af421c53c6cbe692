"""Moved to ``flowsteer.workflow.builder`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import alias

alias(__name__, "flowsteer.workflow.builder")
