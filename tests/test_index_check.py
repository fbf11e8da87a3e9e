"""`spanqa check` finds what is wrong with an index, and `--repair` brings it back to its last
consistent state, saying what it dropped: each kind of damage is made by hand here, as a crash, a
lost file or an older spanqa's bug would leave it, then checked, repaired and used again."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from haystack import Document

from spanqa.cli import main
from spanqa.errors import IndexMismatchError
from spanqa.indexing.store.check import check_index, index_problem, repair_index
from spanqa.indexing.store.chunk_database import connect
from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning
from spanqa.indexing.store.shards import ShardedStore

DIMENSION = 8
SETTINGS = IndexTuning(merge_factor=8)


def documents(source: str, count: int, seed: int) -> list[Document]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION))
    return [
        Document(id=f"{source}-{i}", content=f"{source} sentence {i} about lighthouses",
                 meta={"source": f"/docs/{source}.txt", "page": 1, "sha256": f"sha-{source}", "page_count": 1},
                 embedding=vectors[i].tolist())
        for i in range(count)
    ]


@pytest.fixture
def index_dir(tmp_path):
    """Three files, each committed as a segment of its own."""
    directory = tmp_path / "index"
    store = FaissDocumentStore.create(directory, embedder="test/e", dimension=DIMENSION, settings=SETTINGS)
    for seed, source in enumerate(("a", "b", "c")):
        with store.writer():
            store.write_documents(documents(source, 5, seed))
    store.close()
    return directory


def database(index_dir) -> sqlite3.Connection:
    return connect(index_dir / "chunks.sqlite", 5.0)  # with spanqa's SQL functions: the triggers call them


def sources_of(index_dir) -> set[str]:
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    try:
        assert store.verify() == []
        return set(store.source_files())
    finally:
        store.close()


def test_a_sound_index_passes(index_dir, capsys):
    health = check_index(index_dir)
    assert health.sound and health.chunks == 15 and health.files == 3 and health.segments == 3
    assert main(["check", "--index", str(index_dir)]) == 0
    assert "sound (15 chunks, 3 files, 3 segments)" in capsys.readouterr().out
    assert index_problem(index_dir) is None


def test_a_lost_segment_drops_its_file_and_the_rest_is_kept(index_dir, capsys):
    named = [row[0] for row in database(index_dir).execute("SELECT name FROM segments ORDER BY generation")]
    (index_dir / named[1]).unlink()  # b's vectors
    health = check_index(index_dir)
    assert any(f"segment {named[1]} is missing" in f.problem for f in health.findings)
    assert any("5 chunks of 1 file(s) have no vector" in f.problem for f in health.findings)
    assert "run `spanqa check --index DIR --repair`" in index_problem(index_dir)
    assert main(["check", "--index", str(index_dir)]) == 1
    assert "--repair" in capsys.readouterr().err

    assert main(["check", "--index", str(index_dir), "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"forgot segment {named[1]}" in out and "dropped /docs/b.txt (5 chunks" in out and "index it again" in out
    assert sources_of(index_dir) == {"/docs/a.txt", "/docs/c.txt"}
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    store.write_documents(documents("b", 5, 1))  # indexing it again works
    assert store.verify() == [] and store.count_documents() == 15
    store.close()


def test_vectors_without_chunks_the_issues_damage_is_repaired(index_dir):
    # What the old commit bug left: rows gone, their vectors still live ("vectors [..] have no chunk").
    database(index_dir).execute("DELETE FROM chunks WHERE doc_id IN ('c-0', 'c-1')")
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    with pytest.raises(IndexMismatchError, match="inconsistent"):
        store.search(documents("c", 5, 2)[0].embedding, top_k=15)
    store.close()
    health = check_index(index_dir)
    assert {f.problem for f in health.findings} >= {"2 vectors have no chunk", "the file list does not match the chunks for 1 file(s)"}
    repaired = repair_index(index_dir)
    assert repaired.sound
    assert "marked 2 vectors without a chunk as deleted" in repaired.repaired
    assert "counted the chunks of /docs/c.txt again (5 -> 3)" in repaired.repaired
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    assert len(store.search(documents("c", 5, 2)[0].embedding, top_k=15)) == 13
    store.close()


def test_file_list_keyword_table_and_next_id_are_mended(index_dir):
    connection = database(index_dir)
    connection.execute("DELETE FROM files WHERE path = '/docs/a.txt'")
    connection.execute("INSERT INTO files VALUES ('/docs/ghost.txt', NULL, 1, 4, '2026-01-01')")
    connection.execute("INSERT INTO chunks_fts(rowid, content, source) VALUES (999, 'phantom words', 'x')")
    connection.execute("UPDATE state SET value = '3' WHERE key = 'next_id'")
    problems = {f.problem for f in check_index(index_dir).findings}
    assert "the file list does not match the chunks for 2 file(s)" in problems
    assert any(p.startswith("the keyword table chunks_fts does not match") for p in problems)
    assert "the next free id 3 is not above the largest id in use 14" in problems
    repaired = repair_index(index_dir)
    assert repaired.sound, repaired.findings
    assert "made the file entry of /docs/a.txt again from its chunks" in repaired.repaired
    assert "removed the file entry of /docs/ghost.txt, which has no chunks" in repaired.repaired
    assert "rebuilt the keyword table chunks_fts from the chunks" in repaired.repaired
    store = FaissDocumentStore.open(index_dir, settings=SETTINGS)
    assert store.keyword_search("phantom", top_k=5) == []
    assert store.source_files()["/docs/a.txt"] == {"chunks": 5, "sha256": "sha-a", "pages": 1}
    store.write_documents(documents("d", 2, 9))  # ids from 15 on: no clash with the stored ones
    assert store.verify() == []
    store.close()


def test_leftover_files_are_reported_and_removed(index_dir):
    (index_dir / "segment.99.0.faiss").write_bytes(b"half written")
    (index_dir / ".manifest.json.x1.tmp").write_text("{")
    health = check_index(index_dir)
    assert health.sound and health.leftovers == [".manifest.json.x1.tmp", "segment.99.0.faiss"]
    repaired = repair_index(index_dir)
    assert repaired.sound and repaired.leftovers == []
    assert not (index_dir / "segment.99.0.faiss").exists()


def test_an_unreadable_manifest_cannot_be_repaired(index_dir, capsys):
    (index_dir / "manifest.json").write_text("{broken")
    assert main(["check", "--index", str(index_dir), "--repair"]) == 1
    captured = capsys.readouterr()
    assert "cannot be repaired here" in captured.out and "restore a backup" in captured.err


def test_a_sharded_index_is_checked_shard_by_shard(tmp_path, capsys):
    store = ShardedStore.create(tmp_path / "sharded", 2, "test/e", DIMENSION)
    with store.writer():
        for seed, source in enumerate("abcd"):
            store.write_documents(documents(source, 3, seed))
    store.close()
    assert main(["check", "--index", str(tmp_path / "sharded"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sound"] and len(report["indexes"]) == 2
    assert sum(shard["chunks"] for shard in report["indexes"]) == 12


def test_a_missing_index_is_named(tmp_path, capsys):
    assert main(["check", "--index", str(tmp_path / "nothing")]) == 1
    assert "no spanqa index at" in capsys.readouterr().err
