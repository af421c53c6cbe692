"""Procedurally generated tasks: offline, seeded, with exact answers or tests.

For demos, smoke tests and CPU training runs where no benchmark file is at hand:

* ``arithmetic``: integer expressions with ``+``, ``-`` and ``*`` ("Calculate 48 - 7 * 6 + 13.");
* ``gsm_synthetic``: short multi-step word problems in the style of GSM8K (change, sales over days,
  sharing, savings with a percentage, distance over two legs);
* ``number_lists``: one question about a short list of integers (sum, largest, smallest, range,
  how many are even): easy for a program, error-prone for a small model reasoning in prose;
* ``percentages``: "What is 15% of 240?" and price changes by a percentage, integer answers;
* ``simple_functions`` (code): one-line Python functions (arithmetic of two arguments, a linear
  map, divisibility, largest/smallest/sum of a list, a string reversed/upper-cased/doubled) in
  MBPP's format: the first assert is in the question and public, three more are hidden.

The same ``(seed, n)`` always gives the same tasks; the registered loaders derive the seed from the
split (train 0, validation 1, test 2) and default to 100 tasks.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable
from typing import Any

from flowsteer.datasets._io import PathLike
from flowsteer.datasets.registry import register_dataset
from flowsteer.errors import UserError
from flowsteer.tasks import Task

__all__ = ["generate_arithmetic", "generate_word_problems", "generate_number_lists", "generate_percentages",
           "generate_simple_functions", "SPLIT_SEEDS"]

SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
DEFAULT_SIZE = 100
_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Jonas", "Keiko", "Liam", "Mina", "Noah", "Priya")
_ITEMS = ("apple", "notebook", "marble", "sticker", "pencil", "cookie", "ticket", "shell")


def _evaluate(numbers: list[int], ops: list[str]) -> int:
    """Left-to-right with ``*`` binding tighter than ``+``/``-`` (the usual precedence)."""
    terms, signs = [numbers[0]], []
    for op, value in zip(ops, numbers[1:], strict=True):
        if op == "*":
            terms[-1] *= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


def generate_arithmetic(n: int, *, seed: int = 0, max_operands: int = 4, max_value: int = 50) -> list[Task]:
    """``n`` integer-expression tasks; the answer is the exact value as a string."""
    if n < 0 or max_operands < 2 or max_value < 2:
        raise UserError("generate_arithmetic needs n >= 0, max_operands >= 2 and max_value >= 2")
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        count = rng.randint(2, max_operands)
        numbers = [rng.randint(1, max_value) for _ in range(count)]
        ops = [rng.choice("+-*") for _ in range(count - 1)]
        expression = " ".join(f"{a} {op}" for a, op in zip(numbers, ops, strict=False)) + f" {numbers[-1]}"
        tasks.append(Task(f"Calculate {expression}.", "math", f"arithmetic/{seed}/{i}",
                          str(_evaluate(numbers, ops)), source="arithmetic", meta={"expression": expression}))
    return tasks


def _change(rng: random.Random, name: str, item: str) -> tuple[str, int]:
    count, price = rng.randint(2, 9), rng.randint(2, 15)
    bill = next(b for b in (20, 50, 100, 200) if b > count * price)
    return (f"{name} buys {count} {item}s at ${price} each and pays with a ${bill} bill. "
            f"How many dollars of change does {name} get?", bill - count * price)


def _sales(rng: random.Random, name: str, item: str) -> tuple[str, int]:
    laid, eaten, price, days = rng.randint(8, 20), rng.randint(1, 5), rng.randint(2, 6), rng.randint(2, 7)
    return (f"{name}'s hens lay {laid} eggs a day. {name} eats {eaten} of them every day and sells the rest "
            f"for ${price} each. How many dollars does {name} make in {days} days?", (laid - eaten) * price * days)


def _sharing(rng: random.Random, name: str, item: str) -> tuple[str, int]:
    friends, each = rng.randint(2, 6), rng.randint(2, 8)
    total = friends * each + rng.randint(1, 20)
    return (f"{name} has {total} {item}s and gives {each} to each of {friends} friends. "
            f"How many {item}s does {name} have left?", total - friends * each)


def _savings(rng: random.Random, name: str, item: str) -> tuple[str, int]:
    pct = rng.choice((10, 20, 25, 50))
    weekly = rng.choice((4, 8, 12, 20, 40))
    weeks = rng.randint(3, 12)
    saved = weekly * weeks
    while saved * pct % 100:
        weeks += 1
        saved = weekly * weeks
    return (f"{name} saves ${weekly} every week. After {weeks} weeks, {name} spends {pct}% of the savings "
            f"on a gift. How many dollars are left?", saved - saved * pct // 100)


def _distance(rng: random.Random, name: str, item: str) -> tuple[str, int]:
    v1, h1, v2, h2 = rng.randint(30, 90), rng.randint(1, 4), rng.randint(30, 90), rng.randint(1, 4)
    return (f"{name} drives at {v1} km per hour for {h1} hours, then at {v2} km per hour for {h2} hours. "
            f"How many kilometres does {name} drive in total?", v1 * h1 + v2 * h2)


_TEMPLATES: tuple[Callable[[random.Random, str, str], tuple[str, int]], ...] = (
    _change, _sales, _sharing, _savings, _distance,
)


def generate_word_problems(n: int, *, seed: int = 0) -> list[Task]:
    """``n`` GSM8K-style word problems with integer answers."""
    if n < 0:
        raise UserError(f"generate_word_problems needs n >= 0, got {n}")
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        template = rng.choice(_TEMPLATES)
        question, answer = template(rng, rng.choice(_NAMES), rng.choice(_ITEMS))
        tasks.append(Task(question, "math", f"gsm_synthetic/{seed}/{i}", str(answer), source="gsm_synthetic",
                          meta={"template": template.__name__.lstrip("_")}))
    return tasks


_LIST_QUESTIONS: tuple[tuple[str, str, Callable[[list[int]], int]], ...] = (
    ("sum", "What is the sum of the numbers {numbers}?", sum),
    ("max", "What is the largest of the numbers {numbers}?", max),
    ("min", "What is the smallest of the numbers {numbers}?", min),
    ("range", "What is the difference between the largest and the smallest of the numbers {numbers}?",
     lambda xs: max(xs) - min(xs)),
    ("even", "How many of the numbers {numbers} are even?", lambda xs: sum(1 for x in xs if x % 2 == 0)),
)


def generate_number_lists(n: int, *, seed: int = 0, min_len: int = 4, max_len: int = 7,
                          max_value: int = 99) -> list[Task]:
    """``n`` questions about a list of integers, each with an exact integer answer."""
    if n < 0 or min_len < 2 or max_len < min_len or max_value < 2:
        raise UserError("generate_number_lists needs n >= 0, 2 <= min_len <= max_len and max_value >= 2")
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        name, question, answer = rng.choice(_LIST_QUESTIONS)
        numbers = [rng.randint(1, max_value) for _ in range(rng.randint(min_len, max_len))]
        shown = ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
        tasks.append(Task(question.format(numbers=shown), "math", f"number_lists/{seed}/{i}", str(answer(numbers)),
                          source="number_lists", meta={"question": name, "numbers": numbers}))
    return tasks


def generate_percentages(n: int, *, seed: int = 0) -> list[Task]:
    """``n`` percentage questions with integer answers (a share of a number, or a price change)."""
    if n < 0:
        raise UserError(f"generate_percentages needs n >= 0, got {n}")
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        pct = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75))
        base = rng.randint(2, 40) * 20  # a multiple of 20 keeps every answer whole
        if rng.random() < 0.5:
            question, answer, shape = f"What is {pct}% of {base}?", base * pct // 100, "share"
        else:
            up = rng.random() < 0.5
            change = base * pct // 100
            verb = "raised" if up else "lowered"
            question = f"A price of ${base} is {verb} by {pct}%. What is the new price in dollars?"
            answer, shape = base + change if up else base - change, "change"
        tasks.append(Task(question, "math", f"percentages/{seed}/{i}", str(answer), source="percentages",
                          meta={"shape": shape}))
    return tasks


def _call(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(map(repr, args))})"


def _fn_arith(rng: random.Random) -> tuple[str, str, Callable[..., Any], list[tuple[Any, ...]]]:
    op, word, fn = rng.choice((("+", "sum", operator.add), ("-", "difference", operator.sub),
                               ("*", "product", operator.mul)))
    name = rng.choice(("combine", "compute", "calc", "apply_op")) + f"_{word}"
    return name, f"returns the {word} of `a` and `b` (a {op} b)", fn, [
        (rng.randint(-20, 50), rng.randint(-20, 50)) for _ in range(4)]


def _fn_linear(rng: random.Random) -> tuple[str, str, Callable[..., Any], list[tuple[Any, ...]]]:
    k, c = rng.randint(2, 9), rng.randint(1, 20)
    name = rng.choice(("scale", "transform", "linear", "adjust"))
    return name, f"returns `x` multiplied by {k}, plus {c}", lambda x: x * k + c, [
        (x,) for x in rng.sample(range(-10, 31), 4)]


def _fn_divisible(rng: random.Random) -> tuple[str, str, Callable[..., Any], list[tuple[Any, ...]]]:
    k = rng.randint(2, 9)
    name = rng.choice(("is_multiple", "divides", "check_divisible")) + f"_of_{k}"
    return name, f"returns True when `n` is divisible by {k} and False otherwise", lambda n: n % k == 0, [
        (k * rng.randint(1, 12),), (k * rng.randint(1, 12) + 1,), (rng.randint(1, 99),), (0,)]


def _fn_list(rng: random.Random) -> tuple[str, str, Callable[..., Any], list[tuple[Any, ...]]]:
    word, fn = rng.choice((("largest", max), ("smallest", min), ("sum", sum)))
    name = rng.choice(("list", "numbers", "values")) + f"_{'total' if word == 'sum' else word}"
    what = "sum of the numbers" if word == "sum" else f"{word} number"
    return name, f"returns the {what} in the list `items`", fn, [
        ([rng.randint(-20, 60) for _ in range(rng.randint(2, 6))],) for _ in range(4)]


def _fn_string(rng: random.Random) -> tuple[str, str, Callable[..., Any], list[tuple[Any, ...]]]:
    words = ("apple", "river", "stone", "python", "cloud", "garden", "mirror", "planet")
    shape, fn = rng.choice((("reversed", lambda s: s[::-1]), ("in upper case", str.upper),
                            ("repeated twice", lambda s: s * 2)))
    name = rng.choice(("transform", "convert", "remake")) + "_" + shape.split()[-1]
    return name, f"returns the string `s` {shape}", fn, [(w,) for w in rng.sample(words, 4)]


_PARAMS = {_fn_arith: "a, b", _fn_linear: "x", _fn_divisible: "n", _fn_list: "items", _fn_string: "s"}


def generate_simple_functions(n: int, *, seed: int = 0) -> list[Task]:
    """``n`` one-line Python function tasks in MBPP's format (the first assert is shown and public,
    three more are hidden), with seeded names and constants."""
    if n < 0:
        raise UserError(f"generate_simple_functions needs n >= 0, got {n}")
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        template = rng.choice(tuple(_PARAMS))
        name, does, fn, cases = template(rng)
        asserts = [f"assert {_call(name, args)} == {fn(*args)!r}" for args in cases]
        question = (f"Write a Python function `{name}({_PARAMS[template]})` that {does}.\n"
                    f"Your code should pass this test:\n{asserts[0]}")
        tasks.append(Task(question, "code", f"simple_functions/{seed}/{i}", None, entry_point=name,
                          public_tests=asserts[0] + "\n", hidden_tests="\n".join(asserts[1:]) + "\n",
                          source="simple_functions",
                          meta={"test_format": "assert", "template": template.__name__.removeprefix("_fn_")}))
    return tasks


def _seed(path: PathLike | None, split: str | None, name: str) -> int:
    if path is not None:
        raise UserError(f"dataset {name!r} is generated, not read: pass no path (choose a split for another seed)")
    split = split or "test"
    if split not in SPLIT_SEEDS:
        raise UserError(f"unknown split {split!r} for {name!r}; use one of {', '.join(SPLIT_SEEDS)}")
    return SPLIT_SEEDS[split]


@register_dataset("arithmetic", kind="math", default_metric="accuracy")
def load_arithmetic(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Generated integer arithmetic expressions (offline, seeded by split)."""
    return generate_arithmetic(DEFAULT_SIZE if limit is None else limit, seed=_seed(path, split, "arithmetic"))


