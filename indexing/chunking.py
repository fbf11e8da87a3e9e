"""Page texts cut into overlapping, sentence-aligned chunks, each one a character span of its page.

The span arithmetic lives in plain functions (`spanqa.indexing.spans`: `sentence_spans`, `chunk_spans`)
so it can be tested without Haystack; `PageChunker` only turns spans into Documents.
"""

from __future__ import annotations

from haystack import Document, component, default_from_dict, default_to_dict

from spanqa import defaults
from spanqa.indexing.spans import (  # noqa: F401 - re-exported: this module was their home
    ABBREVIATIONS,
    chunk_id,
    chunk_spans,
    sentence_spans,
    validate_chunk_settings,
)


@component
class PageChunker:
    """Splits page Documents into chunk Documents whose meta says where in the page each chunk lies.

    A chunk's meta is its page's meta plus `start`/`end`: `page_text[start:end] == chunk.content`.
    """

    def __init__(self, max_words: int = defaults.CHUNK_WORDS, overlap_words: int = defaults.CHUNK_OVERLAP_WORDS):
        validate_chunk_settings(max_words, overlap_words)
        self.max_words = max_words
        self.overlap_words = overlap_words

    def to_dict(self) -> dict:
        return default_to_dict(self, max_words=self.max_words, overlap_words=self.overlap_words)

    @classmethod
    def from_dict(cls, data: dict) -> PageChunker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict:
        chunks: list[Document] = []
        for page in documents:
            if page.content is None:
                continue
            for start, end in chunk_spans(page.content, self.max_words, self.overlap_words):
                content = page.content[start:end]
                meta = {**page.meta, "start": start, "end": end}
                identifier = chunk_id(page.meta.get("source"), page.meta.get("page"), start, end, content)
                chunks.append(Document(id=identifier, content=content, meta=meta))
        return {"documents": chunks}
