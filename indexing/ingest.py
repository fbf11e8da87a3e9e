"""Files to stored chunks: parse in worker processes while the embedder runs, one status per file.

`Ingest.run(files)` is what `DocumentQA.index` does after it has opened the store and the embedder:

1. every file is hashed (SHA-256) first, in discovery order: a file whose content another file of
   the batch has, or a file still indexed under another path, is reported as a duplicate and not
   parsed; a file indexed before with the same content and chunk settings is kept as it is;
2. the others are parsed, cleaned and chunked by `ParsePool` workers (time and memory budget each);
3. chunks are embedded as files come in, in batches of up to `embed_batch` chunks, or earlier
   whenever no parsed file is waiting, so the embedder works while the workers parse;
4. each file's chunks replace its old ones in the store; every `save_every` files the store is saved.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa import defaults
from spanqa.answers import IndexedFile, SkippedFile
from spanqa.indexing.ocr import OCR_MANIFEST_KEY, check_ocr_mode, engine_label
from spanqa.indexing.parsing import ChunkSettings, ParsedFile, ParseTask
from spanqa.indexing.spans import chunk_id
from spanqa.indexing.workers import ParsePool

logger = logging.getLogger(__name__)

SAVE_EVERY_FILES = 50
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


def resolve_tokenizer_file(model: str | None) -> str | None:
    """tokenizer.json of a reader model (local directory, or hub id in the local cache / downloadable).

    None when it cannot be had: chunk sizes are then estimated from words.
    """
    if not model:
        return None
    directory = Path(model).expanduser()
    if directory.is_dir():
        candidate = directory / "tokenizer.json"
        return str(candidate) if candidate.is_file() else None
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    for local_only in (True, False):
        try:
            return str(hf_hub_download(model, "tokenizer.json", local_files_only=local_only))
        except Exception:  # noqa: BLE001 - offline, unknown id, no tokenizer.json: estimate instead
            continue
    logger.warning("cannot load the tokenizer of '%s': chunk sizes are estimated from words", model)
    return None


def chunk_settings_for(recorded: Mapping[str, Any] | None, reader_model: str | None) -> ChunkSettings:
    """The settings an index keeps using once recorded; for a new index, the reader's tokenizer."""
    if recorded:
        tokenizer = recorded.get("tokenizer")
        return ChunkSettings(
            max_tokens=int(recorded.get("max_tokens", defaults.CHUNK_TOKENS)),
            overlap_tokens=int(recorded.get("overlap_tokens", defaults.CHUNK_OVERLAP_TOKENS)),
            tokenizer=tokenizer,
            tokenizer_file=resolve_tokenizer_file(tokenizer),
            clean=bool(recorded.get("clean", defaults.CLEAN_TEXT)),
            layout=bool(recorded.get("layout", defaults.LAYOUT_READING_ORDER)),
            mode=str(recorded.get("mode", defaults.CHUNK_MODE)),
        )
    return ChunkSettings(tokenizer=reader_model, tokenizer_file=resolve_tokenizer_file(reader_model))


