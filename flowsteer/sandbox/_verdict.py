"""Host-side verdicts: the expected values of a test never enter the sandbox.

A candidate program runs with full control of its interpreter: it can exit early, write to any
file descriptor it inherited, replace ``os``, ``sys``, builtins or the ``assert`` machinery, return
objects whose ``__eq__`` says yes to everything, or walk frames and ``gc`` to read the tests. No
in-process check survives all of that, so :func:`plan_checks` splits each test on the host instead:

* the parts of an ``assert`` that call the candidate (``f(3)``, ``candidate("ab").upper()``) become
  **probes**: expressions the sandbox evaluates after the candidate's code, each result serialised
  to plain data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset);
* the rest (``== 9``, ``abs(... - 0.5) < 1e-6``, ``set(...) == {1, 2}``, ``math.isclose``) is
  evaluated **here**, by a small evaluator over plain values (:func:`judge`).

The sandbox therefore sees the inputs of the tests but never an expected value, and whatever it
reports is only data: a forged or missing record, an early exit, a patched serialiser or an object
that equals everything can at best produce a value the host compares, so passing requires
returning the right values. Tests that do not split this way (loops, ``try``, helper functions,
``pytest.raises``) run in the sandbox as before; :attr:`CheckPlan.host` says which mode applies, and
the result says which one ran (docs/reliability.md, "Threat model of the grader").
"""

from __future__ import annotations

import ast
import builtins
import copy
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowsteer.sandbox._result import Outcome
    from flowsteer.sandbox._types import SandboxResult

__all__ = ["Probe", "CheckPlan", "plan_checks", "decode", "judge", "host_verdict", "ENCODER_SOURCE", "Unsupported"]

_MAX_PROBES = 256


class Unsupported(Exception):
    """The test cannot be split into host-side comparisons and sandbox probes."""


@dataclass(frozen=True)
class Probe:
    """One expression the sandbox evaluates (it calls the candidate)."""

    source: str


@dataclass(frozen=True)
class CheckPlan:
    """How a test source is checked.

    ``host`` is False when the tests must run inside the sandbox (``reason`` says why). Otherwise
    ``setup`` (imports) runs after the candidate, each of ``probes`` is evaluated there, and
    ``asserts`` are judged here from the probe values.
    """

    host: bool
    setup: str = ""
    probes: tuple[Probe, ...] = ()
    asserts: tuple[tuple[ast.expr, str], ...] = ()
    """(expression with probe placeholders, how a failure is described) for every assert."""
    reason: str = ""


# -- what the host evaluator knows -------------------------------------------------------------
_PURE_BUILTINS: dict[str, Callable[..., Any]] = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "len", "list", "max", "min",
                 "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "complex", "divmod", "pow")
}
_PURE_MODULES: dict[str, dict[str, Any]] = {
    "math": {name: getattr(math, name) for name in ("isclose", "fabs", "sqrt", "floor", "ceil", "pi", "e", "inf",
                                                     "nan", "isnan", "isinf", "gcd", "factorial", "log", "exp")},
}
_STR_METHODS = frozenset({"lower", "upper", "strip", "split", "join", "replace", "startswith", "endswith", "count",
                          "index", "find", "keys", "values", "items"})
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: _same(a, b), ast.IsNot: lambda a, b: not _same(a, b),
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}
_PLACEHOLDER = "__flowsteer_probe__"


def _same(a: Any, b: Any) -> bool:
    # ``is`` on decoded values: identity only makes sense for the singletons tests use it with
    if b is None or b is True or b is False:
        return a is b
    return type(a) is type(b) and a == b


