"""Moved to ``flowsteer.report.plot`` (this path keeps working, with a DeprecationWarning)."""

from flowsteer._moved import alias

alias(__name__, "flowsteer.report.plot")
