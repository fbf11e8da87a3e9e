"""Pages for the service: highlight boxes, page geometry, page images and page text, in capped page workers.

Every call that reads a file's pages (pdfium, pypdf, OCR) runs in a `PagePool` worker process under
the server's page budget (time and memory), never in the server process, and off the event loop.
Results are kept per file version (path, modification time, size), page and arguments, within
bounds; so is each page version that went over budget, so a hostile page costs its budget once,
not on every request. Calls on one page version run one at a time (the second finds the first's
result, or its failure).

The offsets of an answer point into the page text of the file as it was indexed. A file changed on
disk since then would put boxes over other words, so boxes are only drawn on files whose content
still has the indexed SHA-256 (checked once per file version: the check is cached by size and
modification time).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.ingest.indexer import file_sha256
from spanqa.indexing.pages.pdf_pages import PageGeometry, file_stamp
from spanqa.service.page_workers import PageOverBudget, PagePool
from spanqa.settings import ChunkingSettings, OcrSettings, ServiceSettings

logger = logging.getLogger(__name__)

PDF_SUFFIX = ".pdf"
_SMALL_RESULT_BYTES = 1024  # what a result that is neither bytes nor text counts for in the cache


@dataclass(frozen=True)
class Highlight:
    """An answer's highlight boxes; `error` says why there are none where boxes were expected."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class PageResults:
    """Finished page work: results (least recently used dropped beyond `max_bytes` or `max_entries`)
    and the page versions that went over budget (the oldest forgotten beyond `max_failures`)."""

    def __init__(
        self,
        max_bytes: int = defaults.SERVICE_PAGE_CACHE_MB * 1024 * 1024,
        max_entries: int = defaults.SERVICE_PAGE_CACHE_ENTRIES,
        max_failures: int = defaults.SERVICE_PAGE_FAILURES_KEPT,
    ):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_failures = max_failures
        self._results: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._failures: OrderedDict[Hashable, str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, the result) when `key`'s is kept, else (False, None)."""
        with self._lock:
            if key not in self._results:
                return False, None
            self._results.move_to_end(key)
            return True, self._results[key][0]

    def put(self, key: Hashable, value: Any) -> None:
        size = len(value) if isinstance(value, (bytes, str)) else _SMALL_RESULT_BYTES
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._results:
                self._bytes -= self._results.pop(key)[1]
            self._results[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._results) > self.max_entries:
                self._bytes -= self._results.popitem(last=False)[1][1]

    def failure(self, page_key: Hashable) -> str | None:
        """Why the page version `page_key` went over budget, if it did."""
        with self._lock:
            return self._failures.get(page_key)

    def fail(self, page_key: Hashable, reason: str) -> None:
        with self._lock:
            self._failures[page_key] = reason
            self._failures.move_to_end(page_key)
            while len(self._failures) > self.max_failures:
                self._failures.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
            self._failures.clear()
            self._bytes = 0


