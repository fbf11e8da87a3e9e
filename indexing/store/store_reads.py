"""The read side of `FaissDocumentStore`: everything asked of the committed snapshot a store reads,
under its read lock: chunk counts and filters, the indexed files, vector search (`segment_search`)
and BM25 keyword search (`keyword`), similarities to a query, and the consistency check.

`StoreReads` is a base class of `FaissDocumentStore` (`faiss_store`), which opens the index and
sets the attributes declared here; the write side (transactions, writes and deletes) lives there.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document

from spanqa.errors import IndexMismatchError, check_positive_int
from spanqa.indexing.store.chunk_database import ChunkDatabase, FileChunks, StoredFile, files_by_source
from spanqa.indexing.store.commits import CommitLog
from spanqa.indexing.store.filters import filter_sql
from spanqa.indexing.store.keyword import keyword_ranking
from spanqa.indexing.store.segment_search import search_segments
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.indexing.store.vector_segments import normalized_rows

ROOTS_KEY = "roots"  # state key: the JSON list of indexed roots (`roots`)


def validate_top_k(top_k: int) -> None:
    check_positive_int("top_k", top_k)


class StoreReads:
    """Reading an open index: counts, filters, files, searches and checks, each on the committed
    snapshot (a commit made meanwhile by another store shows from the next call on)."""

    index_dir: Path
    settings: IndexTuning
    _lock: threading.RLock
    _connection: sqlite3.Connection
    _database: ChunkDatabase
    _commits: CommitLog
    _dimension: int

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock, self._commits.reading():
            yield

    def count_documents(self) -> int:
        """The number of chunks in the index."""
        with self._reading():
            return self._database.count()

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The chunks matching `filters` (Haystack syntax; None: every chunk), without their vectors."""
        where = None if filters is None else filter_sql(filters)
        with self._reading():
            return self._database.documents(where)

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
