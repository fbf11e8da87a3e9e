"""Page Documents in, chunk Documents out: the Haystack component over the cleaning and chunking
that `spanqa index` runs (`parsing.chunk_pages`), so a pipeline `PageConverter -> PageChunker`
yields exactly the chunks (texts, offsets, ids, meta) that `spanqa index` stores.

`chunk_document` is the one place a chunk becomes a Document, for the indexer and the component.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from haystack import Document, component, default_to_dict

from spanqa.chunk_meta import ChunkMeta
from spanqa.errors import ConfigError
from spanqa.indexing.ingest.parsing import ChunkRecord, ChunkSettings, chunk_pages
from spanqa.indexing.ingest.spans import chunk_id


def chunk_document(content: str, meta: ChunkMeta) -> Document:
    """A chunk as the index stores it; its id says where it comes from and what it says, so
    indexing a file again yields the same ids."""
    identifier = chunk_id(meta.source, meta.page, meta.start, meta.end, content)
    return Document(id=identifier, content=content, meta=meta.to_meta())


def chunk_of(chunk: ChunkRecord, page: ChunkMeta) -> ChunkMeta:
    """The meta of `chunk`, cut from the page that `page` describes (its file, page and extra)."""
    return replace(page, page=chunk.page, start=chunk.start, end=chunk.end, pieces=chunk.pieces)


def unique_by_id(documents: list[Document]) -> list[Document]:
    # The same text at the same place of a file is one chunk (the index keeps one per id).
    return list({document.id: document for document in documents}.values())


@component
class PageChunker:
    """Cleans the page Documents of each file together and cuts them into chunks, as `spanqa index` does.

    Takes `PageConverter`'s Documents (one per page with text, whole pages, meta a `ChunkMeta`);
    all pages of a file must come in one run, since running headers are found across them. Each
    chunk's meta is its page's with the chunk's `start`/`end` in the page text and, for cleaned text,
    `pieces` (see `ChunkMeta`). `cores` are what `spanqa index` embeds of each chunk (its core, without
    the context the reader reads around it): Documents with the chunk's id and the core as content;
    embed them and `ChunkEmbeddings` puts their vectors on the chunks.
    """

    def __init__(self, settings: ChunkSettings | None = None):
        self.settings = ChunkSettings() if settings is None else settings
        if not isinstance(self.settings, ChunkSettings):
            raise ConfigError(f"PageChunker takes ChunkSettings, got {settings!r}")

    def to_dict(self) -> dict[str, Any]:
        """The chunker as a Haystack pipeline stores it: its chunk settings, as a manifest records them."""
        return default_to_dict(self, settings=self.settings.manifest())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageChunker:
        """The chunker `to_dict` describes."""
        recorded = data.get("init_parameters", {}).get("settings")
        return cls(None if recorded is None else ChunkSettings.from_manifest(recorded))

    @component.output_types(documents=list[Document], cores=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """`documents`: the chunks of every file of the page Documents given; `cores`: what to embed of each."""
        files: dict[str, list[tuple[ChunkMeta, str]]] = defaultdict(list)
        for page in documents:
            if page.content is None or page.content.strip() == "":
                continue
            meta = ChunkMeta.from_meta(page.meta)
            if meta.start != 0 or meta.end != len(page.content) or meta.pieces is not None:
                raise ConfigError(
                    f"PageChunker reads whole pages as PageConverter gives them; page {meta.page} of "
                    f"'{meta.source}' is the span {meta.start}-{meta.end}: connect PageConverter's documents"
                )
            files[meta.source].append((meta, page.content))
        chunks: list[Document] = []
        cores: list[Document] = []
        for pages in files.values():
            pages.sort(key=lambda item: item[0].page)
            by_number = {meta.page: meta for meta, _ in pages}
            records = chunk_pages(pages[0][0].file_type, [(meta.page, text) for meta, text in pages], self.settings)
            documents_of_file = [chunk_document(r.content, chunk_of(r, by_number[r.page])) for r in records]
            core_of = {document.id: record.embed_text for document, record in zip(documents_of_file, records)}
            for document in unique_by_id(documents_of_file):
                chunks.append(document)
                cores.append(Document(id=document.id, content=core_of[document.id]))
        return {"documents": chunks, "cores": cores}


@component
class ChunkEmbeddings:
    """Puts the vectors of the embedded `cores` (PageChunker's, after a document embedder) on the
    chunks with the same ids: the chunks as `spanqa index` writes them."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document], cores: list[Document]) -> dict[str, list[Document]]:
        """`documents` with the embedding of the core of the same id; a ConfigError when a core is missing."""
        vectors = {core.id: core.embedding for core in cores}
        missing = [document.id for document in documents if vectors.get(document.id) is None]
        if missing:
            raise ConfigError(
                f"{len(missing)} chunk(s) have no embedded core (first: {missing[0]}): connect "
                "PageChunker.cores through a document embedder to ChunkEmbeddings.cores"
            )
        return {"documents": [replace(document, embedding=vectors[document.id]) for document in documents]}
