"""Parse worker processes: files are parsed in parallel, each under a time and memory budget.

`ParsePool.run(tasks)` yields one ParsedFile per task as soon as it is ready (completion order),
while the caller embeds what came before. Each file is parsed in a worker process of its own pool:

- a file that takes longer than `timeout_s` has its worker killed: "timed out after N s";
- a worker is capped at `memory_mb` of address space (RLIMIT_AS); a file that needs more:
  "out of memory (limit N MB)";
- a worker that dies (a crash in a C extension, a signal): "parser crashed (...)".

A worker that was killed or died is replaced, so the rest of the batch goes on. Workers start with
`forkserver` (from a clean server process that has the parser imported, not a fork of a process
running torch threads) where the platform has it, else with `spawn`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from typing import Any

from spanqa import defaults
from spanqa.indexing.ingest.parsing import ParsedFile, ParseTask, parse_file
from spanqa.settings import ParseSettings

logger = logging.getLogger(__name__)

OUT_OF_MEMORY = "out of memory"


@dataclass(frozen=True)
class OcrPageStarted:
    """A worker's message before it OCRs a page: its file may take `ocr_page_s` longer."""
_DONE = object()
# How often the manager thread looks at the clock and at the consumer while nothing else happens.
_POLL_S = 0.05


def default_workers() -> int:
    """Parser processes when `workers` is None (`ParseSettings.workers`): the CPUs, 1 to 4."""
    if ParseSettings.workers is not None:
        return ParseSettings.workers
    return max(1, min(4, os.cpu_count() or 1))


def limit_memory(memory_mb: int | None) -> None:
    if memory_mb is None:
        return
    try:
        import resource
    except ImportError:  # not on POSIX: no cap, the time budget still holds
        return
    limit = int(memory_mb) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(connection: Any, memory_mb: int | None, job: Callable[[Any], ParsedFile]) -> None:
    # Ctrl-C goes to the whole process group; the indexer decides what happens to its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Per-file problems come back as reasons; pypdf's warnings about odd fonts would only be noise.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    # One file at a time, one thread: a tokenizer thread pool would only spend the address-space cap.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    limit_memory(memory_mb)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        out_of_memory = False

        def ocr_page_started() -> None:
            connection.send(OcrPageStarted())

        try:
            result = job(task, ocr_page_started)
            out_of_memory = result.reason is not None and result.reason.startswith(OUT_OF_MEMORY)
        except MemoryError:
            result = ParsedFile(path=task.path)
            out_of_memory = True
        except BaseException as exc:  # noqa: BLE001 - report, never die silently
            result = ParsedFile(path=task.path, reason=f"cannot parse: {type(exc).__name__}: {exc}"[:200])
        if out_of_memory:
            result = ParsedFile(path=task.path, reason=f"{OUT_OF_MEMORY} (limit {memory_mb} MB)", seconds=result.seconds)
        try:
            connection.send(result)
        except MemoryError:
            connection.send(ParsedFile(path=task.path, reason=f"{OUT_OF_MEMORY} (limit {memory_mb} MB)"))
        if out_of_memory:
            return  # a process that ran out of memory may be left in a bad state: start afresh


def worker_context() -> Any:
    """The multiprocessing context worker processes start from (the parsers', the service's page
    workers'): one forkserver per process, which imported the parser once, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # Children fork from a server that imported the parser once, so each starts in milliseconds.
        context.set_forkserver_preload(["spanqa.indexing.ingest.parsing"])
        return context
    return multiprocessing.get_context("spawn")


_MAIN_LOCK = threading.Lock()


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start a worker without re-running the caller's main script in it.

    spawn and forkserver children import the parent's `__main__` module; a script that calls
    `DocumentQA.index()` at top level, without an `if __name__ == "__main__":` guard, would then
    index again inside every worker. The workers need nothing from `__main__`, so while a worker
    starts, the main module shows no file or spec to import.
    """
    main = sys.modules.get("__main__")
    with _MAIN_LOCK:
        if main is None:
            yield
            return
        saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
        try:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _crash_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "parser crashed"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGKILL":
            return "parser crashed (killed: SIGKILL, e.g. by the system when memory ran out)"
        return f"parser crashed ({name})"
    return f"parser crashed (exit code {exitcode})"


