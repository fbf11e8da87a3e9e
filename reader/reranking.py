"""How retrieval, the passage reranker and the reader's spans make one ranking, as pure functions.

A reranked passage's *passage score* is the reranker's logit for (question, passage) less
`retrieval_weight * ln(1 + retrieval rank)`: the reranker orders the passages, and the retrieval
rank it was found at keeps counting (a reranker alone does worse than with it). Passages are read
best passage score first. A span's ranking sum is then its start + end logit plus its passage's
*prior*: `-rank_weight * ln(1 + position read)` plus `passage_weight * (passage score - the best
passage score read)`. Without reranking every passage score is None and the prior is the rank term
alone, as before the reranker existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def passage_scores(rerank_logits: Sequence[float], retrieval_weight: float) -> list[float]:
    """Each reranked passage's score: its reranker logit less `retrieval_weight * ln(1 + rank)`,
    passages given in retrieval order (rank 0 first)."""
    return [float(logit) - retrieval_weight * math.log1p(rank) for rank, logit in enumerate(rerank_logits)]


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
