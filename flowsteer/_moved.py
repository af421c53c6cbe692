"""Old import paths of modules that moved (kept working, with a DeprecationWarning)."""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType


def alias(old: str, new: str) -> ModuleType:
    """Make ``import old`` give the module ``new`` itself (one module object: patching and
    ``isinstance`` see the same thing under both names) and warn once per import site."""
    module = importlib.import_module(new)
    warnings.warn(f"{old} moved to {new}; import it from there (the old path will be removed)",
                  DeprecationWarning, stacklevel=3)
    sys.modules[old] = module
    return module


def forward(old: str, new: str, namespace: dict) -> None:
    """For a moved *package*: the old package stays (its submodules are aliases of their own, see
    :func:`alias`) and forwards attribute lookups to ``new``."""
    warnings.warn(f"{old} moved to {new}; import it from there (the old path will be removed)",
                  DeprecationWarning, stacklevel=3)

    def __getattr__(name: str) -> object:
        return getattr(importlib.import_module(new), name)

    namespace["__getattr__"] = __getattr__
