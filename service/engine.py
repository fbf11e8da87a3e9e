"""The models and the index a server answers from: loaded once, shared by every request.

Retrieval (question embedding and the store's search) runs on one thread of its own: the store
serialises its reads anyway, and a fast tokenizer must not be called from two threads at once.
Reading runs on the reader's thread, in batches: questions that arrive together are read in one
`ExtractiveReader.run_batch` call, all their windows in shared forward passes. Both stay off the
event loop, so the server keeps accepting requests (and /healthz keeps answering) while they work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa import defaults
from spanqa.devices import check_device, resolve_device
from spanqa.errors import ConfigError, SpanQAError, check_positive_int
from spanqa.indexing.retrieval.fusion import check_dense_weight, check_retrieval_mode
from spanqa.service.batching import MicroBatcher

logger = logging.getLogger(__name__)

RETRIEVAL_MODES = ("hybrid", "dense", "keyword")


class ServiceBusy(SpanQAError):
    """More questions are in flight than the server queues; the client should retry shortly."""


class NotReady(SpanQAError):
    """The models are still loading (or failed to load)."""


@dataclass(frozen=True)
class EngineSettings:
    """How the server reads: the options `spanqa ask` takes, plus batching and queueing."""

    index_dir: Path
    reader: str = defaults.READER_MODEL
    fast: bool = defaults.READER_FAST
    device: str = defaults.DEVICE
    embedder: str | None = None  # None: the one the index was built with (another is an error)
    passages: int = defaults.RETRIEVER_TOP_K
    max_answer_length: int = defaults.MAX_ANSWER_LENGTH
    max_seq_length: int = defaults.MAX_SEQ_LENGTH
    doc_stride: int = defaults.DOC_STRIDE
    retrieval: str = defaults.RETRIEVAL_MODE
    dense_weight: float = defaults.HYBRID_DENSE_WEIGHT
    rank_weight: float = defaults.READER_RANK_WEIGHT
    adaptive: bool = False
    queue_size: int = defaults.SERVICE_QUEUE_SIZE
    max_batch: int = defaults.SERVICE_MAX_BATCH
    batch_wait_ms: float = defaults.SERVICE_BATCH_WAIT_MS

    def __post_init__(self) -> None:
        check_device(self.device)
        check_positive_int("passages", self.passages)
        check_positive_int("queue_size", self.queue_size)
        check_positive_int("max_batch", self.max_batch)
        check_retrieval_mode(self.retrieval)
        check_dense_weight(self.dense_weight)
        if not 0 <= self.batch_wait_ms <= 10:
            raise ConfigError(f"batch_wait_ms={self.batch_wait_ms!r} must be from 0 to 10 (milliseconds)")


@dataclass(frozen=True)
class Question:
    """One question to read: its text, the passages retrieved for it and its own answer settings."""

    text: str
    documents: list[Document]
    top_k: int
    threshold: float | str | None  # a score, "auto" (the calibration's), or None


class QAEngine:
    """Retrieval and batched reading over one index. `load()` (blocking) must finish before use."""

    def __init__(self, settings: EngineSettings, on_batch=None):
        self.settings = settings
        self._on_batch = on_batch
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._retrieval = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-retrieval")
        self._batcher: MicroBatcher[Question, list[ExtractedAnswer]] | None = None
        self.store: Any = None
        self._embedder: Any = None
        self._retrievers: dict[str, Any] = {}
        self.reader: Any = None

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
        from spanqa.indexing.retrieval.embedding import EmbeddingSettings
        from spanqa.indexing.retrieval.hybrid import HybridRetriever
        from spanqa.indexing.store.shards import open_index
        from spanqa.pipelines.api import model_reference, warm_up_embedder
        from spanqa.pipelines.builders import make_text_embedder

        settings = self.settings
        store = open_index(settings.index_dir)
        if settings.embedder is not None and model_reference(settings.embedder) != store.embedder:
            from spanqa.errors import IndexMismatchError

            raise IndexMismatchError(
                f"the index at '{settings.index_dir}' was built with embedder '{store.embedder}', not "
                f"'{settings.embedder}': leave --embedder out to use the recorded one"
            )
        torch_device = resolve_device(settings.device)
        # One thread: a question is a few dozen word pieces, and the reader needs the cores.
        embedder = make_text_embedder(
            store.embedder, torch_device, EmbeddingSettings.from_dict(store.embedding), threads=1
        )
        warm_up_embedder(embedder, store.embedder)
        self._load_reading()
        self.store, self._embedder = store, embedder
        self._retrievers = {
            mode: HybridRetriever(document_store=store, mode=mode, dense_weight=settings.dense_weight)
            for mode in RETRIEVAL_MODES
        }

    def _load_reading(self) -> None:
        """The reader, here, behind a micro-batcher (the Ray Serve engine reads on its replicas)."""
        self.reader = build_reader(self.settings)
        self._batcher = MicroBatcher(
            self._read_batch,
            max_batch=self.settings.max_batch,
            max_wait_s=self.settings.batch_wait_ms / 1000,
            name="spanqa-reader",
            on_batch=self._on_batch,
        )

    @property
    def calibration(self) -> Any:
        """The answer calibration the reader applies (None: the index has none for this reader)."""
        return None if self.reader is None else self.reader.calibration

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
        with self._in_flight_lock:
            if self._in_flight >= self.settings.queue_size:
                raise ServiceBusy(f"{self._in_flight} requests are being answered (the queue holds "
                                  f"{self.settings.queue_size}): retry shortly")
            self._in_flight += 1
        return _Admission(self)

    def _release(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    # -- work ------------------------------------------------------------------------------------

    def retrieve(self, text: str, top_k: int, filters: dict[str, Any] | None, mode: str | None) -> list[Document]:
        """The `top_k` best chunks for `text` (blocking; runs on the caller's thread)."""
        mode = self.settings.retrieval if mode is None else check_retrieval_mode(mode)
        embedding = None
        if mode != "keyword":
            embedding = self._embedder.run(text=text)["embedding"]
        result = self._retrievers[mode].run(query=text, query_embedding=embedding, top_k=top_k, filters=filters)
        return result["documents"]

    async def search(self, text: str, top_k: int, filters: dict[str, Any] | None, mode: str | None) -> list[Document]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._retrieval, self.retrieve, text, top_k, filters, mode)

    async def ask(
        self, text: str, *, top_k: int, passages: int | None, filters: dict[str, Any] | None,
        threshold: float | str | None, mode: str | None,
    ) -> list[ExtractedAnswer]:
        passages = self.settings.passages if passages is None else passages
        if threshold == defaults.AUTO_THRESHOLD and self.calibration is None:
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
        return read_questions(self.reader, questions)


