"""The index store: a Haystack DocumentStore over an index directory, crash-safe, searched by
cosine similarity and by keywords.

Its parts, each with one job:

- `index_manifest`: what the index is (`manifest.json`: embedder, dimension, index type, format);
- `chunk_database`: chunks, files, indexed metadata and commit state in SQLite (`chunks.sqlite`);
- `vector_segments`: the vectors, in immutable FAISS segment files (`segment.*.faiss`);
- `segment_search`: searching those segments as one;
- `commits`: snapshots for readers, one atomic commit per write, merging segments by size;
- `filters` and `keyword`: Haystack filters as SQL, BM25 keyword ranking.

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
from spanqa import defaults
from spanqa.errors import (
    ConfigError,
    IndexMismatchError,
    IndexNotFoundError,
    StorageError,
    check_positive_int,
    is_storage_failure,
)
from spanqa.atomic_files import is_leftover
from spanqa.file_modes import private_folder, tighten_index
from spanqa.indexing.store.chunk_database import (
    DATABASE_FILE,
    ChunkDatabase,
    FileChunks,
    StoredFile,
    connect,
    create_schema,
    files_by_source,
)
from spanqa.indexing.store.commits import CommitLog, CommitReport
from spanqa.indexing.store.filters import filter_sql
from spanqa.indexing.store.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    new_manifest,
    read_manifest,
    upgrade_format_3,
    write_manifest,
)
from spanqa.indexing.store.keyword import ensure_cjk_index, keyword_ranking
from spanqa.indexing.store.segment_search import search_segments
from spanqa.indexing.store.index_settings import StoreSettings
from spanqa.indexing.store.vector_segments import (
    INDEX_TYPES,
    is_segment_file,
    normalized_rows,
)

__all__ = ["FORMAT_VERSION", "FaissDocumentStore", "StoreSettings", "StoredFile", "validate_index_type", "validate_top_k"]

logger = logging.getLogger(__name__)
ROOTS_KEY = "roots"  # state key: the JSON list of indexed roots (`roots`)


class FaissDocumentStore:
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
        settings: StoreSettings | None = None,
    ):
        self.index_dir = Path(index_dir).expanduser().resolve()
        self.settings = StoreSettings() if settings is None else settings
        if not FaissDocumentStore.exists(self.index_dir):
            if embedder is None or dimension is None:
                raise IndexNotFoundError(self.index_dir)
            index_type = defaults.INDEX_TYPE if index_type is None else index_type
            self._initialise(embedder, dimension, index_type, embedding)
        self._open()
        self._check_settings(embedder, dimension, index_type)

    @classmethod
    def open(cls, index_dir: str | Path, settings: StoreSettings | None = None) -> FaissDocumentStore:
        """The index in `index_dir`; IndexNotFoundError when there is none."""
        index_dir = Path(index_dir).expanduser().resolve()
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
        settings: StoreSettings | None = None,
    ) -> FaissDocumentStore:
        """A new, empty index in `index_dir` (created). With `overwrite=True` an index there is deleted first.
        `embedding` records how its vectors are made (precision, word pieces read; see spanqa.indexing.retrieval.embedding)."""
        index_dir = Path(index_dir).expanduser().resolve()
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
        return (Path(index_dir) / MANIFEST_FILE).is_file()

    # -- creating and opening ----------------------------------------------------------------

    def _initialise(self, embedder: str, dimension: int, index_type: str, embedding: dict[str, Any] | None) -> None:
        validate_dimension(dimension)
        validate_index_type(index_type)
        if not isinstance(embedder, str) or embedder == "":
            raise ConfigError(f"embedder must name a model (hub id or local path), got {embedder!r}")
        private_folder(self.index_dir)  # a new folder 0700: the index holds every document's text
        # Leftovers of an index that was being created or replaced when it was interrupted.
        for path in self.index_dir.iterdir():
            if path.name.startswith(DATABASE_FILE) or is_segment_file(path.name) or is_leftover(path.name):
                path.unlink()
        try:
            connection = connect(self.index_dir / DATABASE_FILE, self.settings.busy_timeout_s)
            try:
                create_schema(connection)
                connection.execute("BEGIN IMMEDIATE")
                ensure_cjk_index(connection)
                ChunkDatabase(connection).set_state({"generation": "0", "next_id": "0", "chunking": "null"})
                connection.execute("COMMIT")
            finally:
                connection.close()
            # The manifest comes last: a directory is an index only once its database is complete.
            write_manifest(self.index_dir, new_manifest(embedder, dimension, index_type, embedding))
        except (OSError, sqlite3.Error) as exc:
            # Nothing is an index until the manifest is written; the next try starts afresh.
            raise StorageError("cannot create the index", exc) from exc

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
    def _reading(self) -> Iterator[None]:
        with self._lock, self._commits.reading():
            yield

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

    # -- DocumentStore protocol ------------------------------------------------------------------

    def count_documents(self) -> int:
        """The number of chunks in the index."""
        with self._reading():
            return self._database.count()

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The chunks matching `filters` (Haystack syntax; None: every chunk), without their vectors."""
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            return self._database.documents(where)

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

    # -- files ------------------------------------------------------------------------------------

    def files(self) -> list[StoredFile]:
        """Every indexed file, sorted by path."""
        with self._reading():
            return self._database.files()

    def source_files(self) -> dict[str, dict[str, Any]]:
        """Each indexed source with its chunk count, page count and SHA-256 (None when not recorded)."""
        return files_by_source(self.files())

    def file_chunks(self, source: str) -> FileChunks | None:
        """What the chunks of the indexed file `source` record alike (None when it has none)."""
        with self._reading():
            return self._database.file_chunks(source)

    def sources(self) -> dict[str, int]:
        """Each distinct `meta["source"]`, sorted, with its number of stored chunks."""
        with self._reading():
            return self._database.sources()

    def roots(self) -> list[str]:
        """The paths indexing runs were given (absolute folders or single files, sorted): what a
        service shows indexed paths relative to. Empty for an index made before they were recorded."""
        with self._reading():
            return json.loads(self._database.state().get(ROOTS_KEY, "[]"))

    def add_roots(self, paths: Iterable[str | Path]) -> None:
        """Records `paths` (made absolute) as indexed roots: in the open `writer()` block, else in a
        small commit of its own; nothing is written when every one is recorded already."""
        wanted = {str(Path(path).expanduser().resolve()) for path in paths}
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

    # -- search ----------------------------------------------------------------------------------

    def search(self, query_embedding: list[float] | np.ndarray, top_k: int, filters: dict[str, Any] | None = None) -> list[Document]:
        """The `top_k` documents most similar to `query_embedding`, best first, `score` = cosine similarity.

        With `filters` (Haystack syntax) only matching documents are ranked, and the result holds
        `top_k` of them whenever that many match: the filter selects ids inside each segment's search.
        """
        validate_top_k(top_k)
        query = normalized_rows(np.asarray(query_embedding, dtype=np.float32).reshape(1, -1), self._dimension)
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            allowed = None if where is None else self._database.matching_ids(where)
            ids, scores = search_segments(self._commits.live_segments(), query, top_k, allowed, self.settings)
            return self._scored_documents(ids, scores)

    def similarities(self, query_embedding: list[float] | np.ndarray, document_ids: list[str]) -> dict[str, float]:
        """The cosine similarity of `query_embedding` to each stored document of `document_ids` (ids
        not in the store are left out): what `search` scores them, for chunks it did not return."""
        query = normalized_rows(np.asarray(query_embedding, dtype=np.float32).reshape(1, -1), self._dimension)
        if not document_ids:
            return {}
        with self._reading():
            found = sorted(self._database.ids_of(list(document_ids)))
            ids = np.asarray([row[0] for row in found], dtype=np.int64)
            scores: dict[int, float] = {}
            for live in self._commits.live_segments():
                held = ids[live.segment.holds(ids)]
                scores.update(zip(held.tolist(), (live.segment.reconstruct(held) @ query[0]).tolist()))
        return {doc_id: float(scores[chunk_id]) for chunk_id, doc_id, _ in found if chunk_id in scores}

    def keyword_search(self, query: str, top_k: int, filters: dict[str, Any] | None = None) -> list[Document]:
        """The `top_k` chunks best matching `query`'s words by BM25 (`spanqa.indexing.store.keyword`), best
        first, `score` = minus SQLite's bm25() (higher is better; 0..1 for a query mixing CJK and other
        words). `filters` as in `search`, applied inside the ranking; a query with no searchable word
        finds nothing."""
        validate_top_k(top_k)
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            ranked = keyword_ranking(self._connection, query, top_k, where)
            return self._scored_documents([row[0] for row in ranked], [row[1] for row in ranked])

    def _scored_documents(self, ids: list[int], scores: list[float]) -> list[Document]:
        """The chunks of `ids`, in that order, each with its score."""
        by_id = self._database.documents_by_ids(ids)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise IndexMismatchError(f"index at '{self.index_dir}' is inconsistent: vectors {missing[:5]} have no chunk: rebuild it")
        return [Document(id=by_id[i].id, content=by_id[i].content, meta=by_id[i].meta, score=float(s)) for i, s in zip(ids, scores)]

    # -- checks ----------------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Problems found comparing the database with the vectors (none for a sound index)."""
        problems = []
        with self._reading():
            live = self._database.live_ids()
            segments = self._commits.live_segments()
            held = np.concatenate([s.live_ids() for s in segments]) if segments else np.zeros(0, dtype=np.int64)
            if len(np.unique(held)) != len(held):
                problems.append("a vector is live in two segments")
            missing, orphans = np.setdiff1d(live, held), np.setdiff1d(held, live)
            if len(missing) or len(orphans):
                problems.append(f"{len(missing)} chunks without a vector, {len(orphans)} vectors without a chunk")
            if len(live) > 0 and live.max() >= self._commits.snapshot.next_id:
                problems.append(f"next id {self._commits.snapshot.next_id} is not above the largest id {live.max()}")
            problems += self._database.file_problems()
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


def validate_top_k(top_k: int) -> None:
    check_positive_int("top_k", top_k)


def validate_dimension(dimension: int) -> None:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be a positive integer, got {dimension!r}")


def validate_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got {index_type!r}")
