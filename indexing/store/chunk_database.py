"""The chunk database: an index's chunks, files, metadata and commit state in one SQLite file (WAL).

Tables: `chunks` (int id = the vector's FAISS id, document id, source, page, text, meta JSON),
`chunk_meta` (one row per metadata value of a chunk, indexed by key and value, so a filter on any
key reads an index instead of every chunk's JSON; `filters`), `files` (path, SHA-256, pages,
chunks, when indexed), `segments` (the vector segment files of the committed state), `deleted`
(ids of vectors still in a segment whose chunk is gone) and `state` (generation, next free id,
chunk settings). The FTS5 keyword tables follow `chunks` by triggers (`keyword`).

Plain SQL on a connection the caller manages (transactions are the commit protocol's, `commits`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document

from spanqa.file_modes import create_private_file
from spanqa.indexing.store.keyword import CJK_FUNCTION, FTS_SCHEMA, cjk_bigrams

DATABASE_FILE = "chunks.sqlite"
SQL_BATCH = 500  # ids per `IN (...)` query, well under SQLite's parameter limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, source TEXT, page INTEGER, content TEXT, meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_page ON chunks(page);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, sha256 TEXT, pages INTEGER NOT NULL, chunks INTEGER NOT NULL, indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Format 4: vectors in segments, metadata values indexed.
SEGMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    name TEXT PRIMARY KEY, structure TEXT NOT NULL, generation INTEGER NOT NULL, quantizer TEXT
);
CREATE TABLE IF NOT EXISTS deleted (id INTEGER PRIMARY KEY, segment TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deleted_segment ON deleted(segment);
CREATE TABLE IF NOT EXISTS chunk_meta (
    id INTEGER NOT NULL, key TEXT NOT NULL, value, number REAL, listed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_meta_value ON chunk_meta(key, value);
CREATE INDEX IF NOT EXISTS chunk_meta_number ON chunk_meta(key, number);
CREATE INDEX IF NOT EXISTS chunk_meta_id ON chunk_meta(id);
"""

# Keys whose values are positions inside a file, not properties to select by: not indexed (a filter
# on them still works, by reading the JSON). `source` and `page` have columns of their own.
UNINDEXED_META = frozenset({"source", "page", "start", "end", "pieces", "sha256", "page_count"})


@dataclass(frozen=True)
class StoredFile:
    """One indexed file, as `spanqa list` shows it."""

    source: str
    sha256: str | None
    pages: int
    chunks: int
    indexed_at: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, Any]:
        """The file as `spanqa list --json` prints it."""
        return {
            "source": self.source, "sha256": self.sha256, "pages": self.pages,
            "chunks": self.chunks, "indexed_at": self.indexed_at,
        }


@dataclass(frozen=True)
class FileChunks:
    """What the chunks of one indexed file record alike: the metadata of one of them (an indexing
    run writes a file's chunks together, with the same metadata of the run) and the OCR engines of
    those whose page was OCR'd."""

    meta: dict[str, Any]
    ocr_engines: frozenset[str]


def files_by_source(files: list[StoredFile]) -> dict[str, dict[str, Any]]:
    """Each indexed source with its chunk count, page count and SHA-256 (None when not recorded)."""
    return {f.source: {"chunks": f.chunks, "sha256": f.sha256, "pages": f.pages} for f in files}


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    # Owner-only (issue 24): made 0600 before SQLite opens it, which gives its -wal and -shm that mode.
    create_private_file(path)
    # isolation_level=None: transactions are begun and committed explicitly, never implicitly.
    connection = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_s, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when COMMIT returns, so a saved batch survives a power cut too.
    connection.execute("PRAGMA synchronous=FULL")
    # The CJK keyword triggers call it (`spanqa.indexing.store.keyword`): writing chunks needs it.
    connection.create_function(CJK_FUNCTION, 1, cjk_bigrams, deterministic=True)
    return connection


def create_schema(connection: sqlite3.Connection) -> None:
    connection.executescript(SCHEMA + FTS_SCHEMA + SEGMENT_SCHEMA)