def read_questions(reader: Any, questions: list[Question]) -> list[list[ExtractedAnswer]]:
    """Each question's answers, from one `run_batch` over all of them (their windows share passes)."""
    result = reader.run_batch(
        queries=[question.text for question in questions],
        documents=[question.documents for question in questions],
        top_k=[question.top_k for question in questions],
        score_thresholds=[question.threshold for question in questions],
    )
    return result["answers"]


def engine_calibration(settings: EngineSettings) -> Any:
    """The index's answer calibration for the server's reader (None: the index has none for it)."""
    from spanqa.pipelines.api import model_reference
    from spanqa.reader.calibration import index_calibration

    return index_calibration(settings.index_dir, model_reference(settings.reader), settings.rank_weight,
                             settings.adaptive)


def build_reader(settings: EngineSettings) -> Any:
    """The server's ExtractiveReader, loaded (raises ModelLoadError itself)."""
    from spanqa.pipelines.api import model_reference
    from spanqa.reader import ExtractiveReader

    reader = ExtractiveReader(
        model=model_reference(settings.reader),
        device=settings.device,
        max_answer_length=settings.max_answer_length,
        max_seq_length=settings.max_seq_length,
        doc_stride=settings.doc_stride,
        fast=settings.fast,
        rank_weight=settings.rank_weight,
        calibration=engine_calibration(settings),
        adaptive=settings.adaptive,
    )
    reader.warm_up()
    return reader


class _Admission:
    def __init__(self, engine: QAEngine):
        self._engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._engine._release()
