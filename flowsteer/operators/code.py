"""Operators that run code: Programmer (writes and runs a program) and Test (runs public tests).

Generated code only ever runs through :class:`flowsteer.sandbox.Sandbox` (a separate, limited
process), never in the library's process.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from flowsteer.operators.base import Operator, OperatorCall, OperatorResult, Usage
from flowsteer.operators.llm import SECTION_PREVIOUS_ATTEMPT, LLMOperator, load_prompt
from flowsteer.operators.parsing import extract_code, primary
from flowsteer.operators.solvers import defines_function

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["Programmer", "Test", "describe_failure", "lone_function"]

SECTION_REQUIREMENTS = "## Program requirements"
_SOLVE_HARNESS = """

if __name__ == "__main__":
    __flowsteer_result = solve()
    if __flowsteer_result is not None:
        print(__flowsteer_result)
"""


def lone_function(code: str) -> str | None:
    """The name of the one top-level function that ``code`` defines and never calls, when it can be
    called without arguments; None otherwise (several functions, required parameters, a call
    already there, or code that does not parse).

    Small executors often write ``def total(): return 48 + 24`` and stop: the program prints
    nothing, yet its answer is one call away. Calling that function is an honest recovery (the
    value is the program's own), unlike reading a number out of the source.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(functions) != 1:
        return None
    fn = functions[0]
    required = len(fn.args.posonlyargs) + len(fn.args.args) - len(fn.args.defaults)
    if required or any(d is None for d in fn.args.kw_defaults):
        return None
    called = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == fn.name
                 for stmt in tree.body if stmt is not fn for n in ast.walk(stmt))
    return None if called else fn.name


def _call_harness(name: str) -> str:
    return _SOLVE_HARNESS.replace("solve()", f"{name}()")


def _defines_check(entry_point: str) -> str:
    return (f"\n\nif not callable(globals().get({entry_point!r})):\n"
            f"    raise NameError('the code does not define a function named {entry_point}')\n")


def describe_failure(result: Any) -> str:
    """One readable paragraph for a failed :class:`~flowsteer.sandbox.SandboxResult`."""
    match result.status:
        case "timeout":
            head = "the program timed out (infinite loop or too slow)"
        case "killed":
            head = "the program was killed (memory or process limit)"
        case _:
            kind = result.error_type or f"exit code {result.exit_code}"
            head = f"{kind}: {result.error_message or 'no message'}"
    tail = (result.stderr or "").strip()[-800:]
    return f"{head}\n{tail}".strip() if tail and tail not in head else head


