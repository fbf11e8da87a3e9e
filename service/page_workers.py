"""Page work in worker processes, each call under a time and memory budget: no PDF page can take the server down.

`PagePool.call(method, source, page, args, kwargs)` runs one `PdfPages` method (highlight boxes,
geometry, page image, page count, page text) in one of `workers` long-lived processes. Each worker
keeps its own `PdfPages`, so its open documents and per-page caches serve the calls after the
first; each is capped at `memory_mb` of address space (RLIMIT_AS), and each call has `timeout_s`:

- a call over time has its worker killed (the next call starts a fresh one);
- a call that runs out of memory (a MemoryError, or pdfium aborting when an allocation fails), or
  whose worker dies otherwise, fails and its worker is replaced;

all three raise PageOverBudget, a DocumentError whose reason says so without a server path. The
server process itself never opens the file. At most `workers` processes run: a burst of calls
waits for a free one. `call` blocks; callers run it on their own threads. Workers start with
forkserver, as the parse workers do (spanqa.indexing.ingest.workers).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError, check_positive_int
from spanqa.indexing.ingest.workers import limit_memory, main_module_hidden, worker_context
from spanqa.indexing.ocr.engines import check_ocr_mode
from spanqa.indexing.pages.pdf_pages import PdfPages
from spanqa.settings import ChunkingSettings, OcrSettings, ServiceSettings

logger = logging.getLogger(__name__)

# The calls a worker answers: the service's name -> the PdfPages method.
METHODS = {"boxes": "boxes", "geometry": "geometry", "png": "render_png", "page_count": "page_count",
           "page_text": "page_text"}
_JOIN_S = 5.0


class PageOverBudget(DocumentError):
    """Page work that needed more time or memory than the server's budget, or whose worker died."""


def run_page_call(pages: PdfPages, method: str, path: str, args: tuple, kwargs: dict) -> Any:
    """One call in a worker (a module-level function: tests swap it for misbehaving ones)."""
    result = getattr(pages, METHODS[method])(Path(path), *args, **kwargs)
    if method == "boxes":
        return [box.to_json() for box in result]
    return result


def check_page_budget(timeout_s: float | None, memory_mb: int | None) -> None:
    """A ConfigError naming the bad value unless the page budget is usable: each checked as its
    setting declares (`ServiceSettings.page_timeout_s`, `page_memory_mb`); None: no limit."""
    if timeout_s is not None:
        ServiceSettings.check_value("page_timeout_s", timeout_s)
    if memory_mb is not None:
        ServiceSettings.check_value("page_memory_mb", memory_mb)


def _worker_main(connection: Any, memory_mb: int | None, layout: bool, ocr: str, job: Callable) -> None:
    # Ctrl-C goes to the whole process group: the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # odd fonts are the file's business, not the log's
    limit_memory(memory_mb)
    pages = PdfPages(layout=layout, ocr=ocr)
    connection.send(("ready", os.getpid()))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            reply = ("ok", job(pages, *request))
        except DocumentError as exc:
            reply = ("document", exc.reason)
        except ConfigError as exc:
            reply = ("config", str(exc))
        except MemoryError:
            reply = ("memory", None)
        except Exception as exc:  # noqa: BLE001 - report, never die silently
            reply = ("error", f"{type(exc).__name__}: {exc}"[:300])
        try:
            connection.send(reply)
        except MemoryError:
            reply = ("memory", None)
            connection.send(reply)
        if reply[0] == "memory":
            return  # a process that ran out of memory may be left in a bad state: start afresh


@dataclass(eq=False)
class _Worker:
    process: Any
    connection: Any
    generation: int
    pid: int | None = None


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGABRT":
            return "its worker crashed (SIGABRT, as pdfium does when memory runs out)"
        if name == "SIGKILL":
            return "its worker was killed (SIGKILL, e.g. by the system when memory ran out)"
        return f"its worker crashed ({name})"
    return "its worker crashed" if exitcode is None else f"its worker crashed (exit code {exitcode})"