class _KeyLocks:
    """One asyncio lock per key, dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class PageService:
    """Page work of the service in `workers` capped processes, its results and failures kept per page.

    `observe(outcome)` is told what became of each call: "drawn" (a worker did it), "cached",
    "over_budget" (a worker went over the budget), "known_over_budget" (refused at once: that page
    version went over before) or "failed" (any other error, e.g. the file changed).
    """

    def __init__(
        self,
        workers: int = ServiceSettings.page_workers,
        timeout_s: float | None = ServiceSettings.page_timeout_s,
        memory_mb: int | None = ServiceSettings.page_memory_mb,
        observe: Callable[[str], None] | None = None,
        pool: PagePool | None = None,
    ) -> None:
        self.pool = PagePool(workers, timeout_s, memory_mb) if pool is None else pool
        # One thread per worker waits on it; calls beyond them queue here, not as processes.
        self._executor = ThreadPoolExecutor(self.pool.workers, thread_name_prefix="spanqa-pages")
        self.results = PageResults()
        self._locks = _KeyLocks()
        self._observe = observe
        # How the index read its PDFs (offsets point into that text): set from its manifest.
        self._layout = ChunkingSettings.layout_reading_order
        self._ocr = OcrSettings.ocr
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._hash_lock = threading.Lock()

    @property
    def layout(self) -> bool:
        return self._layout

    @layout.setter
    def layout(self, value: bool) -> None:
        self._layout = value
        self._reconfigure()

    @property
    def ocr(self) -> str:
        return self._ocr

    @ocr.setter
    def ocr(self, value: str) -> None:
        self._ocr = value
        self._reconfigure()

    def _reconfigure(self) -> None:
        self.pool.configure(self._layout, self._ocr)
        self.results.clear()

    def close(self) -> None:
        self.pool.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

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

    def _tell(self, outcome: str) -> None:
        if self._observe is not None:
            self._observe(outcome)

    async def _work(self, method: str, source: str, page: int, *args: Any, **kwargs: Any) -> Any:
        """`method` on page `page` (0: the whole file) of the file's current version, in a worker,
        unless its result or its page's failure is kept."""
        loop = asyncio.get_running_loop()
        path = Path(source)
        stamp = await loop.run_in_executor(None, file_stamp, path)
        page_key = (stamp, page)
        key = (stamp, page, method, args, tuple(sorted(kwargs.items())))
        async with self._locks.hold(page_key):
            found, value = self.results.get(key)
            if found:
                self._tell("cached")
                return value
            reason = self.results.failure(page_key)
            if reason is not None:
                self._tell("known_over_budget")
                raise PageOverBudget(path, reason)
            try:
                value = await loop.run_in_executor(self._executor, self.pool.call, method, source, page, args, kwargs)
            except PageOverBudget as exc:
                self.results.fail(page_key, exc.reason)
                self._tell("over_budget")
                raise
            except BaseException:
                self._tell("failed")
                raise
            self._tell("drawn")
            if await loop.run_in_executor(None, _still, path, stamp):
                self.results.put(key, value)
            return value

    async def highlight(self, source: str, sha256: str | None, page: int, start: int, end: int, text: str) -> Highlight:
        """Highlight boxes of characters start:end of page `page`, whose text is `text`: none for
        non-PDFs and for files changed since they were indexed; none, with the reason, for a page
        over the server's budget."""
        if Path(source).suffix.lower() != PDF_SUFFIX:
            return Highlight()
        if not await asyncio.get_running_loop().run_in_executor(None, self.unchanged, source, sha256):
            return Highlight()
        try:
            boxes = await self._work("boxes", source, page, page, start, end, expected_text=text)
        except PageOverBudget as exc:
            return Highlight([], exc.reason)
        except (DocumentError, ConfigError) as exc:
            logger.info("no highlight for %s page %d: %s", source, page, exc)
            return Highlight()
        return Highlight(list(boxes))

    async def boxes(
        self, source: str, sha256: str | None, page: int, start: int, end: int, text: str
    ) -> list[dict[str, Any]]:
        """Highlight boxes of characters start:end of page `page`, whose text is `text` (empty for
        non-PDFs, for files changed since they were indexed, and for pages over budget)."""
        return (await self.highlight(source, sha256, page, start, end, text)).boxes

    async def geometry(self, source: str, page: int) -> PageGeometry:
        return await self._work("geometry", source, page, page)

    async def page_count(self, source: str) -> int:
        return await self._work("page_count", source, 0)

    async def png(self, source: str, page: int, width: int) -> bytes:
        return await self._work("png", source, page, page, width)

    async def page_text(self, source: str, page: int) -> str:
        """The page's text as it is indexed (answer offsets point into it)."""
        try:
            return await self._work("page_text", source, page, page)
        except ConfigError as exc:  # a page number past the end
            raise DocumentError(Path(source), str(exc)) from exc


def _still(path: Path, stamp: Any) -> bool:
    """Whether the file at `path` is still the version `stamp` (else a result is not kept)."""
    try:
        return file_stamp(path) == stamp
    except DocumentError:
        return False
