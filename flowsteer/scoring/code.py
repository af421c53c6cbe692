"""Code answers: pass@1 on the task's **hidden** tests, run in the sandbox.

The public tests a workflow's Test operator saw are never used for scoring (the reference scored
with the very tests it showed the workflow, spec 13.17). Three test formats, chosen by
``task.meta["test_format"]``:

* ``"assert"`` (default): ``hidden_tests`` is Python run after the candidate; a HumanEval-style
  ``def check(candidate)`` is called with the entry point (``Sandbox.check``);
* ``"stdio"``: ``hidden_tests`` is JSON ``{"inputs": [...], "outputs": [...]}``; the program reads
  each input on stdin and its stdout must match (whitespace-insensitive, per token), as in APPS;
* ``"ds1000"``: ``hidden_tests`` is a DS-1000 ``code_context`` whose ``test_execution(code)`` (and
  ``test_string(code)`` when defined) receives the candidate as a string.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from flowsteer.errors import UserError
from flowsteer.scoring.base import Score
from flowsteer.tasks import Task

if TYPE_CHECKING:
    from flowsteer.sandbox import Sandbox, SandboxResult

__all__ = ["extract_code", "prepare_program", "score_code", "ascore_code", "stdout_matches", "TEST_FORMATS"]

TEST_FORMATS = ("assert", "stdio", "ds1000")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code in a reply: the last Python fenced block that defines ``entry_point`` (else the last
    Python block), or the whole text when there are no fences. DS-1000 end markers are dropped."""
    text = text or ""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _CODE_LANGS]
    if blocks:
        defining = [b for b in blocks if entry_point and re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
        code = (defining or blocks)[-1]
    else:
        code = _strip_prose(text)
    code = re.sub(r"</code>|END SOLUTION|BEGIN SOLUTION|<code>", "", code)
    return code.strip("\n").rstrip()


def _strip_prose(text: str) -> str:
    """Unfenced replies sometimes open with a sentence; start at the first code line if that compiles."""
    try:
        compile(text, "<answer>", "exec")  # compiling never runs anything
        return text
    except (SyntaxError, ValueError):
        pass
    match = re.search(r"^(?:def |class |import |from |@)", text, re.MULTILINE)
    return text[match.start():] if match else text


def prepare_program(task: Task, code: str) -> str:
    """Make a HumanEval-style answer runnable: a bare function body gets the original prompt in front,
    and the prompt's imports are added when the answer defines the function without them."""
    prompt = str(task.meta.get("prompt") or "")
    if not prompt or not task.entry_point:
        return code
    if not re.search(rf"\bdef\s+{re.escape(task.entry_point)}\s*\(", code):
        if code and code[0] in " \t":  # a completion of the prompt's function body
            return prompt + code + "\n"
        return code
    imports = [line for line in prompt.splitlines() if re.match(r"(?:from\s+\S+\s+)?import\s", line)]
    missing = [line for line in imports if line not in code]
    return "\n".join([*missing, code]) if missing else code


def _test_format(task: Task) -> str:
    fmt = str(task.meta.get("test_format", "assert"))
    if fmt not in TEST_FORMATS:
        raise UserError(f"task {task.id!r}: unknown test_format {fmt!r}; use one of {TEST_FORMATS}")
    if not task.hidden_tests or not task.hidden_tests.strip():
        raise UserError(
            f"task {task.id!r} has no hidden_tests: code scoring runs hidden tests only (never the "
            "public ones the workflow saw); give the task hidden_tests"
        )
    return fmt


def stdout_matches(actual: str, expected: str) -> bool:
    """APPS-style comparison: equal token sequences, numbers compared as floats when both parse."""
    got, want = actual.split(), expected.split()
    if got == want:
        return True
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        try:
            if abs(float(a) - float(b)) > 1e-6 * max(1.0, abs(float(b))):
                return False
        except ValueError:
            if a != b:
                return False
    return True


def _stdio_cases(task: Task) -> list[tuple[str, str]]:
    try:
        spec = json.loads(task.hidden_tests or "")
        inputs, outputs = spec["inputs"], spec["outputs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"task {task.id!r}: stdio hidden_tests must be JSON {{\"inputs\": [...], \"outputs\": [...]}} ({exc})"
        ) from None
    as_text = lambda v: "\n".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
    return [(as_text(i), as_text(o)) for i, o in zip(inputs, outputs, strict=False)]


def _ds1000_program(context: str, code: str) -> str:
    calls = "test_execution(code)\n" + ("test_string(code)\n" if "test_string(" in context else "")
    return f"{context}\ncode = {code!r}\n{calls}"


def _result_details(result: SandboxResult) -> dict[str, Any]:
    return {"status": result.status, "error_type": result.error_type,
            "error_message": (result.error_message or "")[:500], "seconds": result.seconds,
            "sandbox": result.backend, "verdict": result.verdict}


def _default_sandbox(sandbox: Sandbox | None) -> Sandbox:
    if sandbox is not None:
        return sandbox
    from flowsteer.sandbox import Sandbox

    return Sandbox()


def _prepare(task: Task, answer: str) -> tuple[str, str]:
    """(test format, runnable program) for an answer; raises UserError for a task that cannot be scored."""
    return _test_format(task), prepare_program(task, extract_code(answer, task.entry_point))


def _stdio_failure(result: SandboxResult, expected: str) -> bool:
    return not result.ok or not stdout_matches(result.stdout, expected)


def _stdio_score(passed: int, cases: int, failed: SandboxResult | None) -> Score:
    if failed is None:
        return Score(1.0, True, {"status": "ok", "format": "stdio", "passed": passed, "cases": cases})
    return Score(0.0, False, {**_result_details(failed), "format": "stdio", "failed_case": passed,
                              "passed": passed, "cases": cases})


def _final(result: SandboxResult, fmt: str) -> Score:
    return Score(1.0 if result.ok else 0.0, result.ok, {**_result_details(result), "format": fmt})


def score_code(task: Task, answer: str, *, sandbox: Sandbox | None = None) -> Score:
    """pass@1: 1.0 when the extracted program passes every hidden test, else 0.0."""
    fmt, code = _prepare(task, answer)
    if not code.strip():
        return Score(0.0, False, {"status": "empty", "format": fmt})
    box = _default_sandbox(sandbox)
    if fmt == "stdio":
        cases = _stdio_cases(task)
        for index, (stdin, expected) in enumerate(cases):
            result = box.run(code, stdin=stdin)
            if _stdio_failure(result, expected):
                return _stdio_score(index, len(cases), result)
        return _stdio_score(len(cases), len(cases), None)
    if fmt == "ds1000":
        return _final(box.run(_ds1000_program(task.hidden_tests or "", code)), fmt)
    return _final(box.check(code, task.hidden_tests or "", entry_point=task.entry_point), fmt)


async def ascore_code(task: Task, answer: str, *, sandbox: Sandbox | None = None) -> Score:
    """Async twin of :func:`score_code` (the sandbox's async methods; no thread is blocked)."""
    fmt, code = _prepare(task, answer)
    if not code.strip():
        return Score(0.0, False, {"status": "empty", "format": fmt})
    box = _default_sandbox(sandbox)
    if fmt == "stdio":
        cases = _stdio_cases(task)
        for index, (stdin, expected) in enumerate(cases):
            result = await box.arun(code, stdin=stdin)
            if _stdio_failure(result, expected):
                return _stdio_score(index, len(cases), result)
        return _stdio_score(len(cases), len(cases), None)
    if fmt == "ds1000":
        return _final(await box.arun(_ds1000_program(task.hidden_tests or "", code)), fmt)
    return _final(await box.acheck(code, task.hidden_tests or "", entry_point=task.entry_point), fmt)
