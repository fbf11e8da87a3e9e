"""An index directory's manifest (`manifest.json`): what the index is, checked when it is opened.

It records the format version, the embedder and dimension, the metric, the index type, how vectors
are made and how chunks were cut. It is written last when an index is created (a directory is an
index once it has one) and rewritten, whole, when the chunk settings change: a mirror for people
and tools; the chunk database's copy is the one read back. An index of format 3 (one vectors file)
is upgraded in place by `upgrade_format_3` the first time this spanqa opens it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from spanqa.atomic_files import write_json_atomically
from spanqa.errors import IndexMismatchError
from spanqa.indexing.store.chunk_database import DATABASE_FILE, SEGMENT_SCHEMA, meta_rows
from spanqa.settings import INDEX_TYPES

FORMAT_VERSION = 4  # 4: vectors in segments, metadata values indexed (3: one vectors file)
MANIFEST_FILE = "manifest.json"
METRIC = "cosine"


def new_manifest(embedder: str, dimension: int, index_type: str, embedding: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION, "embedder": embedder, "dimension": dimension, "metric": METRIC,
        "normalized": True, "index_type": index_type, "embedding": embedding, "chunking": None,
        "database": DATABASE_FILE,
    }


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest, checked: IndexMismatchError (saying what to do) for one this spanqa cannot read.
    Format 3 passes: the caller upgrades it."""
    path = index_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version in (1, 2):
        raise IndexMismatchError(
            f"index at '{index_dir}' has format version {version}, written by an older spanqa; this one reads "
            f"format {FORMAT_VERSION}: index the files again into a new directory (spanqa index PATH... --index NEW_DIR)"
        )
    if version not in (3, FORMAT_VERSION):
        raise IndexMismatchError(
            f"index at '{index_dir}' has format version {version!r}; this spanqa reads format "
            f"{FORMAT_VERSION}: use the spanqa that wrote it, or index the files again into a new directory"
        )
    if manifest.get("metric") != METRIC or manifest.get("normalized") is not True:
        raise IndexMismatchError(
            f"index at '{index_dir}' uses metric {manifest.get('metric')!r} "
            f"(normalized={manifest.get('normalized')!r}); this spanqa reads only normalised {METRIC!r}: rebuild it"
        )
    missing = [key for key in ("embedder", "dimension", "index_type") if key not in manifest]
    if missing:
        raise IndexMismatchError(f"'{path}' lacks {', '.join(missing)}: rebuild the index")
    if manifest["index_type"] not in INDEX_TYPES:
        raise IndexMismatchError(
            f"index at '{index_dir}' has index type {manifest['index_type']!r}, not one of {', '.join(INDEX_TYPES)}: rebuild it"
        )
    return manifest


def write_manifest(index_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomically(index_dir / MANIFEST_FILE, manifest)


def upgrade_format_3(index_dir: Path, connection: sqlite3.Connection, manifest: dict[str, Any]) -> dict[str, Any]:
    """Upgrades a format-3 index in place: its vectors file becomes its one segment, its HNSW
    tombstones that segment's deleted ids, and its chunks' metadata is indexed. One transaction; the
    manifest is rewritten after it (an upgrade interrupted in between is finished by the next open)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "segments" not in tables:
            # Statement by statement: executescript would commit the transaction first.
            for statement in SEGMENT_SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            state = dict(connection.execute("SELECT key, value FROM state").fetchall())
            vectors_file = state.get("vectors_file", "")
            if vectors_file != "":
                connection.execute(
                    "INSERT INTO segments(name, structure, generation, quantizer) VALUES (?, ?, ?, NULL)",
                    (vectors_file, state.get("structure", "flat"), int(state["generation"])),
                )
                if "tombstones" in tables:
                    connection.execute("INSERT INTO deleted(id, segment) SELECT id, ? FROM tombstones", (vectors_file,))
            rows = []
            for chunk_id, meta in connection.execute("SELECT id, meta FROM chunks"):
                rows.extend(meta_rows(chunk_id, json.loads(meta)))
            connection.executemany("INSERT INTO chunk_meta(id, key, value, number, listed) VALUES (?, ?, ?, ?, ?)", rows)
            connection.execute("DROP TABLE IF EXISTS tombstones")
            connection.execute("DELETE FROM state WHERE key IN ('vectors_file', 'structure')")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    upgraded = {**manifest, "format_version": FORMAT_VERSION}
    write_manifest(index_dir, upgraded)
    return upgraded