def julian_day(value: Any) -> float | None:
    """The number a metadata value is ordered by: itself for numbers, the instant (Julian day, as
    SQLite's julianday()) for ISO dates, None for anything else."""
    if isinstance(value, (int, float)):  # bool included: JSON's true is 1 to SQLite
        return float(value)
    if isinstance(value, str) and len(value) >= 10 and value[:4].isdigit() and value[4] == "-":
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return None
        if instant.tzinfo is not None:
            instant = instant.astimezone(timezone.utc).replace(tzinfo=None)
        # Days since noon, November 24, 4714 BC (proleptic Gregorian), as SQLite counts them.
        return instant.toordinal() + 1721424.5 + (instant - datetime(instant.year, instant.month, instant.day)).total_seconds() / 86400
    return None


def meta_rows(chunk_id: int, meta: dict[str, Any]) -> list[tuple[int, str, Any, float | None, int]]:
    """The `chunk_meta` rows of a chunk: one per scalar value, one per item of a list of scalars."""
    rows = []
    for key, value in meta.items():
        if key in UNINDEXED_META or value is None:
            continue
        if isinstance(value, list):
            rows.extend(
                (chunk_id, key, item, julian_day(item), 1)
                for item in value
                if isinstance(item, (str, int, float))  # bool is an int
            )
        elif isinstance(value, (str, int, float)):
            rows.append((chunk_id, key, value, julian_day(value), 0))
    return rows


