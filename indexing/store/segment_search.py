"""Searching an index's segments as one: the top k live vectors, with or without a filter.

`search_segments` ranks the live vectors of all segments (and of the open write's pending ones):
each segment answers its own top k among the allowed ids, and the lists merge by score, which is
exactly the top k of one index holding every vector when each segment is exact. A filter matching
few chunks ranks them exactly (`exact_top`); otherwise FAISS searches with an ID selector.

Small IVF segments on the index's quantizer are searched as one (`StackedSegment`: an IVF index
whose list l is list l of each, FAISS's HStackInvertedLists), so a query finds its nearest centroids
once for all of them and scans as many vectors as it would in the compacted index; a large segment
is searched alone.
"""

from __future__ import annotations

import faiss
import numpy as np

from spanqa.indexing.store.tuning import IndexTuning
from spanqa.indexing.store.vector_segments import (
    LiveSegment,
    Quantizer,
    Segment,
    search_parameters,
)

# Segments on the index's quantizer smaller than this are searched stacked; larger ones alone. A
# stacked list is read by copying its parts together (HStackInvertedLists), which costs little for
# small segments but would copy ~12 MB per query of a 1M-vector segment's probed lists.
STACK_MAX_VECTORS = 65_536
# Vectors reconstructed and scored per block when ranking a subset exactly.
EXACT_BLOCK = 65_536


class StackedSegment:
    """Segments on one quantizer, searched as one IVF index whose list l is list l of each of them.
    Reconstruction and membership go to the segment holding an id."""

    structure = "ivf"

    def __init__(self, members: list[Segment], quantizer: Quantizer):
        self.members = members
        self.quantizer = quantizer.name
        self.name = "+".join(member.name for member in members)
        self._lists = faiss.InvertedListsPtrVector()
        for member in members:
            self._lists.push_back(member.index.invlists)
        self._stack = faiss.HStackInvertedLists(self._lists.size(), self._lists.data())
        dimension = members[0].index.d
        self.index = faiss.IndexIVFFlat(quantizer.template.quantizer, dimension, quantizer.lists, faiss.METRIC_INNER_PRODUCT)
        self.index.replace_invlists(self._stack, False)
        self.index.ntotal = sum(member.size for member in members)
        self._shared = quantizer  # the centroids, alive as long as this view

    @property
    def ids(self) -> np.ndarray:
        return np.sort(np.concatenate([member.ids for member in self.members]))

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        held = np.zeros(len(ids), dtype=bool)
        for member in self.members:
            held |= member.holds(ids)
        return held

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        vectors = np.zeros((len(ids), self.index.d), dtype=np.float32)
        for member in self.members:
            held = member.holds(ids)
            if held.any():
                vectors[held] = member.reconstruct(ids[held])
        return vectors


def stack_shared(segments: list[LiveSegment], quantizer: Quantizer | None, cache: dict) -> list[LiveSegment]:
    """`segments` with those on `quantizer` as one `StackedSegment` (kept in `cache` while the same
    segments are live: building the view costs a few microseconds per list)."""
    shared = [
        live for live in segments
        if quantizer is not None and live.segment.quantizer == quantizer.name and live.segment.size < STACK_MAX_VECTORS
    ]
    if len(shared) < 2:
        return segments
    key = tuple(live.segment.name for live in shared)
    stacked = cache.get(key)
    if stacked is None:
        cache.clear()
        stacked = cache[key] = StackedSegment([live.segment for live in shared], quantizer)
    deleted = [live.deleted for live in shared if len(live.deleted) > 0]
    merged = np.sort(np.concatenate(deleted)) if deleted else np.zeros(0, dtype=np.int64)
    stacked_ids = {id(live) for live in shared}
    return [live for live in segments if id(live) not in stacked_ids] + [LiveSegment(stacked, merged)]


def search_segments(
    segments: list[LiveSegment], query: np.ndarray, k: int, allowed: np.ndarray | None, settings: IndexTuning
) -> tuple[list[int], list[float]]:
    """The ids and scores of the `k` live vectors (among `allowed`, sorted, when given) most similar
    to `query` (one row), best first."""
    found_ids: list[np.ndarray] = []
    found_scores: list[np.ndarray] = []
    for live in segments:
        segment = live.segment
        if live.live == 0:
            continue
        candidates = None if allowed is None else allowed[segment.holds(allowed)]
        if candidates is not None and len(candidates) == 0:
            continue
        wanted = min(k, live.live if candidates is None else len(candidates))
        if candidates is not None and len(candidates) <= settings.filter_exact_max:
            ids, scores = exact_top(segment, query, wanted, candidates)
        else:
            ids, scores = approximate_top(live, query, wanted, candidates, settings)
        found_ids.append(ids)
        found_scores.append(scores)
    if not found_ids:
        return [], []
    ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
    # Best first; equal scores in id order, so the ranking does not depend on how vectors are segmented.
    order = np.lexsort((ids, -scores))[:k]
    return ids[order].tolist(), scores[order].tolist()


def approximate_top(
    live: LiveSegment, query: np.ndarray, k: int, candidates: np.ndarray | None, settings: IndexTuning
) -> tuple[np.ndarray, np.ndarray]:
    segment = live.segment
    selector = None
    if candidates is not None:
        selector = faiss.IDSelectorBatch(candidates)
    elif len(live.deleted) > 0:
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(live.deleted))
    scores, ids = segment.index.search(query, k, params=search_parameters(segment.structure, k, selector, settings))
    keep = ids[0] != -1
    if keep.sum() < k:
        # An approximate search that stopped short of k matches (a selective filter on a graph or
        # few probed lists): rank the matching vectors exactly instead.
        return exact_top(segment, query, k, live.live_ids() if candidates is None else candidates)
    return ids[0][keep], scores[0][keep]


def exact_top(segment: Segment, query: np.ndarray, k: int, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parts = [segment.reconstruct(candidates[start : start + EXACT_BLOCK]) @ query[0] for start in range(0, len(candidates), EXACT_BLOCK)]
    scores = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    order = np.lexsort((candidates, -scores))[:k]
    return candidates[order], scores[order]
