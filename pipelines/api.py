"""The Python API: DocumentQA indexes files into a directory and answers questions from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haystack import Document, Pipeline

from spanqa import defaults
from spanqa.records import Answer, IndexReport, Passage
from spanqa.devices import check_device, resolve_device
from spanqa.errors import (
    ChunkNotFoundError,
    ConfigError,
    IndexMismatchError,
    IndexNotFoundError,
    ModelLoadError,
    check_positive_int,
)
from spanqa.indexing import FaissDocumentStore, discover_files
from spanqa.chunk_meta import ChunkMeta, file_type_of
from spanqa.indexing.retrieval.embedding import EmbeddingSettings, check_precision, choose_precision
from spanqa.indexing.ingest.file_meta import FileMeta
from spanqa.indexing.store.filters import filter_sql
from spanqa.indexing.retrieval.fusion import check_dense_weight, check_retrieval_mode
from spanqa.indexing.retrieval.hybrid import with_similarity
from spanqa.indexing.store.commits import CommitReport
from spanqa.indexing.store.shards import ShardedStore, index_exists, open_index
from spanqa.indexing.store.faiss_store import StoredFile, validate_index_type
from spanqa.pipelines.builders import (
    build_query_pipeline,
    build_search_pipeline,
    make_document_embedder,
    make_text_embedder,
)
from spanqa.pipelines.documents import answer_from_extracted, passage_from_document
from spanqa.reader import ExtractiveReader
from spanqa.reader.calibration import CALIBRATION_FILE, AnswerCalibration, index_calibration

if TYPE_CHECKING:  # Ray's module is imported only by a run on Ray
    from spanqa.indexing.ingest.indexer import Ingest, IngestResult
    from spanqa.indexing.ingest.ray_ingest import RaySettings


def model_reference(model: str, option: str = "the model") -> str:
    """A hub id stays as it is; a local directory becomes its absolute path, so the index can name it.
    A value that can only be a path (see `looks_like_path`) and is no directory is a ModelLoadError
    saying so (the hub would answer that it is not a valid repo id); `option` names the setting."""
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return str(candidate.resolve())
    if looks_like_path(str(model)):
        what = f"'{model}' is a file, not a model directory" if candidate.exists() else f"no such directory '{model}'"
        raise ModelLoadError(f"{what} ({option} takes a hub id like org/name or a local model directory)")
    return model


def looks_like_path(model: str) -> bool:
    """Whether a model name can only be a path: absolute, ./ ../ ~, a Windows drive, or more than one
    "/" (a hub id is NAME or ORG/NAME)."""
    return (
        model.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or model in (".", "..")
        or model.count("/") > 1
        or "\\" in model
        or (len(model) > 1 and model[0].isalpha() and model[1] == ":")
    )


def _check_text(text: str, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"the {what} is empty: give a non-empty {what}")
    return text


def _check_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    if filters is not None:
        filter_sql(filters)  # raises ConfigError naming what is wrong
    return filters


def indexed_under(source: str, path: str | Path) -> bool:
    """Whether the indexed `source` (an absolute path) is the file `path` or lies below the folder `path`."""
    root = str(Path(path).expanduser().resolve())
    return source == root or source.startswith(root.rstrip("/") + "/")


def _stored_under(store: FaissDocumentStore, paths: list) -> list[StoredFile]:
    return [stored for stored in store.files() if any(indexed_under(stored.source, path) for path in paths)]


def _probe_dimension(embedder) -> int:
    # The store needs the vector size before the first write; the model tells it by example.
    return len(embedder.run([Document(content="dimension probe")])["documents"][0].embedding)


def warm_up_embedder(component, model: str) -> None:
    """Loads an embedder component: a load failure is a ModelLoadError naming `model`."""
    try:
        component.warm_up()
    except ConfigError:
        raise  # a setting that cannot work (int8 for a model it cannot run): its message says which
    except Exception as exc:  # noqa: BLE001 - every loader failure means the same thing to a user
        raise ModelLoadError.from_cause("embedder", model, exc) from exc


class DocumentQA:
    """Index documents into `index_dir` and answer questions by quoting them.

        >>> qa = DocumentQA("kb/")
        >>> report = qa.index(["handbook.pdf", "notes/"])
        >>> answers = qa.ask("When was the company founded?", top_k=5)

    The embedder that builds an index is recorded in it and used again for every question;
    naming a different one is an IndexMismatchError rather than silently wrong results.
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        embedder: str | None = None,
        reader: str = defaults.READER_MODEL,
        device: str = defaults.DEVICE,
        retriever_top_k: int = defaults.RETRIEVER_TOP_K,
        max_answer_length: int = defaults.MAX_ANSWER_LENGTH,
        max_seq_length: int = defaults.MAX_SEQ_LENGTH,
        doc_stride: int = defaults.DOC_STRIDE,
        score_threshold: float | str | None = defaults.SCORE_THRESHOLD,
        fast_reader: bool = defaults.READER_FAST,
        rank_weight: float = defaults.READER_RANK_WEIGHT,
        adaptive_reading: bool = False,
        index_type: str | None = None,
        retrieval: str = defaults.RETRIEVAL_MODE,
        dense_weight: float = defaults.HYBRID_DENSE_WEIGHT,
        embedder_precision: str = defaults.EMBEDDER_PRECISION,
        embed_max_tokens: int | None = defaults.EMBED_MAX_TOKENS,
        shards: int | None = None,
    ):
        """
        :param index_dir: the index directory; `index` creates it when missing.
        :param embedder: embedding model (hub id or local directory) for a new index; an existing
            index always uses the one it was built with, and naming another is an IndexMismatchError.
        :param reader: extractive QA model, hub id or local directory.
        :param device: 'auto' (CUDA when torch sees a GPU, else CPU), 'cpu', 'cuda' or 'cuda:N'.
        :param retriever_top_k: passages the reader reads per question.
        :param max_answer_length: longest answer, in reader tokens.
        :param max_seq_length: reader tokens per (question, passage window).
        :param doc_stride: reader tokens shared by consecutive windows of a long passage.
        :param score_threshold: answers scoring below it (0..1) are not returned; None keeps all;
            "auto": answers whose calibrated confidence is below the threshold of the index's answer
            calibration (`calibrate`) are not returned.
        :param fast_reader: the reader's CPU fast mode (int8 ONNX Runtime):
            several times faster, close to but not identical with the exact answers.
        :param rank_weight: how much a passage's retrieval rank counts against its spans when answers
            from several passages are ranked (see `ExtractiveReader`); 0: the reader's logits alone.
        :param adaptive_reading: read the retrieved passages a few at a time and stop once no unread
            one could outrank the best answer (needs the index's answer calibration).
        :param index_type: vector index of a new index: "flat" (exact, the default), "hnsw", "ivf"
            or "auto" (flat while small, IVF once large); an existing index keeps its own.
        :param retrieval: "hybrid" (embedding and BM25 rankings fused, the default), "dense" or "keyword".
        :param dense_weight: share of the embedding ranking in the hybrid score, 0..1.
        :param embedder_precision: how a new index is embedded: "auto" (int8 with ONNX Runtime on the
            CPU, float32 on a GPU), "int8" or "float32". Recorded in the index; questions are embedded
            the same way.
        :param embed_max_tokens: word pieces of each chunk a new index's embedder reads (BM25 reads
            all of it); None: as many as the model takes. Recorded in the index.
        :param shards: a new index split into this many shards (`spanqa.indexing.store.shards`:
            files placed by a hash of their path, searches fanned out and merged); None or 1: one
            index. An existing index keeps its layout (naming another count is a ConfigError).
        """
        self.index_dir = Path(index_dir)
        self.requested_embedder = None if embedder is None else model_reference(embedder, "embedder")
        self.reader_model = model_reference(reader, "reader")
        self.device = check_device(device)
        self.retriever_top_k = check_positive_int("retriever_top_k", retriever_top_k)
        if index_type is not None:
            validate_index_type(index_type)
        self.index_type = index_type
        self.retrieval = check_retrieval_mode(retrieval)
        self.dense_weight = check_dense_weight(dense_weight)
        self.embedder_precision = check_precision(embedder_precision)
        if embed_max_tokens is not None:
            check_positive_int("embed_max_tokens", embed_max_tokens)
        self.embed_max_tokens = embed_max_tokens
        # Checked here, not at the first question: a bad setting should fail where it is made.
        self.reader_settings = dict(
            max_answer_length=max_answer_length,
            max_seq_length=max_seq_length,
            doc_stride=doc_stride,
            fast=fast_reader,
            rank_weight=rank_weight,
        )
        self.score_threshold = score_threshold
        self.adaptive_reading = adaptive_reading
        # The calibration lives in the index and is read with it; the rest is checked now.
        needs_calibration = adaptive_reading or score_threshold == defaults.AUTO_THRESHOLD
        ExtractiveReader(
            model=self.reader_model, device=self.device, **self.reader_settings,
            score_threshold=None if needs_calibration else score_threshold,
        )
        if not isinstance(adaptive_reading, bool):
            raise ConfigError(f"adaptive_reading={adaptive_reading!r} must be True or False")
        if shards is not None:
            check_positive_int("shards", shards, "(shards of a new index; 1 for one index)")
        self.shards = shards
        self._store: FaissDocumentStore | ShardedStore | None = None
        self._search_pipeline: Pipeline | None = None
        self._query_pipeline: Pipeline | None = None
        self._reader: ExtractiveReader | None = None

    # -- the index ---------------------------------------------------------------------------

    def _embedder_for(self, recorded: str | None) -> str:
        if recorded is None:
            return defaults.EMBEDDER_MODEL if self.requested_embedder is None else self.requested_embedder
        if self.requested_embedder is not None and self.requested_embedder != recorded:
            raise IndexMismatchError(
                f"the index at '{self.index_dir}' was built with embedder '{recorded}', not "
                f"'{self.requested_embedder}': leave the embedder unset to use the recorded one, "
                "or build a new index with the other embedder"
            )
        return recorded

    def _open_store(self) -> FaissDocumentStore | ShardedStore:
        if self._store is None:
            if not index_exists(self.index_dir):
                raise IndexNotFoundError(self.index_dir)
            store = open_index(self.index_dir)
            self._embedder_for(store.embedder)
            self._check_shards(store)
            self._store = store
        return self._store

    def _check_shards(self, store: FaissDocumentStore | ShardedStore) -> None:
        count = len(store.shards) if isinstance(store, ShardedStore) else 1
        if self.shards is not None and self.shards != count:
            raise ConfigError(
                f"the index at '{self.index_dir}' has {count} shard(s), not {self.shards}: leave shards unset "
                "to use it as it is, or index into a new folder"
            )

    def index(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        password: str | None = None,
        passwords: Mapping[str, str] | None = None,
        on_file_done: Callable[[str], None] | None = None,
        workers: int | None = None,
        timeout_s: float | None = defaults.PARSE_TIMEOUT_S,
        memory_mb: int | None = defaults.PARSE_MEMORY_MB,
        max_file_mb: float | None = defaults.MAX_FILE_MB,
        sync: bool = False,
        ocr: str = defaults.OCR,
        meta: FileMeta | None = None,
        ray: bool | str | RaySettings | None = None,
        roots: Iterable[str | Path] | None = None,
        duplicate_scope: Callable[[str], bool] | None = None,
    ) -> IndexReport:
        """Index files and folders (recursively). A file that cannot be indexed is reported, never fatal.

        Files are parsed in `workers` processes (each file within `timeout_s` seconds and `memory_mb`
        MiB) while the embedder runs. Encrypted PDFs are tried with the empty password, then their
        entry in `passwords` (keyed by path or file name), then `password`. Chunks are sized in tokens
        of the reader's tokenizer (recorded in the index; see docs/concepts/pipeline.md, "Chunks").

        Files are tracked by path and SHA-256: an unchanged file is kept as it is, a changed one is
        indexed again. With `sync=True` the index also forgets every indexed file under `paths`
        that is no longer there (`IndexReport.removed`). Each embedded batch of files is committed as
        it is stored (one commit costs what it changes); an interrupted run keeps what was committed.
        PDF pages without a usable text layer are OCR'd by `ocr` ("auto": the built-in RapidOCR;
        "rapidocr", "tesseract", "off"); a file OCR'd by another engine before is OCR'd again.

        `meta` is metadata attached to every chunk of a file, filterable as `meta.KEY` in `search`
        and `ask`: one dict for every file of the run (`{"department": "hr", "tag": ["policy"]}`),
        or a function of the file's path returning its dict. Keys are names (letters, digits, `_`,
        `-`) other than spanqa's own chunk keys, values JSON scalars or lists of them. An unchanged
        file whose metadata changed is indexed again.

        `ray` indexes on a Ray cluster (needs `pip install 'spanqa[ray]'`): True or "local" for
        the local Ray instance (started for the run when none runs), an address ("HOST:6379") for
        a cluster, or `spanqa.indexing.ingest.ray_ingest.RaySettings`. Files are listed and hashed here,
        parsed by Ray tasks (same limits and statuses), embedded by Ray actors (one per GPU where
        the cluster has GPUs) and committed in the same atomic batches by one writer per shard, the
        shards spread over the cluster's nodes (the index folder must then be on storage those nodes
        share); `device` names where the actors embed. None (the default) indexes on this machine
        and never imports Ray.

        The paths given (those that exist) are recorded in the index as its roots (`store.roots()`),
        or `roots` instead when given: a service shows each indexed file relative to the root it
        lies under, never by its absolute path. `duplicate_scope(source)` says which indexed files
        count when a file's content is found indexed under another path (None: every one; a service
        passes the submitting token's scope, so a copy of a file it cannot see is indexed as its own).
        """
        from spanqa.indexing.ingest.indexer import Ingest, chunk_settings_for

        ray_settings = None
        if ray is not None and ray is not False:
            from spanqa.indexing.ingest.ray_ingest import RaySettings

            ray_settings = RaySettings.from_option(ray)
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        files, skipped = discover_files(paths)
        report = IndexReport(skipped=list(skipped))
        # On Ray the cluster's devices embed: the driver needs no GPU.
        torch_device = None if ray_settings is not None else resolve_device(self.device)

        if index_exists(self.index_dir):
            store = self._open_store()
            embedder_model = store.embedder
            embedding = EmbeddingSettings.from_dict(store.embedding)
        else:
            embedder_model = self._embedder_for(None)
            store = None
            embedding = None
        ingest = Ingest(
            store,
            None,
            chunk_settings_for(None if store is None else store.chunking, self.reader_model),
            password=password,
            passwords=passwords,
            workers=workers,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_file_mb=max_file_mb,
            on_file_done=on_file_done,
            ocr=ocr,
            meta=meta,
            duplicate_scope=duplicate_scope,
        )
        recorded = [path for path in (paths if roots is None else roots) if Path(path).expanduser().exists()]
        if ray_settings is not None:
            result = self._index_on_ray(ingest, files, ray_settings, store, embedder_model, embedding)
            store = ingest.store
            store.add_roots(recorded)
        else:
            if embedding is None:
                precision = choose_precision(self.embedder_precision, embedder_model, torch_device)
                embedding = EmbeddingSettings(precision=precision, max_tokens=self.embed_max_tokens)
            # The workers start parsing now, while the embedder loads.
            ingest.start(files)
            try:
                embedder = make_document_embedder(embedder_model, torch_device, embedding)
                warm_up_embedder(embedder, embedder_model)
                if store is None:
                    store = self._create_store(embedder_model, embedding, _probe_dimension(embedder))
                # Before the files: an interrupted run's committed files are shown relative to them too.
                store.add_roots(recorded)
            except BaseException:
                ingest.abort()
                raise
            # Each embedded batch commits as it is stored: an interrupted run keeps those before it.
            result = ingest.finish(store, embedder)
        if sync:
            with store.writer():
                report.removed = self._forget_missing(store, paths, {str(file) for file in files})
        report.indexed.extend(result.indexed)
        report.skipped.extend(result.skipped)
        report.chunk_count += result.chunk_count
        return report

    def _create_store(self, model: str, embedding: EmbeddingSettings, dimension: int | None) -> FaissDocumentStore:
        """The new index, for vectors of `dimension` (None: asked of the model, loaded here on the CPU)."""
        if dimension is None:
            embedder = make_document_embedder(model, "cpu", embedding)
            warm_up_embedder(embedder, model)
            dimension = _probe_dimension(embedder)
        if self.shards is not None and self.shards > 1:
            self._store = ShardedStore.create(
                self.index_dir, self.shards, embedder=model, dimension=dimension, index_type=self.index_type,
                embedding=embedding.to_dict(),
            )
        else:
            self._store = FaissDocumentStore.create(
                self.index_dir, embedder=model, dimension=dimension, index_type=self.index_type,
                embedding=embedding.to_dict(),
            )
        return self._store

    def _index_on_ray(
        self,
        ingest: Ingest,
        files: list[Path],
        settings: RaySettings,
        store: FaissDocumentStore | None,
        model: str,
        embedding: EmbeddingSettings | None,
    ) -> IngestResult:
        """Steps 2 to 4 of `Ingest` on the Ray cluster (spanqa.indexing.ingest.ray_ingest): parsed by Ray
        tasks, embedded by Ray actors, committed by one writer per shard (spanqa.indexing.ingest.ray_writers)."""
        from spanqa.indexing.ingest.ray_ingest import EmbedderPlan, ParseLimits, indexed_batches
        from spanqa.indexing.ingest.ray_writers import ShardWriters
        from spanqa.ray_cluster import ray_connection, uses_gpus

        with ray_connection(settings.address, "indexing") as ray_module:
            resources = ray_module.cluster_resources()
            gpus = uses_gpus(self.device, resources)
            if embedding is None:
                precision = choose_precision(self.embedder_precision, model, "cuda" if gpus else "cpu")
                embedding = EmbeddingSettings(precision=precision, max_tokens=self.embed_max_tokens)
            plan = EmbedderPlan.sized(model, embedding, resources, gpus, settings)
            tasks = ingest.plan(files)
            if store is None:
                # The writers open the index: it exists before they start (the model, loaded here on
                # the CPU, tells its vector size).
                store = ingest.store = self._create_store(model, embedding, None)
            shard_dirs = [shard.index_dir for shard in store.shards] if isinstance(store, ShardedStore) else [store.index_dir]
            writers = ShardWriters.start(ray_module, shard_dirs, ingest.settings_record(), ingest.ocr_label)
            try:
                extras = {task.path: ingest.extra_of(task.path) for task in tasks}
                batches = indexed_batches(tasks, extras, ParseLimits.of(ingest.pool), plan, settings, writers.handles)
                return ingest.record_outcomes(batches)
            finally:
                writers.stop()

    @staticmethod
    def _forget_missing(store: FaissDocumentStore, paths: list, present: set[str]) -> list[str]:
        removed = [stored.source for stored in _stored_under(store, paths) if stored.source not in present]
        for source in removed:
            store.delete_by_source(source)
        return removed

    def remove(self, paths: str | Path | Iterable[str | Path]) -> list[StoredFile]:
        """Removes from the index every file named by `paths` (a file, or everything indexed under a
        folder) with all its chunks, in one commit; returns the files removed."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        store = self._open_store()
        removed = _stored_under(store, list(paths))
        with store.writer():
            for stored in removed:
                store.delete_by_source(stored.source)
        return removed

    def compact(self) -> CommitReport:
        """Rewrites the index's vectors as one segment without the deleted ones (as a fresh build
        lays them out), in one crash-safe commit; returns what it wrote. Commits merge segments by
        size on their own: this is for after large removals, or before copying an index."""
        return self._open_store().compact()

    def files(self) -> list[StoredFile]:
        """The indexed files with their pages, chunks, SHA-256 and when they were indexed (UTC)."""
        return self._open_store().files()

    # -- questions ---------------------------------------------------------------------------

    def _ready_search_pipeline(self) -> Pipeline:
        store = self._open_store()
        if self._search_pipeline is None:
            pipeline = build_search_pipeline(store, self._ready_text_embedder(store), self.retrieval, self.dense_weight)
            self._search_pipeline = pipeline
        return self._search_pipeline

    def _ready_query_pipeline(self) -> Pipeline:
        store = self._open_store()
        if self._query_pipeline is None:
            embedder = self._ready_text_embedder(store)
            pipeline = build_query_pipeline(store, embedder, self._ready_reader(), self.retrieval, self.dense_weight)
            self._query_pipeline = pipeline
        return self._query_pipeline

    def _ready_text_embedder(self, store: FaissDocumentStore):
        """The question embedder, loaded; None in keyword mode, which needs no model to retrieve."""
        if self.retrieval == "keyword":
            return None
        embedding = EmbeddingSettings.from_dict(store.embedding)
        embedder = make_text_embedder(store.embedder, resolve_device(self.device), embedding)
        warm_up_embedder(embedder, store.embedder)
        return embedder

    @staticmethod
    def _retrieval_inputs(pipeline: Pipeline, text: str, top_k: int, filters: dict[str, Any] | None) -> dict:
        inputs: dict[str, Any] = {"retriever": {"query": text, "top_k": top_k, "filters": filters}}
        if "embedder" in pipeline.graph.nodes:
            inputs["embedder"] = {"text": text}
        return inputs

    @property
    def rank_weight(self) -> float:
        """How much a passage's retrieval rank counts against its answers (`rank_weight=`)."""
        return self.reader_settings["rank_weight"]

    @property
    def calibration_path(self) -> Path:
        """Where `calibrate` stores the index's answer calibration."""
        return self.index_dir / CALIBRATION_FILE

    def _calibration(self) -> AnswerCalibration | None:
        needed = self.adaptive_reading or self.score_threshold == defaults.AUTO_THRESHOLD
        return index_calibration(self.index_dir, self.reader_model, self.rank_weight, needed)

    def _ready_reader(self) -> ExtractiveReader:
        if self._reader is None:
            reader = ExtractiveReader(
                model=self.reader_model, device=self.device, **self.reader_settings,
                score_threshold=self.score_threshold, calibration=self._calibration(),
                adaptive=self.adaptive_reading,
            )
            reader.warm_up()  # raises ModelLoadError itself
            self._reader = reader
        return self._reader

    def search(
        self, query: str, top_k: int = defaults.SEARCH_TOP_K, filters: dict[str, Any] | None = None
    ) -> list[Passage]:
        """The passages most similar to `query`, best first, without reading them.

        `filters` (Haystack filter syntax, e.g. `{"field": "meta.page", "operator": "==", "value": 3}`)
        restrict the search to matching chunks; `top_k` come back whenever that many match.
        """
        _check_text(query, "query")
        check_positive_int("top_k", top_k)
        _check_filters(filters)
        pipeline = self._ready_search_pipeline()
        result = pipeline.run(self._retrieval_inputs(pipeline, query, top_k, filters))
        return [passage_from_document(doc) for doc in result["retriever"]["documents"]]

    def ask(
        self, question: str, top_k: int = defaults.ANSWER_TOP_K, filters: dict[str, Any] | None = None
    ) -> list[Answer]:
        """Answer spans quoted from the indexed documents, best first (at most `top_k`); `filters` as
        in `search` restrict the passages read."""
        _check_text(question, "question")
        check_positive_int("top_k", top_k)
        _check_filters(filters)
        pipeline = self._ready_query_pipeline()
        inputs = self._retrieval_inputs(pipeline, question, self.retriever_top_k, filters)
        inputs["reader"] = {"query": question, "top_k": top_k}
        result = pipeline.run(inputs)
        return [answer_from_extracted(answer) for answer in result["reader"]["answers"]]

    def read(self, question: str, passages: Sequence[Passage], top_k: int = defaults.ANSWER_TOP_K) -> list[Answer]:
        """Answer spans quoted from the given passages only, best first (at most `top_k`).

        Passages from `search` keep their place in the index, so answers carry exact page offsets;
        a passage whose chunk is no longer in the index (its file was indexed again, changed or
        removed since) is a ChunkNotFoundError: search again. A Passage of your own (no `chunk_id`)
        is read as it is, and an answer's offsets are its `start` plus the answer's position in its
        text. No index is needed for passages of your own.
        """
        _check_text(question, "question")
        check_positive_int("top_k", top_k)
        result = self._ready_reader().run(query=question, documents=self._documents_of(passages), top_k=top_k)
        return [answer_from_extracted(answer) for answer in result["answers"]]

    def read_prefixes(
        self, question: str, passages: Sequence[Passage], counts: Sequence[int], top_k: int = defaults.ANSWER_TOP_K,
        rank_weights: Sequence[float] | None = None,
    ) -> dict[tuple[int, float], list[Answer]]:
        """`read(question, passages[:count], top_k)` for each count and each rank weight (None: this
        DocumentQA's), keyed (count, rank weight), reading the passages once (the reader's spans of
        one passage do not depend on the others): how `spanqa eval` compares passages read and rankings."""
        _check_text(question, "question")
        check_positive_int("top_k", top_k)
        answers = self._ready_reader().run_prefixes(
            question, self._documents_of(passages), list(counts), top_k,
            None if rank_weights is None else list(rank_weights),
        )
        return {key: [answer_from_extracted(a) for a in found] for key, found in answers.items()}

    def _documents_of(self, passages: Sequence[Passage]) -> list[Document]:
        if not all(isinstance(passage, Passage) for passage in passages):
            raise ConfigError("read() takes a list of Passage records (from search(), or Passage(text=..., ...))")
        indexed = {}
        chunk_ids = [passage.chunk_id for passage in passages if passage.chunk_id is not None]
        if chunk_ids:
            stored = self._open_store().filter_documents({"field": "id", "operator": "in", "value": chunk_ids})
            indexed = {document.id: document for document in stored}
            # A chunk's offsets hold for its own text only: a passage whose chunk is gone cannot be
            # placed on its page, and reading its text as if it were the page text would misplace answers.
            gone = [identifier for identifier in dict.fromkeys(chunk_ids) if identifier not in indexed]
            if gone:
                raise ChunkNotFoundError(gone, self.index_dir)
        documents = []
        for passage in passages:
            if passage.chunk_id is not None:
                document = indexed[passage.chunk_id]
            else:
                meta = ChunkMeta(
                    source=passage.source, file_type=file_type_of(passage.source), page=passage.page, page_count=0,
                    start=passage.start, end=passage.end,
                )
                document = Document(content=passage.text, meta=meta.to_meta())
            # what the retriever measured, for the answer calibration
            documents.append(with_similarity(document, passage.similarity))
        return documents
