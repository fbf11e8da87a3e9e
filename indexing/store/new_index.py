"""A new index directory: its settings checked, leftovers of an interrupted creation removed, the
SQLite database made complete (schema, CJK index, empty state), and its manifest written last, so a
directory is an index only once everything else is there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from spanqa.atomic_files import is_leftover
from spanqa.errors import ConfigError, StorageError
from spanqa.file_modes import private_folder
from spanqa.indexing.store.chunk_database import DATABASE_FILE, ChunkDatabase, connect, create_schema
from spanqa.indexing.store.keyword import ensure_cjk_index
from spanqa.indexing.store.manifest import new_manifest, write_manifest
from spanqa.indexing.store.vector_segments import is_segment_file
from spanqa.settings import INDEX_TYPES, one_of

# What a new index is when no index type is asked for (`spanqa.settings.StoreSettings.index_type` None): exact search.
NEW_INDEX_TYPE = "flat"


def validate_dimension(dimension: int) -> None:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be a positive integer, got {dimension!r}")


def validate_index_type(index_type: str) -> None:
    """An index type of INDEX_TYPES (the check of the `index_type` setting, which may also be None)."""
    one_of(*INDEX_TYPES)("index_type", index_type)


def create_index(
    index_dir: Path,
    embedder: str,
    dimension: int,
    index_type: str,
    embedding: dict[str, Any] | None,
    busy_timeout_s: float,
) -> None:
    """An empty index in `index_dir` (made 0700 when new) for `embedder`'s `dimension`-long vectors;
    StorageError when it cannot be written (the next try starts afresh)."""
    validate_dimension(dimension)
    validate_index_type(index_type)
    if not isinstance(embedder, str) or embedder == "":
        raise ConfigError(f"embedder must name a model (hub id or local path), got {embedder!r}")
    private_folder(index_dir)  # a new folder 0700: the index holds every document's text
    # Leftovers of an index that was being created or replaced when it was interrupted.
    for path in index_dir.iterdir():
        if path.name.startswith(DATABASE_FILE) or is_segment_file(path.name) or is_leftover(path.name):
            path.unlink()
    try:
        connection = connect(index_dir / DATABASE_FILE, busy_timeout_s)
        try:
            create_schema(connection)
            connection.execute("BEGIN IMMEDIATE")
            ensure_cjk_index(connection)
            ChunkDatabase(connection).set_state({"generation": "0", "next_id": "0", "chunking": "null"})
            connection.execute("COMMIT")
        finally:
            connection.close()
        # The manifest comes last: a directory is an index only once its database is complete.
        write_manifest(index_dir, new_manifest(embedder, dimension, index_type, embedding))
    except (OSError, sqlite3.Error) as exc:
        # Nothing is an index until the manifest is written; the next try starts afresh.
        raise StorageError("cannot create the index", exc) from exc
