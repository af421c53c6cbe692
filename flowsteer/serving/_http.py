"""Moved to ``flowsteer.models.serving._http`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import alias

alias(__name__, "flowsteer.models.serving._http")