# -- planning ------------------------------------------------------------------------------------
def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Planner:
    def __init__(self, modules: set[str], constants: dict[str, ast.expr]) -> None:
        self.modules = modules
        self.constants = constants
        self.probes: list[Probe] = []

    def host_name(self, name: str) -> bool:
        return name in _PURE_BUILTINS or name in self.modules or name in self.constants or name in {"True", "False",
                                                                                                   "None"}

    def candidate_free(self, node: ast.AST) -> bool:
        return all(self.host_name(name) for name in _names(node))

    def probe(self, node: ast.expr) -> ast.expr:
        node = _Inline(self.constants).visit(node)
        if len(self.probes) >= _MAX_PROBES:
            raise Unsupported(f"more than {_MAX_PROBES} candidate calls")
        self.probes.append(Probe(ast.unparse(node)))
        return ast.Subscript(ast.Name(_PLACEHOLDER, ast.Load()), ast.Constant(len(self.probes) - 1), ast.Load())

    def split(self, node: ast.expr) -> ast.expr:
        """``node`` with every candidate-dependent sub-expression replaced by a probe placeholder."""
        if self.candidate_free(node):
            _check_host(node, self)
            return _Inline(self.constants).visit(node)
        match node:
            case ast.Compare() | ast.BoolOp() | ast.BinOp() | ast.UnaryOp() | ast.Tuple() | ast.List() | ast.Set() | \
                    ast.Dict() | ast.IfExp():
                return _map_children(node, self.split)
            case ast.Call(func=ast.Name(id=name)) if name in _PURE_BUILTINS:
                return _map_children(node, self.split)
            case ast.Call(func=ast.Attribute(value=ast.Name(id=module))) if module in self.modules:
                return _map_children(node, self.split)
            case _:
                return self.probe(node)


def _map_children(node: ast.expr, fn: Callable[[ast.expr], ast.expr]) -> ast.expr:
    class Mapper(ast.NodeTransformer):
        def __init__(self) -> None:
            self.top = True

        def generic_visit(self, child: ast.AST) -> ast.AST:
            if self.top:
                self.top = False
                return super().generic_visit(child)
            if isinstance(child, ast.expr) and not isinstance(child, (ast.expr_context,)):
                return fn(child)
            return super().generic_visit(child)

    return Mapper().visit(node)


class _Inline(ast.NodeTransformer):
    """Replace host constants (``METADATA = {...}``) by their literal inside a probe."""

    def __init__(self, constants: dict[str, ast.expr]) -> None:
        self.constants = constants

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.constants:
            return copy.deepcopy(self.constants[node.id])
        return node


def _check_host(node: ast.expr, planner: _Planner) -> None:
    """Refuse host expressions the evaluator cannot compute (so planning fails, not judging)."""
    for child in ast.walk(node):
        match child:
            case ast.Lambda() | ast.ListComp() | ast.SetComp() | ast.DictComp() | ast.GeneratorExp() | ast.Await() | \
                    ast.Yield() | ast.YieldFrom() | ast.NamedExpr() | ast.Starred() | ast.JoinedStr():
                raise Unsupported(f"{type(child).__name__} in a test expression")
            case ast.Call(func=ast.Name(id=name)) if name not in _PURE_BUILTINS:
                raise Unsupported(f"call of {name!r} in a test expression")
            case ast.Call(func=ast.Attribute(value=ast.Name(id=module), attr=attr)) if module in planner.modules:
                if attr not in _PURE_MODULES.get(module, {}):
                    raise Unsupported(f"{module}.{attr} in a test expression")
            case ast.Call(func=ast.Attribute(attr=attr)) if attr not in _STR_METHODS:
                raise Unsupported(f"method {attr!r} in a test expression")
            case ast.Call(func=func) if not isinstance(func, (ast.Name, ast.Attribute)):
                raise Unsupported("an indirect call in a test expression")


