"""Dataset registry, loaders (fixtures in the original layouts, plus the real files when present)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from _paths import SHARED_DATA

from flowsteer.datasets import (
    dataset_names,
    generate_arithmetic,
    generate_simple_functions,
    generate_word_problems,
    get_dataset,
    load_dataset,
    register_dataset,
)
from flowsteer.datasets.code_loaders import docstring_tests, mbpp_entry_point
from flowsteer.datasets.loaders import parse_mathqa_options
from flowsteer.errors import UserError
from flowsteer.scoring import score
from flowsteer.tasks import Task

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = SHARED_DATA
BUILTINS = {"gsm8k", "math", "aime2025", "mathqa", "hotpotqa", "squad_v2", "triviaqa", "nq", "nq_open", "mbpp",
            "humaneval", "apps", "ds1000", "arithmetic", "gsm_synthetic"}


# -- registry ---------------------------------------------------------------------------------
def test_builtin_names_kinds_and_metrics():
    assert BUILTINS <= set(dataset_names())
    assert get_dataset("squad_v2").kind == "qa" and get_dataset("squad_v2").default_metric == "f1"
    assert get_dataset("humaneval").default_metric == "pass@1"
    assert get_dataset("mathqa").kind == "math"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown dataset 'gsm9k'.*gsm8k.*squad_v2"):
        load_dataset("gsm9k")


def test_register_a_user_dataset():
    @register_dataset("toy_qa_for_tests", kind="qa", default_metric="f1", replace=True)
    def load_toy(path, *, limit=None, split=None):
        """Two toy questions."""
        return [Task(f"q{i}", "qa", f"toy/{i}", "a") for i in range(2)]

    assert "toy_qa_for_tests" in dataset_names()
    assert get_dataset("toy_qa_for_tests").description == "Two toy questions."
    assert [t.id for t in load_dataset("toy_qa_for_tests", limit=1)] == ["toy/0"]
    with pytest.raises(UserError, match="already registered"):
        register_dataset("toy_qa_for_tests", kind="qa", default_metric="f1")(load_toy)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"kind": "poetry", "default_metric": "f1"}, "kind"), ({"kind": "qa", "default_metric": "bleu"}, "metric")],
)
def test_register_validates(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        register_dataset("bad_one", **kwargs)


def test_limit_is_validated_and_applied():
    assert len(load_dataset("gsm8k", FIXTURES / "gsm8k", limit=2)) == 2
    assert load_dataset("gsm8k", FIXTURES / "gsm8k", limit=0) == []
    with pytest.raises(UserError, match="limit"):
        load_dataset("gsm8k", FIXTURES / "gsm8k", limit=-1)


# -- math loaders -----------------------------------------------------------------------------
def test_gsm8k_gold_is_after_hashes_without_commas(tmp_path):
    tasks = load_dataset("gsm8k", FIXTURES / "gsm8k")
    assert [t.answer for t in tasks] == ["18", "3", "70000"]
    assert tasks[0].kind == "math" and tasks[0].id == "gsm8k/test/0" and tasks[0].question.startswith("Janet")
    f = tmp_path / "train.jsonl"
    f.write_text(json.dumps({"question": "How many?", "answer": "5 * 200 = 1000\n#### 1,000"}) + "\n")
    task = load_dataset("gsm8k", f)[0]
    assert task.answer == "1000" and task.id == "gsm8k/train/0"


def test_math_500_and_full_test_layouts():
    m500 = load_dataset("math", FIXTURES / "math")
    assert m500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert m500[0].id == "test/precalculus/807.json" and m500[0].meta["level"] == 2
    full = load_dataset("math", FIXTURES / "math" / "math_test_5000.jsonl")
    assert full[0].answer == "2" and full[0].id == "math/0"  # last \boxed of the solution
    assert full[0].meta["level"] == 3 and full[0].meta["subject"] == "Algebra"


def test_aime_keeps_the_degree_answer():
    tasks = load_dataset("aime2025", FIXTURES / "aime2025")
    assert [t.answer for t in tasks] == ["468", "49", "82", "106", "336^\\circ"]


def test_mathqa_becomes_multiple_choice():
    tasks = load_dataset("mathqa", FIXTURES / "mathqa")
    first = tasks[0]
    assert first.answer == "a"
    assert dict(first.meta["choices"]) == {"a": "12", "b": "16", "c": "18", "d": "24", "e": "26"}
    assert "(b) 16" in first.question and "letter" in first.question
    listed = tasks[3]  # options stored as a Python list repr in this derivative file
    assert listed.meta["choices"]["e"] == "none" and listed.meta["choices"]["a"] == "462 cm ²"
    assert parse_mathqa_options("a ) rs . 1,200 , b ) 1 : 87 , c ) 3") == {"a": "rs . 1,200", "b": "1 : 87", "c": "3"}


# -- QA loaders -------------------------------------------------------------------------------
def test_hotpotqa_question_holds_titled_passages():
    tasks = load_dataset("hotpotqa", FIXTURES / "hotpotqa")
    first = tasks[0]
    assert first.kind == "qa" and first.answer == "Gesellschaft mit beschränkter Haftung"
    assert first.question.startswith("Based on the following passages")
    assert "[Constantin Medien]\n" in first.question
    assert first.question.rstrip().endswith("Question: VIVA Media AG changed it's name in 2004. "
                                            "What does their new acronym stand for?")
    assert len(re.findall(r"^\[.+\]$", first.question, re.MULTILINE)) == 10


def test_squad_v2_unanswerable_gold_is_empty():
    tasks = load_dataset("squad_v2", FIXTURES / "squad_v2")
    assert len(tasks) == 9
    assert tasks[0].answer == ("France",) and not tasks[0].meta["is_impossible"]
    impossible = [t for t in tasks if t.meta["is_impossible"]]
    assert len(impossible) == 4 and all(t.answer == ("",) for t in impossible)
    assert "[Normans]" in tasks[0].question and "unanswerable" in tasks[0].question


def test_triviaqa_and_nq():
    trivia = load_dataset("triviaqa", FIXTURES / "triviaqa" / "triviaqa_sample.json")[0]
    assert trivia.id == "tc_33" and trivia.answer[0] == "Sunset Boulevard" and "sunset blvd" in trivia.answer
    nq = load_dataset("nq", FIXTURES / "nq_open")
    assert nq[0].answer == ("14 December 1972 UTC", "December 1972")
    assert load_dataset("nq_open", FIXTURES / "nq_open")[0].source == "nq_open"


# -- code loaders -----------------------------------------------------------------------------
def test_mbpp_public_and_hidden_tests_are_disjoint():
    tasks = load_dataset("mbpp", FIXTURES / "mbpp")
    assert [t.id for t in tasks] == ["mbpp/1", "mbpp/11", "mbpp/12", "mbpp/511", "mbpp/601"]
    for task in tasks:
        public = [line for line in task.public_tests.splitlines() if line.startswith("assert")]
        hidden = [line for line in task.hidden_tests.splitlines() if line.startswith("assert")]
        assert len(public) == 1 and len(hidden) >= 2
        assert not set(public) & set(hidden)
        assert public[0] in task.question and task.entry_point in public[0]
    assert tasks[0].entry_point == "min_cost"


def test_mbpp_splits_by_task_id():
    assert [t.id for t in load_dataset("mbpp", FIXTURES / "mbpp", split="test")] == ["mbpp/11", "mbpp/12"]
    assert [t.id for t in load_dataset("mbpp", FIXTURES / "mbpp", split="train")] == ["mbpp/601"]
    with pytest.raises(UserError, match="split"):
        load_dataset("mbpp", FIXTURES / "mbpp", split="dev")


def test_sanitized_mbpp_layout():
    tasks = load_dataset("mbpp", FIXTURES / "mbpp" / "sanitized-mbpp.json")
    assert tasks[0].id == "mbpp/2" and tasks[0].entry_point == "similar_elements"
    assert mbpp_entry_point("assert math.isclose(area(2), 12.5)", "") == "area"


def test_humaneval_from_package_and_fixture():
    bundled = load_dataset("humaneval")
    assert len(bundled) == 164 and bundled[0].id == "HumanEval/0"
    task = load_dataset("humaneval", FIXTURES / "humaneval")[0]
    assert task.entry_point == "has_close_elements"
    assert "def check(candidate)" in task.hidden_tests
    assert task.public_tests.splitlines() == [
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    ]
    assert task.public_tests not in task.hidden_tests


def test_docstring_prose_does_not_become_a_test():
    fib4 = load_dataset("humaneval", FIXTURES / "humaneval")[2]  # docstring has "fib4(n) == fib4(n-1) + ..."
    assert fib4.public_tests is not None and "fib4(n)" not in fib4.public_tests
    prompt = 'def f(s):\n    """\n    f("ab") ➞ True\n    f(x) -> true\n    >>> f("")\n    False\n    """\n'
    assert docstring_tests(prompt, "f") == ['assert f("ab") == True', 'assert f("") == False']


def test_apps_both_layouts():
    tasks = load_dataset("apps", FIXTURES / "apps")  # 0002 has no tests and is skipped
    assert [(t.id, t.meta["test_format"]) for t in tasks] == [("apps/test/0000", "stdio"),
                                                              ("apps/test/0001", "assert")]
    assert json.loads(tasks[0].hidden_tests)["outputs"][0] == "6\n"
    assert tasks[1].entry_point == "doubleSum" and "class Solution" in tasks[1].question
    hub = load_dataset("apps", FIXTURES / "apps" / "test.jsonl")
    assert [t.meta["test_format"] for t in hub] == ["stdio", "assert"]
    assert [t.id for t in load_dataset("apps", FIXTURES / "apps" / "test" / "0001")] == ["apps/test/0001"]


def test_ds1000_layout():
    tasks = load_dataset("ds1000", FIXTURES / "ds1000")
    assert [t.id for t in tasks] == ["ds1000/0", "ds1000/1"]
    assert tasks[0].meta["test_format"] == "ds1000" and "def test_execution" in tasks[0].hidden_tests
    assert "BEGIN SOLUTION" in tasks[0].question


# -- errors -----------------------------------------------------------------------------------
def test_bad_jsonl_line_names_file_and_line(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "a", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(UserError, match=rf"{re.escape(str(f))}:2: not valid JSON"):
        load_dataset("gsm8k", f)


def test_missing_field_names_the_field_and_line(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "a", "answer": "#### 1"}\n\n{"prompt": "b", "answer": "#### 2"}\n')
    with pytest.raises(UserError, match=r"test.jsonl:3: missing field 'question' \(the record has: answer, prompt\)"):
        load_dataset("gsm8k", f)
    g = tmp_path / "nohash.jsonl"
    g.write_text('{"question": "a", "answer": "42"}\n')
    with pytest.raises(UserError, match=r"nohash.jsonl:1: .*####"):
        load_dataset("gsm8k", g)


def test_bad_json_array_and_missing_paths(tmp_path):
    f = tmp_path / "hotpot.json.gz"
    with gzip.open(f, "wt") as handle:
        json.dump([{"question": "q", "answer": "a"}], handle)
    with pytest.raises(UserError, match=r"record 0: missing field 'context'"):
        load_dataset("hotpotqa", f)
    with pytest.raises(UserError, match="--data PATH"):
        load_dataset("squad_v2")
    with pytest.raises(UserError, match="no gsm8k file found"):
        load_dataset("gsm8k", tmp_path)
    with pytest.raises(UserError, match="no such file"):
        load_dataset("math", tmp_path / "missing.jsonl")


def test_hub_paths_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("datasets")
    with pytest.raises(UserError, match=r"hf:openai/gsm8k.*local path"):
        load_dataset("gsm8k", "hf:openai/gsm8k")


# -- procedural -------------------------------------------------------------------------------
def test_arithmetic_is_seeded_and_correct():
    a, b = generate_arithmetic(30, seed=7), generate_arithmetic(30, seed=7)
    assert a == b and a != generate_arithmetic(30, seed=8)
    for task in a:
        expression = task.meta["expression"]
        assert re.fullmatch(r"[\d +*-]+", expression)
        assert int(task.answer) == eval(expression)  # noqa: S307 (test oracle on generated digits)
        assert score(task, f"The answer is {task.answer}.").correct


def _solution(task: Task) -> str:
    """A reference solution written from the task's own words (what a correct model must do)."""
    q, name = task.question, task.entry_point
    signature = re.search(r"`(\w+\([^)]*\))`", q).group(1)
    if m := re.search(r"\(a ([+*-]) b\)", q):
        body = f"a {m.group(1)} b"
    elif m := re.search(r"multiplied by (\d+), plus (\d+)", q):
        body = f"x * {m.group(1)} + {m.group(2)}"
    elif m := re.search(r"divisible by (\d+)", q):
        body = f"n % {m.group(1)} == 0"
    elif "in the list" in q:
        body = "sum(items)" if "sum of" in q else ("max(items)" if "largest" in q else "min(items)")
    else:
        body = "s[::-1]" if "reversed" in q else ("s.upper()" if "upper case" in q else "s * 2")
    assert signature.startswith(name + "(")
    return f"def {signature}:\n    return {body}\n"


