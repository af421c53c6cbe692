"""Deterministic scorers on real benchmark records and tricky hand-made answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _paths import SHARED_DATA

from flowsteer.datasets import load_dataset
from flowsteer.errors import UserError
from flowsteer.scoring import ascore, score
from flowsteer.scoring.code import extract_code, stdout_matches
from flowsteer.scoring.math import extract_answer, extract_boxed, math_equal
from flowsteer.scoring.qa import exact_match, normalize_answer, token_f1
from flowsteer.tasks import Task

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = SHARED_DATA


def math_task(gold: str) -> Task:
    return Task("q", "math", answer=gold)


# -- math: extraction -------------------------------------------------------------------------
def test_boxed_with_nested_braces_takes_the_last_box():
    text = r"First \boxed{1}. Finally $\boxed{\frac{\sqrt{3}}{2}}$ and done."
    assert extract_boxed(text) == r"\frac{\sqrt{3}}{2}"
    assert extract_boxed(r"\boxed 7") == "7"
    assert extract_boxed("no box") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She pays 5 + 4 = 9 dollars.\n#### 1,000", "1,000"),
        ("The answer is 42.", "42"),
        ("Therefore, the final answer is: $\\frac{1}{2}$.", "$\\frac{1}{2}$"),
        ("We add 3 and 4 to get 7 apples in total", "7"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("(3, \\pi/2)", "(3, \\pi/2)"),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# -- math: equivalence ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, gold",
    [
        ("0.5", "1/2"),
        ("50%", "0.5"),
        ("1/2", "50\\%"),
        ("\\frac{1}{2}", "\\dfrac12"),
        ("\\tfrac{3}{4}", "0.75"),
        ("10", "10.0"),
        ("1,000", "1000"),
        ("1{,}000", "1000"),
        ("2\\sqrt{3}", "\\sqrt{12}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"),
        ("\\frac{\\pi}{3}", "\\pi/3"),
        ("336", "336^\\circ"),
        ("336^{\\circ}", "336"),
        ("\\$18", "18"),
        ("18 dollars", "18"),
        ("x = 5", "5"),
        ("\\text{5 inches}", "5"),
        ("x^2+2x+1", "(x+1)^2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("[-2, 5)", "[-2,5)"),
        ("1, -2", "-2, 1"),
        ("0.3333", "\\frac13"),
        ("\\infty", "\\infty"),
        ("C", "\\text{(C)}"),
    ],
)
def test_equivalent_answers(pred, gold):
    assert math_equal(pred, gold)
    assert score(math_task(gold), pred).correct


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("-3", "3"),
        ("142", "42"),
        ("4200", "42"),
        ("The answer is 420", "42"),
        ("50", "0.5"),
        ("0.33", "\\frac13"),
        ("3.14", "\\pi"),
        ("1000001", "1000000"),
        ("x", "y"),
        ("(1, 2)", "[1, 2]"),
        ("(1, 2)", "(2, 1)"),
        ("1, 2", "1, 2, 3"),
        ("", "0"),
    ],
)
def test_different_answers(pred, gold):
    assert not math_equal(pred, gold)
    assert score(math_task(gold), pred).value == 0.0


def test_a_wrong_answer_containing_the_right_number_does_not_score():
    task = math_task("42")
    assert score(task, "Adding gives 42 + 100 = 142. The answer is 142.").value == 0.0
    assert score(task, "I first thought 42 but the answer is 24").value == 0.0
    assert score(task, "The answer is 42.").value == 1.0


def test_unsafe_or_huge_expressions_are_not_evaluated():
    assert not math_equal("__import__('os').getcwd()", "0")
    assert not math_equal("2^{10^{10}}", "1")  # power towers are refused, not computed
    assert not math_equal("9^9^9", "9^{9^9}")
    assert math_equal("(2^3)^4", "4096")


def test_gsm8k_records_score_their_own_solutions():
    raw = [json.loads(line) for line in (FIXTURES / "gsm8k" / "test.jsonl").read_text().splitlines()]
    tasks = load_dataset("gsm8k", FIXTURES / "gsm8k")
    for record, task in zip(raw, tasks, strict=True):
        assert score(task, record["answer"]).correct  # the worked solution ends "#### <gold>"
        assert not score(task, f"The answer is {int(task.answer) + 1}.").correct


def test_math500_records_score_their_solutions():
    raw = [json.loads(line) for line in (FIXTURES / "math" / "math500_test.jsonl").read_text().splitlines()]
    for record, task in zip(raw, load_dataset("math", FIXTURES / "math"), strict=True):
        assert score(task, record["solution"]).correct
    polar = load_dataset("math", FIXTURES / "math", limit=1)[0]
    assert score(polar, "So $(r, \\theta) = \\boxed{(3, \\frac{\\pi}{2})}$").correct
    assert not score(polar, "\\boxed{(3, \\pi)}").correct


def test_aime_degree_answer():
    tasks = load_dataset("aime2025", FIXTURES / "aime2025")
    degrees = tasks[4]
    assert degrees.answer == "336^\\circ"
    for good in ("336", "\\boxed{336}", "The answer is $336^\\circ$.", "336°"):
        assert score(degrees, good).correct, good
    assert not score(degrees, "\\boxed{337}").correct
    assert score(tasks[0], "\\boxed{468}").correct


def test_mathqa_option_letters():
    task = load_dataset("mathqa", FIXTURES / "mathqa", limit=1)[0]  # gold "a", options a) 12 ...
    for good in ("a", "(a)", "A", "The answer is a ) 12", "Answer: (A)", "\\boxed{a}", "x = 12"):
        assert score(task, good).correct, good
    for bad in ("b", "The answer is (c)", "16", "I don't know"):
        assert not score(task, bad).correct, bad


@pytest.mark.skipif(not (SHARED / "math" / "math500_test.jsonl").exists(), reason="shared data absent")
def test_all_math500_solutions_match_their_answers_and_not_each_other():
    rows = [json.loads(line) for line in (SHARED / "math" / "math500_test.jsonl").read_text().splitlines()]
    assert all(math_equal(extract_answer(r["solution"]), r["answer"]) for r in rows)
    distinct = [(a["answer"], b["answer"]) for a, b in zip(rows, rows[1:], strict=False) if a["answer"] != b["answer"]]
    false_hits = [pair for pair in distinct if math_equal(*pair)]
    assert len(false_hits) <= 2, false_hits  # coincidences such as "5" vs "x=5" only


# -- QA ---------------------------------------------------------------------------------------
def test_squad_normalisation_and_multiset_f1():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("The Normans.", "normans") == 1.0
    assert token_f1("cat cat dog", "cat dog") == pytest.approx(0.8)  # a set overlap would give 1.0
    assert token_f1("Denmark and Norway", "Denmark, Iceland and Norway") == pytest.approx(6 / 7)
    assert token_f1("", "x") == 0.0


def test_qa_takes_the_best_gold_variant():
    task = load_dataset("nq", FIXTURES / "nq_open", limit=1)[0]  # ["14 December 1972 UTC", "December 1972"]
    s = score(task, "The answer is December 1972.")
    assert s.correct and s.value == 1.0 and s.details["gold"] == "December 1972"
    partial = score(task, "1972")
    assert 0 < partial.value < 1 and not partial.correct


def test_squad_v2_unanswerable_and_answerable():
    tasks = load_dataset("squad_v2", FIXTURES / "squad_v2")
    answerable = tasks[0]
    impossible = next(t for t in tasks if t.meta["is_impossible"])
    assert score(answerable, "France").correct
    assert score(answerable, "").value == 0.0
    assert score(answerable, "unanswerable").value == 0.0
    for abstain in ("", "unanswerable", "No answer.", "<answer>unanswerable</answer>"):
        assert score(impossible, abstain).value == 1.0, abstain
    assert score(impossible, "Rollo").value == 0.0


def test_hotpot_yes_no_and_triviaqa_aliases():
    yes_no = load_dataset("hotpotqa", FIXTURES / "hotpotqa")[2]
    assert yes_no.answer in ("yes", "no")
    assert score(yes_no, f"Answer: {yes_no.answer.capitalize()}.").correct
    trivia = load_dataset("triviaqa", FIXTURES / "triviaqa")[0]
    assert score(trivia, "sunset blvd").correct
    assert score(trivia, "Sunset Boulevard").correct
    assert not score(trivia, "Cats").correct


# -- code -------------------------------------------------------------------------------------
def test_extract_code_picks_the_fence_defining_the_entry_point():
    reply = "Plan:\n```python\nimport os\n```\nCode:\n```python\ndef f(x):\n    return x\n```\nDone."
    assert extract_code(reply, "f") == "def f(x):\n    return x"
    assert extract_code("```py\nprint(1)\n") == "print(1)"  # unterminated fence
    assert extract_code("def g():\n    pass\n") == "def g():\n    pass"
    assert extract_code("```\nresult = 1\n```\n</code>\nEND SOLUTION") == "result = 1"


def test_stdout_comparison_is_whitespace_and_float_tolerant():
    assert stdout_matches("6\n", "6")
    assert stdout_matches("1 2\n3\n", "1 2 3")
    assert stdout_matches("0.3333333", "0.33333333")
    assert not stdout_matches("7", "6")


@pytest.fixture(scope="module")
def sandbox():
    from flowsteer.sandbox import Sandbox

    return Sandbox()


@pytest.fixture(scope="module")
def humaneval_tasks():
    return load_dataset("humaneval", FIXTURES / "humaneval")


def test_humaneval_canonical_passes_and_broken_fails(sandbox, humaneval_tasks):
    task = humaneval_tasks[0]
    canonical = task.meta["reference_solution"]
    assert score(task, f"Here it is:\n```python\n{canonical}\n```", sandbox=sandbox).correct
    body = canonical[len(task.meta["prompt"]):]
    assert score(task, body, sandbox=sandbox).correct  # a completion of the prompt's body
    broken = canonical.replace("< threshold", "> threshold")
    s = score(task, broken, sandbox=sandbox)
    assert not s.correct and s.details["error_type"] == "AssertionError"


def test_missing_prompt_imports_are_added(sandbox, humaneval_tasks):
    task = humaneval_tasks[0]
    code = ("def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    assert score(task, code, sandbox=sandbox).correct


def test_public_tests_are_never_used_for_scoring(sandbox):
    always_one = "def f(x):\n    return 1\n"
    task = Task("write f", "code", "t", entry_point="f", public_tests="assert f(5) == 1\n",
                hidden_tests="assert f(2) == 4\n")
    assert not score(task, always_one, sandbox=sandbox).correct  # passes public, fails hidden
    square = "def f(x):\n    return x * x\n"
    assert score(task, square, sandbox=sandbox).correct  # fails public, passes hidden
    with pytest.raises(UserError, match="hidden_tests"):
        score(Task("write f", "code", "u", entry_point="f", public_tests="assert f(1) == 1\n"), square)


def test_mbpp_references_pass_their_hidden_tests(sandbox):
    for task in load_dataset("mbpp", FIXTURES / "mbpp", limit=3):
        assert score(task, task.meta["reference_solution"], sandbox=sandbox).correct, task.id
    task = load_dataset("mbpp", FIXTURES / "mbpp", limit=1)[0]
    assert not score(task, f"def {task.entry_point}(*args):\n    return 0\n", sandbox=sandbox).correct


def test_apps_stdio_and_call_based(sandbox):
    stdio, call = load_dataset("apps", FIXTURES / "apps")
    assert score(stdio, "n = int(input())\nprint(sum(map(int, input().split())))\n", sandbox=sandbox).correct
    wrong = score(stdio, "n = int(input())\nprint(n)\n", sandbox=sandbox)
    assert not wrong.correct and wrong.details["failed_case"] == 0
    solution = "class Solution:\n    def doubleSum(self, a, b):\n        return 2 * (a + b)\n"
    assert score(call, solution, sandbox=sandbox).correct
    assert not score(call, solution.replace("2 * ", ""), sandbox=sandbox).correct


def test_ds1000_harness(sandbox):
    plain, no_sorted = load_dataset("ds1000", FIXTURES / "ds1000")
    assert score(plain, "```python\nresult = sorted(data)\n```", sandbox=sandbox).correct
    assert not score(plain, "result = data", sandbox=sandbox).correct
    assert score(no_sorted, no_sorted.meta["reference_solution"], sandbox=sandbox).correct
    refused = score(no_sorted, "result = sorted(data)\n</code>\nEND SOLUTION", sandbox=sandbox)
    assert not refused.correct and "list.sort" in refused.details["error_message"]


async def test_ascore_matches_score(sandbox, humaneval_tasks):
    task = humaneval_tasks[1]
    assert (await ascore(task, task.meta["reference_solution"], sandbox=sandbox)).correct
    assert not (await ascore(task, "def truncate_number(number):\n    return 0.0\n", sandbox=sandbox)).correct
    assert (await ascore(math_task("7"), "\\boxed{7}")).correct
    assert score(task, "", sandbox=sandbox).details["status"] == "empty"


def test_unfenced_reply_with_a_leading_sentence():
    reply = "Here is the solution:\ndef f(x):\n    return x + 1\n"
    assert extract_code(reply, "f") == "def f(x):\n    return x + 1"
    assert extract_code("x = 1\nprint(x)") == "x = 1\nprint(x)"


def test_math_verify_accepts_what_the_built_in_checker_misses_and_never_a_wrong_answer():
    pytest.importorskip("math_verify")
    from flowsteer.scoring.math import answer_matches

    # text answers and base subscripts: the built-in checker misses them, math-verify does not
    assert not math_equal(extract_answer("$\\text{Evelyn}$"), "\\text{Evelyn}")
    assert answer_matches("$\\text{Evelyn}$", "\\text{Evelyn}")
    assert score(math_task("52_8"), "$52_8$").correct
    # what only the built-in checker reads still passes; wrong answers still fail
    assert answer_matches("1, -2", "-2, 1") and answer_matches("0.3333", "\\frac13")
    assert not answer_matches("$53_8$", "52_8") and not answer_matches("\\text{Eve}", "\\text{Evelyn}")
    assert not answer_matches("", "1") and not answer_matches("x^2 +", "x^2")


def test_math_verify_prints_no_timeout_notice(caplog):
    pytest.importorskip("math_verify")
    import math_verify.grader
    import math_verify.parser

    from flowsteer.scoring.math import answer_matches

    math_verify.parser.TIMEOUT_WARNING_SHOWN = math_verify.grader.TIMEOUT_WARNING_SHOWN = False
    with caplog.at_level("WARNING"):
        assert answer_matches("$\\text{Evelyn}$", "\\text{Evelyn}")
    assert "Timeout is disabled" not in caplog.text
