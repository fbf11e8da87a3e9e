"""The settings of each component, declared once: one frozen dataclass per component, each field with
its default, a one-line doc, its check and how the command line takes it; and `QASettings`, the
composite a query engine (DocumentQA, the service, Ray Serve) is built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from spanqa.errors import ConfigError
from spanqa.settings.checks import (
    AUTO_THRESHOLD,
    at_least,
    device,
    flag,
    non_negative_int,
    non_negative_number,
    one_of,
    optional,
    positive_int,
    positive_number,
    share,
    text,
    threshold,
)
from spanqa.settings.declaring import Settings, owners, route_keywords, setting
from spanqa.settings.training import TrainSettings

READER_MODEL = "distilbert/distilbert-base-cased-distilled-squad"
EMBEDDER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RERANKER_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
RETRIEVAL_MODES = ("hybrid", "dense", "keyword")
PRECISIONS = ("auto", "float32", "int8")
INDEX_TYPES = ("flat", "hnsw", "ivf", "auto")
OCR_MODES = ("auto", "rapidocr", "tesseract", "off")
CHUNK_MODES = ("context", "overlap")


def _tokens_or_all(value: str) -> int | None:
    return None if value.strip().lower() == "all" else int(value)


def _threshold_text(value: str) -> float | str:
    return value if value == AUTO_THRESHOLD else float(value)


@dataclass(frozen=True)
class DeviceSettings(Settings):
    """Where the models run."""

    component: ClassVar[str] = "device"

    device: str = setting("auto", "where models run: 'auto' (CUDA when torch sees a GPU, else the CPU), "
                          "'cpu', 'cuda' or 'cuda:N'", device, metavar="auto|cpu|cuda[:N]")


@dataclass(frozen=True)
class ReaderSettings(Settings):
    """The reader: which model quotes answers, how it windows passages, decodes and ranks spans."""

    component: ClassVar[str] = "reader"

    reader: str = setting(READER_MODEL, "extractive question-answering model: a hub id or a local directory",
                          text, metavar="MODEL")
    fast_reader: bool = setting(False, "CPU fast mode: int8 ONNX Runtime, several times faster, close to "
                                "but not identical with the exact answers", flag, flag="--fast")
    max_answer_length: int = setting(15, "longest answer, in reader tokens", positive_int, metavar="N")
    max_seq_length: int = setting(384, "reader tokens per (question, passage window) model input",
                                  positive_int, metavar="N")
    doc_stride: int = setting(128, "reader tokens shared by consecutive windows of one long passage",
                              non_negative_int, metavar="N")
    max_question_length: int = setting(64, "questions are cut to this many tokens, so a passage always "
                                       "fits beside them", positive_int, metavar="N")
    reader_batch_size: int | None = setting(None, "most windows per forward pass; None: as many as "
                                            "reader_max_batch_tokens allows", optional(positive_int),
                                            metavar="N")
    reader_max_batch_tokens: int | None = setting(None, "tokens per forward pass, padding included; None: "
                                                  "8192 on CPU, sized from free memory on CUDA",
                                                  optional(positive_int), metavar="N")
    # A span's ranking sum is its start + end logit minus rank_weight * ln(1 + its passage's retrieval
    # rank) (issue 12). Chosen on SQuAD part-a articles 16-19 with the trained MiniLM reader
    # (docs/measurements/answer-quality.md): by the logits alone, EM fell from 37.6 reading 1 passage to
    # 24.8 reading 10; with the prior at 2 it was 39.9 (held out: 42.3 -> 25.5 by the logits alone, 40.3).
    rank_weight: float = setting(2.0, "how much a passage's retrieval rank counts against its spans "
                                 "(0: the reader's logits alone)", non_negative_number, metavar="W")
    # Chosen with the stand-in reader and reranker on SQuAD part-a articles 16-19 (bench/answer_scoring.py
    # fit; docs/measurements/answer-quality.md): 0.25-0.5 best; summing evidence (1) lifted EM reading 10
    # passages over reading 1 (40.0 vs 39.2, reranked; 37.2 reading 10 with neither).
    passage_weight: float = setting(0.5, "how much a reranked passage's score counts toward its spans "
                                    "(0: not at all; see docs/concepts/scores.md)", non_negative_number,
                                    metavar="W")
    evidence_weight: float = setting(1.0, "how much the same answer found in several passages gains (0: "
                                     "its best passage alone; 1: their probabilities added up)",
                                     non_negative_number, metavar="W")
    adaptive_reading: bool = setting(False, "read passages a few at a time and stop once no unread one "
                                     "could outrank the best answer (needs `spanqa calibrate`)", flag,
                                     flag="--adaptive")
    score_threshold: float | str | None = setting(None, "answers scoring below it (0..1) are dropped; "
                                                  "'auto': the index's answer calibration's; None keeps all",
                                                  threshold, flag="--threshold", metavar="SCORE|auto",
                                                  parse=_threshold_text)
    context_chars: int = setting(150, "characters of context kept on each side of an answer",
                                 non_negative_int, metavar="N")
    answer_top_k: int = setting(5, "answers returned per question", positive_int, flag="--top-k", metavar="N")

    def check_together(self) -> None:
        if self.doc_stride >= self.max_seq_length:
            raise ConfigError(
                f"doc_stride={self.doc_stride} must be smaller than max_seq_length={self.max_seq_length}: "
                "it is the overlap of consecutive windows; lower doc_stride or raise max_seq_length"
            )
        if self.max_question_length >= self.max_seq_length:
            raise ConfigError(
                f"max_question_length={self.max_question_length} leaves no room for the passage in "
                f"max_seq_length={self.max_seq_length} tokens: lower max_question_length"
            )


@dataclass(frozen=True)
class RetrievalSettings(Settings):
    """Retrieval: how the passages a question reads are found."""

    component: ClassVar[str] = "retrieval"

    retrieval: str = setting("hybrid", "'hybrid' fuses the embedding and BM25 rankings; 'dense' or "
                             "'keyword' use one", choices=RETRIEVAL_MODES)
    # Measured on SQuAD (docs/measurements/retrieval.md).
    dense_weight: float = setting(0.4, "share of the embedding ranking in the hybrid score, 0..1",
                                  share, metavar="W")
    hybrid_candidates: int = setting(50, "chunks each side ranks before the hybrid fusion",
                                     positive_int, metavar="N")
    retriever_top_k: int = setting(10, "passages the reader reads per question", positive_int,
                                   flag="--passages", metavar="N")
    search_top_k: int = setting(5, "passages returned by a search", positive_int, flag="--top-k", metavar="N")


@dataclass(frozen=True)
class RerankSettings(Settings):
    """The passage reranker: a cross-encoder that reorders the retrieved passages before reading."""

    component: ClassVar[str] = "rerank"

    # Chosen on SQuAD part-a articles 16-19 with the stand-in reranker, reported on 20-23
    # (docs/measurements/answer-quality.md): reranking the top 10 at retrieval weight 4 lifts passage
    # R@1 from 0.888 (hybrid) to 0.904 on 20-23; the top 20 fitted as well and costs twice the scoring.
    rerank: int = setting(10, "retrieved passages the reranker scores and reorders before reading (0: no "
                          "reranking)", non_negative_int, metavar="N")
    reranker: str = setting(RERANKER_MODEL, "passage reranker (a cross-encoder): a hub id or a local directory",
                            text, metavar="MODEL")
    retrieval_weight: float = setting(4.0, "how much a passage's retrieval score (scaled 0..1 over the passages "
                                      "reranked) adds to the reranker's logit for it", non_negative_number,
                                      metavar="W")
    rerank_precision: str = setting("auto", "'auto' (int8 on the CPU, fp16 on CUDA), 'int8' or 'float32'",
                                    choices=PRECISIONS)
    rerank_max_tokens: int = setting(320, "tokens of each (question, passage) pair the reranker reads",
                                     positive_int, metavar="N")


@dataclass(frozen=True)
class EmbedderSettings(Settings):
    """The embedder of a new index (an existing index keeps the one it was built with)."""

    component: ClassVar[str] = "embedder"

    embedder: str | None = setting(None, "embedding model of a new index (hub id or local directory); None: "
                                   f"{EMBEDDER_MODEL}, or the one an existing index recorded",
                                   optional(text, "None for the default"), metavar="MODEL")
    embedder_precision: str = setting("auto", "how a new index is embedded: 'auto' (int8 on the CPU, "
                                      "float32 on a GPU), 'int8' or 'float32'", choices=PRECISIONS)
    # Issue 4: on SQuAD hybrid recall was the same from 256 word pieces down to 96 (R@5 0.959 / 0.957 /
    # 0.957 / 0.959 at 256 / 128 / 112 / 96), dense-only recall fell (R@5 0.871 -> 0.838), and indexing ran
    # ~1.27x faster than at 128 (docs/measurements/retrieval.md, "Embedding settings"). For dense-only
    # retrieval, index with embed_max_tokens None.
    embed_max_tokens: int | None = setting(96, "word pieces of each chunk a new index's embedder reads "
                                           "(BM25 reads all); None or 'all': as many as the model takes",
                                           optional(positive_int, "None (all)"), metavar="N|all",
                                           parse=_tokens_or_all)
    embedder_batch_size: int = setting(32, "chunks per forward pass of the float32 embedder", positive_int,
                                       metavar="N")


@dataclass(frozen=True)
class StoreSettings(Settings):
    """The layout of a new index (an existing index keeps its own)."""

    component: ClassVar[str] = "store"

    index_type: str | None = setting(None, "vector index of a new index: 'flat' (exact; None means it), "
                                     "'hnsw', 'ivf' or 'auto' (flat while small, IVF once large)",
                                     optional(one_of(*INDEX_TYPES), "None (flat)"), choices=INDEX_TYPES)
    shards: int | None = setting(None, "a new index split into this many shards (None or 1: one index)",
                                 optional(positive_int, "None (one index)"), metavar="N")


@dataclass(frozen=True)
class ChunkingSettings(Settings):
    """How pages are cut into chunks (recorded in a new index; later runs keep the recorded ones)."""

    component: ClassVar[str] = "chunking"

    # Sized in tokens of the reader's tokenizer, so that a question of up to max_question_length tokens
    # plus a chunk fits one reader window (384 - 64 - 3 special = 317 tokens) and the embedder sees all of
    # a chunk's core; chosen by retrieval recall on SQuAD (docs/measurements/chunk-sizes.md).
    chunk_tokens: int = setting(192, "reader tokens per chunk", positive_int, metavar="N")
    chunk_overlap_tokens: int = setting(48, "reader tokens of context on each side of a chunk's embedded "
                                        "core", non_negative_int, metavar="N")
    chunk_mode: str = setting("context", "'context': embedded cores widened by the overlap each side; "
                              "'overlap': classic overlapping chunks", choices=CHUNK_MODES)
    clean_text: bool = setting(True, "join hyphenated words and wrapped lines, drop running headers and "
                               "footers (PDF)", flag)
    layout_reading_order: bool = setting(True, "PDF pages read column by column (False: pypdf's "
                                         "content-stream order)", flag)

    def check_together(self) -> None:
        if self.chunk_mode == "overlap" and self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ConfigError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be smaller than chunk_tokens "
                f"({self.chunk_tokens}) in 'overlap' mode"
            )


@dataclass(frozen=True)
class OcrSettings(Settings):
    """OCR of PDF pages without a usable text layer."""

    component: ClassVar[str] = "ocr"

    ocr: str = setting("auto", "OCR engine for pages without a text layer: 'auto' (the built-in RapidOCR), "
                       "'rapidocr', 'tesseract' (when installed) or 'off'", choices=OCR_MODES)


@dataclass(frozen=True)
class ParseSettings(Settings):
    """The parser processes of indexing: how many, and each file's budget."""

    component: ClassVar[str] = "parsing"

    workers: int | None = setting(None, "parser processes; None: the number of CPUs, at least 1, at most 4",
                                  optional(positive_int, "None (as many as CPUs, at most 4)"), metavar="N")
    timeout_s: float | None = setting(120.0, "seconds one file may take to parse before its worker is "
                                      "stopped (more for each page it OCRs)", optional(positive_number),
                                      flag="--timeout", metavar="SECONDS")
    # The OCR engine (ONNX Runtime) reserves much more address space than it touches: 2048 failed on
    # dense 200-dpi pages (bench/ocr.py), 3072 did not.
    memory_mb: int | None = setting(4096, "address space one parser process may use, MiB; None: no cap",
                                    optional(at_least(64, "a parser process needs that much to start"),
                                             "None for no cap"), metavar="MB")
    max_file_mb: float | None = setting(512.0, "larger files are reported, not parsed (MB)",
                                        optional(positive_number), metavar="MB")