def test_simple_functions_are_seeded_and_solvable_from_their_words():
    a = generate_simple_functions(40, seed=0)
    assert a == generate_simple_functions(40, seed=0)
    train = {t.question for t in load_dataset("simple_functions", None, limit=1000, split="train")}
    for split in ("validation", "test"):  # a small task space: held-out splits repeat no training task
        held_out = load_dataset("simple_functions", None, limit=100, split=split)
        assert len(held_out) == 100 and train.isdisjoint(t.question for t in held_out)
    assert {t.meta["template"] for t in a} == {"arith", "linear", "divisible", "list", "string"}
    for task in a[:12]:
        assert task.kind == "code" and task.public_tests.count("assert") == 1
        assert task.hidden_tests.count("assert") == 3 and task.public_tests.splitlines()[0] in task.question
        assert score(task, _solution(task)).correct, task.question
        assert not score(task, f"def {task.entry_point}(*args):\n    return None\n").correct


def test_word_problems_have_integer_answers_and_split_seeds():
    tasks = generate_word_problems(50, seed=3)
    assert len({t.meta["template"] for t in tasks}) == 5
    assert all(int(t.answer) >= 0 for t in tasks)
    change = next(t for t in tasks if t.meta["template"] == "change")
    count, price, bill = map(int, re.findall(r"\d+", change.question)[:3])
    assert int(change.answer) == bill - count * price
    train = load_dataset("gsm_synthetic", split="train", limit=5)
    test = load_dataset("gsm_synthetic", limit=5)
    assert [t.question for t in train] != [t.question for t in test]
    assert len(load_dataset("arithmetic")) == 100
    with pytest.raises(UserError, match="generated"):
        load_dataset("arithmetic", "some/file.jsonl")


