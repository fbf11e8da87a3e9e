"""`spanqa backup`: a copy of a live index that opens, passes `spanqa check` and equals one commit of
it, also while a writer keeps committing and merging segments away; sharded indexes; a destination
that holds something; a full disk at the destination; the command line."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import threading

import numpy as np
import pytest
from haystack import Document

from spanqa.cli import main
from spanqa.errors import ConfigError, StorageError
from spanqa.indexing.store import backup as index_backup
from spanqa.indexing.store.backup import PARTIAL_SUFFIX, STAGING_PREFIX, backup_index, copy_database
from spanqa.indexing.store.check import check_index, index_health
from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning
from spanqa.indexing.store.shards import ShardedStore
from spanqa.service.database import ServiceDatabase

DIMENSION = 16
BATCH = 20
# Small tiers and a low IVF threshold: commits merge segments, and the index trains a quantizer.
SETTINGS = IndexTuning(merge_factor=3, merge_floor_vectors=20, approximate_min_vectors=100, ivf_train_iterations=2)
QUERIES = np.random.default_rng(99).normal(size=(6, DIMENSION))


def batch(number: int) -> list[Document]:
    vectors = np.random.default_rng(number).normal(size=(BATCH, DIMENSION))
    return [
        Document(id=f"b{number}-{item}", content=f"batch {number} item {item} lantern{item % 5}",
                 meta={"source": f"/docs/f{number}.txt", "page": 1}, embedding=vectors[item].tolist())
        for item in range(BATCH)
    ]


def build(index_dir, batches: int, index_type: str = "ivf") -> FaissDocumentStore:
    store = FaissDocumentStore.create(index_dir, embedder="test/e", dimension=DIMENSION, index_type=index_type, settings=SETTINGS)
    for number in range(batches):
        with store.writer():
            store.write_documents(batch(number))
    return store


def contents(store) -> dict:
    """What a reader sees: the chunks, the file list, dense and keyword results."""
    return {
        "documents": sorted((d.id, d.content) for d in store.filter_documents()),
        "files": [(f.source, f.chunks) for f in store.files()],
        "dense": [[(d.id, round(d.score, 5)) for d in store.search(q, top_k=5)] for q in QUERIES],
        "keyword": sorted(d.id for d in store.keyword_search("lantern3", top_k=100)),
    }


def opened(index_dir) -> dict:
    assert check_index(index_dir).sound
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    try:
        return contents(store)
    finally:
        store.close()


def private(folder) -> None:
    """Every file under `folder` 0600, every folder 0700."""
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_a_backup_equals_the_index_and_is_private(tmp_path):
    index_dir, destination = tmp_path / "index", tmp_path / "backup"
    store = build(index_dir, 7)  # past the IVF threshold: a quantizer file, segments built on it
    store.delete_documents(["b1-3"])
    expected = contents(store)
    assert any(index_dir.glob("quantizer.*.faiss"))  # a quantizer file, segments built on it
    service = ServiceDatabase(index_dir)
    service.record_upload("/docs/f1.txt", "f1.txt", "alice")
    service.close()
    (index_dir / f"{STAGING_PREFIX}999999999-x").mkdir()  # left by a killed backup: removed

    report = backup_index(index_dir, destination, SETTINGS)
    store.close()

    assert (report.indexes, report.chunks) == (1, 7 * BATCH - 1)
    assert report.segments == len([p for p in destination.iterdir() if p.suffix == ".faiss"]) > 1
    assert report.bytes == sum(p.stat().st_size for p in destination.iterdir())
    assert opened(destination) == expected
    uploads = sqlite3.connect(destination / "service.sqlite").execute("SELECT path, uploaded_by FROM uploads").fetchall()
    assert uploads == [("/docs/f1.txt", "alice")]
    private(destination)
    assert not list(index_dir.glob(f"{STAGING_PREFIX}*")) and not (tmp_path / f"backup{PARTIAL_SUFFIX}").exists()
    assert {p.name for p in destination.iterdir()} >= {"manifest.json", "chunks.sqlite", "service.sqlite"}


def test_sqlite_backup_from_a_read_transaction_copies_that_snapshot_not_a_later_commit(tmp_path):
    path = tmp_path / "db.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t(x)")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)  # the snapshot starts here
    writer.execute("INSERT INTO t VALUES (2)")
    writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
    copy_database(reader, tmp_path / "copy.sqlite")
    reader.execute("COMMIT")
    assert sqlite3.connect(tmp_path / "copy.sqlite").execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_commit_during_the_copy_is_not_in_it_and_its_merged_away_segments_still_are(tmp_path, monkeypatch):
    """A writer compacts (merging away every segment file the snapshot names) after the files are
    staged, before the database is copied: the backup is the snapshot's state, whole."""
    index_dir = tmp_path / "index"
    store = build(index_dir, 4, index_type="flat")
    before = contents(store)
    real_copy = index_backup.copy_database

    def compact_first(source, path):
        if path.name == "chunks.sqlite":
            with store.writer():
                store.write_documents(batch(50))
            store.compact()
            assert len(store.segments) == 1
        return real_copy(source, path)

    monkeypatch.setattr(index_backup, "copy_database", compact_first)
    backup_index(index_dir, tmp_path / "backup", SETTINGS)
    assert store.count_documents() == 5 * BATCH
    store.close()
    assert opened(tmp_path / "backup") == before


