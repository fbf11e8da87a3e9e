"""How retrieval, the passage reranker and the reader's spans make one ranking, as pure functions.

A reranked passage's *passage score* is the reranker's logit for (question, passage) plus
`retrieval_weight` times its retrieval score scaled to 0..1 over the passages reranked (min-max:
the best retrieved 1, the last 0): the reranker orders the passages, and what retrieval measured
keeps counting (a reranker alone does worse than with it, and the scores say more than the ranks:
chosen on SQuAD part-a articles 16-19, docs/measurements/answer-quality.md). Passages are read
best passage score first. A span's ranking sum is then its start + end logit plus its passage's
*prior*: `-rank_weight * ln(1 + position read)` plus `passage_weight * (passage score - the best
passage score read)`. Without reranking every passage score is None and the prior is the rank term
alone, as before the reranker existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def passage_scores(
    rerank_logits: Sequence[float], retrieval_scores: Sequence[float | None], retrieval_weight: float
) -> list[float]:
    """Each reranked passage's score: its reranker logit plus `retrieval_weight` times its retrieval
    score min-max scaled over these passages (given in retrieval order, best first). Where a
    retrieval score is missing (None: Documents given without one) the retrieval order stands in
    for every score (the first 1, the last 0)."""
    if len(retrieval_scores) != len(rerank_logits):
        raise ValueError(f"{len(rerank_logits)} reranker logits for {len(retrieval_scores)} retrieval scores")
    scaled = scaled_scores(retrieval_scores)
    return [float(logit) + retrieval_weight * share for logit, share in zip(rerank_logits, scaled)]


def scaled_scores(scores: Sequence[float | None]) -> list[float]:
    """`scores` (best first) min-max scaled to 1 (best) .. 0 (lowest); all equal: all 1. With a score
    missing, the positions instead: 1 for the first down to 0 for the last."""
    if any(score is None for score in scores):
        last = max(len(scores) - 1, 1)
        return [1.0 - position / last for position in range(len(scores))]
    values = [float(score) for score in scores]
    high, low = max(values, default=0.0), min(values, default=0.0)
    if high == low:
        return [1.0] * len(values)
    return [(value - low) / (high - low) for value in values]


def passage_order(scores: Sequence[float]) -> list[int]:
    """Indices of `scores` best first; equal scores keep their retrieval order."""
    return sorted(range(len(scores)), key=lambda index: -scores[index])


def passage_priors(scores: Sequence[float | None], rank_weight: float, passage_weight: float) -> list[float]:
    """What each passage read (in reading order) adds to its spans' ranking sums.

    `scores[i]` is passage i's passage score, or None for a passage not reranked. A passage with
    no score counts as the lowest score read (it was read after every reranked one), so it never
    gains over a reranked passage; when no passage has a score the prior is the rank term alone.
    """
    known = [score for score in scores if score is not None]
    best = max(known, default=0.0)
    lowest = min(known, default=0.0)
    priors = []
    for position, score in enumerate(scores):
        gap = (lowest if score is None else score) - best
        priors.append(-rank_weight * math.log1p(position) + passage_weight * gap)
    return priors


def evidence_sum(ranking_sums: Sequence[float], evidence_weight: float) -> float:
    """One answer's ranking sum from its occurrences' (one per passage, best first): the best plus
    `evidence_weight * ln(sum(exp(each - best)))` (0: the best alone; 1: log-sum-exp, as if each
    passage's probability of the answer were added up)."""
    if not ranking_sums:
        raise ValueError("evidence_sum needs at least one ranking sum")
    best = max(ranking_sums)
    if evidence_weight == 0 or len(ranking_sums) == 1:
        return best
    return best + evidence_weight * math.log(sum(math.exp(value - best) for value in ranking_sums))
