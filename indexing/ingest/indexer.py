"""Files to stored chunks: parse in worker processes while the embedder runs, one status per file.

`Ingest.run(files)` is what `DocumentQA.index` does after it has opened the store and the embedder:

1. every file is hashed (SHA-256) first, in discovery order: a file whose content another file of
   the batch has, or a file still indexed under another path (of those `duplicate_scope` admits), is
   reported as a duplicate and not parsed; a file indexed before with the same content, chunk
   settings and metadata is kept as it is;
2. the others are parsed, cleaned and chunked by `ParsePool` workers (time and memory budget each);
3. chunks are embedded as files come in, in batches of up to `embed_batch` chunks, or earlier
   whenever no parsed file is waiting, so the embedder works while the workers parse;
4. each embedded batch of files replaces those files' old chunks in the store in one commit (a
   commit costs what it changes: `commits`), so an interrupted run keeps every batch stored before.

On a Ray cluster (`ray_ingest`) steps 2 to 4 run there: `plan` does step 1 alone, the cluster's
shard writers (`ray_writers`) commit with `chunk_documents` and `commit_files` as `Ingest` does,
and `record_outcomes` gathers what they report.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa import defaults
from spanqa.chunk_meta import ChunkMeta, file_type_of
from spanqa.indexing.ingest.chunking import chunk_document, unique_by_id
from spanqa.indexing.ingest.file_meta import FileMeta, meta_for
from spanqa.indexing.ingest.parsing import ChunkSettings, ParsedFile, ParseTask, password_candidates
from spanqa.indexing.ingest.workers import ParsePool
from spanqa.indexing.ocr.engines import OCR_MANIFEST_KEY, check_ocr_mode, engine_label
from spanqa.records import IndexedFile, SkippedFile
from spanqa.settings import OcrSettings, ParseSettings

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20


def file_sha256(path: Path) -> str | None:
    """The file's SHA-256, or None when it cannot be read (the parser then reports why)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def chunk_settings_for(recorded: Mapping[str, Any] | None, reader_model: str | None) -> ChunkSettings:
    """The settings an index keeps using once recorded; for a new index, the reader's tokenizer."""
    if recorded:
        return ChunkSettings.from_manifest(recorded)
    return ChunkSettings.for_reader(reader_model)