def test_a_segment_removed_before_it_is_staged_means_a_fresh_snapshot(tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    store = build(index_dir, 4, index_type="flat")
    real_named = index_backup.named_files
    calls = []

    def merge_after_reading(connection):
        names = real_named(connection)
        if not calls:  # the names are read: now a writer merges those segments away
            with store.writer():
                store.write_documents(batch(50))
            store.compact()
        calls.append(names)
        return names

    monkeypatch.setattr(index_backup, "named_files", merge_after_reading)
    backup_index(index_dir, tmp_path / "backup", SETTINGS)
    expected = contents(store)
    store.close()
    assert len(calls) == 2 and not set(calls[0]) & set(calls[1])
    assert opened(tmp_path / "backup") == expected


def test_backups_taken_while_a_writer_commits_and_merges_each_hold_whole_batches(tmp_path):
    index_dir = tmp_path / "index"
    build(index_dir, 1).close()
    stop, progressed, failures = threading.Event(), threading.Event(), []

    def keep_writing():
        store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
        try:
            number = 1
            while not stop.is_set() and number < 200:
                with store.writer():
                    store.write_documents(batch(number))
                    store.delete_documents([f"b{number - 1}-0"])  # each commit also deletes
                if number % 5 == 0:
                    store.compact()
                progressed.set()
                number += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            store.close()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    seen = []
    try:
        for number in range(4):
            progressed.clear()
            assert progressed.wait(timeout=60) and not failures  # a commit since the last backup
            destination = tmp_path / f"backup-{number}"
            backup_index(index_dir, destination, SETTINGS)
            assert check_index(destination).sound
            store = FaissDocumentStore.open(destination, settings=SETTINGS)
            ids = {d.id for d in store.filter_documents()}
            batches = len({doc_id.split("-")[0] for doc_id in ids})
            whole = {f"b{b}-{i}" for b in range(batches) for i in range(BATCH)} - {f"b{b}-0" for b in range(batches - 1)}
            assert ids == whole  # batches 0..n-1, each commit whole
            first = batch(batches - 1)[5]
            assert store.search(first.embedding, top_k=1)[0].id == first.id
            store.close()
            seen.append(batches)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not failures and not writer.is_alive()
    assert all(earlier < later for earlier, later in zip(seen, seen[1:]))  # each a later commit
    assert not list(index_dir.glob(f"{STAGING_PREFIX}*"))


def test_a_sharded_index_is_backed_up_shard_by_shard(tmp_path):
    sharded = ShardedStore.create(tmp_path / "sharded", 3, embedder="e", dimension=DIMENSION, settings=SETTINGS)
    for number in range(6):
        sharded.write_documents(batch(number))
    expected = contents(sharded)
    report = backup_index(tmp_path / "sharded", tmp_path / "backup", SETTINGS)
    assert (report.indexes, report.chunks) == (3, 6 * BATCH)
    assert all(health.sound for health in index_health(tmp_path / "backup"))
    copy = ShardedStore(tmp_path / "backup", settings=SETTINGS)
    assert contents(copy) == expected
    private(tmp_path / "backup")


def test_a_destination_that_holds_something_is_refused_and_an_empty_one_is_used(tmp_path):
    index_dir = tmp_path / "index"
    build(index_dir, 2, index_type="flat").close()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        backup_index(index_dir, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="inside the index"):
        backup_index(index_dir, index_dir / "copy")
    (tmp_path / "empty").mkdir()
    assert backup_index(index_dir, tmp_path / "empty").chunks == 2 * BATCH
    assert check_index(tmp_path / "empty").sound


def test_a_full_disk_at_the_destination_leaves_nothing_there(tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    build(index_dir, 2, index_type="flat").close()

    def full(source, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(index_backup, "_copy_private", full)
    with pytest.raises(StorageError, match="disk is full") as raised:
        backup_index(index_dir, tmp_path / "backup")
    assert raised.value.full
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no backup, no backup.partial
    assert not list(index_dir.glob(f"{STAGING_PREFIX}*"))
    assert check_index(index_dir).sound


def test_the_command_line(tmp_path, capsys):
    index_dir = tmp_path / "index"
    build(index_dir, 2, index_type="flat").close()
    assert main(["backup", "--index", str(index_dir), str(tmp_path / "one")]) == 0
    assert f"backed up to {tmp_path / 'one'}: {2 * BATCH} chunks" in capsys.readouterr().out
    assert main(["backup", "--index", str(index_dir), str(tmp_path / "two"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["chunks"] == 2 * BATCH and printed["indexes"] == 1 and printed["bytes"] > 0
    assert main(["backup", "--index", str(index_dir), str(tmp_path / "one")]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["backup", "--index", str(tmp_path / "nothing"), str(tmp_path / "three")]) == 1
    assert "no spanqa index" in capsys.readouterr().err
