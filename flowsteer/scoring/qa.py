"""QA answers: SQuAD normalisation, token F1 (multiset overlap) and exact match, max over gold variants.

``Score.value`` is the best token F1 over the gold variants (the paper's metric); ``correct`` is exact
match after normalisation. SQuAD v2 unanswerable questions have the gold ``""``: an empty prediction,
or one that says the question cannot be answered ("unanswerable", "no answer", ...), scores 1.0.
Unlike the reference (spec 13.18, 13.19) there is no substring bonus, no set-overlap variant and no
LLM judge.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from flowsteer.scoring.base import Score
from flowsteer.tasks import Task

__all__ = ["normalize_answer", "token_f1", "exact_match", "extract_qa_answer", "is_abstention", "score_qa"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)
_ABSTAIN = frozenset({
    "", "unanswerable", "no answer", "not answerable", "cannot be answered", "cannot answer",
    "unknown", "none", "n/a", "no answer found", "not mentioned", "not enough information",
    "question is unanswerable", "this question is unanswerable", "it is unanswerable",
})
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles (a/an/the), collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 with multiset (Counter) overlap, as in the official SQuAD script."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def extract_qa_answer(text: str) -> str:
    """The answer span of a model reply: an ``<answer>`` tag, else the text after "answer is/:", else all.

    Only the first line after the marker is kept; surrounding quotes and a final period are dropped.
    """
    text = (text or "").strip()
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        text = tagged[-1].strip()
    else:
        marked = list(_ANSWER_IS.finditer(text))
        if marked:
            text = marked[-1].group(1).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first.strip("\"'").rstrip(".").strip()


def is_abstention(prediction: str) -> bool:
    """True for an empty prediction or one saying there is no answer."""
    return normalize_answer(prediction) in {normalize_answer(a) for a in _ABSTAIN}


def score_qa(task: Task, answer: str) -> Score:
    """Best token F1 and exact match over the gold variants (SQuAD v2 abstention rule included)."""
    predicted = extract_qa_answer(answer)
    golds = task.golds or ("",)
    best_f1, best_em, best_gold = 0.0, 0.0, golds[0]
    for gold in golds:
        if not normalize_answer(gold):
            f1 = em = float(is_abstention(predicted))
        else:
            f1, em = token_f1(predicted, gold), exact_match(predicted, gold)
        if (f1, em) > (best_f1, best_em):
            best_f1, best_em, best_gold = f1, em, gold
    return Score(best_f1, best_em == 1.0, {"extracted": predicted, "gold": best_gold, "f1": best_f1,
                                           "em": best_em})
