"""The query and search pipelines, wired from Haystack components and ours (indexing runs in
`spanqa.indexing.ingest.indexer`: parser processes feeding the embedder)."""

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
from spanqa.indexing.retrieval.embedding import EmbeddingSettings, Int8DocumentEmbedder, Int8TextEmbedder
from spanqa.indexing.retrieval.hybrid import HybridRetriever
from spanqa.reader import ExtractiveReader


def _component_device(torch_device: str) -> ComponentDevice:
    return ComponentDevice.from_str(torch_device)


def _local_files_only(model: str) -> bool:
    # A local directory never needs the hub; a hub id may (first use downloads it).
    from pathlib import Path

    return Path(model).is_dir()


def _max_length(embedding: EmbeddingSettings) -> dict | None:
    # Haystack's sentence-transformers embedders read the model's max_seq_length from here.
    return None if embedding.max_tokens is None else {"model_max_length": embedding.max_tokens}


def make_document_embedder(model: str, torch_device: str, embedding: EmbeddingSettings):
    """The chunk embedder of an index embedded with `embedding` (int8 on the CPU, or the model in float32)."""
    if embedding.precision == "int8":
        return Int8DocumentEmbedder(model=model, max_tokens=embedding.max_tokens)
    # Normalised vectors make inner product equal cosine similarity, which the store relies on.
    return SentenceTransformersDocumentEmbedder(
        model=model,
        device=_component_device(torch_device),
        batch_size=defaults.EMBEDDER_BATCH_SIZE,
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
        tokenizer_kwargs=_max_length(embedding),
    )


def make_text_embedder(model: str, torch_device: str, embedding: EmbeddingSettings, threads: int | None = None):
    """The question embedder matching an index embedded with `embedding` (`threads`: the int8
    embedder's, None: as many as torch uses)."""
    if embedding.precision == "int8":
        return Int8TextEmbedder(model=model, max_tokens=embedding.max_tokens, threads=threads)
    return SentenceTransformersTextEmbedder(
        model=model,
        device=_component_device(torch_device),
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
        tokenizer_kwargs=_max_length(embedding),
    )


def build_search_pipeline(
    store: FaissDocumentStore,
    embedder: SentenceTransformersTextEmbedder | Int8TextEmbedder | None,
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
    embedder: SentenceTransformersTextEmbedder | Int8TextEmbedder | None,
    reader: ExtractiveReader,
    mode: str = defaults.RETRIEVAL_MODE,
    dense_weight: float = defaults.HYBRID_DENSE_WEIGHT,
) -> Pipeline:
    """question → embedding → retrieved chunks → answer spans read from them."""
    pipeline = build_search_pipeline(store, embedder, mode, dense_weight)
    pipeline.add_component("reader", reader)
    pipeline.connect("retriever.documents", "reader.documents")
    return pipeline
