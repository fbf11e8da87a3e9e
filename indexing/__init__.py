"""Indexing: files to page Documents, page Documents to chunks, chunks to a persistent FAISS index."""

from spanqa.indexing.chunking import PageChunker, chunk_spans, sentence_spans
from spanqa.indexing.converters import PageConverter, discover_files, read_pages
from spanqa.indexing.retriever import FaissEmbeddingRetriever
from spanqa.indexing.store import FaissDocumentStore

__all__ = [
    "FaissDocumentStore",
    "FaissEmbeddingRetriever",
    "PageChunker",
    "PageConverter",
    "chunk_spans",
    "discover_files",
    "read_pages",
    "sentence_spans",
]