class _Rename(ast.NodeTransformer):
    """``candidate`` -> the entry point, inside an inlined ``check(candidate)``."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def _statements(tree: ast.Module, entry_point: str | None) -> list[ast.stmt]:
    """The test's statements with a HumanEval ``def check(candidate)`` inlined."""
    out: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check" and entry_point:
            args = stmt.args
            if len(args.args) != 1 or args.vararg or args.kwarg or args.kwonlyargs or stmt.decorator_list:
                raise Unsupported("check() with an unusual signature")
            rename = _Rename(args.args[0].arg, entry_point)
            out.extend(rename.visit(s) for s in stmt.body)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and \
                isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "check":
            continue  # the ``check(entry_point)`` call the inlining replaces
        else:
            out.append(stmt)
    return out


@lru_cache(maxsize=512)
def plan_checks(tests: str, entry_point: str | None) -> CheckPlan:
    """Split ``tests`` into sandbox probes and host-side asserts (see the module docstring)."""
    try:
        tree = ast.parse(tests)
    except SyntaxError as exc:
        return CheckPlan(False, reason=f"the tests do not parse ({exc.msg})")
    try:
        return _plan(tree, entry_point)
    except Unsupported as exc:
        return CheckPlan(False, reason=str(exc))
    except RecursionError:
        return CheckPlan(False, reason="the tests nest too deeply")


def _plan(tree: ast.Module, entry_point: str | None) -> CheckPlan:
    statements = _statements(tree, entry_point)
    setup: list[str] = []
    modules: set[str] = set()
    constants: dict[str, ast.expr] = {}
    planner = _Planner(modules, constants)
    asserts: list[tuple[ast.expr, str]] = []
    for stmt in statements:
        match stmt:
            case ast.Import(names=names):
                setup.append(ast.unparse(stmt))
                modules.update((a.asname or a.name).split(".")[0] for a in names)
            case ast.ImportFrom():
                raise Unsupported("'from ... import' in the tests")
            case ast.Pass() | ast.Expr(value=ast.Constant()):
                continue
            case ast.Assign(targets=[ast.Name(id=name)], value=value) if planner.candidate_free(value):
                _check_host(value, planner)
                constants[name] = value
            case ast.Assert(test=test, msg=msg):
                source = ast.unparse(ast.Assert(test))
                if isinstance(msg, ast.Constant) and isinstance(msg.value, str):
                    source = f"{msg.value} ({source})"
                asserts.append((planner.split(test), source))
            case _:
                raise Unsupported(f"a {type(stmt).__name__} statement in the tests")
    unknown = modules - set(_PURE_MODULES)
    for expr, _ in asserts:
        for child in ast.walk(expr):
            if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) and child.value.id in unknown:
                raise Unsupported(f"module {child.value.id!r} in a test expression")
    if not asserts:
        raise Unsupported("no assert statements")
    return CheckPlan(True, "\n".join(setup), tuple(planner.probes), tuple(asserts))


# -- the sandbox side: how probe values travel -----------------------------------------------------
ENCODER_SOURCE = '''
def _flowsteer_encode(value, depth=0, _t=type, _sub=issubclass):
    if depth > 40:
        raise ValueError("value nested too deeply")
    kind = _t(value)
    if value is None:
        return ("N",)
    # by the base type's own methods: a subclass (Counter, a namedtuple, an int with a lying
    # __eq__) is read as the plain data it stores, and its own methods are never called
    if _sub(kind, bool):
        return ("b", "1" if int.__bool__(value) else "0")
    if _sub(kind, int):
        return ("i", int.__repr__(value))
    if _sub(kind, float):
        return ("f", float.__repr__(value))
    if _sub(kind, complex):
        return ("c", complex.__repr__(value))
    if _sub(kind, str):
        return ("s", str.__str__(value))
    if _sub(kind, bytes):
        return ("y", bytes.hex(value))
    for base, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F")):
        if _sub(kind, base):
            return (tag, [_flowsteer_encode(v, depth + 1) for v in base.__iter__(value)])
    if _sub(kind, dict):
        return ("d", [(_flowsteer_encode(k, depth + 1), _flowsteer_encode(v, depth + 1))
                      for k, v in dict.items(value)])
    raise TypeError("a value of type " + kind.__name__ + " (tests compare plain data only)")
'''
"""Run in the sandbox after the candidate: plain data only, each value read through its base
type's methods (a subclass of ``int`` with its own ``__eq__`` is read as the int it holds)."""

