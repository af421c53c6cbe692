"""Moved to ``flowsteer.models.serving`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import forward

forward(__name__, "flowsteer.models.serving", globals())
