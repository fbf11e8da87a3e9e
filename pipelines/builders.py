"""The query and search pipelines, wired from Haystack components and ours (indexing runs in
`spanqa.indexing.ingest`: parser processes feeding the embedder)."""

from __future__ import annotations

from haystack import Pipeline
from haystack.utils import ComponentDevice
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)

from spanqa import defaults
from spanqa.errors import ConfigError
from spanqa.indexing import FaissDocumentStore
from spanqa.indexing.hybrid import HybridRetriever
from spanqa.reader import ExtractiveReader


def _component_device(torch_device: str) -> ComponentDevice:
    return ComponentDevice.from_str(torch_device)


def _local_files_only(model: str) -> bool:
    # A local directory never needs the hub; a hub id may (first use downloads it).
    from pathlib import Path

    return Path(model).is_dir()


def make_document_embedder(model: str, torch_device: str) -> SentenceTransformersDocumentEmbedder:
    # Normalised vectors make inner product equal cosine similarity, which the store relies on.
    return SentenceTransformersDocumentEmbedder(
        model=model,
        device=_component_device(torch_device),
        batch_size=defaults.EMBEDDER_BATCH_SIZE,
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
    )


def make_text_embedder(model: str, torch_device: str) -> SentenceTransformersTextEmbedder:
    return SentenceTransformersTextEmbedder(
        model=model,
        device=_component_device(torch_device),
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
    )


def build_search_pipeline(
    store: FaissDocumentStore,
    embedder: SentenceTransformersTextEmbedder | None,
    mode: str = defaults.RETRIEVAL_MODE,
    dense_weight: float = defaults.HYBRID_DENSE_WEIGHT,
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
    embedder: SentenceTransformersTextEmbedder | None,
    reader: ExtractiveReader,
    mode: str = defaults.RETRIEVAL_MODE,
    dense_weight: float = defaults.HYBRID_DENSE_WEIGHT,
) -> Pipeline:
    """question → embedding → retrieved chunks → answer spans read from them."""
    pipeline = build_search_pipeline(store, embedder, mode, dense_weight)
    pipeline.add_component("reader", reader)
    pipeline.connect("retriever.documents", "reader.documents")
    return pipeline
