"""Pages for the service: highlight boxes, page geometry, page images and page text, off the event loop.

The offsets of an answer point into the page text of the file as it was indexed. A file changed on
disk since then would put boxes over other words, so boxes are only drawn on files whose content
still has the indexed SHA-256 (checked once per file version: the check is cached by size and
modification time).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.ingest import file_sha256

logger = logging.getLogger(__name__)

PDF_SUFFIX = ".pdf"


class PageService:
    """Page work of the service on `SERVICE_RENDER_WORKERS` threads (pdfium itself runs one call at a time)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(defaults.SERVICE_RENDER_WORKERS, thread_name_prefix="spanqa-pages")
        self._pdf: Any = None
        # How the index read its PDFs (offsets point into that text): set from its manifest.
        self.layout = defaults.LAYOUT_READING_ORDER
        self.ocr = defaults.OCR
        self._pdf_lock = threading.Lock()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._hash_lock = threading.Lock()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._pdf_lock:
            if self._pdf is not None:
                self._pdf.close()

    def _pdf_pages(self):
        with self._pdf_lock:
            if self._pdf is None:
                from spanqa.indexing.pdf_pages import PdfPages

                self._pdf = PdfPages(layout=self.layout, ocr=self.ocr)
            return self._pdf

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- checks ----------------------------------------------------------------------------------

    def unchanged(self, source: str, sha256: str | None) -> bool:
        """Whether the file at `source` still has the content it was indexed with."""
        path = Path(source)
        try:
            status = path.stat()
        except OSError:
            return False
        if sha256 is None:
            return True  # indexed before hashes were recorded: nothing to compare with
        key = (source, status.st_size, status.st_mtime_ns)
        with self._hash_lock:
            known = self._hashes.get(key)
        if known is None:
            known = file_sha256(path)
            if known is None:
                return False
            with self._hash_lock:
                if len(self._hashes) > 4096:
                    self._hashes.clear()
                self._hashes[key] = known
        return known == sha256

    # -- work ------------------------------------------------------------------------------------

    def _boxes(self, source: str, sha256: str | None, page: int, start: int, end: int, text: str) -> list[dict[str, Any]]:
        if Path(source).suffix.lower() != PDF_SUFFIX or not self.unchanged(source, sha256):
            return []
        try:
            boxes = self._pdf_pages().boxes(Path(source), page, start, end, expected_text=text)
        except (DocumentError, ConfigError) as exc:
            logger.info("no highlight for %s page %d: %s", source, page, exc)
            return []
        return [box.to_json() for box in boxes]

    async def boxes(
        self, source: str, sha256: str | None, page: int, start: int, end: int, text: str
    ) -> list[dict[str, Any]]:
        """Highlight boxes of characters start:end of page `page`, whose text is `text` (empty for
        non-PDFs, and for files changed since they were indexed)."""
        return await self._run(self._boxes, source, sha256, page, start, end, text)

    async def geometry(self, source: str, page: int):
        return await self._run(self._pdf_pages().geometry, Path(source), page)

    async def page_count(self, source: str) -> int:
        return await self._run(self._pdf_pages().page_count, Path(source))

    async def png(self, source: str, page: int, width: int) -> bytes:
        return await self._run(self._pdf_pages().render_png, Path(source), page, width)

    def _page_text(self, source: str, page: int) -> str:
        try:
            return self._pdf_pages().page_text(Path(source), page)
        except ConfigError as exc:  # a page number past the end
            raise DocumentError(Path(source), str(exc)) from exc

    async def page_text(self, source: str, page: int) -> str:
        """The page's text as it is indexed (answer offsets point into it)."""
        return await self._run(self._page_text, source, page)
