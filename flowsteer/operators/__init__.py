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
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec, default_registry

__all__ = [
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
