"""The query and search pipelines as Haystack pipelines, for users who compose their own (DocumentQA,
the service and Ray Serve answer through `spanqa.pipelines.engine.QueryEngine`; indexing runs in
`spanqa.indexing.ingest.indexer`: parser processes feeding the embedder)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from haystack import Pipeline

from spanqa.errors import ConfigError
from spanqa.indexing import FaissDocumentStore
from spanqa.indexing.retrieval.embedding import Int8TextEmbedder
from spanqa.indexing.retrieval.hybrid import HybridRetriever
from spanqa.reader import ExtractiveReader
from spanqa.settings import RetrievalSettings

if TYPE_CHECKING:  # a type only: sentence-transformers takes seconds to import
    from haystack_integrations.components.embedders.sentence_transformers import SentenceTransformersTextEmbedder


def build_search_pipeline(
    store: FaissDocumentStore,
    embedder: SentenceTransformersTextEmbedder | Int8TextEmbedder | None,
    mode: str = RetrievalSettings.retrieval,
    dense_weight: float = RetrievalSettings.dense_weight,
) -> Pipeline:
    """question → embedding → chunks ranked by meaning and words (`HybridRetriever`; its input
    `query` takes the question text). Keyword retrieval needs no embedder: pass None."""
    pipeline = Pipeline()
    pipeline.add_component("retriever", HybridRetriever(document_store=store, mode=mode, dense_weight=dense_weight))
    if mode != "keyword":
        if embedder is None:
            raise ConfigError(f"retrieval mode {mode!r} needs a text embedder")
        pipeline.add_component("embedder", embedder)
        pipeline.connect("embedder.embedding", "retriever.query_embedding")
    return pipeline


def build_query_pipeline(
    store: FaissDocumentStore,
    embedder: SentenceTransformersTextEmbedder | Int8TextEmbedder | None,
    reader: ExtractiveReader,
    mode: str = RetrievalSettings.retrieval,
    dense_weight: float = RetrievalSettings.dense_weight,
) -> Pipeline:
    """question → embedding → retrieved chunks → answer spans read from them."""
    pipeline = build_search_pipeline(store, embedder, mode, dense_weight)
    pipeline.add_component("reader", reader)
    pipeline.connect("retriever.documents", "reader.documents")
    return pipeline
