"""The index store: vectors in FAISS, chunk text, metadata and the file list in SQLite, crash-safe.

Layout of an index directory:

- `manifest.json`: format version, embedder, dimension, metric ("cosine"), normalisation, index
  type and the chunk settings. Written once at creation (and again when the chunk settings change),
  always through a temporary file, fsync and rename.
- `chunks.sqlite` (+ `-wal`, `-shm`): SQLite in WAL mode. `chunks` (int id = FAISS id, document id,
  source, page, text, meta JSON), `files` (path, SHA-256, pages, chunks, when indexed), `tombstones`
  (ids an HNSW graph still holds but that were deleted) and `state` (the committed generation, its
  vectors file and structure, the next free id, the chunk settings).
  `chunks_fts` is the FTS5 keyword index of the chunks' text and file paths, and `chunks_cjk` that
  of their Chinese, Japanese and Korean character pairs, both kept in step with `chunks` by
  triggers inside the same transactions (`spanqa.indexing.keyword`).
- `vectors.<generation>.faiss`: the vectors of the committed generation, unit length, so the inner
  product FAISS ranks by is the cosine similarity. Structures: `IndexIDMap2(IndexFlatIP)` (exact),
  `IndexIDMap2(IndexHNSWFlat)` or `IndexIVFFlat` with our ids.

A write opens a SQLite write transaction; `save()` commits it: the new vectors file is written under
a temporary name, fsynced and renamed, then the SQLite transaction that points `state.generation` at
it commits. That commit is the single commit point, so after a crash at any moment the index holds
the state before or after the batch. Readers read `state` inside a SQLite read transaction (a WAL
snapshot) and load the vectors file it names, so they never mix generations either.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy

from spanqa import defaults
from spanqa.errors import ConfigError, IndexBusyError, IndexMismatchError, IndexNotFoundError, check_positive_int
from spanqa.indexing.filters import filter_sql
from spanqa.indexing.keyword import CJK_FUNCTION, FTS_SCHEMA, cjk_bigrams, ensure_cjk_index, keyword_ranking

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: keyword search (FTS5 table `chunks_fts`)
MANIFEST_FILE = "manifest.json"
DATABASE_FILE = "chunks.sqlite"
METRIC = "cosine"
INDEX_TYPES = ("flat", "hnsw", "ivf", "auto")
_SQL_BATCH = 500  # ids per `IN (...)` query, well under SQLite's parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, source TEXT, page INTEGER, content TEXT, meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_page ON chunks(page);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, sha256 TEXT, pages INTEGER NOT NULL, chunks INTEGER NOT NULL, indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredFile:
    """One indexed file, as `spanqa list` shows it."""

    source: str
    sha256: str | None
    pages: int
    chunks: int
    indexed_at: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "sha256": self.sha256, "pages": self.pages,
            "chunks": self.chunks, "indexed_at": self.indexed_at,
        }


class FaissDocumentStore:
    """Documents with embeddings, searchable by cosine similarity, persisted in `index_dir`.

    Implements Haystack's DocumentStore protocol (count_documents, filter_documents,
    write_documents, delete_documents). Writes are visible to this store at once and to other
    readers after `save()`, which commits them atomically. Returned Documents carry no embedding.

    `FaissDocumentStore(index_dir)` opens the index there. Given `embedder` and `dimension`, a
    directory without an index gets a new, empty one, and an existing index must match them.
    `index_type` ("flat", "hnsw", "ivf", "auto") applies to a new index.
    """

    def __init__(
        self,
        index_dir: str | Path,
        embedder: str | None = None,
        dimension: int | None = None,
        index_type: str | None = None,
        embedding: dict[str, Any] | None = None,
    ):
        self.index_dir = Path(index_dir).expanduser().resolve()
        if not FaissDocumentStore.exists(self.index_dir):
            if embedder is None or dimension is None:
                raise IndexNotFoundError(self.index_dir)
            index_type = defaults.INDEX_TYPE if index_type is None else index_type
            self._initialise(embedder, dimension, index_type, embedding)
        self._open()
        self._check_settings(embedder, dimension, index_type)

    @classmethod
    def open(cls, index_dir: str | Path) -> FaissDocumentStore:
        """The index in `index_dir`; IndexNotFoundError when there is none."""
        index_dir = Path(index_dir).expanduser().resolve()
        if not cls.exists(index_dir):
            raise IndexNotFoundError(index_dir)
        return cls(index_dir)

    @classmethod
    def create(
        cls,
        index_dir: str | Path,
        embedder: str,
        dimension: int,
        overwrite: bool = False,
        index_type: str | None = None,
        embedding: dict[str, Any] | None = None,
    ) -> FaissDocumentStore:
        """A new, empty index in `index_dir` (created). With `overwrite=True` an index there is deleted first.
        `embedding` records how its vectors are made (precision, word pieces read; see spanqa.indexing.embedding)."""
        index_dir = Path(index_dir).expanduser().resolve()
        if cls.exists(index_dir):
            if not overwrite:
                raise ConfigError(
                    f"an index already exists at '{index_dir}': open it with FaissDocumentStore.open(), "
                    "or pass overwrite=True to replace it"
                )
            # The manifest goes first: from then on the directory holds no index, whatever is left.
            (index_dir / MANIFEST_FILE).unlink()
        return cls(index_dir, embedder=embedder, dimension=dimension, index_type=index_type, embedding=embedding)

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        return (Path(index_dir) / MANIFEST_FILE).is_file()

    # -- creating and opening ----------------------------------------------------------------

    def _initialise(self, embedder: str, dimension: int, index_type: str, embedding: dict[str, Any] | None) -> None:
        validate_dimension(dimension)
        validate_index_type(index_type)
        if not isinstance(embedder, str) or embedder == "":
            raise ConfigError(f"embedder must name a model (hub id or local path), got {embedder!r}")
        self.index_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of an index that was being created or replaced when it was interrupted.
        for path in self.index_dir.iterdir():
            if path.name.startswith(DATABASE_FILE) or is_vectors_file(path.name) or path.name.endswith(".tmp"):
                path.unlink()
        connection = connect(self.index_dir / DATABASE_FILE)
        try:
            connection.executescript(_SCHEMA + FTS_SCHEMA)
            connection.execute("BEGIN IMMEDIATE")
            ensure_cjk_index(connection)
            initial = {"generation": "0", "vectors_file": "", "structure": "flat", "next_id": "0", "chunking": "null"}
            connection.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", initial.items())
            connection.execute("COMMIT")
        finally:
            connection.close()
        manifest = {
            "format_version": FORMAT_VERSION,
            "embedder": embedder,
            "dimension": dimension,
            "metric": METRIC,
            "normalized": True,
            "index_type": index_type,
            "embedding": embedding,
            "chunking": None,
            "database": DATABASE_FILE,
        }
        # The manifest comes last: a directory is an index only once its database is complete.
        write_json_atomically(self.index_dir / MANIFEST_FILE, manifest)

    def _open(self) -> None:
        manifest = self._read_manifest()
        self._manifest = manifest
        self._embedder: str = manifest["embedder"]
        self._dimension: int = manifest["dimension"]
        self._index_type: str = manifest["index_type"]
        database = self.index_dir / DATABASE_FILE
        if not database.is_file():
            raise IndexMismatchError(f"index at '{self.index_dir}' has no {DATABASE_FILE}: rebuild the index")
        self._lock = threading.RLock()
        self._connection = connect(database)
        self._writing = False  # a SQLite write transaction is open
        self._vectors_changed = False
        self._generation = -1  # none loaded yet
        self._index: faiss.Index | None = None
        self._mapped = False  # the loaded index maps its file (read-only)
        self._structure = "flat"
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._chunking: dict[str, Any] | None = None
        self._chunking_changed = False
        self._next_id = 0
        with self._reading():
            pass

    def _read_manifest(self) -> dict[str, Any]:
        path = self.index_dir / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version == 1:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has format version 1 (documents.jsonl), written by an older "
                f"spanqa; this one reads format {FORMAT_VERSION}: index the files again into a new directory "
                "(spanqa index PATH... --index NEW_DIR)"
            )
        if version != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has format version {version!r}; this spanqa reads format "
                f"{FORMAT_VERSION}: use the spanqa that wrote it, or index the files again into a new directory"
            )
        if manifest.get("metric") != METRIC or manifest.get("normalized") is not True:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' uses metric {manifest.get('metric')!r} "
                f"(normalized={manifest.get('normalized')!r}); this spanqa reads only normalised {METRIC!r}: "
                "rebuild it"
            )
        missing = [key for key in ("embedder", "dimension", "index_type") if key not in manifest]
        if len(missing) > 0:
            raise IndexMismatchError(f"'{path}' lacks {', '.join(missing)}: rebuild the index")
        if manifest["index_type"] not in INDEX_TYPES:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has index type {manifest['index_type']!r}, not one of "
                f"{', '.join(INDEX_TYPES)}: rebuild it"
            )
        return manifest

    def _check_settings(self, embedder: str | None, dimension: int | None, index_type: str | None) -> None:
        if embedder is not None and embedder != self._embedder:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' was built with embedder '{self._embedder}', not '{embedder}': "
                "use that embedder, or rebuild the index"
            )
        if dimension is not None and dimension != self._dimension:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings, not {dimension}"
            )
        if index_type is not None and index_type != self._index_type:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has index type '{self._index_type}', not '{index_type}': "
                "leave it unset, or build a new index with that type"
            )

    def close(self) -> None:
        """Rolls back what was not saved and closes the database."""
        with self._lock:
            if self._writing:
                self._connection.execute("ROLLBACK")
                self._writing = False
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
        return self._dimension

    @property
    def index_type(self) -> str:
        """The index type asked for ("flat", "hnsw", "ivf" or "auto")."""
        return self._index_type

    @property
    def structure(self) -> str:
        """The FAISS structure in use now: "flat", "hnsw" or "ivf" ("ivf" starts flat and is trained
        once it holds enough vectors; "auto" starts flat and becomes IVF once large)."""
        with self._reading():
            return self._structure

    @property
    def generation(self) -> int:
        """The committed generation this store reads (it grows by one per save that changed vectors)."""
        with self._reading():
            return self._generation

    @property
    def chunking(self) -> dict[str, Any] | None:
        """How the index's chunks were cut (manifest key "chunking"; None until an ingest records it)."""
        with self._reading():
            return self._chunking

    @chunking.setter
    def chunking(self, settings: dict[str, Any] | None) -> None:
        if settings is not None:
            json.dumps(settings)  # must be recordable
        with self._lock:
            if settings != self._chunking:
                self._begin_write()
                self._chunking = settings
                self._chunking_changed = True

    def to_dict(self) -> dict[str, Any]:
        # The documents live in index_dir; the dictionary only says where, and with which model.
        return default_to_dict(
            self, index_dir=str(self.index_dir), embedder=self._embedder, dimension=self._dimension,
            index_type=self._index_type, embedding=self.embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaissDocumentStore:
        return default_from_dict(cls, data)

    # -- transactions and generations -----------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A consistent view: this writer's own, or a snapshot of the last commit with its vectors."""
        with self._lock:
            if self._writing:
                yield
                return
            for attempt in range(5):
                self._connection.execute("BEGIN")
                try:
                    self._load_state(writable=False)
                except FileNotFoundError:
                    # A writer committed and removed the file between our snapshot and our open: retry.
                    self._connection.execute("ROLLBACK")
                    time.sleep(0.01 * (attempt + 1))
                    continue
                except BaseException:
                    self._connection.execute("ROLLBACK")
                    raise
                try:
                    yield
                finally:
                    self._connection.execute("COMMIT")
                return
            raise IndexMismatchError(f"the vectors file of '{self.index_dir}' keeps disappearing: is it being replaced?")

    def _state(self) -> dict[str, str]:
        return dict(self._connection.execute("SELECT key, value FROM state").fetchall())

    def _load_state(self, writable: bool) -> None:
        state = self._state()
        generation = int(state["generation"])
        self._chunking = json.loads(state["chunking"])
        self._chunking_changed = False
        self._next_id = int(state["next_id"])
        if generation == self._generation and self._index is not None and (not writable or not self._mapped):
            return
        structure = state["structure"]
        name = state["vectors_file"]
        if name == "":
            index = new_faiss_index(self._dimension, structure)
            mapped = False
        else:
            path = self.index_dir / name
            if not path.is_file():
                raise FileNotFoundError(path)
            # Readers map flat and HNSW vectors from the file instead of reading them into memory
            # (opening stays instant). IVF is read into memory: its queries touch ~16 scattered lists,
            # and page faults on a mapped file tripled their latency at 1M vectors (bench/README.md,
            # "Store"), while reading it takes ~1 s. A writer needs its own copy anyway (FAISS
            # cannot add to a mapped index).
            mapped = not writable and structure in ("flat", "hnsw")
            flags = faiss.IO_FLAG_MMAP_IFC if mapped else 0
            try:
                index = faiss.read_index(str(path), flags)
            except RuntimeError as exc:
                if not path.is_file():
                    raise FileNotFoundError(path) from exc
                raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc
        if index.d != self._dimension:
            raise IndexMismatchError(
                f"'{self.index_dir / name}' holds {index.d}-dimensional vectors, the manifest says "
                f"{self._dimension}: rebuild the index"
            )
        tombstones = [row[0] for row in self._connection.execute("SELECT id FROM tombstones")]
        self._tombstones = np.asarray(tombstones, dtype=np.int64)
        self._index, self._mapped, self._structure, self._generation = index, mapped, structure, generation
        configure_search(self._index, self._structure)

    def _begin_write(self) -> None:
        """Opens the write transaction (waiting for another writer to commit) and loads its state."""
        if self._writing:
            return
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise IndexBusyError(
                f"index at '{self.index_dir}' is being written by another process ({exc}) and stayed locked for "
                f"{defaults.SQLITE_BUSY_TIMEOUT_S:.0f} s: try again when that indexing run has finished"
            ) from exc
        try:
            ensure_cjk_index(self._connection)
            self._load_state(writable=True)
            self._remove_stale_files()
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._writing = True
        self._vectors_changed = False

    def _remove_stale_files(self) -> None:
        # Holding the write lock, no other writer is between writing a vectors file and committing
        # it: any vectors file but the committed one is left over from an interrupted save.
        current = self._state()["vectors_file"]
        for path in self.index_dir.iterdir():
            if (is_vectors_file(path.name) and path.name != current) or (
                path.name.startswith(".vectors.") and path.name.endswith(".tmp")
            ):
                path.unlink(missing_ok=True)

    def rollback(self) -> None:
        """Forgets every change since the last `save()`."""
        with self._lock:
            if not self._writing:
                return
            self._connection.execute("ROLLBACK")
            self._writing = False
            self._generation = -1  # the in-memory index may hold unsaved vectors: reload it
        with self._reading():
            pass

    def save(self) -> None:
        """Commits every change since the last save, atomically (see the module docstring)."""
        with self._lock:
            if not self._writing:
                return
            self._restructure()
            state = {"next_id": str(self._next_id), "chunking": json.dumps(self._chunking)}
            old_file = self._state()["vectors_file"]
            if self._vectors_changed:
                generation = self._generation + 1
                name = f"vectors.{generation}.faiss"
                write_index_atomically(self._index, self.index_dir / name)
                state.update(generation=str(generation), vectors_file=name, structure=self._structure)
            self._connection.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", state.items())
            self._connection.execute("COMMIT")  # the commit point
            self._writing = False
            if self._vectors_changed:
                self._generation = generation
                if old_file != "":
                    (self.index_dir / old_file).unlink(missing_ok=True)
            self._vectors_changed = False
            if self._chunking_changed:
                # A mirror for people and tools; the database's copy is the one read back.
                write_json_atomically(self.index_dir / MANIFEST_FILE, {**self._manifest, "chunking": self._chunking})
                self._chunking_changed = False

    # -- the FAISS structure -----------------------------------------------------------------------

    def _target_structure(self, count: int) -> str:
        if self._index_type == "auto":
            return "ivf" if count >= defaults.AUTO_APPROXIMATE_MIN_VECTORS else "flat"
        if self._index_type == "ivf":
            return "ivf" if count >= defaults.IVF_MIN_TRAIN_VECTORS else "flat"
        return self._index_type

    def _restructure(self) -> None:
        """Before a commit: switch structure when the collection grew past a threshold, and rebuild
        an HNSW graph once too many of its vectors are deleted."""
        live = self._index.ntotal - len(self._tombstones)
        target = self._target_structure(live)
        if self._structure in ("ivf", "hnsw") and target == "flat":
            target = self._structure  # an approximate index stays one when the collection shrinks
        too_many_deleted = len(self._tombstones) > defaults.TOMBSTONE_REBUILD_FRACTION * max(self._index.ntotal, 1)
        # IVF lists trained on a small collection grow long as it grows: retrain once the collection
        # asks for twice as many lists (geometric growth, so the rebuilds cost O(1) per vector).
        outgrown = self._structure == "ivf" and ivf_list_count(live) >= 2 * self._index.nlist
        if target == self._structure and not (self._structure == "hnsw" and too_many_deleted) and not outgrown:
            return
        ids = self._live_ids()
        vectors = self._reconstruct(ids)
        index = new_faiss_index(self._dimension, target, training=vectors)
        if len(ids) > 0:
            index.add_with_ids(vectors, ids)
        logger.info("index at %s: %s -> %s over %d vectors", self.index_dir, self._structure, target, len(ids))
        self._index, self._structure, self._mapped = index, target, False
        configure_search(self._index, self._structure)
        self._connection.execute("DELETE FROM tombstones")
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._vectors_changed = True

    def _live_ids(self) -> np.ndarray:
        return np.fromiter((row[0] for row in self._connection.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.ascontiguousarray(self._index.reconstruct_batch(ids), dtype=np.float32)

    def _remove_vectors(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self._structure == "hnsw":
            # An HNSW graph cannot drop nodes: they stay, excluded from searches, until a rebuild.
            self._connection.executemany("INSERT OR IGNORE INTO tombstones(id) VALUES (?)", [(int(i),) for i in ids])
            self._tombstones = np.union1d(self._tombstones, ids)
        else:
            # IDSelectorArray: an IVF index's hash-table direct map removes only by an explicit list.
            self._index.remove_ids(faiss.IDSelectorArray(np.ascontiguousarray(ids, dtype=np.int64)))
        self._vectors_changed = True

    # -- DocumentStore protocol ------------------------------------------------------------------

    def count_documents(self) -> int:
        with self._reading():
            return self._connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        where, params = ("1", []) if filters is None else filter_sql(filters)
        with self._reading():
            rows = self._connection.execute(
                f"SELECT doc_id, content, meta FROM chunks WHERE {where} ORDER BY id", params
            ).fetchall()
        return [row_document(row) for row in rows]

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Adds `documents`; with NONE or FAIL an id already stored, or repeated in `documents`, raises
        DuplicateDocumentError and nothing is written. OVERWRITE replaces, SKIP keeps the stored one."""
        if not isinstance(documents, list) or not all(isinstance(doc, Document) for doc in documents):
            raise ConfigError("write_documents() takes a list of Documents")
        vectors = self._normalized_embeddings(documents)
        with self._lock:
            self._begin_write()
            stored = self._stored_int_ids([document.id for document in documents])
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
            replaced = [doc_id for doc_id in to_write if doc_id in stored]
            self._delete(replaced)
            rows = list(to_write.values())
            if len(rows) == 0:
                return 0
            ids = np.arange(self._next_id, self._next_id + len(rows), dtype=np.int64)
            self._index.add_with_ids(vectors[rows], ids)
            self._next_id += len(rows)
            self._vectors_changed = True
            records = []
            for chunk_int_id, row in zip(ids.tolist(), rows):
                document = documents[row]
                source = document.meta.get("source")
                page = document.meta.get("page")
                records.append((
                    chunk_int_id, document.id, source if isinstance(source, str) else None,
                    page if isinstance(page, int) and not isinstance(page, bool) else None,
                    document.content, json.dumps(document.meta, ensure_ascii=False),
                ))
            self._connection.executemany(
                "INSERT INTO chunks(id, doc_id, source, page, content, meta) VALUES (?, ?, ?, ?, ?, ?)", records
            )
            self._update_files([documents[row] for row in rows])
            return len(rows)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Removes the documents with these ids; ids not in the store are ignored."""
        with self._lock:
            self._begin_write()
            self._delete(list(dict.fromkeys(document_ids)))

    def _delete(self, document_ids: list[str]) -> None:
        if len(document_ids) == 0:
            return
        found: list[tuple[int, str | None]] = []
        for start in range(0, len(document_ids), _SQL_BATCH):
            batch = document_ids[start : start + _SQL_BATCH]
            holes = ", ".join("?" * len(batch))
            found += self._connection.execute(
                f"SELECT id, source FROM chunks WHERE doc_id IN ({holes})", batch
            ).fetchall()
        if len(found) == 0:
            return
        ids = np.asarray([row[0] for row in found], dtype=np.int64)
        self._connection.executemany("DELETE FROM chunks WHERE id = ?", [(int(i),) for i in ids])
        self._remove_vectors(ids)
        self._recount_files({source for _, source in found if source is not None})

    def _stored_int_ids(self, document_ids: list[str]) -> dict[str, int]:
        stored: dict[str, int] = {}
        unique = list(dict.fromkeys(document_ids))
        for start in range(0, len(unique), _SQL_BATCH):
            batch = unique[start : start + _SQL_BATCH]
            holes = ", ".join("?" * len(batch))
            stored.update(
                (doc_id, int_id)
                for int_id, doc_id in self._connection.execute(
                    f"SELECT id, doc_id FROM chunks WHERE doc_id IN ({holes})", batch
                )
            )
        return stored

    # -- files ------------------------------------------------------------------------------------

    def _update_files(self, written: list[Document]) -> None:
        """The `files` rows of the sources just written: their hash, pages, chunk count, time."""
        latest: dict[str, Document] = {}
        for document in written:
            source = document.meta.get("source")
            if isinstance(source, str):
                latest[source] = document
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for source, document in latest.items():
            count = self._connection.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            sha256 = document.meta.get("sha256")
            pages = document.meta.get("page_count")
            if not isinstance(pages, int) or isinstance(pages, bool):
                pages = self._connection.execute(
                    "SELECT COUNT(DISTINCT page) FROM chunks WHERE source = ?", (source,)
                ).fetchone()[0]
            self._connection.execute(
                "INSERT OR REPLACE INTO files(path, sha256, pages, chunks, indexed_at) VALUES (?, ?, ?, ?, ?)",
                (source, sha256 if isinstance(sha256, str) else None, pages, count, now),
            )

    def _recount_files(self, sources: set[str]) -> None:
        for source in sources:
            count = self._connection.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            if count == 0:
                self._connection.execute("DELETE FROM files WHERE path = ?", (source,))
            else:
                self._connection.execute("UPDATE files SET chunks = ? WHERE path = ?", (count, source))

    def files(self) -> list[StoredFile]:
        """Every indexed file, sorted by path."""
        with self._reading():
            rows = self._connection.execute(
                "SELECT path, sha256, pages, chunks, indexed_at FROM files ORDER BY path"
            ).fetchall()
        return [StoredFile(*row) for row in rows]

    def source_files(self) -> dict[str, dict[str, Any]]:
        """Each indexed source with its chunk count, page count and SHA-256 (None when not recorded)."""
        return {f.source: {"chunks": f.chunks, "sha256": f.sha256, "pages": f.pages} for f in self.files()}

    def sources(self) -> dict[str, int]:
        """Each distinct `meta["source"]`, sorted, with its number of stored chunks."""
        with self._reading():
            rows = self._connection.execute(
                "SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source ORDER BY source"
            ).fetchall()
        return dict(rows)

    def delete_by_source(self, source: str) -> int:
        """Removes every chunk of `source` and its file entry; returns how many chunks were removed."""
        with self._lock:
            self._begin_write()
            doc_ids = [row[0] for row in self._connection.execute("SELECT doc_id FROM chunks WHERE source = ?", (source,))]
            self._delete(doc_ids)
            self._connection.execute("DELETE FROM files WHERE path = ?", (source,))
            return len(doc_ids)

    # -- search ----------------------------------------------------------------------------------

    def search(
        self, query_embedding: list[float] | np.ndarray, top_k: int, filters: dict[str, Any] | None = None
    ) -> list[Document]:
        """The `top_k` documents most similar to `query_embedding`, best first, `score` = cosine similarity.

        With `filters` (Haystack syntax) only matching documents are ranked, and the result holds
        `top_k` of them whenever that many match: the filter selects ids inside the FAISS search.
        """
        validate_top_k(top_k)
        query = normalized_rows(np.asarray(query_embedding, dtype=np.float32).reshape(1, -1), self._dimension)
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            allowed = None
            if where is not None:
                allowed = np.fromiter(
                    (row[0] for row in self._connection.execute(f"SELECT id FROM chunks WHERE {where[0]}", where[1])),
                    dtype=np.int64,
                )
            ids, scores = self._ranked_ids(query, top_k, allowed)
            return self._scored_documents(ids, scores)

    def similarities(self, query_embedding: list[float] | np.ndarray, document_ids: list[str]) -> dict[str, float]:
        """The cosine similarity of `query_embedding` to each stored document of `document_ids` (ids
        not in the store are left out): what `search` scores them, for chunks it did not return."""
        query = normalized_rows(np.asarray(query_embedding, dtype=np.float32).reshape(1, -1), self._dimension)
        if not document_ids:
            return {}
        holes = ", ".join("?" * len(document_ids))
        with self._reading():
            rows = self._connection.execute(
                f"SELECT id, doc_id FROM chunks WHERE doc_id IN ({holes})", list(document_ids)
            ).fetchall()
            vectors = self._reconstruct(np.array([row[0] for row in rows], dtype=np.int64))
        return {row[1]: float(score) for row, score in zip(rows, (vectors @ query[0]).tolist(), strict=True)}

    def keyword_search(self, query: str, top_k: int, filters: dict[str, Any] | None = None) -> list[Document]:
        """The `top_k` chunks best matching `query`'s words by BM25 (`spanqa.indexing.keyword`), best
        first, `score` = minus SQLite's bm25() (higher is better; 0..1 for a query mixing CJK and other
        words). `filters` as in `search`, applied inside the ranking; a query with no searchable word
        finds nothing."""
        validate_top_k(top_k)
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            ranked = keyword_ranking(self._connection, query, top_k, where)
            return self._scored_documents([row[0] for row in ranked], [row[1] for row in ranked])

    def _ranked_ids(self, query: np.ndarray, top_k: int, allowed: np.ndarray | None) -> tuple[list[int], list[float]]:
        live = self._index.ntotal - len(self._tombstones)
        candidates = live if allowed is None else len(allowed)
        k = min(top_k, candidates)
        if k == 0:
            return [], []
        if allowed is not None and len(allowed) <= defaults.FILTER_EXACT_MAX:
            return self._exact_subset(query, k, allowed)
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
        elif len(self._tombstones) > 0:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._tombstones))
        scores, ids = self._index.search(query, k, params=search_parameters(self._structure, k, selector))
        found = [(int(i), float(s)) for i, s in zip(ids[0].tolist(), scores[0].tolist()) if i != -1]
        if len(found) < k:
            # An approximate search that stopped short of k matches (a selective filter on a graph or
            # few probed lists): rank the matching vectors exactly instead.
            if allowed is None:
                allowed = self._live_ids()
            return self._exact_subset(query, k, allowed)
        return [i for i, _ in found], [s for _, s in found]

    def _exact_subset(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[list[int], list[float]]:
        parts = []
        for start in range(0, len(allowed), 65536):
            block = allowed[start : start + 65536]
            parts.append(self._reconstruct(block) @ query[0])
        scores = np.concatenate(parts)
        order = np.argsort(-scores, kind="stable")[:k]
        return allowed[order].tolist(), scores[order].tolist()

    def _scored_documents(self, ids: list[int], scores: list[float]) -> list[Document]:
        """The chunks of `ids`, in that order, each with its score."""
        documents = self._documents_by_int_ids(ids)
        return [Document(id=d.id, content=d.content, meta=d.meta, score=float(s)) for d, s in zip(documents, scores)]

    def _documents_by_int_ids(self, ids: list[int]) -> list[Document]:
        if len(ids) == 0:
            return []
        holes = ", ".join("?" * len(ids))
        rows = self._connection.execute(f"SELECT id, doc_id, content, meta FROM chunks WHERE id IN ({holes})", ids)
        by_id = {row[0]: row_document(row[1:]) for row in rows}
        missing = [i for i in ids if i not in by_id]
        if len(missing) > 0:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' is inconsistent: vectors {missing[:5]} have no chunk: rebuild it"
            )
        return [by_id[i] for i in ids]

    # -- checks ----------------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Problems found comparing the database with the vectors (none for a sound index)."""
        problems = []
        with self._reading():
            live = set(self._live_ids().tolist())
            tombstones = set(self._tombstones.tolist())
            if self._structure in ("flat", "hnsw"):
                vector_ids = set(faiss.vector_to_array(self._index.id_map).tolist())
                if vector_ids - tombstones != live:
                    problems.append(
                        f"{len(live - vector_ids)} chunks without a vector, "
                        f"{len(vector_ids - tombstones - live)} vectors without a chunk"
                    )
            elif self._index.ntotal != len(live):
                problems.append(f"{self._index.ntotal} vectors for {len(live)} chunks")
            if len(live) > 0 and max(live) >= self._next_id:
                problems.append(f"next id {self._next_id} is not above the largest id {max(live)}")
            counts = dict(self._connection.execute("SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source"))
            files = dict(self._connection.execute("SELECT path, chunks FROM files"))
            if counts != files:
                problems.append("the file list does not match the chunks")
        return problems

    # -- embeddings ------------------------------------------------------------------------------

    def _normalized_embeddings(self, documents: list[Document]) -> np.ndarray:
        for document in documents:
            try:
                json.dumps(document.meta)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"document {document.id} has meta that cannot be saved as JSON: {exc}") from exc
            if document.embedding is None:
                raise ConfigError(
                    f"document {document.id} has no embedding: run a document embedder before writing to "
                    "FaissDocumentStore"
                )
            if len(document.embedding) != self._dimension:
                raise IndexMismatchError(
                    f"document {document.id} has a {len(document.embedding)}-dimensional embedding, but the "
                    f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings "
                    f"(embedder '{self._embedder}')"
                )
        if len(documents) == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        matrix = np.asarray([document.embedding for document in documents], dtype=np.float32)
        return normalized_rows(matrix, self._dimension)


def row_document(row: tuple[str, str | None, str]) -> Document:
    doc_id, content, meta = row
    return Document(id=doc_id, content=content, meta=json.loads(meta))


def is_vectors_file(name: str) -> bool:
    return name.startswith("vectors.") and name.endswith(".faiss")


def validate_top_k(top_k: int) -> None:
    check_positive_int("top_k", top_k)


def validate_dimension(dimension: int) -> None:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be a positive integer, got {dimension!r}")


def validate_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got {index_type!r}")


def ivf_list_count(count: int) -> int:
    # About 4·sqrt(n) lists, each trained with at least 39 points (FAISS warns below that).
    return max(1, min(int(4 * np.sqrt(count)), defaults.IVF_MAX_LISTS, count // 39))


def new_faiss_index(dimension: int, structure: str, training: np.ndarray | None = None) -> faiss.Index:
    """An empty index of `structure` whose ids are ours (chunks.id) and whose metric is inner product."""
    if structure == "flat":
        # IDMap2 keeps our ids stable across deletions and lets vectors be reconstructed by id.
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    if structure == "hnsw":
        graph = faiss.IndexHNSWFlat(dimension, defaults.HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = defaults.HNSW_EF_CONSTRUCTION
        return faiss.IndexIDMap2(graph)
    if structure == "ivf":
        if training is None or len(training) == 0:
            raise ConfigError("an IVF index is trained on the vectors it will hold: none were given")
        lists = ivf_list_count(len(training))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = defaults.IVF_TRAIN_ITERATIONS
        sample_size = defaults.IVF_TRAIN_POINTS_PER_LIST * lists
        sample = training
        if len(training) > sample_size:
            rows = np.random.default_rng(0).choice(len(training), sample_size, replace=False)
            sample = training[np.sort(rows)]
        index.train(sample)
        # A hash table from our ids to list positions: reconstruct and remove by id.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index
    raise ConfigError(f"unknown index structure {structure!r}")


def configure_search(index: faiss.Index, structure: str) -> None:
    if structure == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = defaults.HNSW_EF_SEARCH
    elif structure == "ivf":
        index.nprobe = defaults.IVF_NPROBE


def search_parameters(structure: str, k: int, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    if structure == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(defaults.HNSW_EF_SEARCH, k))
    if structure == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=defaults.IVF_NPROBE)
    if selector is None:
        return None
    return faiss.SearchParameters(sel=selector)


def normalized_rows(matrix: np.ndarray, dimension: int) -> np.ndarray:
    """`matrix` with every row scaled to unit length: inner products of unit vectors are cosines."""
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise IndexMismatchError(f"expected {dimension}-dimensional embeddings, got shape {tuple(matrix.shape)}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise ConfigError("embeddings must be finite and not all zero: cosine similarity is undefined otherwise")
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and committed explicitly, never implicitly.
    connection = sqlite3.connect(
        str(path), isolation_level=None, timeout=defaults.SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when COMMIT returns, so a saved batch survives a power cut too.
    connection.execute("PRAGMA synchronous=FULL")
    # The CJK keyword triggers call it (`spanqa.indexing.keyword`): writing chunks needs it.
    connection.create_function(CJK_FUNCTION, 1, cjk_bigrams, deterministic=True)
    return connection


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_index_atomically(index: faiss.Index, path: Path) -> None:
    file_descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(file_descriptor)
    try:
        faiss.write_index(index, temp_name)
        fsync_file(Path(temp_name))
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    fsync_directory(path.parent)


def write_atomically(path: Path, data: bytes) -> None:
    file_descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(file_descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def fsync_directory(directory: Path) -> None:
    # Makes the renames themselves durable; not every platform lets a directory be opened for this.
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)
