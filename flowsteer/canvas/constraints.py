"""Finish constraints: the structural minimum a workflow must reach before ``finish`` is accepted.

Every rule reads operator roles from the registry (``is_solver``, ``is_checker``, the
``FORMATTING`` role, ``runs_code``), never a list of operator names, so user-registered operators
count like built-ins. Defaults follow the reference configuration (spec section 5.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult
from flowsteer.workflow.ir import Conditional, Loop, Parallel, Workflow

__all__ = ["FinishConstraints", "is_verbose"]

_STEPPY = re.compile(r"(?:^|\n)\s*(?:Step\s*\d|\d+\.\s)|\bTo solve\b|\bFirst,|\bLet's\b|\bTherefore\b", re.I)


def is_verbose(answer: str, max_chars: int = 60) -> bool:
    """True when an answer reads like a derivation rather than a final answer span."""
    text = answer.strip()
    return len(text) > max_chars or "\n" in text or bool(_STEPPY.search(text))


@dataclass(frozen=True)
class FinishConstraints:
    """What ``finish`` requires; each rule can be switched off."""

    min_operators: int = 5
    """Least number of operator nodes (conditional checkers and duplicates count; loop bodies once)."""
    require_solver: bool = True
    """At least one solving or revising operator."""
    require_checker: bool = True
    """At least one checking operator."""
    require_structure: bool = True
    """At least one parallel block, conditional or loop."""
    require_test_for_code: bool = True
    """Code tasks that come with public tests need a checker that runs code (the Test role)."""
    require_code_runner_for_code: bool = True
    """Code tasks need at least one operator that runs code (Programmer or Test)."""
    require_format_when_verbose: bool = True
    """A verbose last result (see :func:`is_verbose`) needs a formatting operator."""
    verbose_chars: int = 60
    """Answers longer than this count as verbose."""

    def __post_init__(self) -> None:
        if self.min_operators < 0:
            raise UserError(f"FinishConstraints.min_operators must be >= 0, got {self.min_operators}")
        if self.verbose_chars < 1:
            raise UserError(f"FinishConstraints.verbose_chars must be >= 1, got {self.verbose_chars}")

    def check(
        self,
        workflow: Workflow,
        task: Task,
        last_execution: ExecutionResult | None,
        registry: OperatorRegistry,
    ) -> list[str]:
        """Every reason ``finish`` must be refused (empty list = finish accepted)."""
        nodes = workflow.operator_nodes()
        if not nodes:
            return ["the workflow is empty; add operators before finishing"]
        specs = [registry.lookup_case_insensitive(n.operator) for n in nodes]
        present = [s for s in specs if s is not None]
        reasons: list[str] = []
        if len(nodes) < self.min_operators:
            missing = self.min_operators - len(nodes)
            reasons.append(f"only {len(nodes)} operator(s); add at least {missing} more "
                           f"(minimum {self.min_operators})")
        if self.require_structure and not any(
            isinstance(ref.node, Parallel | Conditional | Loop) for ref in workflow.walk()
        ):
            reasons.append("no control structure; add a parallel block, a conditional or a loop")
        self._require_role(reasons, present, registry, self.require_solver, lambda s: s.is_solver,
                           "no solver", "a solving operator")
        self._require_role(reasons, present, registry, self.require_checker, lambda s: s.is_checker,
                           "no checker", "a checker, best as a conditional: <structure>conditional</structure>")
        if task.kind == "code":
            self._code_rules(reasons, present, task, registry)
        if (self.require_format_when_verbose and last_execution is not None
                and is_verbose(last_execution.answer, self.verbose_chars)
                and not any(s.role is Role.FORMATTING for s in present)):
            names = _names(registry, lambda s: s.role is Role.FORMATTING)
            reasons.append(f"the last result is verbose (not a short final answer) and there is no "
                           f"formatting operator; add {names} at the end")
        return reasons

    def _code_rules(self, reasons: list[str], present: list[OperatorSpec], task: Task,
                    registry: OperatorRegistry) -> None:
        def tester(s: OperatorSpec) -> bool:
            return s.is_checker and s.runs_code

        if self.require_test_for_code and task.public_tests and not any(tester(s) for s in present):
            reasons.append(f"this code task has public tests but no operator runs them; add "
                           f"{_names(registry, tester)}")
        if self.require_code_runner_for_code and not any(s.runs_code for s in present):
            reasons.append(f"this is a code task and no operator runs code; add "
                           f"{_names(registry, lambda s: s.runs_code)}")

    @staticmethod
    def _require_role(reasons: list[str], present: list[OperatorSpec], registry: OperatorRegistry,
                      enabled: bool, test: Callable[[OperatorSpec], bool], label: str, what: str) -> None:
        if enabled and not any(test(s) for s in present):
            reasons.append(f"{label}; add {what} ({_names(registry, test)})")


def _names(registry: OperatorRegistry, test: Callable[[OperatorSpec], bool]) -> str:
    names = [s.name for s in registry if test(s)]
    return " or ".join(names) if names else "one (none is registered)"
