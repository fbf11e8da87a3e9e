"""Sharded indexes: files placed by hash, dense search equal to one index, keyword search merged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from haystack import Document

from spanqa.errors import ConfigError, IndexMismatchError
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.shards import SHARDS_FILE, ShardedStore, shard_of

DIMENSION = 16
WORDS = ["harbour", "lantern", "copper", "meadow", "violin", "glacier", "orchard", "saddle", "beacon", "timber"]


def corpus(count: int = 240) -> list[Document]:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(count, DIMENSION))
    return [
        Document(
            id=f"c{i}", content=f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} note {i}",
            meta={"source": f"/kb/file{i // 6}.md", "page": 1, "team": "a" if i % 4 else "b"},
            embedding=vectors[i].tolist(),
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    single = FaissDocumentStore.create(root / "single", embedder="e", dimension=DIMENSION)
    single.write_documents(corpus())
    sharded = ShardedStore.create(root / "sharded", 3, embedder="e", dimension=DIMENSION)
    sharded.write_documents(corpus())
    return single, sharded


def test_each_file_lives_in_the_shard_its_path_hashes_to(stores):
    _, sharded = stores
    assert sharded.count_documents() == 240 and sharded.verify() == []
    for number, shard in enumerate(sharded.shards):
        assert shard.sources() and all(shard_of(source, 3) == number for source in shard.sources())
    assert [f.source for f in sharded.files()] == sorted(f"/kb/file{i}.md" for i in range(40))


@pytest.mark.parametrize("filters", [None, {"field": "meta.team", "operator": "==", "value": "b"}])
def test_dense_search_ranks_exactly_as_one_index_holding_every_chunk(stores, filters):
    single, sharded = stores
    for query in np.random.default_rng(9).normal(size=(15, DIMENSION)):
        one = [(d.id, round(d.score, 5)) for d in single.search(query, top_k=10, filters=filters)]
        fanned = [(d.id, round(d.score, 5)) for d in sharded.search(query, top_k=10, filters=filters)]
        assert fanned == one


def test_keyword_search_merges_the_shards_by_score(stores):
    single, sharded = stores
    found = sharded.keyword_search("glacier lantern", top_k=20)
    assert len(found) == 20 and all("glacier" in d.content or "lantern" in d.content for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    # Chunks holding both words rank first in both, whatever each shard's statistics.
    both = {d.id for d in single.filter_documents() if "glacier" in d.content and "lantern" in d.content}
    assert {d.id for d in found[: len(both)]} == both


def test_writes_and_removals_go_to_the_file_s_shard(stores, tmp_path):
    sharded = ShardedStore.create(tmp_path / "s", 2, embedder="e", dimension=DIMENSION)
    sharded.write_documents(corpus(24))
    holder = sharded.shards[shard_of("/kb/file1.md", 2)]
    assert holder.sources()["/kb/file1.md"] == 6
    assert sharded.file_chunks("/kb/file1.md") == holder.file_chunks("/kb/file1.md") is not None
    assert sharded.delete_by_source("/kb/file1.md") == 6 and "/kb/file1.md" not in sharded.sources()
    with pytest.raises(ConfigError, match="source"):
        sharded.write_documents([Document(id="x", content="x", embedding=[1.0] * DIMENSION)])
    reopened = ShardedStore(tmp_path / "s")
    assert reopened.count_documents() == 18 and reopened.verify() == []


def test_shards_built_with_different_embedders_are_refused(tmp_path):
    ShardedStore.create(tmp_path / "s", 2, embedder="e", dimension=DIMENSION)
    FaissDocumentStore.create(tmp_path / "s" / "shard-1", embedder="other", dimension=DIMENSION, overwrite=True)
    with pytest.raises(IndexMismatchError, match="every shard must be built alike"):
        ShardedStore(tmp_path / "s")
    listing = json.loads((tmp_path / "s" / SHARDS_FILE).read_text())
    assert listing == {"format": 1, "shards": ["shard-0", "shard-1"]}


def test_indexed_roots_are_recorded_once_in_one_place_and_roll_back_with_their_block(tmp_path):
    root = tmp_path.resolve()
    single = FaissDocumentStore.create(tmp_path / "single", embedder="e", dimension=DIMENSION)
    sharded = ShardedStore.create(tmp_path / "sharded", 3, embedder="e", dimension=DIMENSION)
    for store in (single, sharded):
        assert store.roots() == []
        store.add_roots([tmp_path / "docs", tmp_path / "docs" / ".." / "one.pdf"])
        store.add_roots([tmp_path / "docs"])  # recorded already
        with pytest.raises(RuntimeError), store.writer():
            store.add_roots([tmp_path / "gone"])
            raise RuntimeError("the block fails")
        assert store.roots() == [str(root / "docs"), str(root / "one.pdf")]
    assert FaissDocumentStore.open(tmp_path / "single").roots() == [str(root / "docs"), str(root / "one.pdf")]
    reopened = ShardedStore(tmp_path / "sharded")
    assert reopened.roots() == [str(root / "docs"), str(root / "one.pdf")]
    assert [shard.roots() for shard in reopened.shards[1:]] == [[], []]  # kept in the first shard only


def test_document_qa_indexes_into_shards_and_searches_them_as_one(tmp_path, sample_data_dir, minilm_dir):
    from spanqa.pipelines.api import DocumentQA

    # float32: int8 embedding quantises activations per batch, and the two runs batch chunks differently.
    options = {"embedder": str(minilm_dir), "device": "cpu", "retrieval": "dense", "embedder_precision": "float32"}
    single = DocumentQA(tmp_path / "one", **options)
    sharded = DocumentQA(tmp_path / "three", shards=3, **options)
    reports = [qa.index([sample_data_dir]) for qa in (single, sharded)]
    assert [(f.source, f.chunks) for f in reports[0].indexed] == [(f.source, f.chunks) for f in reports[1].indexed]
    assert (tmp_path / "three" / SHARDS_FILE).is_file() and ShardedStore(tmp_path / "three").verify() == []
    for question in ("When was the lighthouse built?", "What grows in the greenhouse?", "bicycle frames"):
        one = single.search(question, top_k=5)
        fanned = sharded.search(question, top_k=5)
        assert [(p.source, p.page, p.start) for p in fanned] == [(p.source, p.page, p.start) for p in one]
        assert [p.score for p in fanned] == pytest.approx([p.score for p in one], abs=1e-5)
    again = DocumentQA(tmp_path / "three", device="cpu").index([sample_data_dir])
    assert all(f.chunks > 0 for f in again.indexed)  # unchanged files kept, found in their shards
    with pytest.raises(ConfigError, match="3 shard"):
        DocumentQA(tmp_path / "three", device="cpu", shards=2).files()