def _last_line(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Programmer(LLMOperator):
    """Write a Python program and run it in the sandbox, retrying with the error fed back.

    Math/QA: the program defines ``solve()`` returning the answer; the output is what it prints
    (last line). Code tasks: the program implements ``task.entry_point``; the output is the code.
    ``params["attempts"]`` (default 2) bounds the write-run rounds; ``params["timeout"]`` the run.
    """

    name = "Programmer"
    prompt_file = "programmer.txt"

    def sections(self, call: OperatorCall) -> list[tuple[str, str]]:
        kind = "code" if call.task.kind == "code" else "solve"
        rules = load_prompt(f"programmer_{kind}.txt")
        rules = rules.replace("{entry_point}", call.task.entry_point or "the requested function")
        return [*super().sections(call), (SECTION_REQUIREMENTS, rules)]

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        attempts = max(1, int(call.params.get("attempts", 2)))
        usage = Usage()
        extra: list[tuple[str, str]] = []
        code, error, raw = "", "", ""
        for attempt in range(1, attempts + 1):
            raw, used = await self.ask(self.messages(call, extra), config)
            usage = usage + used
            written = self.parse(raw, call)
            if written.error is not None:
                error = written.error
                extra = [(SECTION_PREVIOUS_ATTEMPT, f"{raw.strip()[:1500]}\n\nError: {error}")]
                continue
            code = written.output
            result = await self._execute(code, call)
            if result.error is None:
                data = {**result.data, "code": code, "attempts": attempt, "raw": raw}
                return OperatorResult(output=result.output, data=data, usage=usage)
            error = result.error
            extra = [(SECTION_PREVIOUS_ATTEMPT, f"```python\n{code}\n```\nError: {error}")]
        # a math/QA answer is the program's value: never hand its source on as the answer
        output = code if call.task.kind == "code" else ""
        return OperatorResult(output=output, usage=usage, data={"code": code, "attempts": attempts, "raw": raw},
                              error=f"program failed after {attempts} attempt(s): {error}")

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        """The program in a reply (not yet run)."""
        code = extract_code(text)
        if code is None:
            return OperatorResult(output="", error="no Python code in the reply; answer with the program "
                                  "inside <code>...</code>")
        return OperatorResult(output=code, data={"code": code})

    async def _execute(self, code: str, call: OperatorCall) -> OperatorResult:
        timeout = call.params.get("timeout")
        entry = call.task.entry_point
        if call.task.kind == "code":
            if not defines_function(code, entry):
                return OperatorResult(output=code, error=f"the code does not define {entry}()")
            result = await self.context.sandbox.arun(code + _defines_check(entry) if entry else code,
                                                     timeout=timeout)
            if not result.ok:
                return OperatorResult(output=code, error=describe_failure(result))
            return OperatorResult(output=code, data={"stdout": result.stdout})
        program = code + _SOLVE_HARNESS if defines_function(code, "solve") else code
        result = await self.context.sandbox.arun(program, timeout=timeout)
        if not result.ok:
            return OperatorResult(output="", error=describe_failure(result))
        answer = _last_line(result.stdout)
        lone = None if answer else lone_function(code)
        if lone is not None:  # silent program with one uncalled function: its value is the answer
            called = await self.context.sandbox.arun(code + _call_harness(lone), timeout=timeout)
            if not called.ok:
                return OperatorResult(output="", error=describe_failure(called))
            result, answer = called, _last_line(called.stdout)
        if not answer:
            return OperatorResult(output="", error="the program printed nothing: solve() must return "
                                  "the answer (or the program must print it)")
        data = {"stdout": result.stdout, **({"called": lone} if lone else {})}
        return OperatorResult(output=answer, data=data)


class Test(Operator):
    """Run the task's public tests (never the hidden ones) on the candidate code.

    Without public tests it smoke-tests that the code runs and defines the entry point. The
    verdict is True when the tests pass; the feedback carries the error; the output is the tested
    code. On a math/QA task it runs a program found in the input and checks it runs cleanly.
    """

    name = "Test"

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        solution = primary(call.input)
        code = extract_code(solution) if solution else None
        task = call.task
        if code is None:
            if task.kind == "code":
                return OperatorResult(output=solution, verdict=False,
                                      feedback="There is no code to test: write the solution as Python code.",
                                      data={"mode": "none"})
            return OperatorResult(output=solution, error="Test checks code, and this answer has no program; "
                                  "use Verify or Review to check a math/QA answer")
        timeout = call.params.get("timeout")
        if task.kind == "code" and task.public_tests:
            result = await self.context.sandbox.acheck(code, task.public_tests, entry_point=task.entry_point,
                                                       timeout=timeout)
            mode, passed_text = "public_tests", "All public tests passed."
        else:
            program = code + _defines_check(task.entry_point) if task.entry_point else code
            result = await self.context.sandbox.arun(program, timeout=timeout)
            mode = "smoke"
            passed_text = ("No public tests: the code runs and defines "
                           f"{task.entry_point}." if task.entry_point else "The program runs without errors.")
        data = {"mode": mode, "status": result.status, "error_type": result.error_type,
                "stdout": result.stdout[-2000:]}
        output = code if task.kind == "code" else solution
        if result.ok:
            return OperatorResult(output=output, verdict=True, feedback=passed_text, data=data)
        what = "Public tests failed" if mode == "public_tests" else "The code failed to run"
        return OperatorResult(output=output, verdict=False, feedback=f"{what}: {describe_failure(result)}",
                              data=data)