@dataclass(frozen=True)
class ServiceSettings(Settings):
    """`spanqa serve`: where it listens, how it queues, batches and budgets the work of many users."""

    component: ClassVar[str] = "service"

    host: str = setting("127.0.0.1", "address to listen on (another host than loopback needs --tokens)", text)
    port: int = setting(8000, "port to listen on; 0 picks a free one", non_negative_int, metavar="PORT")
    queue_size: int = setting(64, "questions and searches in flight; more are refused with 503 and "
                              "Retry-After", positive_int, metavar="N")
    max_batch: int = setting(32, "questions read in one reader pass (their windows share forward passes)",
                             positive_int, metavar="N")
    batch_wait_ms: float = setting(5.0, "how long the reader waits after a question for others to join it "
                                   "(0 to 10 ms)", non_negative_number, metavar="MS")
    rate_limit: float = setting(120.0, "requests per minute per token (or per client without tokens); 0: "
                                "no limit", non_negative_number, metavar="PER_MINUTE")
    rate_burst: int = setting(30, "requests a token may make at once before the per-minute rate applies",
                              positive_int, metavar="N")
    upload_max_file_mb: float = setting(100.0, "largest uploaded file, MB", positive_number,
                                        flag="--max-file-mb", metavar="MB")
    max_files_per_upload: int = setting(50, "files one upload request may carry", positive_int, metavar="N")
    page_workers: int = setting(2, "page-worker processes (page images, geometry, highlight boxes, page text)",
                                positive_int, metavar="N")
    # Page work runs in worker processes under a budget, as parsing does: a hostile page (Form XObjects
    # nested 8 deep, 10 wide: 2.8 KB) drove pdfium to 23.7 GB in one call. The time covers re-OCR of one
    # scanned page on a slow CPU (dense pages took RapidOCR ~17 s on 2 shared cores, bench/README.md); the
    # memory is the parser's (OCR reserves ~3-4 GB of address space).
    page_timeout_s: float = setting(60.0, "time one page call (boxes, page image, re-OCR) may take, seconds",
                                    positive_number, flag="--page-timeout", metavar="SECONDS")
    page_memory_mb: int = setting(4096, "address space one page-worker process may use, MiB",
                                  at_least(256, "a page worker loads pdfium, pypdf and Pillow"), metavar="MB")
    replicas: int = setting(1, "reader replicas with --ray, one GPU each where the cluster has GPUs",
                            positive_int, metavar="N")

    def check_together(self) -> None:
        if not 0 <= self.batch_wait_ms <= 10:
            raise ConfigError(f"batch_wait_ms={self.batch_wait_ms!r} must be from 0 to 10 (milliseconds)")


