"""Files in, page Documents out: the Haystack component over `spanqa.indexing.reading`.

`read_pages` (in `reading`, re-exported here) returns the exact page texts every later offset points
into (chunk `start`/`end`, answer `start`/`end`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from haystack import Document, component, default_from_dict, default_to_dict

from spanqa.answers import SkippedFile
from spanqa.errors import DocumentError
from spanqa.indexing.reading import (  # noqa: F401 - re-exported: this module was their home
    HTML_SUFFIXES,
    PDF_SUFFIXES,
    TEXT_SUFFIXES,
    VisibleTextParser,
    decode_text,
    discover_files,
    html_to_text,
    is_supported,
    read_bytes,
    read_pages,
    read_pdf_pages,
    short_message,
    split_form_feeds,
    unlock_pdf,
    unsupported_reason,
)

logger = logging.getLogger(__name__)


@component
class PageConverter:
    """Turns files into one Document per page that has text; files that cannot be read are reported, not raised.

    Each Document's `content` is the page text exactly as extracted, and its meta is
    `{"source": absolute path, "page": 1-based page number, "page_count": pages in the file}`.
    """

    def __init__(self, password: str | None = None):
        self.password = password

    def to_dict(self) -> dict:
        return default_to_dict(self, password=self.password)

    @classmethod
    def from_dict(cls, data: dict) -> PageConverter:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], skipped=list[SkippedFile])
    def run(self, sources: list[str]) -> dict:
        documents: list[Document] = []
        skipped: list[SkippedFile] = []
        for source in sources:
            path = Path(source).expanduser().resolve()
            try:
                pages = read_pages(path, password=self.password)
            except DocumentError as exc:
                logger.info("skipped %s: %s", path, exc.reason)
                skipped.append(SkippedFile(str(path), exc.reason))
                continue
            page_count = len(pages)
            for page_number, page_text in enumerate(pages, start=1):
                if page_text.strip() == "":
                    continue
                meta = {"source": str(path), "page": page_number, "page_count": page_count}
                documents.append(Document(content=page_text, meta=meta))
        return {"documents": documents, "skipped": skipped}
