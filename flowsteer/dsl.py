"""Moved to ``flowsteer.workflow.dsl`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import alias

alias(__name__, "flowsteer.workflow.dsl")