class PagePool:
    """Long-lived page-worker processes; each call has `timeout_s` seconds and `memory_mb` MiB."""

    def __init__(
        self,
        workers: int = ServiceSettings.page_workers,
        timeout_s: float | None = ServiceSettings.page_timeout_s,
        memory_mb: int | None = ServiceSettings.page_memory_mb,
        *,
        layout: bool = ChunkingSettings.layout_reading_order,
        ocr: str = OcrSettings.ocr,
        job: Callable[[PdfPages, str, str, tuple, dict], Any] = run_page_call,
    ):
        """
        :param workers: page-worker processes (calls beyond them wait for a free one).
        :param timeout_s: seconds one call may take (a worker's start is not counted: it has
            SERVICE_PAGE_WORKER_START_S); None for no limit.
        :param memory_mb: address space of each worker in MiB; None for no cap.
        :param layout: and `ocr`: how the index read its PDFs (answer offsets point into that text).
        :param job: what a worker runs per call (a module-level function; tests swap it).
        """
        self.workers = check_positive_int("workers", workers)
        check_page_budget(timeout_s, memory_mb)
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self.memory_mb = memory_mb
        self.job = job
        self._settings = (bool(layout), check_ocr_mode(ocr))
        self._generation = 0
        self._context = worker_context()
        self._lock = threading.Lock()
        self._live: list[_Worker] = []
        self._closed = False
        self.started = 0  # workers started so far
        # One slot per worker: None until a call starts its process (again, after a kill). Last in,
        # first out: the worker used last (whose caches hold the page just asked for) goes next.
        self._free: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(self.workers):
            self._free.put(None)

    @property
    def budget(self) -> str:
        """The budget of one call, in words ("30 s, 4096 MB of memory")."""
        parts = [] if self.timeout_s is None else [f"{self.timeout_s:g} s"]
        parts += [] if self.memory_mb is None else [f"{self.memory_mb} MB of memory"]
        return ", ".join(parts) or "no limits"

    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        with self._lock:
            return [worker.pid for worker in self._live if worker.pid is not None]

    def configure(self, layout: bool, ocr: str) -> None:
        """Read PDFs as an index with these settings did: workers started before are replaced."""
        settings = (bool(layout), check_ocr_mode(ocr))
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                self._generation += 1

    def call(self, method: str, path: str | Path, page: int, args: tuple = (), kwargs: dict | None = None) -> Any:
        """`PdfPages.<method>(path, *args, **kwargs)` in a worker. `page` (0: the whole file) names the
        page in errors. Raises PageOverBudget, DocumentError or ConfigError as the method does."""
        if method not in METHODS:
            raise ConfigError(f"unknown page call {method!r}: one of {', '.join(METHODS)}")
        request = (method, str(path), tuple(args), dict(kwargs or {}))
        worker = self._free.get()  # waits while every worker is busy
        kept = None
        try:
            if self._closed:
                raise DocumentError(path, "the server is stopping: try again")
            worker = self._usable(worker, path)
            kind, value = self._exchange(worker, request)
            if kind in ("ok", "document", "config", "error"):
                kept = worker
        finally:
            self._free.put(kept)
        return self._result(kind, value, path, page)

    def close(self) -> None:
        """Stops every worker (calls in flight fail with "the server is stopping")."""
        with self._lock:
            self._closed = True
            workers = list(self._live)
        for worker in workers:
            try:
                worker.connection.send(None)
            except (OSError, ValueError):
                pass
        for worker in workers:
            worker.process.join(timeout=1)
            self._retire(worker)

    # -- workers ---------------------------------------------------------------------------------

    def _usable(self, worker: _Worker | None, path: str | Path) -> _Worker:
        with self._lock:
            generation = self._generation
            layout, ocr = self._settings
        if worker is not None and (worker.generation != generation or not worker.process.is_alive()):
            self._retire(worker)
            worker = None
        return self._start(layout, ocr, generation, path) if worker is None else worker

    def _start(self, layout: bool, ocr: str, generation: int, path: str | Path) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self.memory_mb, layout, ocr, self.job), name="spanqa-pages",
            daemon=True,
        )
        with main_module_hidden():
            process.start()
        child_end.close()
        worker = _Worker(process, parent_end, generation)
        with self._lock:
            self._live.append(worker)
            self.started += 1
            closed = self._closed
        if closed:  # close() ran while this one started: it never saw it
            self._retire(worker)
            raise DocumentError(path, "the server is stopping: try again")
        message = None
        try:
            ready = wait_for([parent_end, process.sentinel], timeout=defaults.SERVICE_PAGE_WORKER_START_S)
            if ready and parent_end.poll():
                message = parent_end.recv()
        except (EOFError, OSError, ValueError):
            pass
        if not (isinstance(message, tuple) and message[0] == "ready"):
            process.join(timeout=0.5)
            reason = "it took too long" if process.exitcode is None else _death(process.exitcode)
            self._retire(worker)
            logger.error("a page worker could not start: %s (budget: %s)", reason, self.budget)
            raise DocumentError(path, "the server's page worker could not start: its log says why")
        worker.pid = message[1]
        return worker

    def _exchange(self, worker: _Worker, request: tuple) -> tuple[str, Any]:
        """The worker's reply to `request`; ("timeout", None) or ("died", exitcode) after retiring it."""
        try:
            worker.connection.send(request)
            ready = wait_for([worker.connection, worker.process.sentinel], timeout=self.timeout_s)
            if worker.connection in ready:
                reply = worker.connection.recv()
                if reply[0] == "memory":
                    self._retire(worker)  # it exits by itself: start afresh
                return reply
        except (EOFError, OSError, ValueError):  # it died mid-call (or close() closed its pipe)
            ready = [worker.process.sentinel]
        if not ready:
            self._retire(worker)
            return "timeout", None
        worker.process.join(timeout=_JOIN_S)
        exitcode = worker.process.exitcode
        self._retire(worker)
        return "died", exitcode

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            if worker not in self._live:
                return
            self._live.remove(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=_JOIN_S)
        worker.connection.close()

    def _result(self, kind: str, value: Any, path: str | Path, page: int) -> Any:
        if kind == "ok":
            return value
        if kind == "document":
            raise DocumentError(path, value)
        if kind == "config":
            raise ConfigError(value)
        if self._closed:
            raise DocumentError(path, "the server is stopping: try again")
        where = f"page {page}" if page > 0 else "the file"
        if kind == "error":
            logger.warning("page work on %s, %s failed: %s", path, where, value)
            raise DocumentError(path, f"cannot draw {where}: the page worker failed ({value.split(':')[0]})")
        if kind == "timeout":
            what = f"it took longer than {self.timeout_s:g} s"
        elif kind == "memory":
            what = f"it needed more than {self.memory_mb} MB of memory"
        else:
            what = _death(value)
        logger.warning("page work on %s, %s over budget (%s): %s", path, where, self.budget, what)
        verb = "draw" if page > 0 else "open"
        raise PageOverBudget(path, f"{where} is too complex to {verb} within the server's budget ({self.budget}): "
                             f"{what}")