# -- the real files (skipped where the shared data is absent) ---------------------------------
REAL = [
    ("gsm8k", "gsm8k", 1319), ("math", "math/math500_test.jsonl", 500), ("math", "math/math_test_5000.jsonl", 5000),
    ("aime2025", "aime2025", 30), ("mathqa", "mathqa", 1000),
    ("squad_v2", "squad_v2/dev-v2.0.subset_Normans_Rhine.json.gz", 706), ("triviaqa", "triviaqa/triviaqa_sample.json", 1),
    ("nq", "nq_open", 3610), ("mbpp", "mbpp", 974), ("mbpp", "mbpp/sanitized-mbpp.json", 427), ("humaneval", "humaneval", 164),
]


@pytest.mark.skipif(not SHARED.exists(), reason="shared data absent")
@pytest.mark.parametrize("name, rel, count", REAL)
def test_real_files_load_completely(name, rel, count):
    tasks = load_dataset(name, SHARED / rel)
    assert len(tasks) == count
    assert len({t.id for t in tasks}) == count


@pytest.mark.skipif(not SHARED.exists(), reason="shared data absent")
def test_real_splits_and_subsets():
    hotpot = load_dataset("hotpotqa", SHARED / "hotpotqa" / "hotpot_dev_distractor_v1.subset200.json.gz")
    assert len(hotpot) == 200
    squad = load_dataset("squad_v2", SHARED / "squad_v2" / "dev-v2.0.subset_Normans_Rhine.json.gz")
    assert sum(t.answer == ("",) for t in squad) == 320
    assert len(load_dataset("mbpp", SHARED / "mbpp", split="test")) == 500
    assert len(load_dataset("mbpp", SHARED / "mbpp", split="train")) == 374
    assert all(t.hidden_tests.strip() for t in load_dataset("mbpp", SHARED / "mbpp"))


