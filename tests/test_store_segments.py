"""Vector segments: structures by index type and segment size, deletions that write no vectors, merges
by size tier, compaction, reader snapshots, a second writer, and the upgrade of a format-3 index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa.errors import ConfigError, IndexMismatchError
from spanqa.indexing.store.commits import plan_merges
from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning

DIMENSION = 16


def documents(count: int, start: int = 0, seed: int = 0) -> list[Document]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return [
        Document(id=f"d{start + i}", content=f"text {start + i}", meta={"source": f"/f{(start + i) % 4}", "page": 1},
                 embedding=vectors[i].tolist())
        for i in range(count)
    ]


def exact_top(docs: list[Document], query: np.ndarray, k: int) -> list[str]:
    vectors = np.asarray([d.embedding for d in docs], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [docs[i].id for i in np.argsort(-(vectors @ (query / np.linalg.norm(query))))[:k]]


# Approximate structures from 400 vectors a segment (auto: 200); no merging unless a test asks.
SMALL = IndexTuning(approximate_min_vectors=400, auto_approximate_min_vectors=200, merge_factor=100)


def segment_files(index_dir) -> list[str]:
    return sorted(path.name for path in index_dir.iterdir() if path.name.startswith("segment."))


@pytest.mark.parametrize(("index_type", "structures"), [
    ("flat", ["flat", "flat"]), ("hnsw", ["flat", "hnsw"]), ("auto", ["ivf"]), ("ivf", ["ivf"]),
])
def test_structure_follows_the_index_type_and_the_segment_size(tmp_path, index_type, structures):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type=index_type, settings=SMALL)
    first = documents(150)
    store.write_documents(first)
    assert store.structure == "flat"
    second = documents(650, start=150, seed=1)
    store.write_documents(second)
    reopened = FaissDocumentStore.open(tmp_path / "i", settings=SMALL)
    # An IVF index trains its quantizer once large enough, and rewrites its segments on it.
    assert [structure for _, structure, _, _ in reopened.segments] == structures
    assert json.loads((tmp_path / "i" / "manifest.json").read_text())["index_type"] == index_type
    assert reopened.count_documents() == 800 and reopened.verify() == []
    everything = first + second
    hits = 0
    for row in range(20):
        query = np.asarray(everything[row * 37].embedding, dtype=np.float32)
        results = reopened.search(query.tolist(), top_k=10)
        assert len(results) == 10
        assert results[0].id == everything[row * 37].id  # a stored vector finds itself
        hits += len(set(d.id for d in results) & set(exact_top(everything, query, 10)))
    assert hits / 200 >= 0.9


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_deletions_write_no_vectors_until_a_segment_is_mostly_deleted(tmp_path, index_type):
    settings = IndexTuning(approximate_min_vectors=50, merge_factor=100, max_deleted_share=0.3)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type=index_type, settings=settings)
    docs = documents(100)
    store.write_documents(docs)
    [(name, structure, held, live)] = store.segments
    assert (structure, held, live) == ("flat" if index_type == "flat" else index_type, 100, 100)
    written = (tmp_path / "i" / name).stat().st_mtime_ns
    store.delete_documents([f"d{i}" for i in range(10)])
    assert store.last_commit.bytes_written == 0 and store.segments == [(name, structure, 100, 90)]
    assert (tmp_path / "i" / name).stat().st_mtime_ns == written
    reopened = FaissDocumentStore.open(tmp_path / "i", settings=settings)
    assert reopened.count_documents() == 90 and reopened.verify() == []
    for i in range(10):
        results = reopened.search(docs[i].embedding, top_k=90)
        assert len(results) == 90 and f"d{i}" not in {d.id for d in results}
    # Past max_deleted_share of its vectors deleted, the commit rewrites the segment without them.
    store.delete_documents([f"d{i}" for i in range(10, 40)])
    [(rewritten, _, held, live)] = store.segments
    assert rewritten != name and held == live == 60 and segment_files(tmp_path / "i") == [rewritten]
    store.write_documents([Document(id="d50", content="new", meta={"source": "/f2"}, embedding=docs[0].embedding)],
                          policy=DuplicatePolicy.OVERWRITE)
    reopened = FaissDocumentStore.open(tmp_path / "i", settings=settings)
    assert reopened.count_documents() == 60 and reopened.verify() == []
    best = reopened.search(docs[0].embedding, top_k=1)[0]
    assert (best.id, best.content) == ("d50", "new")


def test_segments_of_one_size_tier_merge_once_there_are_merge_factor_of_them(tmp_path):
    settings = IndexTuning(merge_factor=3, merge_floor_vectors=10)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, settings=settings)
    for batch in range(2):
        store.write_documents(documents(4, start=4 * batch, seed=batch))
    assert [held for _, _, held, _ in store.segments] == [4, 4]
    store.write_documents(documents(4, start=8, seed=2))  # the third of tier 0: the three merge
    assert [held for _, _, held, _ in store.segments] == [12]
    assert store.last_commit.segments_merged == 3 and len(segment_files(tmp_path / "i")) == 1
    for batch in range(3, 5):
        store.write_documents(documents(4, start=4 * batch, seed=batch))
    assert sorted(held for _, _, held, _ in store.segments) == [4, 4, 12]  # 12 is tier 1: not merged with them
    assert store.verify() == [] and store.count_documents() == 20


def test_plan_merges_by_tier_and_by_deleted_share():
    settings = IndexTuning(merge_factor=4, merge_floor_vectors=100, max_deleted_share=0.5)
    small = [(f"s{i}", 10, 10) for i in range(4)]
    assert plan_merges(small, settings) == [["s0", "s1", "s2", "s3"]]
    assert plan_merges(small[:3] + [("big", 1000, 1000)], settings) == []
    assert plan_merges([("half", 1000, 500), ("big", 1000, 990)], settings) == [["half"]]
    assert plan_merges([("gone", 10, 0)], settings) == [["gone"]]


def test_a_search_across_segments_ranks_as_one_index_holding_every_vector(tmp_path):
    settings = IndexTuning(merge_factor=100)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, settings=settings)
    everything = documents(250, seed=7)
    for start in range(0, 250, 50):
        store.write_documents(everything[start : start + 50])
    store.delete_documents(["d3", "d77", "d140"])
    assert len(store.segments) == 5
    queries = np.random.default_rng(11).normal(size=(10, DIMENSION)).astype(np.float32)
    before = [[(d.id, round(d.score, 5)) for d in store.search(q.tolist(), top_k=12)] for q in queries]
    filtered = [[d.id for d in store.search(q.tolist(), top_k=5, filters={"field": "meta.source", "operator": "==", "value": "/f1"})]
                for q in queries]
    report = store.compact()
    assert report.segments_merged == 5 and len(store.segments) == 1 and store.segments[0][2] == 247
    assert [[(d.id, round(d.score, 5)) for d in store.search(q.tolist(), top_k=12)] for q in queries] == before
    assert [[d.id for d in store.search(q.tolist(), top_k=5, filters={"field": "meta.source", "operator": "==", "value": "/f1"})]
            for q in queries] == filtered
    kept = [d for d in everything if d.id not in ("d3", "d77", "d140")]
    assert [d for d, _ in before[0]] == exact_top(kept, queries[0], 12)


def test_a_reader_sees_the_last_commit_and_follows_new_ones(tmp_path):
    writer = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    writer.write_documents(documents(10))
    reader = FaissDocumentStore.open(tmp_path / "i")
    with writer.writer():
        writer.write_documents(documents(5, start=10, seed=2))
        writer.delete_documents(["d0"])
        # Not committed: the reader still sees the 10 committed documents, vectors and rows alike.
        assert reader.count_documents() == 10
        assert {d.id for d in reader.search(documents(10)[0].embedding, top_k=20)} == {f"d{i}" for i in range(10)}
    assert reader.count_documents() == 14
    assert len(reader.search(documents(10)[0].embedding, top_k=20)) == 14
    assert reader.verify() == []


def test_a_failed_writer_block_leaves_the_store_as_it_was(tmp_path):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    store.write_documents(documents(5))
    with pytest.raises(KeyboardInterrupt), store.writer():
        store.write_documents(documents(5, start=5, seed=3))
        store.delete_documents(["d1"])
        raise KeyboardInterrupt
    assert store.count_documents() == 5 and segment_files(tmp_path / "i") == ["segment.1.0.faiss"]
    assert len(store.search(documents(5)[0].embedding, top_k=10)) == 5 and store.verify() == []


def test_files_are_listed_with_pages_chunks_and_hash(tmp_path):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    vectors = np.random.default_rng(0).normal(size=(3, DIMENSION))
    meta = {"source": "/a.pdf", "page_count": 4, "sha256": "abc"}
    store.write_documents([
        Document(id=f"a{i}", content="x", meta={**meta, "page": i + 1}, embedding=vectors[i].tolist()) for i in range(3)
    ])
    [listed] = FaissDocumentStore.open(tmp_path / "i").files()
    assert (listed.source, listed.pages, listed.chunks, listed.sha256) == ("/a.pdf", 4, 3, "abc")
    assert listed.indexed_at.endswith("+00:00")
    store.delete_documents(["a0"])
    assert store.files()[0].chunks == 2
    assert store.delete_by_source("/a.pdf") == 2
    assert FaissDocumentStore.open(tmp_path / "i").files() == []


def test_bad_or_mismatched_index_type(tmp_path):
    with pytest.raises(ConfigError, match="'annoy'"):
        FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="annoy")
    FaissDocumentStore.create(tmp_path / "j", embedder="e", dimension=DIMENSION, index_type="hnsw")
    with pytest.raises(IndexMismatchError, match="hnsw"):
        FaissDocumentStore(tmp_path / "j", embedder="e", dimension=DIMENSION, index_type="flat")


def test_a_second_writer_waits_then_reports_the_index_busy(tmp_path):
    from spanqa.errors import IndexBusyError

    first = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    second = FaissDocumentStore.open(tmp_path / "i", settings=IndexTuning(busy_timeout_s=0.2))
    with first.writer():
        first.write_documents(documents(3))  # holds the write lock until the block ends
        assert second.count_documents() == 0  # reading is never blocked
        with pytest.raises(IndexBusyError, match="being written by another process"):
            second.write_documents(documents(1, start=10))
    second.write_documents(documents(1, start=10))
    assert FaissDocumentStore.open(tmp_path / "i").count_documents() == 4


def test_the_quantizer_is_retrained_when_the_index_outgrows_its_lists(tmp_path):
    settings = IndexTuning(approximate_min_vectors=400, merge_factor=100)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="ivf", settings=settings)
    store.write_documents(documents(400))
    first = store._commits.snapshot.quantizer
    store.write_documents(documents(1600, start=400, seed=5))
    reopened = FaissDocumentStore.open(tmp_path / "i", settings=settings)
    quantizer = reopened._commits.snapshot.quantizer
    assert quantizer.name != first.name and quantizer.lists >= 2 * first.lists
    assert [held for _, _, held, _ in reopened.segments] == [2000]  # rewritten on the new centroids
    assert not (tmp_path / "i" / first.name).exists()
    assert reopened.count_documents() == 2000 and reopened.verify() == []


def test_ivf_segments_share_the_quantizer_and_search_as_the_compacted_index(tmp_path):
    settings = IndexTuning(approximate_min_vectors=400, merge_factor=100)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="ivf", settings=settings)
    store.write_documents(documents(1000))
    for batch in range(5):
        store.write_documents(documents(20, start=2000 + 20 * batch, seed=10 + batch))
    store.delete_documents(["d5", "d2010"])
    reopened = FaissDocumentStore.open(tmp_path / "i", settings=settings)
    quantizer = reopened._commits.snapshot.quantizer.name
    assert len(reopened.segments) == 6
    assert {live.segment.quantizer for live in reopened._commits.snapshot.segments} == {quantizer}
    [stacked] = reopened._commits.live_segments()  # searched as one IVF index over all six
    assert stacked.live == 1098 and reopened.verify() == []
    assert reopened.similarities(documents(1000)[7].embedding, ["d7", "d2011"])["d7"] == pytest.approx(1.0, abs=1e-5)
    queries = np.random.default_rng(3).normal(size=(10, DIMENSION)).astype(np.float32)
    before = [[d.id for d in reopened.search(q.tolist(), top_k=10)] for q in queries]
    reopened.compact()
    assert len(reopened.segments) == 1 and reopened._commits.snapshot.quantizer.name == quantizer
    # The same vectors in the same lists, the same lists probed: the same answers.
    assert [[d.id for d in reopened.search(q.tolist(), top_k=10)] for q in queries] == before
    assert all("d5" not in found and "d2010" not in found for found in before)


def test_an_index_of_format_3_is_upgraded_in_place_when_opened(tmp_path):
    """Format 3 kept one vectors file, HNSW tombstones and no metadata index: made here from a
    format-4 index by undoing the upgrade, then opened."""
    import sqlite3

    from spanqa.indexing.store.keyword import CJK_FUNCTION, cjk_bigrams

    index_dir = tmp_path / "i"
    docs = [Document(id=d.id, content=d.content, meta={**d.meta, "team": "hr" if i % 2 else "ops"}, embedding=d.embedding)
            for i, d in enumerate(documents(30))]
    FaissDocumentStore.create(index_dir, embedder="e", dimension=DIMENSION).write_documents(docs)
    (index_dir / "segment.1.0.faiss").rename(index_dir / "vectors.1.faiss")
    connection = sqlite3.connect(index_dir / "chunks.sqlite")
    connection.create_function(CJK_FUNCTION, 1, cjk_bigrams)  # the keyword triggers call it
    connection.executescript("""
        DROP TABLE segments; DROP TABLE deleted; DROP TABLE chunk_meta;
        CREATE TABLE tombstones (id INTEGER PRIMARY KEY);
        INSERT INTO state(key, value) VALUES ('vectors_file', 'vectors.1.faiss'), ('structure', 'flat');
    """)
    # d0's chunk is gone but its vector stayed in the file (as an HNSW graph keeps a deleted node).
    connection.execute("DELETE FROM chunks WHERE doc_id = 'd0'")
    connection.execute("UPDATE files SET chunks = chunks - 1 WHERE path = '/f0'")
    connection.execute("INSERT INTO tombstones(id) VALUES (0)")
    connection.commit()
    connection.close()
    manifest = json.loads((index_dir / "manifest.json").read_text())
    (index_dir / "manifest.json").write_text(json.dumps({**manifest, "format_version": 3}))

    store = FaissDocumentStore.open(index_dir)
    assert json.loads((index_dir / "manifest.json").read_text())["format_version"] == 4
    assert store.segments == [("vectors.1.faiss", "flat", 30, 29)] and store.verify() == []
    assert "d0" not in {d.id for d in store.search(docs[0].embedding, top_k=30)}
    assert {d.id for d in store.filter_documents({"field": "meta.team", "operator": "==", "value": "hr"})} == {
        f"d{i}" for i in range(1, 30, 2)
    }
    store.write_documents(documents(2, start=100, seed=4))
    assert [name for name, _, _, _ in FaissDocumentStore.open(index_dir).segments] == ["vectors.1.faiss", "segment.2.0.faiss"]


def test_segments_on_the_shared_quantizer_can_be_opened_again_and_again(tmp_path):
    """Each open points the segments read from files at the quantizer's centroids; freeing their
    stand-in quantizers through SWIG once broke FAISS's Python objects after a few opens."""
    settings = IndexTuning(approximate_min_vectors=400, merge_factor=100)
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="ivf", settings=settings)
    store.write_documents(documents(500))
    store.write_documents(documents(20, start=1000, seed=1))
    query = documents(500)[3].embedding
    for _ in range(25):
        reopened = FaissDocumentStore.open(tmp_path / "i", settings=settings)
        assert reopened.search(query, top_k=1)[0].id == "d3"
        reopened.close()