@dataclass(frozen=True)
class ConnectionSettings(Settings):
    """`spanqa serve`'s connections: how long a client may take to send a request, how many
    connections clients may hold (spanqa.service.connections enforces them)."""

    component: ClassVar[str] = "connections"

    header_timeout_s: float = setting(10.0, "seconds a client has to send a request's line and headers; then "
                                      "408 and closed", positive_number, flag="--header-timeout",
                                      metavar="SECONDS")
    body_timeout_s: float = setting(30.0, "most seconds without a byte while a request body arrives; then 408 "
                                    "and closed", positive_number, flag="--body-timeout", metavar="SECONDS")
    max_connections: int | None = setting(None, "connections all clients may hold; None: the open-file limit "
                                          "(raised to its hard limit) less fd_reserve and twice the backlog",
                                          optional(positive_int, "None (from the open-file limit)"), metavar="N")
    max_connections_per_client: int = setting(128, "connections one client address may hold; 0: no cap, for a "
                                              "server behind a proxy", non_negative_int, metavar="N")
    fd_reserve: int = setting(256, "file descriptors kept for uploads, SQLite, the index and page work",
                              non_negative_int, metavar="N")
    backlog: int = setting(128, "connections the kernel queues for accept() (they take descriptors before the "
                           "server sees them)", positive_int, metavar="N")
    log_repeat_window_s: float = setting(60.0, "the same log line again within this many seconds is counted, "
                                         "not written", positive_number, metavar="SECONDS")