class ChunkDatabase:
    """The tables above, on `connection` (the caller begins and commits transactions)."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    # -- state -------------------------------------------------------------------------------------

    def state(self) -> dict[str, str]:
        return dict(self.connection.execute("SELECT key, value FROM state").fetchall())

    def set_state(self, values: dict[str, str]) -> None:
        self.connection.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", values.items())

    def segments(self) -> list[tuple[str, str, str | None]]:
        """(file name, structure, quantizer file name) of each committed segment, oldest first."""
        return self.connection.execute("SELECT name, structure, quantizer FROM segments ORDER BY generation, name").fetchall()

    def add_segment(self, name: str, structure: str, generation: int, quantizer: str | None) -> None:
        self.connection.execute(
            "INSERT INTO segments(name, structure, generation, quantizer) VALUES (?, ?, ?, ?)",
            (name, structure, generation, quantizer),
        )

    def remove_segments(self, names: Iterable[str]) -> None:
        """Forgets segments, and the deleted ids they held (a merge wrote their live vectors elsewhere)."""
        for name in names:
            self.connection.execute("DELETE FROM segments WHERE name = ?", (name,))
            self.connection.execute("DELETE FROM deleted WHERE segment = ?", (name,))

    def deleted(self) -> dict[str, np.ndarray]:
        """The deleted ids of each segment, sorted."""
        grouped: dict[str, list[int]] = {}
        for identifier, segment in self.connection.execute("SELECT id, segment FROM deleted ORDER BY id"):
            grouped.setdefault(segment, []).append(identifier)
        return {segment: np.asarray(ids, dtype=np.int64) for segment, ids in grouped.items()}

    def mark_deleted(self, ids_by_segment: dict[str, np.ndarray]) -> None:
        self.connection.executemany(
            "INSERT OR IGNORE INTO deleted(id, segment) VALUES (?, ?)",
            [(int(i), segment) for segment, ids in ids_by_segment.items() for i in ids],
        )

    # -- chunks ------------------------------------------------------------------------------------

    def insert_chunks(self, ids: list[int], documents: list[Document]) -> None:
        records, meta = [], []
        for chunk_id, document in zip(ids, documents, strict=True):
            source = document.meta.get("source")
            page = document.meta.get("page")
            records.append((
                chunk_id, document.id, source if isinstance(source, str) else None,
                page if isinstance(page, int) and not isinstance(page, bool) else None,
                document.content, json.dumps(document.meta, ensure_ascii=False),
            ))
            meta.extend(meta_rows(chunk_id, document.meta))
        self.connection.executemany("INSERT INTO chunks(id, doc_id, source, page, content, meta) VALUES (?, ?, ?, ?, ?, ?)", records)
        self.connection.executemany("INSERT INTO chunk_meta(id, key, value, number, listed) VALUES (?, ?, ?, ?, ?)", meta)

    def delete_chunks(self, ids: np.ndarray) -> None:
        rows = [(int(i),) for i in ids]
        self.connection.executemany("DELETE FROM chunks WHERE id = ?", rows)
        self.connection.executemany("DELETE FROM chunk_meta WHERE id = ?", rows)

    def ids_of(self, document_ids: list[str]) -> list[tuple[int, str, str | None]]:
        """(int id, document id, source) of the stored chunks among `document_ids`."""
        found: list[tuple[int, str, str | None]] = []
        unique = list(dict.fromkeys(document_ids))
        for start in range(0, len(unique), SQL_BATCH):
            batch = unique[start : start + SQL_BATCH]
            holes = ", ".join("?" * len(batch))
            found += self.connection.execute(f"SELECT id, doc_id, source FROM chunks WHERE doc_id IN ({holes})", batch).fetchall()
        return found

    def file_chunks(self, source: str) -> FileChunks | None:
        """What the chunks of `source` record alike (None when it has none), in two queries that
        build no documents."""
        first = self.connection.execute("SELECT meta FROM chunks WHERE source = ? LIMIT 1", (source,)).fetchone()
        if first is None:
            return None
        engines = self.connection.execute(
            "SELECT DISTINCT json_extract(meta, '$.ocr') FROM chunks WHERE source = ? AND json_extract(meta, '$.ocr') IS NOT NULL",
            (source,),
        )
        return FileChunks(meta=json.loads(first[0]), ocr_engines=frozenset(str(row[0]) for row in engines))

    def document_ids_of_source(self, source: str) -> list[str]:
        return [row[0] for row in self.connection.execute("SELECT doc_id FROM chunks WHERE source = ?", (source,))]

    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def live_ids(self) -> np.ndarray:
        return np.fromiter((row[0] for row in self.connection.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def matching_ids(self, where: tuple[str, list[Any]]) -> np.ndarray:
        """The sorted ids of the chunks a filter's WHERE clause (`filters.filter_sql`) selects."""
        rows = self.connection.execute(f"SELECT id FROM chunks WHERE {where[0]} ORDER BY id", where[1])
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def documents(self, where: tuple[str, list[Any]] | None) -> list[Document]:
        clause, params = ("1", []) if where is None else where
        rows = self.connection.execute(f"SELECT doc_id, content, meta FROM chunks WHERE {clause} ORDER BY id", params)
        return [row_document(row) for row in rows]

    def documents_by_ids(self, ids: list[int]) -> dict[int, Document]:
        found: dict[int, Document] = {}
        for start in range(0, len(ids), SQL_BATCH):
            batch = ids[start : start + SQL_BATCH]
            holes = ", ".join("?" * len(batch))
            for row in self.connection.execute(f"SELECT id, doc_id, content, meta FROM chunks WHERE id IN ({holes})", batch):
                found[row[0]] = row_document(row[1:])
        return found

    # -- files -------------------------------------------------------------------------------------

    def update_files(self, written: list[Document]) -> None:
        """The `files` rows of the sources just written: their hash, pages, chunk count, time."""
        latest: dict[str, Document] = {}
        for document in written:
            source = document.meta.get("source")
            if isinstance(source, str):
                latest[source] = document
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for source, document in latest.items():
            count = self.connection.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            sha256 = document.meta.get("sha256")
            pages = document.meta.get("page_count")
            if not isinstance(pages, int) or isinstance(pages, bool):
                pages = self.connection.execute("SELECT COUNT(DISTINCT page) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            self.connection.execute(
                "INSERT OR REPLACE INTO files(path, sha256, pages, chunks, indexed_at) VALUES (?, ?, ?, ?, ?)",
                (source, sha256 if isinstance(sha256, str) else None, pages, count, now),
            )

    def recount_files(self, sources: set[str]) -> None:
        for source in sources:
            count = self.connection.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            if count == 0:
                self.connection.execute("DELETE FROM files WHERE path = ?", (source,))
            else:
                self.connection.execute("UPDATE files SET chunks = ? WHERE path = ?", (count, source))

    def remove_file(self, source: str) -> None:
        self.connection.execute("DELETE FROM files WHERE path = ?", (source,))

    def files(self) -> list[StoredFile]:
        rows = self.connection.execute("SELECT path, sha256, pages, chunks, indexed_at FROM files ORDER BY path").fetchall()
        return [StoredFile(*row) for row in rows]

    def sources(self) -> dict[str, int]:
        rows = self.connection.execute(
            "SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source ORDER BY source"
        ).fetchall()
        return dict(rows)

    def file_problems(self) -> list[str]:
        counts = dict(self.connection.execute("SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source"))
        files = dict(self.connection.execute("SELECT path, chunks FROM files"))
        return [] if counts == files else ["the file list does not match the chunks"]


def row_document(row: tuple[str, str | None, str]) -> Document:
    doc_id, content, meta = row
    return Document(id=doc_id, content=content, meta=json.loads(meta))
