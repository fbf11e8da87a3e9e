"""Evaluation metrics: SQuAD v1.1 exact match and F1, and retrieval recall@k and MRR.

The answer metrics follow the official SQuAD v1.1 evaluation script: both strings are lower-cased,
stripped of punctuation and of the articles a/an/the, and whitespace-collapsed; exact match
compares the normalised strings, F1 the multiset overlap of their tokens, each taken as the best
over the gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:
        # Only an empty gold matches an empty prediction; SQuAD v1.1 golds are never empty.
        return float(predicted_tokens == gold_tokens)
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of `prediction` against the best-matching gold answer, each in 0..1."""
    if not golds:
        raise ValueError("a question needs at least one gold answer to be scored")
    return (
        max(float(exact_match(prediction, gold)) for gold in golds),
        max(f1(prediction, gold) for gold in golds),
    )


def first_hit_rank(retrieved: Iterable[str], relevant: str) -> int | None:
    """1-based rank of the first retrieved item equal to `relevant`, or None when absent."""
    for rank, item in enumerate(retrieved, start=1):
        if item == relevant:
            return rank
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose relevant item is within the top k."""
    if not ranks:
        return 0.0
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    if not ranks:
        return 0.0
    return sum(1.0 / rank for rank in ranks if rank is not None) / len(ranks)