def password_candidates(path: Path, password: str | None, passwords: Mapping[str, str] | None) -> tuple[str, ...]:
    """Passwords to try for `path`: its entry in `passwords` (by absolute path, path relative to the
    working directory, trailing path, or file name), then `password`."""
    found: list[str] = []
    if passwords:
        resolved = path.resolve()
        for key, value in passwords.items():
            key_path = Path(key).expanduser()
            if key_path.is_absolute():
                matches = key_path.resolve() == resolved
            else:
                key_posix = key_path.as_posix()
                matches = key_posix == path.name or resolved.as_posix().endswith("/" + key_posix)
            if matches and isinstance(value, str):
                found.append(value)
    if password is not None:
        found.append(password)
    return tuple(dict.fromkeys(found))


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
        timeout_s: float | None = defaults.PARSE_TIMEOUT_S,
        memory_mb: int | None = defaults.PARSE_MEMORY_MB,
        max_file_mb: float | None = defaults.MAX_FILE_MB,
        embed_batch: int = defaults.EMBED_BATCH_CHUNKS,
        save_every: int = SAVE_EVERY_FILES,
        on_file_done: Callable[[str], None] | None = None,
        pool: ParsePool | None = None,
        ocr: str = defaults.OCR,
    ):
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.password = password
        self.passwords = passwords
        self.pool = pool if pool is not None else ParsePool(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
        self.max_file_bytes = None if max_file_mb is None else int(max_file_mb * 1024 * 1024)
        self.embed_batch = embed_batch
        self.save_every = save_every
        self.on_file_done = on_file_done
        self.ocr = check_ocr_mode(ocr)
        # Recorded in the manifest and on each OCR'd chunk, so another engine re-OCRs those files.
        self.ocr_label = engine_label(self.ocr)
        self._files_done = 0

    def _done(self, source: str) -> None:
        self._files_done += 1
        if self.store is not None and self._files_done % self.save_every == 0:
            self.store.save()
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
        self._files = [Path(f) for f in files]
        self._result = result = IngestResult()
        known = self.store.source_files() if self.store is not None else {}
        recorded = dict(self.store.chunking or {}) if self.store is not None else {}
        recorded.pop(OCR_MANIFEST_KEY, None)
        settings_unchanged = self.store is not None and recorded == self.chunking.manifest()
        indexed_hashes = {info["sha256"]: source for source, info in known.items() if info.get("sha256")}
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
                    and not self._ocr_stale(source)
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
        self._run = self.pool.start(tasks)

    def _ocr_stale(self, source: str) -> bool:
        """Whether `source` has pages OCR'd by another engine (or version) than this run's. Without
        OCR nothing is stale: "off" runs no OCR, it does not drop the text earlier runs OCR'd."""
        if self.ocr_label is None:
            return False
        conditions = [
            {"field": "meta.source", "operator": "==", "value": source},
            {"field": "meta.ocr", "operator": "!=", "value": None},
            {"field": "meta.ocr", "operator": "!=", "value": self.ocr_label},
        ]
        return bool(self.store.filter_documents({"operator": "AND", "conditions": conditions}))

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
        # The manifest names the engine the index's OCR'd text is from: a run without OCR keeps it.
        label = self.ocr_label if self.ocr_label is not None else (self.store.chunking or {}).get(OCR_MANIFEST_KEY)
        self.store.chunking = {**self.chunking.manifest(), OCR_MANIFEST_KEY: label}

        order = {str(path): index for index, path in enumerate(self._files)}
        result.indexed.sort(key=lambda f: order.get(f.source, len(order)))
        result.skipped.sort(key=lambda f: order.get(f.source, len(order)))
        return result

    def _documents(self, parsed: ParsedFile) -> tuple[list[Document], list[str]]:
        documents, embed_texts = [], []
        for chunk in parsed.chunks:
            meta: dict[str, Any] = {
                "source": parsed.path,
                "file_type": Path(parsed.path).suffix.lower().lstrip("."),  # for filters: "pdf", "md", ...
                "page": chunk.page,
                "page_count": parsed.page_count,
                "start": chunk.start,
                "end": chunk.end,
                "sha256": parsed.sha256,
            }
            if chunk.pieces is not None:
                meta["pieces"] = chunk.pieces
            if chunk.page in parsed.ocr_pages:
                meta["ocr"] = self.ocr_label
            identifier = chunk_id(parsed.path, chunk.page, chunk.start, chunk.end, chunk.content)
            documents.append(Document(id=identifier, content=chunk.content, meta=meta))
            embed_texts.append(chunk.embed_text)
        return documents, embed_texts

    def _flush(self, pending: list[_Pending], result: IngestResult) -> None:
        texts = [text for item in pending for text in item.embed_texts]
        # The embedder sees what each chunk is found by (its core); the stored chunk keeps its context.
        embedded = self.embedder.run(documents=[Document(content=text) for text in texts])["documents"]
        vectors = iter(document.embedding for document in embedded)
        for item in pending:
            item.documents = [replace(document, embedding=next(vectors)) for document in item.documents]
            source = item.parsed.path
            kept = {document.id for document in item.documents}
            of_source = {"field": "meta.source", "operator": "==", "value": source}
            stale = [doc.id for doc in self.store.filter_documents(of_source) if doc.id not in kept]
            self.store.delete_documents(stale)
            # Duplicate ids within a file (the same text at the same place) collapse into one chunk.
            unique = list({document.id: document for document in item.documents}.values())
            self.store.write_documents(unique, policy=DuplicatePolicy.OVERWRITE)
            result.indexed.append(IndexedFile(source, item.parsed.page_count, len(unique), len(item.parsed.ocr_pages)))
            result.chunk_count += len(unique)
            self._done(source)
