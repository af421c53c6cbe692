"""Fakes that ship with the library so users can test their own code without a real LLM.

* :class:`ScriptedChatModel` -- a chat model that replays scripted replies (strings or callables).
* :class:`SimulatedExecutor` -- an executor chat model whose answers depend on the workflow's
  structure (checkers catch mistakes, revisers fix them, ensembles vote), for reward-sensitive tests.
* :mod:`flowsteer.testing.strategies` -- hypothesis strategies generating workflows (needs the
  ``dev`` extra).
"""

from flowsteer.testing.fakes import ScriptedChatModel, SimulatedExecutor

__all__ = ["ScriptedChatModel", "SimulatedExecutor"]
