"""The index, query and search pipelines, wired from Haystack components and ours."""

from __future__ import annotations

from haystack import Pipeline
from haystack.components.writers import DocumentWriter
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils import ComponentDevice
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)

from spanqa import defaults
from spanqa.indexing import FaissDocumentStore, FaissEmbeddingRetriever, PageChunker, PageConverter
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


def build_index_pipeline(
    store: FaissDocumentStore,
    embedder: SentenceTransformersDocumentEmbedder,
    password: str | None = None,
) -> Pipeline:
    """files → pages → chunks → embeddings → store. Re-indexing a file overwrites its chunks."""
    pipeline = Pipeline()
    pipeline.add_component("converter", PageConverter(password=password))
    pipeline.add_component("chunker", PageChunker())
    pipeline.add_component("embedder", embedder)
    pipeline.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("converter.documents", "chunker.documents")
    pipeline.connect("chunker.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    return pipeline


def build_search_pipeline(store: FaissDocumentStore, embedder: SentenceTransformersTextEmbedder) -> Pipeline:
    """question → embedding → nearest chunks."""
    pipeline = Pipeline()
    pipeline.add_component("embedder", embedder)
    pipeline.add_component("retriever", FaissEmbeddingRetriever(document_store=store))
    pipeline.connect("embedder.embedding", "retriever.query_embedding")
    return pipeline


def build_query_pipeline(
    store: FaissDocumentStore, embedder: SentenceTransformersTextEmbedder, reader: ExtractiveReader
) -> Pipeline:
    """question → embedding → nearest chunks → answer spans read from them."""
    pipeline = build_search_pipeline(store, embedder)
    pipeline.add_component("reader", reader)
    pipeline.connect("retriever.documents", "reader.documents")
    return pipeline
