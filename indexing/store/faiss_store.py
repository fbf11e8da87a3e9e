"""The index store: a Haystack DocumentStore over an index directory, crash-safe, searched by
cosine similarity and by keywords.

This module opens an index and writes to it (transactions, writes, deletes); its reads (counts,
filters, files, searches, the consistency check) are `store_reads.StoreReads`', its base class, and
a new index is made by `new_index`. The parts under them, each with one job:

- `manifest`: what the index is (`manifest.json`: embedder, dimension, index type, format);
- `chunk_database`: chunks, files, indexed metadata and commit state in SQLite (`chunks.sqlite`);
- `vector_segments`: the vectors, in immutable FAISS segment files (`segment.*.faiss`);
- `segment_search`: searching those segments as one;
- `commits`: snapshots for readers, one atomic commit per write, merging segments by size;
- `filters` and `keyword`: Haystack filters as SQL, BM25 keyword ranking (`rank_fusion` merges a
  query's CJK and other keyword rankings).

Writes outside a `with store.writer():` block commit at once (as a Haystack DocumentWriter
expects); inside one, they commit together when the block ends, or not at all if it raises.
Returned Documents carry no embedding.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy

from spanqa.errors import ConfigError, IndexMismatchError, IndexNotFoundError, StorageError, is_storage_failure
from spanqa.file_modes import tighten_index
from spanqa.indexing.store.chunk_database import DATABASE_FILE, ChunkDatabase, StoredFile, connect
from spanqa.indexing.store.commits import CommitLog, CommitReport
from spanqa.indexing.store.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    read_manifest,
    upgrade_format_3,
    write_manifest,
)
from spanqa.indexing.store.new_index import NEW_INDEX_TYPE, create_index, validate_index_type
from spanqa.indexing.store.store_reads import ROOTS_KEY, StoreReads, validate_top_k
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.indexing.store.vector_segments import normalized_rows
from spanqa.paths import user_path

__all__ = ["FORMAT_VERSION", "FaissDocumentStore", "IndexTuning", "StoredFile", "validate_index_type", "validate_top_k"]

logger = logging.getLogger(__name__)


class FaissDocumentStore(StoreReads):
    """Documents with embeddings, searchable by cosine similarity, persisted in `index_dir`.

    `FaissDocumentStore(index_dir)` opens the index there. Given `embedder` and `dimension`, a
    directory without an index gets a new, empty one, and an existing index must match them.
    `index_type` ("flat", "hnsw", "ivf", "auto") applies to a new index; `settings` tune this store.
    """

    def __init__(
        self,
        index_dir: str | Path,
        embedder: str | None = None,
        dimension: int | None = None,
        index_type: str | None = None,
        embedding: dict[str, Any] | None = None,
        settings: IndexTuning | None = None,
    ):
        self.index_dir = user_path(index_dir)
        self.settings = IndexTuning() if settings is None else settings
        if not FaissDocumentStore.exists(self.index_dir):
            if embedder is None or dimension is None:
                raise IndexNotFoundError(self.index_dir)
            index_type = NEW_INDEX_TYPE if index_type is None else index_type
            create_index(self.index_dir, embedder, dimension, index_type, embedding, self.settings.busy_timeout_s)
        self._open()
        self._check_settings(embedder, dimension, index_type)

    @classmethod
    def open(cls, index_dir: str | Path, settings: IndexTuning | None = None) -> FaissDocumentStore:
        """The index in `index_dir`; IndexNotFoundError when there is none."""
        index_dir = user_path(index_dir)
        if not cls.exists(index_dir):
            raise IndexNotFoundError(index_dir)
        return cls(index_dir, settings=settings)

    @classmethod
    def create(
        cls,
        index_dir: str | Path,
        embedder: str,
        dimension: int,
        overwrite: bool = False,
        index_type: str | None = None,
        embedding: dict[str, Any] | None = None,
        settings: IndexTuning | None = None,
    ) -> FaissDocumentStore:
        """A new, empty index in `index_dir` (created). With `overwrite=True` an index there is deleted first.
        `embedding` records how its vectors are made (precision, word pieces read; see spanqa.indexing.retrieval.embedding)."""
        index_dir = user_path(index_dir)
        if cls.exists(index_dir):
            if not overwrite:
                raise ConfigError(
                    f"an index already exists at '{index_dir}': open it with FaissDocumentStore.open(), "
                    "or pass overwrite=True to replace it"
                )
            # The manifest goes first: from then on the directory holds no index, whatever is left.
            (index_dir / MANIFEST_FILE).unlink()
        return cls(index_dir, embedder=embedder, dimension=dimension, index_type=index_type, embedding=embedding, settings=settings)

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        """Whether `index_dir` holds an index (its manifest)."""
        return (user_path(index_dir) / MANIFEST_FILE).is_file()

    # -- creating and opening ----------------------------------------------------------------

    def _open(self) -> None:
        manifest = read_manifest(self.index_dir)
        database = self.index_dir / DATABASE_FILE
        if not database.is_file():
            raise IndexMismatchError(f"index at '{self.index_dir}' has no {DATABASE_FILE}: rebuild the index")
        self._lock = threading.RLock()
        try:
            self._connection = connect(database, self.settings.busy_timeout_s)
        except (OSError, sqlite3.OperationalError) as exc:
            # Opening makes the WAL's side files when none are there: a full disk fails it.
            raise StorageError("cannot open the index's database", exc) from exc
        if manifest["format_version"] == 3:
            manifest = upgrade_format_3(self.index_dir, self._connection, manifest)
        self._manifest = manifest
        self._embedder: str = manifest["embedder"]
        self._dimension: int = manifest["dimension"]
        self._index_type: str = manifest["index_type"]
        self._database = ChunkDatabase(self._connection)
        self._commits = CommitLog(self.index_dir, self._connection, self._dimension, self._index_type, self.settings)
        self._in_writer = 0  # nesting depth of `writer()` blocks: writes inside them wait for its end
        self._tightened = False  # whether this store's first writer made the index's files owner-only
        self._vectors_changed = False
        self._chunking_changed = False
        self.last_commit = CommitReport()
        with self._reading():
            pass

    def _check_settings(self, embedder: str | None, dimension: int | None, index_type: str | None) -> None:
        if embedder is not None and embedder != self._embedder:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' was built with embedder '{self._embedder}', not '{embedder}': "
                "use that embedder, or rebuild the index"
            )
        if dimension is not None and dimension != self._dimension:
            raise IndexMismatchError(f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings, not {dimension}")
        if index_type is not None and index_type != self._index_type:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has index type '{self._index_type}', not '{index_type}': "
                "leave it unset, or build a new index with that type"
            )

    def close(self) -> None:
        """Forgets what was not committed and closes the database."""
        with self._lock:
            self._commits.rollback()
            self._connection.close()

    # -- properties ------------------------------------------------------------------------------

    @property
    def embedder(self) -> str:
        """The model (hub id or absolute local path) whose embeddings this index holds."""
        return self._embedder

    @property
    def embedding(self) -> dict[str, Any] | None:
        """How the vectors are made (manifest key "embedding": precision, word pieces read), as
        recorded at creation; None for an index created without it (float32, uncut)."""
        return self._manifest.get("embedding")

    @property
    def dimension(self) -> int:
        """The length of the index's vectors (its embedder's)."""
        return self._dimension

    @property
    def index_type(self) -> str:
        """The index type asked for ("flat", "hnsw", "ivf" or "auto")."""
        return self._index_type

    @property
    def structure(self) -> str:
        """The FAISS structure of the largest segment ("flat" for an empty index): segments below
        the size where an approximate structure pays off stay exact (`segment_structure`)."""
        with self._reading():
            segments = self._commits.snapshot.segments
            return max(segments, key=lambda live: live.segment.size).segment.structure if segments else "flat"

    @property
    def segments(self) -> list[tuple[str, str, int, int]]:
        """Each committed segment: file name, structure, vectors held, live vectors."""
        with self._reading():
            return [(s.segment.name, s.segment.structure, s.segment.size, s.live) for s in self._commits.snapshot.segments]

    @property
    def generation(self) -> int:
        """The committed generation this store reads (it grows by one per commit that changed vectors)."""
        with self._reading():
            return self._commits.snapshot.generation

    @property
    def chunking(self) -> dict[str, Any] | None:
        """How the index's chunks were cut (manifest key "chunking"; None until an ingest records it)."""
        with self._reading():
            return self._commits.snapshot.chunking

    @chunking.setter
    def chunking(self, settings: dict[str, Any] | None) -> None:
        if settings is not None:
            json.dumps(settings)  # must be recordable
        with self._writing():
            if settings != self._commits.snapshot.chunking:
                self._commits.snapshot.chunking = settings
                self._chunking_changed = True

    def to_dict(self) -> dict[str, Any]:
        """The store as a Haystack pipeline stores it: where the index is and how it embeds."""
        # The documents live in index_dir; the dictionary only says where, and with which model.
        return default_to_dict(
            self, index_dir=str(self.index_dir), embedder=self._embedder, dimension=self._dimension,
            index_type=self._index_type, embedding=self.embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaissDocumentStore:
        """The store `to_dict` describes: the index in its `index_dir`."""
        return default_from_dict(cls, data)

    # -- transactions ----------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[FaissDocumentStore]:
        """One write transaction: every write in the block commits atomically when it ends, or none
        if it raises. Blocks nest (the outermost one commits)."""
        with self._lock:
            if not self._tightened:  # an index made before its files were private (issue 24)
                tighten_index(self.index_dir)
                self._tightened = True
            self._in_writer += 1
            try:
                yield self
            except BaseException as exc:
                if self._in_writer == 1:
                    self._rollback()
                    if is_storage_failure(exc) and not isinstance(exc, StorageError):
                        raise StorageError("cannot write to the index", exc) from exc
                raise
            else:
                if self._in_writer == 1:
                    self._commit()
            finally:
                self._in_writer -= 1

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A change: inside `writer()` it joins that transaction, outside it commits at once."""
        with self.writer():
            self._commits.begin_write()
            yield

    def _commit(self, compact: bool = False) -> None:
        """Commits the open write. A failure rolls it back (the committed state stays as it was, and
        the store can write again) and raises; a full disk or an I/O error as a StorageError."""
        if not self._commits.writing and not compact:
            return
        try:
            self._commits.begin_write()
            self.last_commit = self._commits.commit(self._commits.snapshot.chunking, self._vectors_changed, compact=compact)
        except BaseException as exc:
            self._rollback()
            if is_storage_failure(exc) and not isinstance(exc, StorageError):
                raise StorageError("cannot commit to the index", exc) from exc
            raise
        self._vectors_changed = False
        if self._chunking_changed:
            # A mirror for people and tools; the database's copy is the one read back. Written after
            # the commit point: if it fails, the commit stands and the next commit writes it again.
            try:
                write_manifest(self.index_dir, {**self._manifest, "chunking": self._commits.snapshot.chunking})
            except OSError as exc:
                logger.warning("index at %s: committed, but its manifest mirror was not rewritten (%s)", self.index_dir, exc)
                return
            self._chunking_changed = False

    def _rollback(self) -> None:
        self._commits.rollback()
        self._vectors_changed = self._chunking_changed = False
        with self._reading():
            pass

    def compact(self) -> CommitReport:
        """Merges every segment into one, without the deleted vectors: as a fresh build would lay the
        index out. Crash-safe like every commit; returns what it wrote."""
        with self._lock:
            if self._in_writer:
                raise ConfigError("compact() cannot run inside a writer() block: call it after the block")
            self._commit(compact=True)
            return self.last_commit

    # -- writes (the reads are StoreReads') --------------------------------------------------------

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Adds `documents`; with NONE or FAIL an id already stored, or repeated in `documents`, raises
        DuplicateDocumentError and nothing is written. OVERWRITE replaces, SKIP keeps the stored one."""
        if not isinstance(documents, list) or not all(isinstance(doc, Document) for doc in documents):
            raise ConfigError("write_documents() takes a list of Documents")
        vectors = self._normalized_embeddings(documents)
        with self._writing():
            stored = {doc_id for _, doc_id, _ in self._database.ids_of([document.id for document in documents])}
            if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL):
                seen: set[str] = set()
                for document in documents:
                    if document.id in stored or document.id in seen:
                        raise DuplicateDocumentError(f"ID '{document.id}' already exists.")
                    seen.add(document.id)
            to_write: dict[str, int] = {}  # id -> row of `documents`; the last of repeated ids wins
            for row, document in enumerate(documents):
                if policy == DuplicatePolicy.SKIP and (document.id in stored or document.id in to_write):
                    logger.debug("ID '%s' already exists, skipped", document.id)
                    continue
                to_write[document.id] = row
            self._delete([doc_id for doc_id in to_write if doc_id in stored])
            rows = list(to_write.values())
            if not rows:
                return 0
            first = self._commits.snapshot.next_id
            ids = np.arange(first, first + len(rows), dtype=np.int64)
            self._commits.add_vectors(ids, vectors[rows])
            self._vectors_changed = True
            written = [documents[row] for row in rows]
            self._database.insert_chunks(ids.tolist(), written)
            self._database.update_files(written)
            return len(rows)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Removes the documents with these ids; ids not in the store are ignored."""
        with self._writing():
            self._delete(list(dict.fromkeys(document_ids)))

    def _delete(self, document_ids: list[str]) -> None:
        found = self._database.ids_of(document_ids)
        if not found:
            return
        ids = np.asarray([row[0] for row in found], dtype=np.int64)
        self._database.delete_chunks(ids)
        self._commits.delete_vectors(ids)
        self._vectors_changed = True
        self._database.recount_files({source for _, _, source in found if source is not None})

    def add_roots(self, paths: Iterable[str | Path]) -> None:
        """Records `paths` (made absolute) as indexed roots: in the open `writer()` block, else in a
        small commit of its own; nothing is written when every one is recorded already."""
        wanted = {str(user_path(path)) for path in paths}
        if wanted <= set(self.roots()):
            return
        with self._writing():
            known = json.loads(self._database.state().get(ROOTS_KEY, "[]"))
            self._database.set_state({ROOTS_KEY: json.dumps(sorted(set(known) | wanted))})

    def delete_by_source(self, source: str) -> int:
        """Removes every chunk of `source` and its file entry; returns how many chunks were removed."""
        with self._writing():
            doc_ids = self._database.document_ids_of_source(source)
            self._delete(doc_ids)
            self._database.remove_file(source)
            return len(doc_ids)

    # -- embeddings ------------------------------------------------------------------------------

    def _normalized_embeddings(self, documents: list[Document]) -> np.ndarray:
        for document in documents:
            try:
                json.dumps(document.meta)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"document {document.id} has meta that cannot be saved as JSON: {exc}") from exc
            if document.embedding is None:
                raise ConfigError(
                    f"document {document.id} has no embedding: run a document embedder before writing to FaissDocumentStore"
                )
            if len(document.embedding) != self._dimension:
                raise IndexMismatchError(
                    f"document {document.id} has a {len(document.embedding)}-dimensional embedding, but the "
                    f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings "
                    f"(embedder '{self._embedder}')"
                )
        if not documents:
            return np.zeros((0, self._dimension), dtype=np.float32)
        matrix = np.asarray([document.embedding for document in documents], dtype=np.float32)
        return normalized_rows(matrix, self._dimension)

