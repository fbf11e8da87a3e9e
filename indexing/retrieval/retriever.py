"""Embedding retrieval over a FaissDocumentStore, as a Haystack component."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from spanqa.errors import ConfigError
from spanqa.indexing.store.faiss_store import FaissDocumentStore, validate_top_k
from spanqa.indexing.store.filters import filter_sql
from spanqa.indexing.store.shards import ShardedStore
from spanqa.settings import RetrievalSettings


def check_retriever_settings(document_store: object, top_k: object, filters: dict[str, Any] | None) -> None:
    """The settings every retriever over a FaissDocumentStore takes; a bad one fails where it is set."""
    if not isinstance(document_store, (FaissDocumentStore, ShardedStore)):
        raise ConfigError(
            f"document_store must be a FaissDocumentStore or ShardedStore, got {type(document_store).__name__}"
        )
    validate_top_k(top_k)
    if filters is not None:
        filter_sql(filters)


def run_settings(
    retriever: Any, top_k: int | None, filters: dict[str, Any] | None
) -> tuple[int, dict[str, Any] | None]:
    """A retriever's top_k and filters for one run: those given, else the retriever's own; top_k checked."""
    if top_k is None:
        top_k = retriever.top_k
    if filters is None:
        filters = retriever.filters
    validate_top_k(top_k)
    return top_k, filters


def retriever_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """`cls` rebuilt from `to_dict` output whose init parameters hold its store as a dict."""
    init_parameters = dict(data.get("init_parameters", {}))
    store = init_parameters.get("document_store")
    if isinstance(store, dict):
        kind = ShardedStore if str(store.get("type", "")).endswith(".ShardedStore") else FaissDocumentStore
        init_parameters["document_store"] = kind.from_dict(store)
    return default_from_dict(cls, {**data, "init_parameters": init_parameters})


@component
class FaissEmbeddingRetriever:
    """The chunks most similar to a query embedding, best first, `score` = cosine similarity.

    `filters` (Haystack filter syntax, e.g. `{"field": "meta.page", "operator": "==", "value": 3}`)
    restrict the search to matching chunks inside FAISS, so `top_k` results come back whenever that
    many chunks match. Filters given to `run` replace those given here.
    """

    def __init__(
        self,
        document_store: FaissDocumentStore,
        top_k: int = RetrievalSettings.retriever_top_k,
        filters: dict[str, Any] | None = None,
    ):
        check_retriever_settings(document_store, top_k, filters)
        self.document_store = document_store
        self.top_k = top_k
        self.filters = filters

    def to_dict(self) -> dict[str, Any]:
        """The retriever as a Haystack pipeline stores it: its store, `top_k` and `filters`."""
        return default_to_dict(
            self, document_store=self.document_store.to_dict(), top_k=self.top_k, filters=self.filters
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaissEmbeddingRetriever:
        """The retriever `to_dict` describes, with its store."""
        return retriever_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self, query_embedding: list[float], top_k: int | None = None, filters: dict[str, Any] | None = None
    ) -> dict:
        """The `top_k` chunks nearest to `query_embedding` by cosine similarity, best first, among those
        matching `filters` (Haystack syntax); both default to the retriever's own."""
        top_k, filters = run_settings(self, top_k, filters)
        return {"documents": self.document_store.search(query_embedding, top_k, filters=filters)}
