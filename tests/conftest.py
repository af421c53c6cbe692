"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) and on shipped fakes by default."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: on a shared 2-core machine a tiny model's forward is
    ~10x faster so (thread oversubscription costs more than it gives). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` so it is set before the module's
    model fixtures run."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_registry():
    """A registry with the 12 built-in names and roles, whose operators echo their input.

    For tests of structure-level code (DSL, validation, graphs) that must not depend on the real
    operators.
    """
    from flowsteer.operators.base import Operator, OperatorCall, OperatorResult, Role
    from flowsteer.operators.registry import OperatorRegistry, OperatorSpec

    class Echo(Operator):
        async def arun(self, call: OperatorCall, config=None) -> OperatorResult:
            text = call.input if isinstance(call.input, str) else " | ".join(call.input or ())
            return OperatorResult(output=f"{self.name}({text})", verdict=True if self.checker else None)

    roles = {
        "Plan": Role.PLANNING, "Decompose": Role.PLANNING,
        "Programmer": Role.SOLVING, "Custom": Role.SOLVING, "AnswerGenerate": Role.SOLVING,
        "Test": Role.CHECKING, "Review": Role.CHECKING, "Verify": Role.CHECKING,
        "Revise": Role.REVISING, "ScEnsemble": Role.ENSEMBLING, "Aggregate": Role.ENSEMBLING,
        "Format": Role.FORMATTING,
    }

    def factory(name: str, role: Role):
        def make(ctx):
            op = Echo(ctx)
            op.name = name
            op.checker = role is Role.CHECKING
            return op
        return make

    return OperatorRegistry([OperatorSpec(n, r, f"toy {n}", factory(n, r)) for n, r in roles.items()])
