"""FaissDocumentStore (protocol, search, persistence) and FaissEmbeddingRetriever."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy

from spanqa.errors import ConfigError, IndexMismatchError, IndexNotFoundError
from spanqa.indexing.retrieval.retriever import FaissEmbeddingRetriever
from spanqa.indexing.store.faiss_store import FORMAT_VERSION, FaissDocumentStore

DIMENSION = 8
EMBEDDER = "test/random-embedder"


def random_vectors(count: int, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)


def make_documents(count: int, seed: int = 0, source: str = "/docs/a.pdf") -> list[Document]:
    vectors = random_vectors(count, seed=seed)
    return [
        Document(
            id=f"{source}#{index}",
            content=f"chunk {index} of {source}",
            meta={"source": source, "page": index % 3 + 1, "start": 0, "end": 10},
            embedding=vectors[index].tolist(),
        )
        for index in range(count)
    ]


@pytest.fixture
def store(tmp_path) -> FaissDocumentStore:
    return FaissDocumentStore.create(tmp_path / "index", embedder=EMBEDDER, dimension=DIMENSION)


# Creating and opening


def test_create_writes_an_empty_index_and_a_writer_block_commits_its_writes_together(tmp_path):
    index_dir = tmp_path / "nested" / "index"
    store = FaissDocumentStore.create(index_dir, embedder=EMBEDDER, dimension=DIMENSION)
    assert FaissDocumentStore.exists(index_dir)
    assert FaissDocumentStore.open(index_dir).count_documents() == 0
    with store.writer():
        store.write_documents(make_documents(3))
        assert store.count_documents() == 3
        assert FaissDocumentStore.open(index_dir).count_documents() == 0  # other readers see the last commit
    assert sorted(path.name for path in index_dir.iterdir() if not path.name.startswith("chunks.sqlite")) == [
        "manifest.json", "segment.1.0.faiss"
    ]
    reopened = FaissDocumentStore.open(index_dir)
    assert (reopened.embedder, reopened.dimension, reopened.count_documents()) == (EMBEDDER, DIMENSION, 3)


def test_a_write_outside_a_writer_block_commits_at_once(store):
    store.write_documents(make_documents(2))
    assert FaissDocumentStore.open(store.index_dir).count_documents() == 2


def test_a_writer_block_that_raises_commits_nothing(store):
    store.write_documents(make_documents(2))
    with pytest.raises(RuntimeError), store.writer():
        store.write_documents(make_documents(3, seed=4, source="/docs/b.pdf"))
        store.delete_documents(["/docs/a.pdf#0"])
        raise RuntimeError("the indexing run failed")
    assert store.count_documents() == 2 and store.sources() == {"/docs/a.pdf": 2}
    assert FaissDocumentStore.open(store.index_dir).count_documents() == 2


def test_open_without_an_index_raises_index_not_found(tmp_path):
    with pytest.raises(IndexNotFoundError):
        FaissDocumentStore.open(tmp_path / "nothing-here")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(IndexNotFoundError):
        FaissDocumentStore(tmp_path / "empty-dir")


def test_create_refuses_to_replace_an_index_unless_told(store):
    with pytest.raises(ConfigError):
        FaissDocumentStore.create(store.index_dir, embedder=EMBEDDER, dimension=DIMENSION)
    store.write_documents(make_documents(2))
    fresh = FaissDocumentStore.create(store.index_dir, embedder="other/model", dimension=4, overwrite=True)
    assert fresh.count_documents() == 0
    reopened = FaissDocumentStore.open(store.index_dir)
    assert (reopened.dimension, reopened.count_documents()) == (4, 0)


def test_manifest_describes_the_index(store):
    store.write_documents(make_documents(2))
    manifest = json.loads((store.index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedder"] == EMBEDDER
    assert manifest["dimension"] == DIMENSION
    assert manifest["metric"] == "cosine"
    assert manifest["normalized"] is True
    assert manifest["index_type"] == "flat"


def test_save_then_open_gives_the_same_store(store):
    store.write_documents(make_documents(20))
    store.delete_documents(["/docs/a.pdf#3"])
    reopened = FaissDocumentStore.open(store.index_dir)
    assert reopened.count_documents() == 19
    assert [doc.id for doc in reopened.filter_documents()] == [doc.id for doc in store.filter_documents()]
    assert reopened.filter_documents() == store.filter_documents()
    for query in random_vectors(5, seed=42):
        before = store.search(query.tolist(), top_k=7)
        after = reopened.search(query.tolist(), top_k=7)
        assert [(doc.id, doc.score) for doc in after] == [(doc.id, doc.score) for doc in before]
    # Writing after a reopen must not reuse the FAISS ids of documents already there.
    reopened.write_documents(make_documents(2, seed=9, source="/docs/b.pdf"))
    assert reopened.count_documents() == 21


def test_each_commit_adds_one_segment_file_and_compaction_leaves_one(store):
    store.write_documents(make_documents(4))
    store.write_documents(make_documents(2, seed=3, source="/docs/b.pdf"))
    with store.writer():
        pass  # nothing to commit
    names = sorted(path.name for path in store.index_dir.iterdir() if not path.name.startswith("chunks.sqlite"))
    assert names == ["manifest.json", "segment.1.0.faiss", "segment.2.0.faiss"]
    store.delete_documents(["/docs/a.pdf#0"])
    assert store.compact().segments_merged == 2
    names = sorted(path.name for path in store.index_dir.iterdir() if not path.name.startswith("chunks.sqlite"))
    assert names == ["manifest.json", "segment.4.1.0.faiss"]
    assert store.segments == [("segment.4.1.0.faiss", "flat", 5, 5)] and store.verify() == []


def test_content_with_unusual_line_separators_survives_a_round_trip(store):
    document = make_documents(1)[0]
    odd = Document(
        id="odd", content="a\u2028b\u0085c\nd\re", meta={"source": "/x", "note": "\u2029"}, embedding=document.embedding
    )
    store.write_documents([odd])
    assert FaissDocumentStore.open(store.index_dir).filter_documents()[0].content == "a\u2028b\u0085c\nd\re"


@pytest.mark.parametrize(("version", "message"), [(FORMAT_VERSION + 1, f"format version {FORMAT_VERSION + 1}"),
                                                  (1, "format version 1")])
def test_other_format_version_raises_index_mismatch_naming_the_fix(store, version, message):
    manifest_path = store.index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = version
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match=message) as raised:
        FaissDocumentStore.open(store.index_dir)
    assert "index the files again" in str(raised.value)


def test_an_index_made_before_the_cjk_keyword_table_is_read_as_it_is_and_filled_by_its_next_writer(tmp_path):
    index_dir = tmp_path / "index"
    store = FaissDocumentStore.create(index_dir, embedder=EMBEDDER, dimension=DIMENSION)
    fax = Document(id="fax", content="传真文件内容包括合同编号和付款日期。", meta={"source": "/docs/fax.pdf"},
                   embedding=random_vectors(1, seed=5)[0].tolist())
    store.write_documents([fax, *make_documents(3)])
    store.close()
    connection = sqlite3.connect(index_dir / "chunks.sqlite")
    for trigger in ("chunks_cjk_insert", "chunks_cjk_delete", "chunks_cjk_update"):
        connection.execute(f"DROP TRIGGER {trigger}")
    connection.execute("DROP TABLE chunks_cjk")
    connection.commit()
    connection.close()

    reader = FaissDocumentStore.open(index_dir)
    assert reader.keyword_search("合同", top_k=5) == []
    assert len(reader.keyword_search("chunk", top_k=5)) == 3

    writer = FaissDocumentStore.open(index_dir)
    writer.write_documents(make_documents(1, seed=1, source="/docs/b.pdf"))
    assert [d.id for d in reader.keyword_search("合同", top_k=5)] == ["fax"]
    assert [d.id for d in reader.keyword_search("付款日期", top_k=5)] == ["fax"]
    assert reader._connection.execute("SELECT COUNT(*) FROM chunks_cjk").fetchone()[0] == 1  # the CJK chunk only

    writer.delete_by_source("/docs/fax.pdf")
    assert reader.keyword_search("合同", top_k=5) == []
    assert reader._connection.execute("SELECT COUNT(*) FROM chunks_cjk").fetchone()[0] == 0


def test_stale_files_of_an_interrupted_save_are_removed_and_ignored(store):
    store.write_documents(make_documents(3))
    (store.index_dir / "segment.2.0.faiss").write_bytes(b"half a file")
    (store.index_dir / ".segment.2.0.faiss.abc.tmp").write_bytes(b"partial")
    reopened = FaissDocumentStore.open(store.index_dir)
    assert reopened.count_documents() == 3 and reopened.verify() == []
    reopened.write_documents(make_documents(1, source="/docs/c.pdf"))
    assert not (store.index_dir / ".segment.2.0.faiss.abc.tmp").exists()
    assert FaissDocumentStore.open(store.index_dir).count_documents() == 4


def test_opening_with_another_embedder_or_dimension_raises_index_mismatch(store):
    with pytest.raises(IndexMismatchError, match="test/random-embedder"):
        FaissDocumentStore(store.index_dir, embedder="other/model", dimension=DIMENSION)
    with pytest.raises(IndexMismatchError, match="8-dimensional"):
        FaissDocumentStore(store.index_dir, embedder=EMBEDDER, dimension=16)
    assert FaissDocumentStore(store.index_dir, embedder=EMBEDDER, dimension=DIMENSION).dimension == DIMENSION


def test_constructor_with_settings_starts_an_empty_store_where_there_is_none(tmp_path):
    store = FaissDocumentStore(tmp_path / "new", embedder=EMBEDDER, dimension=DIMENSION)
    assert store.count_documents() == 0


@pytest.mark.parametrize("dimension", [0, -3, 2.0, True])
def test_bad_dimension_raises_config_error(tmp_path, dimension):
    with pytest.raises(ConfigError):
        FaissDocumentStore.create(tmp_path / "index", embedder=EMBEDDER, dimension=dimension)


# Writing, filtering, deleting


def test_write_count_filter(store):
    assert store.write_documents(make_documents(6)) == 6
    store.write_documents(make_documents(2, seed=1, source="/docs/b.pdf"))
    assert store.count_documents() == 8
    page_one_of_a = store.filter_documents(
        {
            "operator": "AND",
            "conditions": [
                {"field": "meta.source", "operator": "==", "value": "/docs/a.pdf"},
                {"field": "meta.page", "operator": "==", "value": 1},
            ],
        }
    )
    assert [doc.id for doc in page_one_of_a] == ["/docs/a.pdf#0", "/docs/a.pdf#3"]
    by_id = store.filter_documents({"field": "id", "operator": "in", "value": ["/docs/b.pdf#1"]})
    assert [doc.id for doc in by_id] == ["/docs/b.pdf#1"]


def test_stored_documents_are_copies_without_embeddings(store):
    documents = make_documents(2)
    store.write_documents(documents)
    stored = store.filter_documents()
    assert all(doc.embedding is None for doc in stored)
    assert documents[0].embedding is not None  # the caller's Document is left alone
    assert [doc.content for doc in stored] == [doc.content for doc in documents]


def test_duplicate_policy_none_and_fail_raise_and_write_nothing(store):
    store.write_documents(make_documents(3))
    new_and_duplicate = make_documents(1, source="/docs/new.pdf") + make_documents(1)
    for policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL):
        with pytest.raises(DuplicateDocumentError):
            store.write_documents(new_and_duplicate, policy=policy)
        assert store.count_documents() == 3
    twice_in_one_batch = make_documents(1, source="/docs/twice.pdf") * 2
    with pytest.raises(DuplicateDocumentError):
        store.write_documents(twice_in_one_batch)


def test_duplicate_policy_skip_keeps_the_stored_document(store):
    store.write_documents(make_documents(3))
    changed = Document(id="/docs/a.pdf#0", content="changed", embedding=random_vectors(1, seed=5)[0].tolist())
    new = make_documents(1, source="/docs/new.pdf")
    assert store.write_documents([changed] + new, policy=DuplicatePolicy.SKIP) == 1
    assert store.count_documents() == 4
    [kept] = store.filter_documents({"field": "id", "operator": "==", "value": "/docs/a.pdf#0"})
    assert kept.content == "chunk 0 of /docs/a.pdf"


def test_duplicate_policy_overwrite_replaces_document_and_vector(store):
    store.write_documents(make_documents(3))
    new_vector = random_vectors(1, seed=5)[0]
    changed = Document(id="/docs/a.pdf#0", content="changed", meta={"source": "/x"}, embedding=new_vector.tolist())
    assert store.write_documents([changed], policy=DuplicatePolicy.OVERWRITE) == 1
    assert store.count_documents() == 3
    [best] = store.search(new_vector.tolist(), top_k=1)
    assert (best.id, best.content) == ("/docs/a.pdf#0", "changed")
    assert best.score == pytest.approx(1.0, abs=1e-5)


def test_delete_documents_removes_them_from_search(store):
    documents = make_documents(5)
    store.write_documents(documents)
    store.delete_documents(["/docs/a.pdf#2", "not-there"])
    assert store.count_documents() == 4
    results = store.search(documents[2].embedding, top_k=5)
    assert "/docs/a.pdf#2" not in [doc.id for doc in results]
    assert len(results) == 4


def test_sources_and_delete_by_source(store):
    store.write_documents(make_documents(4, source="/docs/b.pdf"))
    store.write_documents(make_documents(2, seed=1, source="/docs/a.pdf"))
    assert store.sources() == {"/docs/a.pdf": 2, "/docs/b.pdf": 4}
    assert store.delete_by_source("/docs/b.pdf") == 4
    assert store.sources() == {"/docs/a.pdf": 2}
    assert store.delete_by_source("/docs/never.pdf") == 0
    assert all(doc.meta["source"] == "/docs/a.pdf" for doc in store.search(random_vectors(1)[0].tolist(), top_k=10))


def test_document_without_embedding_is_refused(store):
    with pytest.raises(ConfigError, match="no embedding"):
        store.write_documents([Document(content="no vector")])
    assert store.count_documents() == 0


def test_embedding_of_wrong_dimension_raises_index_mismatch_naming_both(store):
    wrong = Document(content="wrong size", embedding=[0.1] * (DIMENSION + 1))
    with pytest.raises(IndexMismatchError, match=r"9-dimensional.*8-dimensional"):
        store.write_documents(make_documents(1) + [wrong])
    assert store.count_documents() == 0


def test_zero_embedding_is_refused(store):
    with pytest.raises(ConfigError):
        store.write_documents([Document(content="zero", embedding=[0.0] * DIMENSION)])


# Searching


def test_a_vector_is_its_own_nearest_neighbour_with_cosine_one(store):
    documents = make_documents(30)
    store.write_documents(documents)
    for document in documents[:5]:
        best = store.search(document.embedding, top_k=3)[0]
        assert best.id == document.id
        assert best.score == pytest.approx(1.0, abs=1e-5)


def test_search_scores_are_cosine_similarities_best_first(store):
    documents = make_documents(12)
    store.write_documents(documents)
    query = random_vectors(1, seed=77)[0] * 3.5  # the query's length must not matter
    results = store.search(query.tolist(), top_k=12)
    embeddings = {doc.id: np.asarray(doc.embedding) for doc in documents}
    for result in results:
        vector = embeddings[result.id]
        cosine = float(query @ vector / (np.linalg.norm(query) * np.linalg.norm(vector)))
        assert result.score == pytest.approx(cosine, abs=1e-5)
    scores = [result.score for result in results]
    assert scores == sorted(scores, reverse=True)


def test_search_returns_at_most_top_k_and_fewer_only_when_the_store_is_smaller(store):
    assert store.search(random_vectors(1)[0].tolist(), top_k=5) == []
    store.write_documents(make_documents(3))
    assert len(store.search(random_vectors(1)[0].tolist(), top_k=2)) == 2
    assert len(store.search(random_vectors(1)[0].tolist(), top_k=10)) == 3


def test_search_does_not_change_stored_documents(store):
    store.write_documents(make_documents(3))
    store.search(random_vectors(1)[0].tolist(), top_k=3)
    assert all(doc.score is None for doc in store.filter_documents())


def test_search_with_query_of_wrong_dimension_raises_index_mismatch(store):
    store.write_documents(make_documents(3))
    with pytest.raises(IndexMismatchError):
        store.search([1.0, 0.0], top_k=1)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, None])
def test_search_with_bad_top_k_raises_config_error(store, top_k):
    with pytest.raises(ConfigError):
        store.search(random_vectors(1)[0].tolist(), top_k=top_k)


# Serialisation


def test_store_to_dict_from_dict_round_trip(store):
    store.write_documents(make_documents(4))
    data = store.to_dict()
    assert data == {
        "type": "spanqa.indexing.store.faiss_store.FaissDocumentStore",
        "init_parameters": {
            "index_dir": str(store.index_dir), "embedder": EMBEDDER, "dimension": DIMENSION, "index_type": "flat",
            "embedding": None,
        },
    }
    restored = FaissDocumentStore.from_dict(data)
    assert restored.count_documents() == 4
    assert restored.filter_documents() == store.filter_documents()


def test_store_records_how_its_vectors_are_made(tmp_path):
    settings = {"precision": "int8", "max_tokens": 128}
    created = FaissDocumentStore.create(tmp_path / "index", embedder=EMBEDDER, dimension=DIMENSION, embedding=settings)
    created.close()
    reopened = FaissDocumentStore.open(tmp_path / "index")
    assert reopened.embedding == settings
    assert reopened.to_dict()["init_parameters"]["embedding"] == settings
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["embedding"] == settings


# FaissEmbeddingRetriever


def test_retriever_returns_nearest_documents(store):
    documents = make_documents(20)
    store.write_documents(documents)
    retriever = FaissEmbeddingRetriever(document_store=store, top_k=4)
    result = retriever.run(query_embedding=documents[7].embedding)
    assert len(result["documents"]) == 4
    assert result["documents"][0].id == documents[7].id
    assert result["documents"][0].score == pytest.approx(1.0, abs=1e-5)
    assert len(retriever.run(query_embedding=documents[7].embedding, top_k=9)["documents"]) == 9


def test_retriever_rejects_bad_settings(store):
    with pytest.raises(ConfigError):
        FaissEmbeddingRetriever(document_store=store, top_k=0)
    with pytest.raises(ConfigError):
        FaissEmbeddingRetriever(document_store="not a store")
    with pytest.raises(ConfigError):
        FaissEmbeddingRetriever(document_store=store).run(query_embedding=[1.0] * DIMENSION, top_k=0)


def test_retriever_to_dict_from_dict_round_trip(store):
    store.write_documents(make_documents(5))
    retriever = FaissEmbeddingRetriever(document_store=store, top_k=3)
    data = retriever.to_dict()
    assert data == {
        "type": "spanqa.indexing.retrieval.retriever.FaissEmbeddingRetriever",
        "init_parameters": {"document_store": store.to_dict(), "top_k": 3, "filters": None},
    }
    restored = FaissEmbeddingRetriever.from_dict(data)
    query = random_vectors(1, seed=3)[0].tolist()
    assert [doc.id for doc in restored.run(query_embedding=query)["documents"]] == [
        doc.id for doc in retriever.run(query_embedding=query)["documents"]
    ]
    assert data["init_parameters"]["document_store"] == store.to_dict()  # from_dict left its input alone


def test_retriever_in_a_pipeline_round_trip(store):
    from haystack import Pipeline

    store.write_documents(make_documents(5))
    pipeline = Pipeline()
    pipeline.add_component("retriever", FaissEmbeddingRetriever(document_store=store, top_k=2))
    # Haystack only loads classes from modules on its allowlist; spanqa's own must be named.
    restored = Pipeline.loads(pipeline.dumps(), allowed_modules=["spanqa"])
    query = make_documents(5)[1].embedding
    result = restored.run({"retriever": {"query_embedding": query}})
    assert [doc.id for doc in result["retriever"]["documents"]][0] == "/docs/a.pdf#1"


# The real embedder, end to end


def test_minilm_paraphrased_question_retrieves_the_right_chunk(tmp_path, minilm_dir, sample_data_dir):
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )

    from spanqa.indexing import ChunkSettings, PageChunker, PageConverter

    settings = {"model": str(minilm_dir), "local_files_only": True, "normalize_embeddings": True, "progress_bar": False}
    document_embedder = SentenceTransformersDocumentEmbedder(**settings)
    text_embedder = SentenceTransformersTextEmbedder(**settings)
    document_embedder.warm_up()
    text_embedder.warm_up()

    names = ("aurora_bicycle_works_handbook.pdf", "harbor_lighthouse_report.pdf", "greenhouse_notes.md")
    sources = [str(sample_data_dir / name) for name in names]
    pages = PageConverter().run(sources=sources)["documents"]
    chunks = PageChunker(ChunkSettings(max_tokens=60, overlap_tokens=10, mode="overlap")).run(documents=pages)["documents"]
    embedded = document_embedder.run(documents=chunks)["documents"]
    dimension = len(embedded[0].embedding)
    assert dimension == 384

    store = FaissDocumentStore.create(tmp_path / "index", embedder=str(minilm_dir), dimension=dimension)
    store.write_documents(embedded)
    retriever = FaissEmbeddingRetriever(document_store=FaissDocumentStore.open(tmp_path / "index"), top_k=3)

    questions = {
        "How many days of paid holiday do staff receive each year?": "27 vacation days",
        "Which company fitted the lighthouse with an LED lamp?": "Tidewater Optics",
        "Where does the greenhouse get the water for its plants?": "60,000-litre tank",
    }
    for question, expected in questions.items():
        query = text_embedder.run(text=question)["embedding"]
        best = retriever.run(query_embedding=query)["documents"][0]
        assert expected in best.content, (question, best.content)
        assert 0.0 < best.score <= 1.0 + 1e-5


def test_file_chunks_tells_what_a_file_s_chunks_record_alike(store):
    vectors = random_vectors(4)
    store.write_documents([
        Document(id=f"/docs/a.pdf#{n}", content=f"chunk {n}", embedding=vectors[n].tolist(),
                 meta={"source": "/docs/a.pdf", "page": n + 1, "team": "hr",
                       **({"ocr": engine} if engine else {})})
        for n, engine in enumerate(["rapidocr 3.10.0", None, "tesseract 5.3.0", "rapidocr 3.10.0"])
    ])
    store.write_documents(make_documents(2, source="/docs/b.pdf"))
    stored = store.file_chunks("/docs/a.pdf")
    assert stored.meta["source"] == "/docs/a.pdf" and stored.meta["team"] == "hr"
    assert stored.ocr_engines == {"rapidocr 3.10.0", "tesseract 5.3.0"}
    assert store.file_chunks("/docs/b.pdf").ocr_engines == frozenset()
    assert store.file_chunks("/docs/missing.pdf") is None
