"""Moved to ``flowsteer.models.local`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import alias

alias(__name__, "flowsteer.models.local")
