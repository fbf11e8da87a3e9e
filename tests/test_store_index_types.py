"""Index types (flat, hnsw, ivf, auto), deletes on HNSW, memory-mapped readers, reader snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa import defaults
from spanqa.errors import ConfigError, IndexMismatchError
from spanqa.indexing.store import FaissDocumentStore

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


@pytest.fixture
def small_thresholds(monkeypatch):
    monkeypatch.setattr(defaults, "AUTO_APPROXIMATE_MIN_VECTORS", 200)
    monkeypatch.setattr(defaults, "IVF_MIN_TRAIN_VECTORS", 400)


@pytest.mark.parametrize(("index_type", "structures"), [
    ("flat", ["flat", "flat"]), ("hnsw", ["hnsw", "hnsw"]), ("auto", ["flat", "ivf"]), ("ivf", ["flat", "ivf"]),
])
def test_structure_follows_the_index_type_and_the_size(tmp_path, small_thresholds, index_type, structures):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type=index_type)
    first = documents(150)
    store.write_documents(first)
    store.save()
    seen = [store.structure]
    second = documents(650, start=150, seed=1)
    store.write_documents(second)
    store.save()
    reopened = FaissDocumentStore.open(tmp_path / "i")
    seen.append(reopened.structure)
    assert seen == structures
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


def test_hnsw_deletes_are_tombstones_until_a_rebuild(tmp_path):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="hnsw")
    docs = documents(100)
    store.write_documents(docs)
    store.save()
    store.delete_documents([f"d{i}" for i in range(10)])
    store.save()
    reopened = FaissDocumentStore.open(tmp_path / "i")
    assert reopened.count_documents() == 90 and reopened.verify() == []
    for i in range(10):
        results = reopened.search(docs[i].embedding, top_k=90)
        assert len(results) == 90 and f"d{i}" not in {d.id for d in results}
    # Past TOMBSTONE_REBUILD_FRACTION of deleted vectors, the commit rebuilds the graph without them.
    store.delete_documents([f"d{i}" for i in range(10, 40)])
    store.write_documents([Document(id="d50", content="new", meta={"source": "/f2"}, embedding=docs[0].embedding)],
                          policy=DuplicatePolicy.OVERWRITE)
    store.save()
    reopened = FaissDocumentStore.open(tmp_path / "i")
    assert reopened.count_documents() == 60 and reopened.verify() == []
    best = reopened.search(docs[0].embedding, top_k=1)[0]
    assert (best.id, best.content) == ("d50", "new")


def test_a_reader_sees_the_last_commit_and_follows_new_ones(tmp_path):
    writer = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    writer.write_documents(documents(10))
    writer.save()
    reader = FaissDocumentStore.open(tmp_path / "i")
    writer.write_documents(documents(5, start=10, seed=2))
    writer.delete_documents(["d0"])
    # Not saved: the reader still sees the 10 committed documents, vectors and rows alike.
    assert reader.count_documents() == 10
    assert {d.id for d in reader.search(documents(10)[0].embedding, top_k=20)} == {f"d{i}" for i in range(10)}
    writer.save()
    assert reader.count_documents() == 14
    assert len(reader.search(documents(10)[0].embedding, top_k=20)) == 14
    assert reader.verify() == []


def test_rollback_forgets_unsaved_writes(tmp_path):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    store.write_documents(documents(5))
    store.save()
    store.write_documents(documents(5, start=5, seed=3))
    store.rollback()
    assert store.count_documents() == 5
    assert len(store.search(documents(5)[0].embedding, top_k=10)) == 5 and store.verify() == []


def test_files_are_listed_with_pages_chunks_and_hash(tmp_path):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    vectors = np.random.default_rng(0).normal(size=(3, DIMENSION))
    meta = {"source": "/a.pdf", "page_count": 4, "sha256": "abc"}
    store.write_documents([
        Document(id=f"a{i}", content="x", meta={**meta, "page": i + 1}, embedding=vectors[i].tolist()) for i in range(3)
    ])
    store.save()
    [listed] = FaissDocumentStore.open(tmp_path / "i").files()
    assert (listed.source, listed.pages, listed.chunks, listed.sha256) == ("/a.pdf", 4, 3, "abc")
    assert listed.indexed_at.endswith("+00:00")
    store.delete_documents(["a0"])
    assert store.files()[0].chunks == 2
    assert store.delete_by_source("/a.pdf") == 2
    store.save()
    assert FaissDocumentStore.open(tmp_path / "i").files() == []


def test_bad_or_mismatched_index_type(tmp_path):
    with pytest.raises(ConfigError, match="'annoy'"):
        FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="annoy")
    FaissDocumentStore.create(tmp_path / "j", embedder="e", dimension=DIMENSION, index_type="hnsw")
    with pytest.raises(IndexMismatchError, match="hnsw"):
        FaissDocumentStore(tmp_path / "j", embedder="e", dimension=DIMENSION, index_type="flat")


def test_a_second_writer_waits_then_reports_the_index_busy(tmp_path, monkeypatch):
    from spanqa.errors import IndexBusyError

    first = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION)
    first.write_documents(documents(3))  # holds the write lock until saved
    monkeypatch.setattr(defaults, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    second = FaissDocumentStore.open(tmp_path / "i")
    assert second.count_documents() == 0  # reading is never blocked
    with pytest.raises(IndexBusyError, match="being written by another process"):
        second.write_documents(documents(1, start=10))
    first.save()
    second.write_documents(documents(1, start=10))
    second.save()
    assert FaissDocumentStore.open(tmp_path / "i").count_documents() == 4


def test_ivf_is_retrained_when_the_collection_outgrows_its_lists(tmp_path, small_thresholds):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="ivf")
    store.write_documents(documents(400))
    store.save()
    first_lists = FaissDocumentStore.open(tmp_path / "i")._index.nlist
    store.write_documents(documents(1600, start=400, seed=5))
    store.save()
    reopened = FaissDocumentStore.open(tmp_path / "i")
    assert reopened.structure == "ivf" and reopened._index.nlist >= 2 * first_lists
    assert reopened.count_documents() == 2000 and reopened.verify() == []


def test_deleting_and_overwriting_in_a_trained_ivf_index(tmp_path, small_thresholds):
    store = FaissDocumentStore.create(tmp_path / "i", embedder="e", dimension=DIMENSION, index_type="ivf")
    docs = documents(500)
    store.write_documents(docs)
    store.save()
    assert store.structure == "ivf"
    store.delete_documents(["d1", "d2"])
    store.write_documents([Document(id="d3", content="new", meta={"source": "/f3"}, embedding=docs[1].embedding)],
                          policy=DuplicatePolicy.OVERWRITE)
    store.save()
    reopened = FaissDocumentStore.open(tmp_path / "i")
    assert reopened.count_documents() == 498 and reopened.verify() == []
    best = reopened.search(docs[1].embedding, top_k=1)[0]
    assert (best.id, best.content) == ("d3", "new")
    assert "d2" not in {d.id for d in reopened.search(docs[2].embedding, top_k=20)}
