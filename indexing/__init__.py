"""Indexing: files to pages, pages to chunks, chunks to a persistent FAISS index; as Haystack
components (PageConverter -> PageChunker -> a document embedder -> ChunkEmbeddings) over the same
steps the `spanqa index` workers run.

Names are imported on first use: the parse worker processes import the plain-Python modules of this
package (reading, layout, cleaning, spans, parsing) and must not pay for Haystack, torch and FAISS.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "FaissDocumentStore": "spanqa.indexing.store",
    "FaissEmbeddingRetriever": "spanqa.indexing.retriever",
    "ChunkEmbeddings": "spanqa.indexing.chunking",
    "ChunkMeta": "spanqa.indexing.chunk_meta",
    "PageChunker": "spanqa.indexing.chunking",
    "PageConverter": "spanqa.indexing.converters",
    "ReadSettings": "spanqa.indexing.converters",
    "chunk_spans": "spanqa.indexing.spans",
    "sentence_spans": "spanqa.indexing.spans",
    "discover_files": "spanqa.indexing.reading",
    "read_pages": "spanqa.indexing.reading",
    "clean_pages": "spanqa.indexing.cleaning",
    "CleanPage": "spanqa.indexing.cleaning",
    "ChunkSettings": "spanqa.indexing.parsing",
    "ParsedFile": "spanqa.indexing.parsing",
    "parse_file": "spanqa.indexing.parsing",
    "ParsePool": "spanqa.indexing.workers",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'spanqa.indexing' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)
