"""Checking an index directory, and bringing a damaged one back to a consistent state (`spanqa check`).

`check_index` reads the directory as it is, without the store (whose opening a damaged index may
fail): the manifest, SQLite's own integrity check and the keyword tables', every segment the commit
names (there, readable, of the manifest's dimension), chunks against vectors (each chunk has exactly
one live vector, each live vector a chunk), the next free id, and the file list against the chunks.

`repair_index` brings an index back to the last state that is consistent, in one commit under the
write lock: a segment that is gone or unreadable is forgotten; a file that lost any chunk's vector is
dropped whole (its chunks, vectors and file entry: index it again to have it back, as a re-run of
`spanqa index` does); vectors without a chunk are marked deleted; the file list is counted again
from the chunks; the keyword tables are rebuilt if their check failed. It says what it dropped. What
it cannot mend (an unreadable manifest, a database SQLite itself reports damaged beyond its indexes)
is reported with the way out: restore a backup, or index the files again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.atomic_files import is_leftover
from spanqa.errors import IndexMismatchError, IndexNotFoundError, SpanQAError
from spanqa.indexing.store.chunk_database import DATABASE_FILE, ChunkDatabase, connect
from spanqa.indexing.store.commits import end_transaction
from spanqa.indexing.store.keyword import CJK_TABLE, FTS_TABLE, has_cjk_table
from spanqa.indexing.store.manifest import MANIFEST_FILE, read_manifest
from spanqa.indexing.store.shards import SHARDS_FILE, ShardedStore
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.indexing.store.vector_segments import Quantizer, is_segment_file, read_quantizer, read_segment
from spanqa.paths import user_path


@dataclass(frozen=True)
class Finding:
    """One problem: what is wrong, and whether `repair_index` can mend it."""

    problem: str
    repairable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"problem": self.problem, "repairable": self.repairable}


@dataclass
class IndexHealth:
    """What `check_index` found in one index directory (and, after `repair_index`, what it did)."""

    index_dir: Path
    findings: list[Finding] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # files no commit names (harmless; removed by writers)
    chunks: int = 0
    files: int = 0
    segments: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "index": str(self.index_dir), "sound": self.sound, "chunks": self.chunks, "files": self.files,
            "segments": self.segments, "problems": [f.to_json() for f in self.findings],
            "leftovers": self.leftovers, "repaired": self.repaired,
        }


@dataclass
class _Vectors:
    """The live vector ids of the committed segments, and the segments that could not be read."""

    live: dict[str, np.ndarray] = field(default_factory=dict)  # segment name -> its live ids
    bad: dict[str, str] = field(default_factory=dict)  # segment name -> why it cannot be read


def check_index(index_dir: str | Path, thorough: bool = True, settings: IndexTuning | None = None) -> IndexHealth:
    """The health of the index in `index_dir` (one index; a sharded one is checked shard by shard by
    the caller). `thorough` runs SQLite's full integrity check (reads every page: slow on a large
    index); otherwise its quick check."""
    index_dir = user_path(index_dir)
    settings = IndexTuning() if settings is None else settings
    health = IndexHealth(index_dir)
    if not (index_dir / MANIFEST_FILE).is_file():
        raise IndexNotFoundError(index_dir)
    try:
        manifest = read_manifest(index_dir)
    except IndexMismatchError as exc:
        health.findings.append(Finding(f"the manifest cannot be used: {exc}", repairable=False))
        return health
    if not (index_dir / DATABASE_FILE).is_file():
        health.findings.append(Finding(f"{DATABASE_FILE} is missing: restore a backup or index the files again", False))
        return health
    connection = connect(index_dir / DATABASE_FILE, settings.busy_timeout_s)
    try:
        connection.execute("BEGIN")  # one snapshot for the whole check
        try:
            _check_database(connection, index_dir, manifest["dimension"], thorough, settings, health)
        finally:
            end_transaction(connection, "COMMIT")
    except sqlite3.DatabaseError as exc:
        health.findings.append(Finding(f"SQLite cannot read {DATABASE_FILE}: {exc}: restore a backup or index the files again", False))
    finally:
        connection.close()
    return health


def _check_database(
    connection: sqlite3.Connection, index_dir: Path, dimension: int, thorough: bool, settings: IndexTuning,
    health: IndexHealth,
) -> None:
    rows = [row[0] for row in connection.execute("PRAGMA integrity_check" if thorough else "PRAGMA quick_check")]
    if rows != ["ok"]:
        shown = "; ".join(rows[:3]) + (f" (and {len(rows) - 3} more)" if len(rows) > 3 else "")
        health.findings.append(Finding(f"SQLite finds {DATABASE_FILE} damaged: {shown}"))
    for table in keyword_tables(connection):
        try:
            check_keyword_table(connection, table)
        except sqlite3.DatabaseError as exc:
            health.findings.append(Finding(f"the keyword table {table} does not match the chunks ({exc})"))
    database = ChunkDatabase(connection)
    state = database.state()
    missing_state = [key for key in ("generation", "next_id", "chunking") if key not in state]
    if missing_state:
        health.findings.append(Finding(f"the commit state lacks {', '.join(missing_state)}: index the files again", False))
        return
    vectors = _read_vectors(index_dir, database, dimension, state.get("quantizer", ""), settings)
    health.segments = len(vectors.live) + len(vectors.bad)
    for name, why in vectors.bad.items():
        health.findings.append(Finding(f"segment {name} {why}: its vectors are lost"))
    chunk_ids = database.live_ids()
    health.chunks = len(chunk_ids)
    held = np.concatenate(list(vectors.live.values())) if vectors.live else np.zeros(0, dtype=np.int64)
    if len(np.unique(held)) != len(held):
        health.findings.append(Finding(f"{len(held) - len(np.unique(held))} vectors are live in two segments"))
    without_vector = np.setdiff1d(chunk_ids, held)
    if len(without_vector):
        sources = sources_of(connection, without_vector)
        health.findings.append(Finding(f"{len(without_vector)} chunks of {len(sources)} file(s) have no vector"))
    orphans = np.setdiff1d(held, chunk_ids)
    if len(orphans):
        health.findings.append(Finding(f"{len(orphans)} vectors have no chunk"))
    largest = max(int(chunk_ids.max()) if len(chunk_ids) else -1, int(held.max()) if len(held) else -1)
    if int(state["next_id"]) <= largest:
        health.findings.append(Finding(f"the next free id {state['next_id']} is not above the largest id in use {largest}"))
    counts = dict(connection.execute("SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source"))
    listed = dict(connection.execute("SELECT path, chunks FROM files"))
    health.files = len(listed)
    wrong = sorted(set(counts) ^ set(listed)) + sorted(s for s in set(counts) & set(listed) if counts[s] != listed[s])
    if wrong:
        health.findings.append(Finding(f"the file list does not match the chunks for {len(wrong)} file(s)"))
    named = {name for name, _, _ in database.segments()} | {state.get("quantizer", "")}
    health.leftovers = sorted(
        path.name for path in index_dir.iterdir()
        if (is_segment_file(path.name) and path.name not in named) or is_leftover(path.name)
    )


def keyword_tables(connection: sqlite3.Connection) -> list[str]:
    """The FTS5 tables of the database (the CJK one only where an index has it)."""
    return [FTS_TABLE] + ([CJK_TABLE] if has_cjk_table(connection) else [])


def check_keyword_table(connection: sqlite3.Connection, table: str) -> None:
    """FTS5's own check of `table` (raises sqlite3.DatabaseError when it is damaged); the keyword
    table, which reads its text from `chunks`, is also compared with the chunks (rank 1)."""
    rank = 1 if table == FTS_TABLE else 0
    connection.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', ?)", (rank,))


def _read_vectors(index_dir: Path, database: ChunkDatabase, dimension: int, quantizer_name: str, settings: IndexTuning) -> _Vectors:
    vectors = _Vectors()
    quantizer: Quantizer | None = None
    quantizer_problem = None
    if quantizer_name != "":
        try:
            quantizer = read_quantizer(index_dir / quantizer_name)
        except (OSError, SpanQAError) as exc:
            quantizer_problem = f"cannot be read without the quantizer {quantizer_name} ({_reason(exc)})"
    deleted = database.deleted()
    for name, structure, built_on in database.segments():
        if built_on is not None and (quantizer is None or built_on != quantizer.name):
            vectors.bad[name] = quantizer_problem if quantizer_problem is not None else f"was built on {built_on}, which the index no longer names"
            continue
        try:
            segment = read_segment(index_dir / name, structure, settings, quantizer if built_on else None)
        except FileNotFoundError:
            vectors.bad[name] = "is missing"
            continue
        except (OSError, SpanQAError, RuntimeError) as exc:
            vectors.bad[name] = f"cannot be read ({_reason(exc)})"
            continue
        if segment.index.d != dimension:
            vectors.bad[name] = f"holds {segment.index.d}-dimensional vectors, not {dimension}"
            continue
        vectors.live[name] = np.setdiff1d(segment.ids, deleted.get(name, np.zeros(0, dtype=np.int64)), assume_unique=True)
    return vectors


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(": rebuild")[0]


def sources_of(connection: sqlite3.Connection, ids: np.ndarray) -> list[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        batch = [int(i) for i in ids[start : start + 500]]
        holes = ", ".join("?" * len(batch))
        found.update(row[0] for row in connection.execute(f"SELECT DISTINCT source FROM chunks WHERE id IN ({holes})", batch))
    return sorted(source for source in found if source is not None)


def repair_index(index_dir: str | Path, settings: IndexTuning | None = None) -> IndexHealth:
    """Brings the index back to its last consistent state (see the module docstring); the health
    found afterwards, with `repaired` saying what was dropped or changed."""
    index_dir = user_path(index_dir)
    settings = IndexTuning() if settings is None else settings
    before = check_index(index_dir, thorough=True, settings=settings)
    if any(not finding.repairable for finding in before.findings):
        return before
    repaired: list[str] = []
    if before.findings:
        connection = connect(index_dir / DATABASE_FILE, settings.busy_timeout_s)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                repaired = _repair(connection, index_dir, read_manifest(index_dir)["dimension"], settings)
                connection.execute("COMMIT")
            except BaseException:
                end_transaction(connection)
                raise
        finally:
            connection.close()
    for name in before.leftovers:
        (index_dir / name).unlink(missing_ok=True)
        repaired.append(f"removed {name}, a file no commit names")
    after = check_index(index_dir, thorough=True, settings=settings)
    after.repaired = repaired
    return after


def _repair(connection: sqlite3.Connection, index_dir: Path, dimension: int, settings: IndexTuning) -> list[str]:
    done: list[str] = []
    rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    if rows != ["ok"]:
        connection.execute("REINDEX")
        done.append("rebuilt SQLite's indexes of the chunk database")
    database = ChunkDatabase(connection)
    state = database.state()
    vectors = _read_vectors(index_dir, database, dimension, state.get("quantizer", ""), settings)
    if vectors.bad:
        database.remove_segments(vectors.bad)
        done += [f"forgot segment {name}, which {why}" for name, why in vectors.bad.items()]
    # A vector live in two segments keeps its newest copy (segments are listed oldest first).
    seen: dict[int, str] = {}
    doubled: dict[str, list[int]] = {}
    for name, ids in vectors.live.items():
        for identifier in ids.tolist():
            if identifier in seen:
                doubled.setdefault(seen[identifier], []).append(identifier)
            seen[identifier] = name
    if doubled:
        database.mark_deleted({name: np.asarray(ids, dtype=np.int64) for name, ids in doubled.items()})
        done.append(f"kept one copy of {sum(map(len, doubled.values()))} vectors that were live in two segments")
    held = np.asarray(sorted(seen), dtype=np.int64)
    chunk_ids = database.live_ids()
    lost = np.setdiff1d(chunk_ids, held)
    for source in sources_of(connection, lost):
        ids = np.asarray([row[0] for row in connection.execute("SELECT id FROM chunks WHERE source = ?", (source,))], dtype=np.int64)
        database.delete_chunks(ids)
        database.remove_file(source)
        done.append(f"dropped {source} ({len(ids)} chunks; some had lost their vectors): index it again")
    remaining_without = np.setdiff1d(database.live_ids(), held)
    if len(remaining_without):  # chunks without a source: dropped one by one
        database.delete_chunks(remaining_without)
        done.append(f"dropped {len(remaining_without)} chunks without a file that had lost their vectors")
    chunk_ids = database.live_ids()
    orphans = np.setdiff1d(held, chunk_ids)
    if len(orphans):
        database.mark_deleted({name: np.intersect1d(ids, orphans) for name, ids in vectors.live.items()})
        done.append(f"marked {len(orphans)} vectors without a chunk as deleted")
    done += _repair_files(connection)
    largest = max(int(chunk_ids.max()) if len(chunk_ids) else -1, int(held.max()) if len(held) else -1)
    if int(state["next_id"]) <= largest:
        done.append(f"moved the next free id from {state['next_id']} to {largest + 1}")
        database.set_state({"next_id": str(largest + 1)})
    for table in keyword_tables(connection):
        try:
            check_keyword_table(connection, table)
        except sqlite3.DatabaseError:
            connection.execute(f"INSERT INTO {table}({table}) VALUES ('rebuild')")
            done.append(f"rebuilt the keyword table {table} from the chunks")
    # A new generation: every reader loads the repaired state.
    database.set_state({"generation": str(int(state["generation"]) + 1)})
    return done


def _repair_files(connection: sqlite3.Connection) -> list[str]:
    """The file list counted again from the chunks (a file's entry made again from its chunks' metadata)."""
    counts = dict(connection.execute("SELECT source, COUNT(*) FROM chunks WHERE source IS NOT NULL GROUP BY source"))
    listed = dict(connection.execute("SELECT path, chunks FROM files"))
    done = []
    for source in sorted(set(listed) - set(counts)):
        connection.execute("DELETE FROM files WHERE path = ?", (source,))
        done.append(f"removed the file entry of {source}, which has no chunks")
    for source in sorted(set(counts) - set(listed)):
        meta = json.loads(connection.execute("SELECT meta FROM chunks WHERE source = ? LIMIT 1", (source,)).fetchone()[0])
        pages = meta.get("page_count")
        if not isinstance(pages, int) or isinstance(pages, bool):
            pages = connection.execute("SELECT COUNT(DISTINCT page) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
        sha256 = meta.get("sha256") if isinstance(meta.get("sha256"), str) else None
        connection.execute(
            "INSERT INTO files(path, sha256, pages, chunks, indexed_at) VALUES (?, ?, ?, ?, datetime('now'))",
            (source, sha256, pages, counts[source]),
        )
        done.append(f"made the file entry of {source} again from its chunks")
    for source in sorted(s for s in set(counts) & set(listed) if counts[s] != listed[s]):
        connection.execute("UPDATE files SET chunks = ? WHERE path = ?", (counts[source], source))
        done.append(f"counted the chunks of {source} again ({listed[source]} -> {counts[source]})")
    return done


def index_dirs(index_dir: Path) -> list[Path]:
    """The folders holding one index each: the shards of a sharded index, else the folder itself."""
    if not ShardedStore.exists(index_dir):
        return [index_dir]
    try:
        names = json.loads((index_dir / SHARDS_FILE).read_text(encoding="utf-8"))["shards"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexMismatchError(f"cannot read '{index_dir / SHARDS_FILE}' ({exc}): it must list the shard folders") from exc
    return [index_dir / name for name in names]


def index_health(index_dir: str | Path, repair: bool = False, thorough: bool = True) -> list[IndexHealth]:
    """The health of each index (shard) in `index_dir`, after repairing it when `repair`."""
    index_dir = user_path(index_dir)
    if not (index_dir / SHARDS_FILE).is_file() and not (index_dir / MANIFEST_FILE).is_file():
        raise IndexNotFoundError(index_dir)
    return [repair_index(d) if repair else check_index(d, thorough=thorough) for d in index_dirs(index_dir)]


def index_problem(index_dir: str | Path) -> str | None:
    """Why the index in `index_dir` fails a quick check, in a sentence with the way out (None when
    it passes): what a server's /readyz reports."""
    try:
        healths = index_health(index_dir, thorough=False)
    except SpanQAError as exc:
        return str(exc)
    problems = [finding.problem for health in healths for finding in health.findings]
    if not problems:
        return None
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return f"the index fails its check ({problems[0]}{more}): run `spanqa check --index DIR --repair`"
