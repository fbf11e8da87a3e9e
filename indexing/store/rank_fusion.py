"""Fusing two rankings into one: a dense (embedding) ranking with a keyword (BM25) ranking for
hybrid retrieval (`spanqa.indexing.retrieval.hybrid`), and the store's two keyword rankings of a
query mixing CJK and other words (`keyword`).

Each ranking's scores are min-max scaled over its own candidate list, so that the best candidate
of either side scores 1 and its worst 0; a chunk's fused score is
`dense_weight * dense + (1 - dense_weight) * keyword`, where a side that did not return the chunk
counts 0 for it (it ranked below that side's last candidate). Scaling per query makes the two
scales comparable without knowing their ranges (cosine similarity vs unbounded BM25), and unlike
reciprocal-rank fusion it keeps how far apart candidates are: on SQuAD it ranked the gold
paragraph first more often than reciprocal-rank fusion (see docs/measurements/retrieval.md).
"""

from __future__ import annotations

from collections.abc import Sequence


def min_max_scaled(scores: Sequence[float]) -> list[float]:
    """Scores mapped to 0..1 (best 1, worst 0); all equal (or one) map to 1."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(score - low) / (high - low) for score in scores]


def fuse_rankings(
    dense: Sequence[tuple[str, float]], keyword: Sequence[tuple[str, float]], dense_weight: float
) -> list[tuple[str, float]]:
    """(id, fused score) for every id of either ranking, best first; ties keep dense order first.

    `dense` and `keyword` are (id, score) lists, higher scores better, as each retriever returned them.
    """
    fused: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for ranking, weight in ((dense, dense_weight), (keyword, 1.0 - dense_weight)):
        for (identifier, _), scaled in zip(ranking, min_max_scaled([score for _, score in ranking]), strict=True):
            fused[identifier] = fused.get(identifier, 0.0) + weight * scaled
            first_seen.setdefault(identifier, len(first_seen))
    return sorted(fused.items(), key=lambda item: (-item[1], first_seen[item[0]]))
