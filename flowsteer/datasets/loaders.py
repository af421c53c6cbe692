"""Loaders for the math and QA benchmarks, in their original file layouts (and hub layouts).

Every loader takes ``(path, *, limit, split)``: ``path`` is a file, a folder holding the usual file
name, or ``"hf:<repo>[:<config>]"``. Gold answers are normalised the way each benchmark defines
them (GSM8K: the text after ``####`` without commas; MATH: ``answer`` or the last ``\\boxed{}`` of the
solution; SQuAD v2 unanswerable: ``""``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flowsteer.datasets._io import (
    PathLike,
    Record,
    field,
    hub_rows,
    is_hub,
    read_json,
    read_records,
    resolve_file,
)
from flowsteer.datasets.registry import register_dataset
from flowsteer.errors import UserError
from flowsteer.scoring.math import extract_boxed
from flowsteer.tasks import Task

__all__ = ["gsm8k_gold", "parse_mathqa_options", "hotpot_question", "squad_question"]

PASSAGES_PREAMBLE = "Based on the following passages, answer the question."
SQUAD_PREAMBLE = ("Based on the following passage, answer the question. If the passage does not contain "
                  'the answer, reply "unanswerable".')


def _collect(rows: Iterable[Record], convert: Callable[[Record, int], Task | None], limit: int | None) -> list[Task]:
    tasks: list[Task] = []
    for index, row in enumerate(rows):
        if limit is not None and len(tasks) >= limit:
            break
        task = convert(row, index)
        if task is not None:
            tasks.append(task)
    return tasks


def _rows(path: PathLike | None, dataset: str, candidates: list[str], *, split: str | None,
          default_split: str, hub_config: str | None = None) -> list[Record]:
    if is_hub(path):
        return hub_rows(str(path), split=split, default_split=default_split, config=hub_config)
    return read_records(resolve_file(path, dataset, candidates))


# -- math ------------------------------------------------------------------------------------
def gsm8k_gold(solution: str) -> str:
    """The GSM8K gold answer: the text after the last ``####``, commas removed."""
    if "####" not in solution:
        raise ValueError("no '####' in the GSM8K answer")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


