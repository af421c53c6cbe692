"""Operators: the registry, the contract, and the 12 built-ins."""

from flowsteer.operators.base import (
    Operator,
    OperatorCall,
    OperatorContext,
    OperatorResult,
    Role,
    Usage,
    Value,
)
from flowsteer.operators.builtins import BUILTIN_NAMES, builtin_specs
from flowsteer.operators.custom import operator_spec, register_operator
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec, default_registry
from flowsteer.operators.runnable import OperatorRunnable

__all__ = [
    "BUILTIN_NAMES",
    "OperatorRunnable",
    "builtin_specs",
    "operator_spec",
    "register_operator",
    "Operator",
    "OperatorCall",
    "OperatorContext",
    "OperatorResult",
    "OperatorRegistry",
    "OperatorSpec",
    "Role",
    "Usage",
    "Value",
    "default_registry",
]
