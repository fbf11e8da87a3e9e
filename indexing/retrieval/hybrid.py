"""Hybrid retrieval: dense (embedding) and keyword (BM25) rankings of the store's chunks, fused."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_to_dict

from spanqa.chunk_meta import SIMILARITY_KEY
from spanqa.errors import ConfigError
from spanqa.indexing.retrieval.retriever import check_retriever_settings, retriever_from_dict, run_settings
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.rank_fusion import fuse_rankings
from spanqa.settings import RetrievalSettings


@component
class HybridRetriever:
    """The chunks that best match a query, best first, by meaning and by words.

    mode "hybrid" (the default): the store's `candidates` nearest chunks by embedding and its
    `candidates` best by BM25 are fused (`spanqa.indexing.store.rank_fusion`: per-query min-max scaling,
    `dense_weight` x dense + (1 - dense_weight) x keyword); `score` is that fused value in 0..1.
    "dense": embedding search alone, `score` = cosine similarity. "keyword": BM25 alone, `score` =
    the BM25 score. `filters` (Haystack syntax) apply inside both searches; filters given to `run`
    replace those given here.

    In "hybrid" and "dense" modes, every chunk returned carries its cosine similarity to the query in
    `meta["similarity"]` (also those found by their words only): unlike the fused score, which is
    scaled per query, it says how close the passages are at all (the answer calibration reads it).
    """

    def __init__(
        self,
        document_store: FaissDocumentStore,
        top_k: int = RetrievalSettings.retriever_top_k,
        filters: dict[str, Any] | None = None,
        mode: str = RetrievalSettings.retrieval,
        dense_weight: float = RetrievalSettings.dense_weight,
        candidates: int = RetrievalSettings.hybrid_candidates,
    ):
        check_retriever_settings(document_store, top_k, filters)
        # Checked as the settings they are (`retrieval`, `dense_weight`, `hybrid_candidates`).
        checked = RetrievalSettings(retrieval=mode, dense_weight=dense_weight, hybrid_candidates=candidates)
        self.document_store = document_store
        self.top_k = top_k
        self.filters = filters
        self.mode = checked.retrieval
        self.dense_weight = float(checked.dense_weight)
        self.candidates = checked.hybrid_candidates

    def to_dict(self) -> dict[str, Any]:
        """The retriever as a Haystack pipeline stores it: its store and settings."""
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            top_k=self.top_k,
            filters=self.filters,
            mode=self.mode,
            dense_weight=self.dense_weight,
            candidates=self.candidates,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HybridRetriever:
        """The retriever `to_dict` describes, with its store."""
        return retriever_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        query_embedding: list[float] | None = None,
        top_k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> dict:
        """The `top_k` chunks for `query`, best first, in the retriever's mode (see the class);
        `query_embedding` is needed in "hybrid" and "dense" modes. `top_k` and `filters` default to
        the retriever's own."""
        top_k, filters = run_settings(self, top_k, filters)
        store = self.document_store
        if self.mode == "keyword":
            return {"documents": store.keyword_search(query, top_k, filters=filters)}
        if query_embedding is None:
            raise ConfigError(f"retrieval mode {self.mode!r} needs the query's embedding; connect a text embedder")
        if self.mode == "dense":
            dense = store.search(query_embedding, top_k, filters=filters)
            return {"documents": [with_similarity(document, document.score) for document in dense]}
        depth = max(top_k, self.candidates)
        dense = store.search(query_embedding, depth, filters=filters)
        keyword = store.keyword_search(query, depth, filters=filters)
        by_id = {document.id: document for document in (*keyword, *dense)}
        fused = fuse_rankings(
            [(d.id, float(d.score)) for d in dense], [(d.id, float(d.score)) for d in keyword], self.dense_weight
        )
        similarity = {document.id: document.score for document in dense}
        unmeasured = [identifier for identifier, _ in fused[:top_k] if identifier not in similarity]
        similarity.update(store.similarities(query_embedding, unmeasured))
        documents = [
            with_similarity(
                Document(id=identifier, content=by_id[identifier].content, meta=by_id[identifier].meta, score=score),
                similarity.get(identifier),
            )
            for identifier, score in fused[:top_k]
        ]
        return {"documents": documents}


def with_similarity(document: Document, similarity: float | None) -> Document:
    """`document` with `meta["similarity"]` (a new meta dict: the store's stays as it is); None: unchanged."""
    if similarity is None:
        return document
    return Document(
        id=document.id, content=document.content, score=document.score,
        meta={**document.meta, SIMILARITY_KEY: float(similarity)},
    )