@register_dataset("gsm_synthetic", kind="math", default_metric="accuracy")
def load_gsm_synthetic(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Generated GSM8K-style word problems with integer answers (offline, seeded by split)."""
    return generate_word_problems(DEFAULT_SIZE if limit is None else limit, seed=_seed(path, split, "gsm_synthetic"))


@register_dataset("number_lists", kind="math", default_metric="accuracy")
def load_number_lists(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Generated questions about short integer lists (offline, seeded by split)."""
    return generate_number_lists(DEFAULT_SIZE if limit is None else limit, seed=_seed(path, split, "number_lists"))


@register_dataset("percentages", kind="math", default_metric="accuracy")
def load_percentages(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Generated percentage questions with integer answers (offline, seeded by split)."""
    return generate_percentages(DEFAULT_SIZE if limit is None else limit, seed=_seed(path, split, "percentages"))


@register_dataset("simple_functions", kind="code", default_metric="pass@1")
def load_simple_functions(path: PathLike | None, *, limit: int | None = None,
                          split: str | None = None) -> list[Task]:
    """Generated one-line Python function tasks, MBPP-style tests (offline, seeded by split).

    The task space is small, so the validation and test splits leave out every task the first
    :data:`HELD_OUT_OF_TRAIN` training tasks hold: they stay held out."""
    n = DEFAULT_SIZE if limit is None else limit
    seed = _seed(path, split, "simple_functions")
    if seed == SPLIT_SEEDS["train"]:
        return generate_simple_functions(n, seed=seed)
    seen = {t.question for t in generate_simple_functions(HELD_OUT_OF_TRAIN, seed=SPLIT_SEEDS["train"])}
    fresh = [t for t in generate_simple_functions(4 * n + 50, seed=seed) if t.question not in seen]
    if len(fresh) < n:
        raise UserError(f"simple_functions has only {len(fresh)} tasks outside the training split; ask for fewer")
    return fresh[:n]


HELD_OUT_OF_TRAIN = 1000
"""Training tasks of ``simple_functions`` that no validation or test task repeats."""
