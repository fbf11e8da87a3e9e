"""A consistent copy of a live index (`spanqa backup`), taken while a server or an indexing run keeps
committing to it.

For one index: inside a SQLite read transaction on `chunks.sqlite` (a WAL snapshot of one commit),
the segment and quantizer files that snapshot names are hard-linked into a staging folder inside
the index directory (same file system: instant, and a link keeps a file's content when a writer's
merge deletes its name); if one vanished between reading the names and linking it, the snapshot is
dropped and read again. Still in that transaction the database is copied with SQLite's backup API
from the same connection, so the copy is that snapshot, not a later commit. Then `manifest.json`
and `service.sqlite` (the service's uploads, feedback and job journal, copied by SQLite's backup
API on its own) are copied, and the staged segment files are copied out; the staging links are
removed in every case. The copy is a real one (DEST may be on another file system), written into
`DEST.partial` and renamed to DEST at the end: a backup that stopped never looks complete.

A sharded index is copied shard by shard, then `shards.json`. Shards are independent indexes: each
shard's copy is consistent on its own (one commit of that shard), as each shard's commits are; the
shards need not be copied at the same instant, just as a writer commits them one after another.

The backup is an index (files 0600, folders 0700) that opens and passes `spanqa check`. The uploads
folder of a server (`uploads/`, the files themselves) is not part of it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa.atomic_files import fsync_directory, fsync_file, remove_if_owner_ended
from spanqa.errors import ConfigError, IndexMismatchError, IndexNotFoundError, StorageError, is_storage_failure
from spanqa.file_modes import create_private_file, private_folder, private_opener
from spanqa.indexing.store.chunk_database import DATABASE_FILE, ChunkDatabase, connect
from spanqa.indexing.store.commits import end_transaction
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.manifest import FORMAT_VERSION, MANIFEST_FILE, read_manifest
from spanqa.indexing.store.shards import SHARDS_FILE, ShardedStore
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.paths import user_path

SERVICE_DATABASE_FILE = "service.sqlite"  # service.database.DATABASE_FILE (the indexing layer imports no service code)
STAGING_PREFIX = ".backup-"  # staging folders in the index directory: `.backup-PID-XXXX`
PARTIAL_SUFFIX = ".partial"
SNAPSHOT_ATTEMPTS = 5  # fresh snapshots tried when a writer keeps removing a named segment first
# A file system that refuses hard links: the staged file is copied instead.
NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


@dataclass(frozen=True)
class BackupReport:
    """What a backup copied: indexes (shards), segment and quantizer files, chunks, and bytes written."""

    destination: Path
    indexes: int
    segments: int
    chunks: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"destination": str(self.destination), "indexes": self.indexes, "segments": self.segments,
                "chunks": self.chunks, "bytes": self.bytes}


def backup_index(index_dir: str | Path, destination: str | Path, settings: IndexTuning | None = None) -> BackupReport:
    """Copies the index (sharded or not) in `index_dir` to `destination`, which must not exist or be
    an empty folder (ConfigError otherwise). A disk failing at the destination raises StorageError
    and leaves nothing there (nor `DEST.partial`); the index itself is never changed."""
    index_dir = user_path(index_dir)
    destination = user_path(destination)
    settings = IndexTuning() if settings is None else settings
    sharded = ShardedStore.exists(index_dir)
    if not sharded and not FaissDocumentStore.exists(index_dir):
        raise IndexNotFoundError(index_dir)
    check_destination(index_dir, destination)
    partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)  # left by a backup that was killed
    try:
        private_folder(partial)
        if sharded:
            listing = (index_dir / SHARDS_FILE).read_bytes()
            reports = [_backup_one(index_dir / name, partial / name, settings) for name in shard_names(index_dir, listing)]
            _write_private(partial / SHARDS_FILE, listing)
        else:
            reports = [_backup_one(index_dir, partial, settings)]
        fsync_directory(partial)
        if destination.is_dir():
            destination.rmdir()  # empty (checked above): the finished copy takes its place
        os.rename(partial, destination)
        fsync_directory(destination.parent)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, (OSError, sqlite3.Error)) and is_storage_failure(exc):
            raise StorageError(f"cannot back up the index to '{destination}'", exc) from exc
        raise
    return BackupReport(destination, len(reports), sum(r[0] for r in reports), sum(r[1] for r in reports),
                        sum(r[2] for r in reports) + (len(listing) if sharded else 0))


def check_destination(index_dir: Path, destination: Path) -> None:
    """ConfigError for a destination that holds something, or lies inside the index."""
    if destination == index_dir or index_dir in destination.parents:
        raise ConfigError(f"the backup destination '{destination}' is inside the index at '{index_dir}': "
                          "give a folder outside it")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ConfigError(f"the backup destination '{destination}' exists and is not empty: give a new folder "
                          "(or remove that one first)")


def shard_names(index_dir: Path, listing: bytes) -> list[str]:
    try:
        names = json.loads(listing)["shards"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexMismatchError(f"cannot read '{index_dir / SHARDS_FILE}' ({exc}): it must list the shard folders") from exc
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise IndexMismatchError(f"'{index_dir / SHARDS_FILE}' must list at least one shard folder")
    return names


def _backup_one(index_dir: Path, target: Path, settings: IndexTuning) -> tuple[int, int, int]:
    """Copies one index into the new folder `target`; returns (segment files, chunks, bytes)."""
    if read_manifest(index_dir)["format_version"] != FORMAT_VERSION:
        FaissDocumentStore.open(index_dir, settings=settings).close()  # upgrades it, as any spanqa command does
    private_folder(target)
    _remove_abandoned_staging(index_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=index_dir))  # 0700
    try:
        with _staged_snapshot(index_dir, staging, settings) as (connection, names):
            chunks = ChunkDatabase(connection).count()
            written = copy_database(connection, target / DATABASE_FILE)
        written += _write_private(target / MANIFEST_FILE, (index_dir / MANIFEST_FILE).read_bytes())
        service = index_dir / SERVICE_DATABASE_FILE
        if service.is_file():
            source = sqlite3.connect(service, isolation_level=None, timeout=settings.busy_timeout_s)
            try:
                written += copy_database(source, target / SERVICE_DATABASE_FILE)
            finally:
                source.close()
        for name in names:
            written += _copy_private(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_directory(target)
    return len(names), chunks, written


@contextmanager
def _staged_snapshot(index_dir: Path, staging: Path, settings: IndexTuning) -> Iterator[tuple[sqlite3.Connection, list[str]]]:
    """An open read transaction on the index's database, with every file its commit names staged
    (linked) in `staging`: yields the connection and those file names."""
    if not (index_dir / DATABASE_FILE).is_file():
        raise IndexMismatchError(
            f"index at '{index_dir}' has no {DATABASE_FILE}: restore another backup or index the files again"
        )
    connection = connect(index_dir / DATABASE_FILE, settings.busy_timeout_s)
    try:
        missing = None
        for attempt in range(SNAPSHOT_ATTEMPTS):
            connection.execute("BEGIN")
            try:
                names = named_files(connection)
                for name in names:
                    _stage(index_dir / name, staging / name)
            except FileNotFoundError as exc:
                # A writer merged a segment away between our snapshot and our link: take a fresh one.
                missing = exc
                end_transaction(connection)
                for path in staging.iterdir():
                    path.unlink()
                time.sleep(0.01 * (attempt + 1))
                continue
            except BaseException:
                end_transaction(connection)
                raise
            try:
                yield connection, names
            finally:
                end_transaction(connection, "COMMIT")
            return
        name = Path(str(missing.filename if missing.filename is not None else "?")).name
        raise IndexMismatchError(
            f"segment {name} of the index at '{index_dir}', named by its last commit, was missing "
            f"{SNAPSHOT_ATTEMPTS} times (lost, or the index is being replaced): run `spanqa check --index DIR`"
        )
    finally:
        connection.close()


def named_files(connection: sqlite3.Connection) -> list[str]:
    """The segment and quantizer files the commit seen by `connection` names."""
    database = ChunkDatabase(connection)
    names = [name for name, _, _ in database.segments()]
    quantizers = {built_on for _, _, built_on in database.segments() if built_on} | {database.state().get("quantizer", "")}
    return names + sorted(quantizers - {""})


def copy_database(source: sqlite3.Connection, path: Path) -> int:
    """Copies the database of `source` into the new file `path` (0600) with SQLite's backup API, in
    one step: from the snapshot of the read transaction `source` has open, if any (SQLite's backup
    reads within it), else from the last commit. Returns the bytes written."""
    create_private_file(path)
    copy = sqlite3.connect(path, isolation_level=None)
    try:
        source.backup(copy)
    finally:
        copy.close()
    fsync_file(path)
    return path.stat().st_size


def _stage(source: Path, staged: Path) -> None:
    try:
        os.link(source, staged)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno not in NO_LINK_ERRNOS:
            raise
        shutil.copyfile(source, staged)


def _copy_private(source: Path, path: Path) -> int:
    with open(source, "rb") as reading, open(path, "xb", opener=private_opener) as writing:
        shutil.copyfileobj(reading, writing, 1 << 20)
        writing.flush()
        os.fsync(writing.fileno())
        return writing.tell()


def _write_private(path: Path, data: bytes) -> int:
    with open(path, "xb", opener=private_opener) as writing:
        writing.write(data)
        writing.flush()
        os.fsync(writing.fileno())
    return len(data)


def _remove_abandoned_staging(index_dir: Path) -> None:
    """Removes the staging folders of backups whose process is gone (killed mid-copy), which would
    otherwise keep merged-away segments on disk through their links."""
    for path in index_dir.glob(f"{STAGING_PREFIX}*"):
        if path.is_dir():
            remove_if_owner_ended(path, path.name[len(STAGING_PREFIX):].split("-")[0])
