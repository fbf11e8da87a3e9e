"""Indexing: files to pages, pages to chunks, chunks to a persistent FAISS index; as Haystack
components (PageConverter -> PageChunker -> a document embedder -> ChunkEmbeddings) over the same
steps the `spanqa index` workers run.

Its packages, highest first (pyproject's import-linter contract checks the order): `pages` (the
service's page views) and `ingest` (files to stored chunks); `retrieval` and `formats` (files to page
texts); `store` and `ocr`; the modules `layout` (reading order) and `pdfium` (its one lock).

Names are imported on first use: the parse worker processes import the plain-Python modules of this
package (formats, ocr, layout, spans, parsing, workers) and must not pay for Haystack, torch and
FAISS (a contract in pyproject checks that too).
"""

from __future__ import annotations

import importlib

_HOMES = {
    "FaissDocumentStore": "spanqa.indexing.store.faiss_store",
    "FaissEmbeddingRetriever": "spanqa.indexing.retrieval.retriever",
    "ChunkEmbeddings": "spanqa.indexing.ingest.chunking",
    "ChunkMeta": "spanqa.chunk_meta",
    "PageChunker": "spanqa.indexing.ingest.chunking",
    "PageConverter": "spanqa.indexing.ingest.converters",
    "ReadSettings": "spanqa.indexing.ingest.converters",
    "chunk_spans": "spanqa.indexing.ingest.spans",
    "sentence_spans": "spanqa.indexing.ingest.spans",
    "discover_files": "spanqa.indexing.formats.extraction",
    "read_pages": "spanqa.indexing.formats.extraction",
    "clean_pages": "spanqa.indexing.formats.cleaning",
    "CleanPage": "spanqa.indexing.formats.cleaning",
    "ChunkSettings": "spanqa.indexing.ingest.parsing",
    "ParsedFile": "spanqa.indexing.ingest.parsing",
    "parse_file": "spanqa.indexing.ingest.parsing",
    "ParsePool": "spanqa.indexing.ingest.workers",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'spanqa.indexing' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)
