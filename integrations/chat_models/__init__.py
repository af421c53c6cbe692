"""Moved to ``flowsteer.models`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import forward

forward(__name__, "flowsteer.models", globals())