def test_hub_layouts_are_converted(monkeypatch):
    hf = pytest.importorskip("datasets")
    rows = {
        "rajpurkar/squad_v2": [{"id": "s1", "title": "T", "context": "C", "question": "Q?",
                                "answers": {"text": [], "answer_start": []}},
                               {"id": "s2", "title": "T", "context": "C", "question": "R?",
                                "answers": {"text": ["x", "x"], "answer_start": [0, 0]}}],
        "hotpotqa/hotpot_qa": [{"id": "h1", "question": "Same country?", "answer": "yes", "type": "comparison",
                                "level": "hard", "context": {"title": ["A", "B"],
                                                             "sentences": [["A is in X.", " It is old."], ["B too."]]}}],
        "mandarjoshi/trivia_qa": [{"question": "Capital of France?", "question_id": "tq1",
                                   "answer": {"value": "Paris", "aliases": ["Paris", "Paree"],
                                              "normalized_aliases": ["paris"]}}],
        "openai/gsm8k": [{"question": "2+2?", "answer": "#### 4"}],
    }
    calls = []

    def fake_load_dataset(repo, name=None, split=None):
        calls.append((repo, name, split))
        return rows[repo]

    monkeypatch.setattr(hf, "load_dataset", fake_load_dataset)
    squad = load_dataset("squad_v2", "hf:rajpurkar/squad_v2")
    assert [t.answer for t in squad] == [("",), ("x",)]
    hotpot = load_dataset("hotpotqa", "hf:hotpotqa/hotpot_qa")[0]
    assert "[A]\nA is in X. It is old.\n\n[B]\nB too." in hotpot.question and hotpot.id == "h1"
    trivia = load_dataset("triviaqa", "hf:mandarjoshi/trivia_qa", split="train")[0]
    assert trivia.answer == ("Paris", "Paree", "paris") and trivia.id == "tq1"
    assert load_dataset("gsm8k", "hf:openai/gsm8k")[0].answer == "4"
    assert calls == [("rajpurkar/squad_v2", None, "validation"), ("hotpotqa/hotpot_qa", "distractor", "validation"),
                     ("mandarjoshi/trivia_qa", "rc.nocontext", "train"), ("openai/gsm8k", "main", "test")]
