"""What one server holds: its configuration, the engine, tokens, limits, the file catalog and the writer."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spanqa.indexing.ocr.engines import OCR_MANIFEST_KEY, recorded_mode
from spanqa.indexing.store.check import index_problem
from spanqa.paths import user_path
from spanqa.pipelines.api import DocumentQA
from spanqa.service.catalog import FileCatalog
from spanqa.service.database import ServiceDatabase
from spanqa.service.engine import QAEngine
from spanqa.service.jobs import IndexWriter
from spanqa.service.limits import RateLimiter
from spanqa.service.metrics import ServiceMetrics
from spanqa.service.pages import PageService
from spanqa.service.paths import PathView
from spanqa.service.tokens import Principal, TokenFile
from spanqa.service.training import ReaderTraining, served_reader
from spanqa.service.uploads import STAGING
from spanqa.settings import ChunkingSettings, OcrSettings, ParseSettings, QASettings, ServiceSettings

logger = logging.getLogger(__name__)

ANONYMOUS = Principal(name="anonymous", role="admin", scope=())


@dataclass(frozen=True)
class ServerConfig:
    """Everything `spanqa serve` is told, one object passed in (tests build their own): the index,
    the query engine's settings, the service's (queue, batches, limits, uploads, page workers), the
    upload parser's, and the tokens file and upload folder. Paths are made absolute here."""

    index_dir: Path
    qa: QASettings = field(default_factory=QASettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    parse: ParseSettings = field(default_factory=ParseSettings)
    tokens_file: Path | None = None  # None: no authentication (loopback only, or --insecure-no-auth)
    uploads_dir: Path | None = None  # None: INDEX_DIR/uploads

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_dir", user_path(self.index_dir))
        if self.tokens_file is not None:
            object.__setattr__(self, "tokens_file", user_path(self.tokens_file))
        if self.uploads_dir is not None:
            object.__setattr__(self, "uploads_dir", user_path(self.uploads_dir))

    @property
    def uploads(self) -> Path:
        return self.index_dir / "uploads" if self.uploads_dir is None else self.uploads_dir

    @property
    def max_file_bytes(self) -> int:
        """The largest uploaded file, in bytes."""
        return int(self.service.upload_max_file_mb * 1024 * 1024)


class ServiceState:
    """The live parts of one server. `start()` loads the models on a thread; `ready` tells when done."""

    def __init__(
        self,
        config: ServerConfig,
        make_engine: Callable[..., QAEngine] = QAEngine,
        on_started: Callable[[str | None], None] | None = None,
    ):
        """`make_engine(index_dir, qa, service, on_batch=...)` builds the engine (QAEngine reads here;
        the Ray Serve engine on reader replicas). `on_started(error)` is called once loading has
        ended: error None when the models are in."""
        self.config = config
        self._on_started = on_started
        self.tokens = None if config.tokens_file is None else TokenFile(config.tokens_file)
        service = config.service
        self.limiter = RateLimiter(service.rate_limit, service.rate_burst)
        self.engine = make_engine(config.index_dir, served_reader(config.index_dir, config.qa), service,
                                  on_batch=self._observe_batch)
        # Training switches the reader this process reads with; Ray Serve's readers are elsewhere.
        self.training = (ReaderTraining(config.index_dir, lambda: self.engine.settings, self.engine.use_reader)
                         if self.engine.can_switch_reader else None)
        self.metrics = ServiceMetrics(
            queue_depth=lambda: self.engine.in_flight, waiting_to_read=lambda: self.engine.waiting_to_read
        )
        self.database = ServiceDatabase(config.index_dir)
        self.pages = PageService(
            service.page_workers, service.page_timeout_s, service.page_memory_mb,
            observe=lambda outcome: self.metrics.page_work.labels(outcome).inc(),
        )
        self.catalog: FileCatalog | None = None
        self.writer: IndexWriter | None = None
        self._writer_qa_instance: DocumentQA | None = None
        self.started = threading.Event()  # set when start() has finished, loaded or not
        # Why the index fails its check (/readyz fails while it does): found at startup, or by a read.
        self.index_problem: str | None = None

    def _observe_batch(self, size: int) -> None:
        self.metrics.batch_size.observe(size)

    @property
    def auth(self) -> bool:
        return self.tokens is not None

    def start(self) -> None:
        """Loads the models (blocking) and starts the writer; called on a background thread."""
        try:
            staging = self.config.uploads / STAGING
            shutil.rmtree(staging, ignore_errors=True)  # left over from a server that stopped mid-upload
            self.index_problem = index_problem(self.config.index_dir)
            if self.index_problem is not None:
                logger.error("%s", self.index_problem)
            try:
                self.engine.load()
            except Exception:
                logger.exception("the models could not be loaded; /readyz will say why")
                return
            chunking = self.engine.store.chunking or {}
            self.pages.layout = bool(chunking.get("layout", ChunkingSettings.layout_reading_order))
            # An index without a manifest yet gets its first files from this service's writer.
            self.pages.ocr = recorded_mode(chunking[OCR_MANIFEST_KEY]) if OCR_MANIFEST_KEY in chunking else OcrSettings.ocr
            self.catalog = FileCatalog(self.engine.store, self.database, self.config.uploads, self.config.index_dir)
            writer = IndexWriter(self.config.uploads, self.database, self._index_files, self._remove_file)
            # Jobs a stopped or killed server left unfinished go first, before any new upload is taken.
            writer.resume()
            self.writer = writer
            logger.info("spanqa is ready: %s", self.config.index_dir)
        finally:
            self.started.set()
            if self._on_started is not None:
                self._on_started(self.load_error)

    @property
    def load_error(self) -> str | None:
        """Why the server cannot answer (None once the models are in and the writer runs)."""
        return None if self.writer is not None else self.engine.load_error or "not loaded"

    def paths(self) -> PathView:
        """How this server shows paths to users: the catalog's last view (without reading the store);
        before the index is open, its own folders only."""
        if self.catalog is not None:
            return self.catalog.paths
        return PathView(uploads_dir=str(self.config.uploads), index_dir=str(self.config.index_dir))

    def stop(self) -> None:
        if self.training is not None:
            self.training.close()
        if self.writer is not None:
            self.writer.stop()
        self.engine.close()
        self.pages.close()
        self.database.close()

    # -- the writer's work (DocumentQA with the server's settings, on the writer thread) -------------

    def _writer_qa(self) -> DocumentQA:
        """The writer's own DocumentQA (its own store connection: readers never see its open batch)."""
        if self._writer_qa_instance is None:
            # The reader's tokenizer sizes chunks of a new index; an existing index keeps its own settings.
            self._writer_qa_instance = DocumentQA(self.config.index_dir, settings=self.config.qa)
        return self._writer_qa_instance

    def _index_files(self, paths: list[Path], submitted_by: str):
        # Uploads are shown relative to the uploads folder, which the server knows: no roots to record.
        parse = self.config.parse
        return self._writer_qa().index(
            paths, workers=parse.workers, timeout_s=parse.timeout_s, memory_mb=parse.memory_mb,
            max_file_mb=self.config.service.upload_max_file_mb, roots=(),
            duplicate_scope=self._duplicate_scope(submitted_by),
        )

    def _duplicate_scope(self, submitted_by: str) -> Callable[[str], bool] | None:
        """Which indexed files an upload of `submitted_by` may be found a duplicate of: those its token
        sees now (None: every file). Nothing, for a token revoked since: no job tells of a file its
        token cannot see."""
        if self.tokens is None:
            return None
        who = self.tokens.principal_named(submitted_by)
        if who is None:
            return lambda source: False
        return who.may_see if who.scope else None

    def _remove_file(self, source: str) -> int:
        removed = self._writer_qa().remove([source])
        return sum(stored.chunks for stored in removed)