_SCALARS: dict[str, Callable[[str], Any]] = {
    "b": lambda s: s == "1", "i": int, "f": float, "c": complex, "s": str, "y": bytes.fromhex,
}
_CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {"l": list, "t": tuple, "S": set, "F": frozenset}


def decode(record: Any, depth: int = 0) -> Any:
    """Plain value from an encoded record; ``ValueError`` for anything malformed."""
    if depth > 41 or not isinstance(record, tuple) or not record or not isinstance(record[0], str):
        raise ValueError("malformed probe value")
    tag = record[0]
    if tag == "N" and len(record) == 1:
        return None
    if len(record) != 2:
        raise ValueError("malformed probe value")
    payload = record[1]
    if tag in _SCALARS and isinstance(payload, str):
        return _SCALARS[tag](payload)
    if tag in _CONTAINERS and isinstance(payload, list):
        return _CONTAINERS[tag]([decode(item, depth + 1) for item in payload])
    if tag == "d" and isinstance(payload, list):
        pairs = []
        for pair in payload:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError("malformed probe value")
            pairs.append((decode(pair[0], depth + 1), decode(pair[1], depth + 1)))
        return dict(pairs)
    raise ValueError("malformed probe value")


# -- judging ---------------------------------------------------------------------------------------
class _Raised:
    """A probe whose evaluation raised (its exception type name)."""

    def __init__(self, name: str) -> None:
        self.name = name


def judge(plan: CheckPlan, values: Sequence[Any]) -> tuple[bool, str]:
    """``(passed, message)``: every assert of ``plan`` evaluated here over the probe ``values``
    (a :class:`_Raised` or the decoded value per probe)."""
    env = _Env(values)
    for expr, source in plan.asserts:
        try:
            ok = bool(env.eval(expr))
        except _ProbeRaised as exc:
            return False, f"{source}: the candidate raised {exc.name}"
        except Exception as exc:
            return False, f"{source}: {type(exc).__name__} while comparing ({exc})"[:500]
        if not ok:
            return False, f"{source} failed" + env.got(expr)
    return True, ""


