"""The operator registry: the single source of the operator vocabulary.

The action parser, workflow validation, the DSL, the director's prompts, the canvas constraints and
the reward all read the registry, so an operator registered here appears everywhere with no other
edit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.spec import OperatorSpec

logger = logging.getLogger(__name__)

__all__ = ["OperatorSpec", "OperatorRegistry", "default_registry"]


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
