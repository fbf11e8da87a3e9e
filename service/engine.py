"""The server's side of the query engine: admission (a bounded queue), retrieval on a thread of its
own and batched reading, around the one `spanqa.pipelines.engine.QueryEngine`, loaded once and
shared by every request.

Retrieval (question embedding and the store's search) runs on one thread of its own: the store
serialises its reads anyway, and a fast tokenizer must not be called from two threads at once.
Reading runs on the reader's thread, in batches: questions that arrive together are read in one
`QueryEngine.read_batch` call, all their windows in shared forward passes. Both stay off the
event loop, so the server keeps accepting requests (and /healthz keeps answering) while they work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.errors import ConfigError, SpanQAError
from spanqa.pipelines.engine import QueryEngine, Question
from spanqa.service.batching import MicroBatcher
from spanqa.settings import AUTO_THRESHOLD, QASettings, ServiceSettings

# One thread for the int8 question embedder: a question is a few dozen word pieces, and the reader
# needs the cores.
EMBEDDER_THREADS = 1


class ServiceBusy(SpanQAError):
    """More questions are in flight than the server queues; the client should retry shortly."""


class NotReady(SpanQAError):
    """The models are still loading (or failed to load)."""


class QAEngine:
    """Retrieval and batched reading over the index in `index_dir` with the `qa` settings, queued
    and batched as the `service` settings say. `load()` (blocking) must finish before use."""

    def __init__(
        self, index_dir: Path, qa: QASettings, service: ServiceSettings,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.query = QueryEngine(index_dir, qa, embedder_threads=EMBEDDER_THREADS)
        self.service = service
        self._on_batch = on_batch
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._retrieval = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-retrieval")
        self._batcher: MicroBatcher[Question, list[ExtractedAnswer]] | None = None

    @property
    def settings(self) -> QASettings:
        """The settings the engine answers with (model directories as absolute paths)."""
        return self.query.settings

    @property
    def store(self) -> Any:
        """The index (open once `load()` has finished)."""
        return self.query.store

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Opens the index and loads the question embedder and the reader (seconds)."""
        try:
            self._load()
        except Exception as exc:
            self._load_error = str(exc) if isinstance(exc, SpanQAError) else f"{type(exc).__name__}: {exc}"
            raise
        self._ready.set()

    def _load(self) -> None:
        """The index and the question embedder, and the reader here behind a micro-batcher (the Ray
        Serve engine reads on its replicas)."""
        self.query.load(reading=True)
        self._batcher = MicroBatcher(
            self._read_batch,
            max_batch=self.service.max_batch,
            max_wait_s=self.service.batch_wait_ms / 1000,
            name="spanqa-reader",
            on_batch=self._on_batch,
        )

    can_switch_reader = True  # the reader reads in this process (Ray Serve's replicas read elsewhere)

    def use_reader(self, model: str) -> None:
        """Reads with `model` from the next batch on, once it is loaded (`QueryEngine.use_reader`)."""
        self.query.use_reader(model)

    @property
    def calibration(self) -> Any:
        """The index's answer calibration for the reader (None: the index has none for it)."""
        return self.query.calibration

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def load_error(self) -> str | None:
        return self._load_error

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
        self._retrieval.shutdown(wait=False, cancel_futures=True)

    # -- admission -----------------------------------------------------------------------------

    @property
    def waiting_to_read(self) -> int:
        return 0 if self._batcher is None else self._batcher.pending

    @property
    def in_flight(self) -> int:
        """Questions and searches admitted and not yet answered (the queue depth)."""
        return self._in_flight

    def admit(self) -> _Admission:
        """A slot for one request, released when the request is done; ServiceBusy when all are taken."""
        if not self.ready:
            raise NotReady("the models are still loading" if self._load_error is None else self._load_error)
        queue_size = self.service.queue_size
        with self._in_flight_lock:
            if self._in_flight >= queue_size:
                raise ServiceBusy(f"{self._in_flight} requests are being answered (the queue holds "
                                  f"{queue_size}): retry shortly")
            self._in_flight += 1
        return _Admission(self)

    def _release(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    # -- work ------------------------------------------------------------------------------------

    async def search(self, text: str, top_k: int, filters: dict[str, Any] | None, mode: str | None) -> list[Document]:
        """The `top_k` best chunks for `text`, retrieved on the retrieval thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._retrieval, self.query.retrieve, text, top_k, filters, mode)

    async def ask(
        self, text: str, *, top_k: int, passages: int | None, filters: dict[str, Any] | None,
        threshold: float | str | None, mode: str | None,
    ) -> list[ExtractedAnswer]:
        passages = self.settings.retrieval.retriever_top_k if passages is None else passages
        if threshold == AUTO_THRESHOLD and self.calibration is None:
            raise ConfigError(
                "threshold 'auto' needs the index's answer calibration and this server has none: run "
                "`spanqa calibrate QUESTIONS.json --index DIR` and restart it, or send a numeric threshold"
            )
        documents = await self.search(text, passages, filters, mode)
        return await self._read(Question(text, documents, top_k, threshold))

    async def _read(self, question: Question) -> list[ExtractedAnswer]:
        if self._batcher is None:
            raise NotReady("the models are still loading")
        return await self._batcher.submit(question)

    def _read_batch(self, questions: list[Question]) -> list[list[ExtractedAnswer]]:
        return self.query.read_batch(questions)


class _Admission:
    def __init__(self, engine: QAEngine):
        self._engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._engine._release()