class _ProbeRaised(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Env:
    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values
        self.constants: dict[str, Any] = {}

    def got(self, expr: ast.expr) -> str:
        shown = []
        for node in ast.walk(expr):
            index = _probe_index(node)
            if index is not None and not isinstance(self.values[index], _Raised):
                shown.append(f"{truncate_repr(self.values[index])}")
        return f" (got {', '.join(shown)})" if shown else ""

    def eval(self, node: ast.expr) -> Any:  # noqa: C901 - one case per node type
        index = _probe_index(node)
        if index is not None:
            value = self.values[index]
            if isinstance(value, _Raised):
                raise _ProbeRaised(value.name)
            return value
        match node:
            case ast.Constant(value=value):
                return value
            case ast.Name(id=name):
                if name in _PURE_BUILTINS:
                    return _PURE_BUILTINS[name]
                if name in _PURE_MODULES:
                    return _PURE_MODULES[name]
                raise Unsupported(name)
            case ast.Tuple(elts=elts):
                return tuple(self.eval(e) for e in elts)
            case ast.List(elts=elts):
                return [self.eval(e) for e in elts]
            case ast.Set(elts=elts):
                return {self.eval(e) for e in elts}
            case ast.Dict(keys=keys, values=vals):
                return {self.eval(k): self.eval(v) for k, v in zip(keys, vals, strict=True) if k is not None}
            case ast.UnaryOp(op=unary, operand=operand):
                return _UNARY[type(unary)](self.eval(operand))
            case ast.BinOp(left=left, op=op, right=right):
                return _BINOPS[type(op)](self.eval(left), self.eval(right))
            case ast.BoolOp(op=ast.And(), values=vals):
                result: Any = True
                for v in vals:
                    result = self.eval(v)
                    if not result:
                        return result
                return result
            case ast.BoolOp(op=ast.Or(), values=vals):
                result = False
                for v in vals:
                    result = self.eval(v)
                    if result:
                        return result
                return result
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                current = self.eval(left)
                for cmp, right in zip(ops, comparators, strict=True):
                    other = self.eval(right)
                    if not _CMPOPS[type(cmp)](current, other):
                        return False
                    current = other
                return True
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return self.eval(body) if self.eval(test) else self.eval(orelse)
            case ast.Subscript(value=value, slice=index_node):
                return self.eval(value)[self.eval(index_node)]
            case ast.Slice(lower=lower, upper=upper, step=step):
                return slice(*(None if p is None else self.eval(p) for p in (lower, upper, step)))
            case ast.Attribute(value=ast.Name(id=module), attr=attr) if module in _PURE_MODULES:
                return _PURE_MODULES[module][attr]
            case ast.Call(func=ast.Attribute(value=target, attr=attr), args=args, keywords=keywords) \
                    if attr in _STR_METHODS and not (isinstance(target, ast.Name) and target.id in _PURE_MODULES):
                obj = self.eval(target)
                if not isinstance(obj, (str, dict)):
                    raise Unsupported(f"method {attr} on {type(obj).__name__}")
                return getattr(obj, attr)(*[self.eval(a) for a in args],
                                          **{k.arg: self.eval(k.value) for k in keywords if k.arg})
            case ast.Call(func=func, args=args, keywords=keywords):
                fn = self.eval(func)
                return fn(*[self.eval(a) for a in args], **{k.arg: self.eval(k.value) for k in keywords if k.arg})
        raise Unsupported(type(node).__name__)


def _probe_index(node: ast.AST) -> int | None:
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == _PLACEHOLDER:
        slice_node = node.slice
        if isinstance(slice_node, ast.Constant) and isinstance(slice_node.value, int):
            return slice_node.value
    return None


def truncate_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def raised(name: str) -> _Raised:
    """The placeholder value of a probe that raised ``name``."""
    return _Raised(name)


def host_verdict(result: SandboxResult, outcome: Outcome, plan: CheckPlan) -> SandboxResult:
    """The check's result from the probe values the sandbox reported, judged here.

    A run that failed before its probes (timeout, signal, an exception in the candidate's own code)
    keeps that failure; a probe record that is missing or malformed fails the check.
    """
    import dataclasses

    def failed(error_type: str, message: str) -> SandboxResult:
        return dataclasses.replace(result, status="error", error_type=error_type, error_message=message,
                                   verdict="host")

    if not result.ok:
        return dataclasses.replace(result, verdict="host")
    found: dict[int, dict] = {}
    for event in outcome.events:
        index = event.get("i")
        if event.get("event") == "probe" and isinstance(index, int) and 0 <= index < len(plan.probes):
            found.setdefault(index, event)
    completed = any(event.get("event") == "done" for event in outcome.events)
    if len(found) < len(plan.probes) or not completed:
        return failed("EarlyExit", "the program exited before the tests finished")
    values: list[Any] = []
    for index in range(len(plan.probes)):
        event = found[index]
        if "raised" in event:
            values.append(raised(str(event.get("raised"))[:80]))
            continue
        try:
            values.append(decode(event.get("value")))
        except (ValueError, TypeError, RecursionError, MemoryError):
            return failed("MalformedResult", f"the value of {plan.probes[index].source} could not be read back")
    passed, message = judge(plan, values)
    if not passed:
        detail = next((str(found[i].get("message") or "") for i in range(len(values))
                       if isinstance(values[i], _Raised)), "")
        return failed("AssertionError", message + (f": {detail}" if detail else ""))
    return dataclasses.replace(result, verdict="host")
