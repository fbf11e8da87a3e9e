"""Indexing: files to page Documents, page Documents to chunks, chunks to a persistent FAISS index.

Names are imported on first use: the parse worker processes import the plain-Python modules of this
package (reading, layout, cleaning, spans, parsing) and must not pay for Haystack, torch and FAISS.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "FaissDocumentStore": "spanqa.indexing.store",
    "FaissEmbeddingRetriever": "spanqa.indexing.retriever",
    "PageChunker": "spanqa.indexing.chunking",
    "PageConverter": "spanqa.indexing.converters",
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