@register_dataset("gsm8k", kind="math", default_metric="accuracy")
def load_gsm8k(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """GSM8K grade-school word problems (``test.jsonl`` / ``train.jsonl``, keys question, answer)."""
    chosen = split or "test"
    rows = _rows(path, "gsm8k", [f"{chosen}.jsonl", f"{chosen}.jsonl.gz"], split=split, default_split="test",
                 hub_config="main")
    if split is None and path is not None and not is_hub(path) and Path(path).is_file():
        chosen = Path(path).name.split(".")[0]  # "train.jsonl" -> ids gsm8k/train/N

    def convert(row: Record, index: int) -> Task:
        solution = str(field(row, "answer", dataset="gsm8k"))
        try:
            gold = gsm8k_gold(solution)
        except ValueError:
            raise UserError(f"{row.where}: field 'answer' has no '#### <number>' final line") from None
        return Task(str(field(row, "question", dataset="gsm8k")), "math", f"gsm8k/{chosen}/{index}", gold,
                    source="gsm8k", meta={"split": chosen})

    return _collect(rows, convert, limit)


def _math_level(value: Any) -> int | None:
    match = re.search(r"\d+", str(value)) if value is not None else None
    return int(match.group(0)) if match else None


@register_dataset("math", kind="math", default_metric="accuracy")
def load_math(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """MATH: MATH-500 (``answer`` field) or the full 5000-problem test JSONL (last ``\\boxed`` of solution)."""
    rows = _rows(path, "math", ["math500_test.jsonl", "test.jsonl", "math_test_5000.jsonl"], split=split,
                 default_split="test")

    def convert(row: Record, index: int) -> Task:
        gold = row.get("answer")
        if not gold:
            solution = str(field(row, "solution", "answer", dataset="math"))
            gold = extract_boxed(solution)
            if gold is None:
                raise UserError(f"{row.where}: no 'answer' field and no \\boxed{{}} in 'solution'")
        task_id = row.get("unique_id") or f"math/{row.get('idx', index)}"
        meta = {"level": _math_level(row.get("level")), "subject": row.get("subject") or row.get("type")}
        return Task(str(field(row, "problem", "question", dataset="math")), "math", str(task_id), str(gold),
                    source="math", meta=meta)

    return _collect(rows, convert, limit)


@register_dataset("aime2025", kind="math", default_metric="accuracy")
def load_aime2025(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """AIME 2025 (JSONL, keys question/problem and answer); a folder loads every ``*.jsonl`` in order."""
    if is_hub(path):
        files: list[tuple[str, list[Record]]] = [("hub", hub_rows(str(path), split=split, default_split="train"))]
    elif path is not None and Path(path).is_dir():
        found = sorted(Path(path).glob("*.jsonl"))
        if not found:
            raise UserError(f"{path}: no *.jsonl files for dataset 'aime2025'")
        files = [(f.stem, read_records(f)) for f in found]
    else:
        target = resolve_file(path, "aime2025", ["aime2025.jsonl"])
        files = [(target.stem, read_records(target))]
    tasks = [
        Task(str(field(row, "question", "problem", dataset="aime2025")), "math", f"aime2025/{stem}/{i}",
             str(field(row, "answer", dataset="aime2025")).strip(), source="aime2025")
        for stem, part in files for i, row in enumerate(part)
    ]
    return tasks if limit is None else tasks[:limit]


def parse_mathqa_options(options: str | list[str]) -> dict[str, str]:
    """``"a ) 12 , b ) 16 , ..."`` (or a list of ``"a ) 12"``) -> ``{"a": "12", "b": "16", ...}``."""
    if isinstance(options, str) and options.strip().startswith("["):
        try:  # some preprocessed rows store the original list as its Python repr
            options = ast.literal_eval(options.strip())
        except (ValueError, SyntaxError):
            pass
    text = " , ".join(map(str, options)) if isinstance(options, list) else str(options)
    parts = re.split(r"(?:^|\s,\s*|,\s+)(?=[a-e]\s*\))", text.strip())
    choices: dict[str, str] = {}
    for part in parts:
        m = re.match(r"\s*([a-e])\s*\)\s*(.*)", part, re.DOTALL)
        if m:
            choices[m.group(1)] = m.group(2).strip().rstrip(",").strip()
    return choices


@register_dataset("mathqa", kind="math", default_metric="accuracy")
def load_mathqa(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """MathQA multiple choice (preprocessed JSONL or the original keys); gold = option letter."""
    rows = _rows(path, "mathqa", ["mathqa_test_1000.jsonl", "test.jsonl", "test.json"], split=split,
                 default_split="test")

    def convert(row: Record, index: int) -> Task:
        options = field(row, "options", dataset="mathqa")
        choices = parse_mathqa_options(options)
        if len(choices) < 2:
            raise UserError(f"{row.where}: field 'options' has no 'a ) ... , b ) ...' choices: {str(options)[:80]!r}")
        problem = str(field(row, "problem", "Problem", dataset="mathqa")).strip()
        listing = "\n".join(f"({letter}) {text}" for letter, text in choices.items())
        question = f"{problem}\n\nOptions:\n{listing}\n\nAnswer with the letter of the correct option."
        gold = str(field(row, "correct", dataset="mathqa")).strip().lower()
        return Task(question, "math", f"mathqa/{index}", gold, source="mathqa",
                    meta={"choices": choices, "type": row.get("type") or row.get("category")})

    return _collect(rows, convert, limit)


# -- QA --------------------------------------------------------------------------------------
def hotpot_question(question: str, context: Any) -> str:
    """Titled passages then the question, as the reference built HotpotQA prompts."""
    if isinstance(context, dict):  # hub layout: {"title": [...], "sentences": [[...], ...]}
        pairs = list(zip(context.get("title", []), context.get("sentences", []), strict=False))
    else:  # original layout: [[title, [sentences]], ...]
        pairs = [(item[0], item[1]) for item in context]
    passages = "\n\n".join(f"[{title}]\n{''.join(sentences).strip()}" for title, sentences in pairs)
    return f"{PASSAGES_PREAMBLE}\n\n{passages}\n\nQuestion: {question}"


@register_dataset("hotpotqa", kind="qa", default_metric="f1")
def load_hotpotqa(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """HotpotQA distractor setting (JSON array, optionally .gz, or JSONL); passages go in the question."""
    rows = _rows(path, "hotpotqa", ["hotpot_dev_distractor_v1.json", "hotpot_dev_distractor_v1.json.gz",
                                    "hotpot_dev_distractor_v1.subset200.json.gz"],
                 split=split, default_split="validation", hub_config="distractor")

    def convert(row: Record, index: int) -> Task:
        question = str(field(row, "question", dataset="hotpotqa"))
        context = field(row, "context", dataset="hotpotqa")
        return Task(hotpot_question(question, context), "qa", str(row.get("_id") or row.get("id") or index),
                    str(field(row, "answer", dataset="hotpotqa")), source="hotpotqa",
                    meta={"type": row.get("type"), "level": row.get("level")})

    return _collect(rows, convert, limit)


def squad_question(title: str, context: str, question: str) -> str:
    return f"{SQUAD_PREAMBLE}\n\n[{title}]\n{context}\n\nQuestion: {question}"


def _squad_flat(path: PathLike | None, split: str | None) -> list[Record]:
    """SQuAD v2 as flat rows (one per question) from the original nested JSON or the hub layout."""
    if is_hub(path):
        rows = hub_rows(str(path), split=split, default_split="validation")
        for row in rows:
            answers = row.get("answers") or {}
            row["answers"] = [{"text": t} for t in answers.get("text", [])] if isinstance(answers, dict) else answers
        return rows
    target = resolve_file(path, "squad_v2", ["dev-v2.0.json", "dev-v2.0.json.gz"])
    data = read_json(target)
    articles = field(data, "data", where=str(target), dataset="squad_v2") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise UserError(f"{target}: expected the dev-v2.0.json layout {{'version', 'data': [articles]}}")
    flat: list[Record] = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(field(article, "paragraphs", where=f"{target}: data[{a}]")):
            context = field(paragraph, "context", where=f"{target}: data[{a}].paragraphs[{p}]")
            for q, qa in enumerate(field(paragraph, "qas", where=f"{target}: data[{a}].paragraphs[{p}]")):
                merged = {**qa, "title": article.get("title", ""), "context": context}
                flat.append(Record.at(merged, f"{target}: data[{a}].paragraphs[{p}].qas[{q}]"))
    return flat


@register_dataset("squad_v2", kind="qa", default_metric="f1")
def load_squad_v2(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """SQuAD v2.0 (original ``dev-v2.0.json`` layout, optionally .gz); unanswerable -> gold ``""``."""

    def convert(row: Record, index: int) -> Task:
        texts = [str(a.get("text", "")) for a in field(row, "answers", dataset="squad_v2")]
        golds = tuple(dict.fromkeys(t for t in texts if t.strip()))
        impossible = bool(row.get("is_impossible", not golds))
        question = squad_question(str(row.get("title", "")), str(field(row, "context", dataset="squad_v2")),
                                  str(field(row, "question", dataset="squad_v2")))
        return Task(question, "qa", str(field(row, "id", dataset="squad_v2")), ("",) if impossible else golds,
                    source="squad_v2", meta={"is_impossible": impossible})

    return _collect(_squad_flat(path, split), convert, limit)


def _dedupe(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if v is not None and str(v).strip()))


@register_dataset("triviaqa", kind="qa", default_metric="f1")
def load_triviaqa(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """TriviaQA (official ``{"Data": [...]}`` JSON, or hub rows); gold = value plus every alias."""
    if is_hub(path):
        rows = hub_rows(str(path), split=split, default_split="validation", config="rc.nocontext")
    else:
        target = resolve_file(path, "triviaqa", ["verified-web-dev.json", "web-dev.json", "wikipedia-dev.json",
                                                  "unfiltered-web-dev.json", "triviaqa_sample.json"])
        data = read_json(target)
        items = field(data, "Data", where=str(target), dataset="triviaqa") if isinstance(data, dict) else data
        rows = [Record.at(item, f"{target}: Data[{i}]") for i, item in enumerate(items)]

    def convert(row: Record, index: int) -> Task:
        answer = field(row, "Answer", "answer", dataset="triviaqa")
        golds = _dedupe([answer.get("Value") or answer.get("value"),
                         *(answer.get("Aliases") or answer.get("aliases") or []),
                         *(answer.get("NormalizedAliases") or answer.get("normalized_aliases") or [])])
        if not golds:
            raise UserError(f"{row.where}: the answer has no 'Value' or 'Aliases'")
        question = str(field(row, "Question", "question", dataset="triviaqa"))
        task_id = str(row.get("QuestionId") or row.get("question_id") or f"triviaqa/{index}")
        return Task(question, "qa", task_id, golds, source="triviaqa")

    return _collect(rows, convert, limit)


def _load_nq(path: PathLike | None, limit: int | None, split: str | None, source: str) -> list[Task]:
    rows = _rows(path, source, ["NQ-open.dev.jsonl", "NQ-open.efficientqa.dev.1.1.jsonl", "dev.jsonl"],
                 split=split, default_split="validation")

    def convert(row: Record, index: int) -> Task:
        answers = field(row, "answer", "answers", dataset="nq_open")
        golds = _dedupe(answers if isinstance(answers, list) else [answers])
        if not golds:
            raise UserError(f"{row.where}: field 'answer' is empty")
        return Task(str(field(row, "question", dataset="nq_open")), "qa", f"{source}/{index}", golds, source=source)

    return _collect(rows, convert, limit)


@register_dataset("nq", kind="qa", default_metric="f1")
def load_nq(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Natural Questions, open-domain (NQ-open JSONL: question, answer list); F1 and EM."""
    return _load_nq(path, limit, split, "nq")


@register_dataset("nq_open", kind="qa", default_metric="f1")
def load_nq_open(path: PathLike | None, *, limit: int | None = None, split: str | None = None) -> list[Task]:
    """Alias of ``nq`` (NQ-open JSONL)."""
    return _load_nq(path, limit, split, "nq_open")