@dataclass
class IngestResult:
    indexed: list[IndexedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    chunk_count: int = 0


@dataclass
class _Pending:
    parsed: ParsedFile
    documents: list[Document]
    embed_texts: list[str]


class Ingest:
    """Indexes files into `store` with `embedder` (a Haystack document embedder, warmed up)."""

    def __init__(
        self,
        store: Any,
        embedder: Any,
        chunking: ChunkSettings,
        *,
        password: str | None = None,
        passwords: Mapping[str, str] | None = None,
        workers: int | None = None,
        timeout_s: float | None = ParseSettings.timeout_s,
        memory_mb: int | None = ParseSettings.memory_mb,
        max_file_mb: float | None = ParseSettings.max_file_mb,
        embed_batch: int = defaults.EMBED_BATCH_CHUNKS,
        on_file_done: Callable[[str], None] | None = None,
        pool: ParsePool | None = None,
        ocr: str = OcrSettings.ocr,
        meta: FileMeta | None = None,
        duplicate_scope: Callable[[str], bool] | None = None,
    ):
        """`duplicate_scope(source)` says which indexed files count when a file's content is found
        indexed under another path (None: every one). A service passes the submitting token's
        `may_see`, so a copy of a file the token cannot see is indexed as its own file and nothing
        tells the token that the other exists."""
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.password = password
        self.passwords = passwords
        self.pool = pool if pool is not None else ParsePool(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
        self.max_file_bytes = None if max_file_mb is None else int(max_file_mb * 1024 * 1024)
        self.embed_batch = embed_batch
        self.on_file_done = on_file_done
        self.ocr = check_ocr_mode(ocr)
        # Recorded in the manifest and on each OCR'd chunk, so another engine re-OCRs those files.
        self.ocr_label = engine_label(self.ocr)
        self.meta_of = meta_for(meta)
        self.duplicate_scope = duplicate_scope

    def _done(self, source: str) -> None:
        if self.on_file_done is not None:
            self.on_file_done(source)

    def run(self, files: Iterable[Path]) -> IngestResult:
        self.start(files)
        return self.finish()

    def start(self, files: Iterable[Path]) -> None:
        """Hash the files, settle duplicates and unchanged files, and start parsing the rest.

        The workers parse while the caller loads the embedder (and creates the store); `finish`
        then embeds and stores. The store may be None here (a new index): nothing is then known.
        """
        self._run = self.pool.start(self.plan(files))

    def plan(self, files: Iterable[Path]) -> list[ParseTask]:
        """Hash the files and settle duplicates and unchanged files (reported at once); the files
        left to parse, as tasks."""
        self._files = [Path(f) for f in files]
        # Every file's metadata is checked before any file is parsed: a bad value stops the run
        # before it writes anything.
        self._extras = {str(path): self.meta_of(path) for path in self._files}
        self._result = result = IngestResult()
        known = self.store.source_files() if self.store is not None else {}
        recorded = dict(self.store.chunking or {}) if self.store is not None else {}
        recorded.pop(OCR_MANIFEST_KEY, None)
        settings_unchanged = self.store is not None and recorded == self.chunking.manifest()
        indexed_hashes = {
            info["sha256"]: source for source, info in known.items()
            if info.get("sha256") and (self.duplicate_scope is None or self.duplicate_scope(source))
        }
        batch_hashes: dict[str, str] = {}
        tasks: list[ParseTask] = []
        for path in self._files:
            source = str(path)
            digest = file_sha256(path)
            if digest is not None:
                if digest in batch_hashes:
                    result.skipped.append(SkippedFile(source, f"duplicate of {batch_hashes[digest]} (same content)"))
                    self._done(source)
                    continue
                previous = known.get(source)
                if (
                    previous is not None
                    and previous.get("sha256") == digest
                    and settings_unchanged
                    and self._stored_as_wanted(source)
                ):
                    batch_hashes[digest] = source
                    result.indexed.append(IndexedFile(source, int(previous["pages"]), int(previous["chunks"])))
                    result.chunk_count += int(previous["chunks"])
                    self._done(source)
                    continue
                other = indexed_hashes.get(digest)
                if other is not None and other != source and Path(other).exists():
                    result.skipped.append(SkippedFile(source, f"duplicate of {other} (same content, already indexed)"))
                    self._done(source)
                    continue
                batch_hashes[digest] = source
            tasks.append(
                ParseTask(
                    path=source,
                    passwords=password_candidates(path, self.password, self.passwords),
                    chunking=self.chunking,
                    max_file_bytes=self.max_file_bytes,
                    ocr=self.ocr,
                )
            )
        return tasks

    def _stored_as_wanted(self, source: str) -> bool:
        """Whether the stored chunks of an unchanged `source` carry this run's metadata for it, and
        no page OCR'd by another engine (or version) than this run's. Without OCR nothing is stale:
        "off" runs no OCR, it does not drop the text earlier runs OCR'd."""
        stored = self.store.file_chunks(source)
        if stored is None:
            return True
        if ChunkMeta.from_meta(stored.meta).extra != self._extras[source]:
            return False
        return self.ocr_label is None or stored.ocr_engines <= {self.ocr_label}

    def abort(self) -> None:
        """Stop the workers of a started run without storing anything."""
        run = getattr(self, "_run", None)
        if run is not None:
            run.close()

    def finish(self, store: Any = None, embedder: Any = None) -> IngestResult:
        """Embed and store what the workers parse (with `store`/`embedder` if they were not known at start)."""
        if store is not None:
            self.store = store
        if embedder is not None:
            self.embedder = embedder
        result = self._result
        pending: list[_Pending] = []
        pending_chunks = 0
        try:
            for parsed in self._run:
                if not parsed.ok:
                    result.skipped.append(SkippedFile(parsed.path, str(parsed.reason)))
                    self._done(parsed.path)
                else:
                    documents, embed_texts = self._documents(parsed)
                    pending.append(_Pending(parsed, documents, embed_texts))
                    pending_chunks += len(documents)
                # Embed when a batch is full, or when no parsed file is waiting: never let the embedder idle.
                if pending and (pending_chunks >= self.embed_batch or self._run.ready() == 0):
                    self._flush(pending, result)
                    pending, pending_chunks = [], 0
            if pending:
                self._flush(pending, result)
        finally:
            self._run.close()
        return self._conclude()

    def record_outcomes(self, batches: Iterable[list[IndexedFile | SkippedFile]]) -> IngestResult:
        """Steps 2 to 4 done elsewhere (Ray's shard writers committed the files into `store`): the
        outcome of each file, in batches as they come in."""
        result = self._result
        for batch in batches:
            for outcome in batch:
                if isinstance(outcome, SkippedFile):
                    result.skipped.append(outcome)
                else:
                    result.indexed.append(outcome)
                    result.chunk_count += outcome.chunks
                self._done(outcome.source)
        return self._conclude()

    def extra_of(self, source: str) -> dict[str, Any]:
        """The metadata this run attaches to the chunks of `source` (a file `plan` listed)."""
        return self._extras[source]

    def _conclude(self) -> IngestResult:
        result = self._result
        self.store.chunking = self.settings_record()
        order = {str(path): index for index, path in enumerate(self._files)}
        result.indexed.sort(key=lambda f: order.get(f.source, len(order)))
        result.skipped.sort(key=lambda f: order.get(f.source, len(order)))
        return result

    def settings_record(self) -> dict[str, Any]:
        """The manifest's "chunking": how this run cuts chunks, and the OCR engine of the index's
        OCR'd text (a run without OCR keeps the one recorded)."""
        label = self.ocr_label if self.ocr_label is not None else (self.store.chunking or {}).get(OCR_MANIFEST_KEY)
        return {**self.chunking.manifest(), OCR_MANIFEST_KEY: label}

    def _documents(self, parsed: ParsedFile) -> tuple[list[Document], list[str]]:
        return chunk_documents(parsed, self.ocr_label, self._extras[parsed.path])

    def _flush(self, pending: list[_Pending], result: IngestResult) -> None:
        texts = [text for item in pending for text in item.embed_texts]
        # The embedder sees what each chunk is found by (its core); the stored chunk keeps its context.
        embedded = self.embedder.run(documents=[Document(content=text) for text in texts])["documents"]
        self._commit(pending, iter(document.embedding for document in embedded), result)

    def _commit(self, pending: list[_Pending], vectors: Iterator[list[float]], result: IngestResult) -> None:
        """Stores the embedded files of `pending` (their vectors in order) in one commit."""
        embedded = [(item.parsed, [replace(doc, embedding=next(vectors)) for doc in item.documents]) for item in pending]
        for indexed in commit_files(self.store, self.settings_record(), embedded):
            result.indexed.append(indexed)
            result.chunk_count += indexed.chunks
            self._done(indexed.source)


def chunk_documents(parsed: ParsedFile, ocr_label: str | None, extra: dict[str, Any]) -> tuple[list[Document], list[str]]:
    """The chunks of a parsed file as the documents to store (their text and metadata; `ocr_label`
    marks the OCR'd pages, `extra` is the run's metadata for the file), and the text each one is
    embedded by."""
    documents, embed_texts = [], []
    ocr_pages = set(parsed.ocr_pages)
    for chunk in parsed.chunks:
        meta = ChunkMeta(
            source=parsed.path,
            file_type=file_type_of(parsed.path),
            page=chunk.page,
            page_count=parsed.page_count,
            start=chunk.start,
            end=chunk.end,
            sha256=parsed.sha256,
            pieces=chunk.pieces,
            ocr=ocr_label if chunk.page in ocr_pages else None,
            extra=extra,
        )
        documents.append(chunk_document(chunk.content, meta))
        embed_texts.append(chunk.embed_text)
    return documents, embed_texts


def commit_files(
    store: Any, settings_record: dict[str, Any], files: list[tuple[ParsedFile, list[Document]]]
) -> list[IndexedFile]:
    """Replaces the stored chunks of each parsed file with its documents (embedded), all in one
    commit that also records the run's settings (`Ingest.settings_record`); what each file became."""
    with store.writer():
        # Recorded in every commit, not only at the end: a run that stops after one leaves an index
        # whose settings the next run finds unchanged, so it keeps the files committed.
        store.chunking = settings_record
        return [_replace_file_chunks(store, parsed, documents) for parsed, documents in files]


def _replace_file_chunks(store: Any, parsed: ParsedFile, documents: list[Document]) -> IndexedFile:
    source = parsed.path
    kept = {document.id for document in documents}
    of_source = {"field": "meta.source", "operator": "==", "value": source}
    stale = [doc.id for doc in store.filter_documents(of_source) if doc.id not in kept]
    store.delete_documents(stale)
    unique = unique_by_id(documents)
    store.write_documents(unique, policy=DuplicatePolicy.OVERWRITE)
    return IndexedFile(source, parsed.page_count, len(unique), len(parsed.ocr_pages))