# -- the query engine's settings, and DocumentQA's keywords ------------------------------------------------

@dataclass(frozen=True)
class QASettings:
    """Everything a query engine (DocumentQA, the service, Ray Serve) is built with, by component."""

    device: DeviceSettings = field(default_factory=DeviceSettings)
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    COMPONENTS: ClassVar[dict[str, type[Settings]]] = {
        "device": DeviceSettings, "reader": ReaderSettings, "retrieval": RetrievalSettings,
        "rerank": RerankSettings, "embedder": EmbedderSettings, "store": StoreSettings,
    }

    @classmethod
    def from_keywords(cls, **keywords: Any) -> QASettings:
        """Each keyword routed to the component that declares it (`reader="..."`, `retriever_top_k=20`);
        an unknown keyword is a ConfigError naming it and the nearest known ones."""
        routed = route_keywords(keywords, tuple(cls.COMPONENTS.values()))
        return cls(**{part: klass(**routed.get(klass, {})) for part, klass in cls.COMPONENTS.items()})

    def replace(self, **keywords: Any) -> QASettings:
        """A copy with `keywords` routed as in `from_keywords`."""
        routed = route_keywords(keywords, tuple(self.COMPONENTS.values()))
        parts = {}
        for part, klass in self.COMPONENTS.items():
            current = getattr(self, part)
            parts[part] = current.replace(**routed[klass]) if klass in routed else current
        return QASettings(**parts)


ALL_COMPONENTS: tuple[type[Settings], ...] = (
    DeviceSettings, ReaderSettings, RetrievalSettings, RerankSettings, EmbedderSettings, StoreSettings,
    ChunkingSettings,
    OcrSettings, ParseSettings, ServiceSettings, ConnectionSettings, TrainSettings,
)
owners(ALL_COMPONENTS)  # every name once across all components: keywords and flags route unambiguously
