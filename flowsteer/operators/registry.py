"""The operator registry: the single source of the operator vocabulary.

The action parser, workflow validation, the DSL, the director's prompts, the canvas constraints and
the reward all read the registry, so an operator registered here appears everywhere with no other
edit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from flowsteer.errors import UserError
from flowsteer.operators.base import Operator, OperatorContext, Role

logger = logging.getLogger(__name__)

__all__ = ["OperatorSpec", "OperatorRegistry", "default_registry"]

_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
# Words the DSL and the action grammar use; an operator may not be called like them.
RESERVED_NAMES = frozenset({"done", "Done", "DONE"})


@dataclass(frozen=True)
class OperatorSpec:
    """Declaration of an operator: its place in the vocabulary and how to build it."""

    name: str
    """CamelCase name used in the DSL and in actions."""
    role: Role
    """One of the six roles; checkers can head a Conditional, ensemblers reduce a Parallel."""
    description: str
    """One line shown to the director."""
    factory: Callable[[OperatorContext], Operator]
    """Builds the executable operator for an executor model and a sandbox."""
    inputs: tuple[str, ...] = ("task", "input")
    """What the operator reads (documentation for the director and users)."""
    outputs: tuple[str, ...] = ("output",)
    """What the operator produces."""
    runs_code: bool = False
    """True when the operator executes code in the sandbox (Programmer, Test)."""
    usage_hint: str = ""
    """Optional longer advice shown to the director (when to use it, what to put in its prompt)."""
    task_kinds: frozenset[str] = field(default_factory=frozenset)
    """The task kinds the operator has something to do on (empty: every kind). Validation with a
    task kind refuses it elsewhere, with the reason (``Test`` runs code tests: a math answer has
    no program, so ``Test ? Programmer : done`` would re-run Programmer on every math task)."""
    tags: frozenset[str] = field(default_factory=frozenset)
    module: str = ""
    """The module that defines the operator ("" for built-ins): exported graphs import it."""
    """Free-form labels (e.g. ``{"builtin"}``)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name) or self.name in RESERVED_NAMES:
            raise UserError(
                f"operator name {self.name!r} is invalid: use a CamelCase identifier such as 'MyChecker'"
            )
        if not isinstance(self.role, Role):
            raise UserError(f"operator {self.name!r}: role must be a flowsteer.Role, got {self.role!r}")
        if not self.description.strip():
            raise UserError(f"operator {self.name!r}: give a one-line description for the director")
        if isinstance(self.task_kinds, str) or not all(isinstance(k, str) and k for k in self.task_kinds):
            raise UserError(f"operator {self.name!r}: task_kinds must be a set of task kinds such as "
                            f"{{'code'}}, got {self.task_kinds!r}")
        object.__setattr__(self, "task_kinds", frozenset(self.task_kinds))

    def applies_to(self, kind: str | None) -> bool:
        """Whether the operator has something to do on a task of ``kind`` (None: unknown, yes)."""
        return kind is None or not self.task_kinds or kind in self.task_kinds

    @property
    def is_checker(self) -> bool:
        return self.role is Role.CHECKING

    @property
    def is_ensembler(self) -> bool:
        return self.role is Role.ENSEMBLING

    @property
    def is_solver(self) -> bool:
        return self.role in (Role.SOLVING, Role.REVISING)


class OperatorRegistry:
    """A mutable name → :class:`OperatorSpec` map with role queries."""

    def __init__(self, specs: list[OperatorSpec] | None = None) -> None:
        self._specs: dict[str, OperatorSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: OperatorSpec, *, replace: bool = False) -> OperatorSpec:
        if spec.name in self._specs and not replace:
            raise UserError(
                f"operator {spec.name!r} is already registered; pass replace=True to override it"
            )
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._specs[name]

    def get(self, name: str) -> OperatorSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UserError(
                f"unknown operator {name!r}; valid operators: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[OperatorSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def by_role(self, role: Role) -> list[OperatorSpec]:
        return [s for s in self._specs.values() if s.role is role]

    def lookup_case_insensitive(self, name: str) -> OperatorSpec | None:
        """The spec whose name matches ignoring case (tolerant parsing of model output)."""
        if name in self._specs:
            return self._specs[name]
        lowered = name.strip().lower()
        for spec_name, spec in self._specs.items():
            if spec_name.lower() == lowered:
                return spec
        return None

    def copy(self) -> OperatorRegistry:
        return OperatorRegistry(list(self._specs.values()))


_DEFAULT: OperatorRegistry | None = None


ENTRY_POINT_GROUP = "flowsteer.operators"
"""Installed packages list modules here (``[project.entry-points."flowsteer.operators"]``,
``name = "package.module"``); they are imported when the default registry is first built, so their
operators exist in every command and in the Python API. An entry point naming a callable is called
with the registry."""


def default_registry() -> OperatorRegistry:
    """The process-wide registry holding the 12 built-ins, the operators of installed plugins
    (:data:`ENTRY_POINT_GROUP`) and anything users registered."""
    global _DEFAULT
    if _DEFAULT is None:
        from flowsteer.operators.builtins import builtin_specs

        _DEFAULT = OperatorRegistry(builtin_specs())
        _load_entry_points(_DEFAULT)
    return _DEFAULT


def _load_entry_points(registry: OperatorRegistry) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
            if callable(loaded):
                loaded(registry)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take flowsteer down
            logger.warning("operator plugin %r (%s) failed to load: %s: %s", ep.name, ep.value,
                           type(exc).__name__, exc)


def load_operator_modules(modules: Iterable[str]) -> None:
    """Import each module (``--operators MODULE``); a module that cannot be imported is a
    :class:`UserError` naming it."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"--operators {name}: cannot import it ({exc}); give an importable module "
                            "(on PYTHONPATH or installed) that calls register_operator") from exc
