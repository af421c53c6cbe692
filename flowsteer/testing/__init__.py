"""Fakes that ship with the library so users can test their own code without a real LLM.

* :class:`ScriptedChatModel` -- a chat model that replays scripted replies (strings or callables).
* :class:`SimulatedExecutor` -- an executor chat model whose answers depend on the workflow's
  structure (checkers catch mistakes, revisers fix them, ensembles vote), for reward-sensitive tests.
* :class:`FaultyChatModel` -- wraps a chat model and fails, hangs or returns garbage on a seeded
  fraction of calls (fault-injection tests).
* :mod:`flowsteer.testing.strategies` -- hypothesis strategies generating workflows (needs the
  ``dev`` extra).
"""

from flowsteer.testing.fakes import ScriptedChatModel, SimulatedCall, SimulatedExecutor
from flowsteer.testing.faults import FaultyChatModel

__all__ = ["FaultyChatModel", "ScriptedChatModel", "SimulatedCall", "SimulatedExecutor"]