class ParseRun:
    """Results of one `ParsePool.start`: iterate for ParsedFiles as they finish; `close` stops the workers."""

    def __init__(self, pool: ParsePool, results: queue.Queue, manager: threading.Thread):
        self.pool = pool
        self.results = results
        self.manager = manager
        self.finished = False

    def __iter__(self) -> Iterator[ParsedFile]:
        while not self.finished:
            item = self.results.get()
            if item is _DONE:
                self.finished = True
                break
            if isinstance(item, BaseException):
                raise item
            yield item

    def ready(self) -> int:
        return self.results.qsize()

    def close(self) -> None:
        self.pool._stop.set()
        self.manager.join()


@dataclass
class _Worker:
    process: Any
    connection: Any
    task: ParseTask | None = None
    started: float = 0.0
    extra_s: float = 0.0  # time granted beyond timeout_s (pages OCR'd so far)


class ParsePool:
    """Worker processes that parse files under a per-file time and memory budget."""

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float | None = ParseSettings.timeout_s,
        memory_mb: int | None = ParseSettings.memory_mb,
        job: Callable[[Any, Callable[[], None]], ParsedFile] = parse_file,
        max_ready: int | None = None,
        ocr_page_s: float = defaults.PARSE_OCR_PAGE_S,
        keep_workers: bool = False,
    ):
        """
        :param workers: parser processes (default: the CPUs, 1 to 4).
        :param timeout_s: seconds one file may take; None for no limit.
        :param memory_mb: address space of each parser process in MiB; None for no cap.
        :param job: what a worker runs per task, given the task and a callable to call before it
            OCRs a page (a module-level function; tests swap it).
        :param max_ready: parsed files kept waiting for the consumer before parsing pauses.
        :param ocr_page_s: seconds added to a file's `timeout_s` for each page it OCRs.
        :param keep_workers: leave healthy idle workers running after a run, for the next one (a
            Ray worker parses file after file: a new parser process per file would import its
            libraries and load its OCR models again each time); `close()` stops them.
        """
        ParseSettings(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)  # each checked as the setting
        workers = default_workers() if workers is None else workers
        self.workers = workers
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.job = job
        self.ocr_page_s = ocr_page_s
        self.max_ready = max_ready if max_ready is not None else 2 * workers + 2
        self.keep_workers = keep_workers
        self._context = worker_context()
        self._stop = threading.Event()
        self._pool: list[_Worker] = []

    # -- the consumer's side -----------------------------------------------------------------

    def start(self, tasks: Iterable[ParseTask]) -> ParseRun:
        """Start parsing `tasks` now; iterate the returned ParseRun for the results, close it when done."""
        results: queue.Queue = queue.Queue()
        self._results = results
        self._stop.clear()
        for worker in [w for w in self._pool if not w.process.is_alive()]:
            self._retire(worker, kill=True)  # a kept worker that died while idle
        manager = threading.Thread(target=self._manage, args=(deque(tasks), results), daemon=True)
        manager.start()
        return ParseRun(self, results, manager)

    def run(self, tasks: Iterable[ParseTask]) -> Iterator[ParsedFile]:
        """One ParsedFile per task, in the order they finish. Stops the workers when done or abandoned."""
        parse_run = self.start(tasks)
        try:
            yield from parse_run
        finally:
            parse_run.close()

    def close(self) -> None:
        """Stops the workers a `keep_workers` pool kept (a pool that keeps none needs no close)."""
        self._stop.set()
        self._stop_workers()

    def ready(self) -> int:
        """Parsed files waiting to be taken from `run` right now."""
        results = getattr(self, "_results", None)
        return 0 if results is None else results.qsize()

    def map(self, tasks: Iterable[ParseTask]) -> list[ParsedFile]:
        """Every task's ParsedFile, in task order."""
        tasks = list(tasks)
        by_path = {}
        for result in self.run(tasks):
            by_path.setdefault(result.path, []).append(result)
        return [by_path[task.path].pop(0) for task in tasks]

    # -- the manager thread ------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self.memory_mb, self.job), name="spanqa-parser", daemon=True
        )
        with main_module_hidden():
            process.start()
        child_end.close()
        worker = _Worker(process=process, connection=parent_end)
        self._pool.append(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.connection.close()
        if worker in self._pool:
            self._pool.remove(worker)

    def _manage(self, pending: deque, results: queue.Queue) -> None:
        try:
            self._manage_loop(pending, results)
        except BaseException as exc:  # noqa: BLE001 - hand any failure of the pool to the consumer
            results.put(exc)
        finally:
            if self.keep_workers and not self._stop.is_set():
                for worker in [w for w in self._pool if w.task is not None or not w.process.is_alive()]:
                    self._retire(worker, kill=True)
            else:
                self._stop_workers()
            results.put(_DONE)

    def _stop_workers(self) -> None:
        for worker in list(self._pool):
            if worker.task is None and worker.process.is_alive():
                try:
                    worker.connection.send(None)
                except OSError:
                    pass
        for worker in list(self._pool):
            self._retire(worker, kill=worker.task is not None)
            if worker.process.is_alive():
                self._retire(worker, kill=True)

    def _manage_loop(self, pending: deque, results: queue.Queue) -> None:
        while (pending or any(w.task is not None for w in self._pool)) and not self._stop.is_set():
            # Hand out work while the consumer keeps up.
            while pending and results.qsize() < self.max_ready:
                idle = next((w for w in self._pool if w.task is None), None)
                if idle is None:
                    if len(self._pool) >= self.workers:
                        break
                    idle = self._start_worker()
                task = pending.popleft()
                try:
                    idle.connection.send(task)
                except OSError:  # the idle worker died (e.g. after running out of memory)
                    self._retire(idle, kill=True)
                    pending.appendleft(task)
                    continue
                idle.task = task
                idle.started = time.monotonic()
                idle.extra_s = 0.0

            busy = [w for w in self._pool if w.task is not None]
            if not busy:
                time.sleep(_POLL_S)
                continue
            now = time.monotonic()
            wait_s = _POLL_S * 4
            if self.timeout_s is not None:
                wait_s = min(wait_s, max(0.0, min(w.started + self.timeout_s + w.extra_s for w in busy) - now))
            handles = {}
            for worker in busy:
                handles[worker.connection] = worker
                handles[worker.process.sentinel] = worker
            ready = wait_for(list(handles), timeout=wait_s)
            done: set[int] = set()
            for handle in ready:
                worker = handles[handle]
                if id(worker) in done or worker.task is None:
                    continue
                done.add(id(worker))
                task = worker.task
                try:
                    if worker.connection.poll():
                        result = worker.connection.recv()
                    else:
                        raise EOFError
                except (EOFError, OSError):
                    worker.process.join(timeout=5)
                    result = ParsedFile(path=task.path, reason=_crash_reason(worker.process.exitcode))
                    worker.task = None
                    self._retire(worker, kill=True)
                    results.put(result)
                    continue
                if isinstance(result, OcrPageStarted):
                    worker.extra_s += self.ocr_page_s
                    continue
                worker.task = None
                if result.reason is not None and result.reason.startswith(OUT_OF_MEMORY):
                    self._retire(worker, kill=False)
                results.put(result)
            if self.timeout_s is not None:
                now = time.monotonic()
                for worker in [w for w in self._pool if w.task is not None]:
                    if now - worker.started >= self.timeout_s + worker.extra_s:
                        task = worker.task
                        worker.task = None
                        self._retire(worker, kill=True)
                        budget = self.timeout_s + worker.extra_s
                        results.put(ParsedFile(path=task.path, reason=f"timed out after {budget:g} s"))
