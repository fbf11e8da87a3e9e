"""Metadata filters inside the search: Haystack filter syntax, applied before ranking, top_k filled."""

from __future__ import annotations

import numpy as np
import pytest
from haystack import Document
from haystack.utils.filters import document_matches_filter

from spanqa.errors import ConfigError
from spanqa.indexing.retrieval.retriever import FaissEmbeddingRetriever
from spanqa.indexing.store.faiss_store import FaissDocumentStore, IndexTuning
from spanqa.indexing.store.filters import filter_sql

DIMENSION = 8


def corpus(count: int = 300) -> list[Document]:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    documents = []
    for index in range(count):
        meta = {
            "source": f"/docs/file{index % 5}.{'pdf' if index % 2 else 'md'}",
            "file_type": "pdf" if index % 2 else "md",
            "page": index % 7 + 1,
            "date": f"2024-{index % 12 + 1:02d}-{index % 28 + 1:02d}",
        }
        if index % 3 == 0:
            meta["team"] = "legal"
        if index % 10 == 0:
            meta["tags"] = ["a", "b"]
        documents.append(Document(id=f"d{index}", content=f"text {index}", meta=meta, embedding=vectors[index].tolist()))
    return documents


FILTERS = [
    {"field": "meta.page", "operator": "==", "value": 3},
    {"field": "meta.page", "operator": "!=", "value": 3},
    {"field": "meta.page", "operator": ">", "value": 5},
    {"field": "meta.page", "operator": "<=", "value": 2},
    {"field": "meta.source", "operator": "in", "value": ["/docs/file1.pdf", "/docs/file2.md"]},
    {"field": "meta.file_type", "operator": "not in", "value": ["pdf"]},
    {"field": "meta.team", "operator": "==", "value": "legal"},
    {"field": "meta.team", "operator": "!=", "value": "legal"},
    {"field": "meta.team", "operator": "==", "value": None},
    {"field": "meta.team", "operator": "not in", "value": ["legal"]},
    {"field": "meta.date", "operator": ">=", "value": "2024-06-01"},
    {"field": "meta.date", "operator": "<", "value": "2024-03-15T00:00:00"},
    {"field": "meta.tags", "operator": "==", "value": ["a", "b"]},
    {"field": "id", "operator": "in", "value": ["d1", "d2", "nope"]},
    {"field": "content", "operator": "==", "value": "text 42"},
    {
        "operator": "AND",
        "conditions": [
            {"field": "meta.file_type", "operator": "==", "value": "pdf"},
            {"operator": "OR", "conditions": [
                {"field": "meta.page", "operator": "==", "value": 1},
                {"field": "meta.team", "operator": "==", "value": "legal"},
            ]},
        ],
    },
    {"operator": "NOT", "conditions": [
        {"field": "meta.page", "operator": ">", "value": 2},
        {"field": "meta.file_type", "operator": "==", "value": "md"},
    ]},
]


# HNSW from 100 vectors a segment, so the 300 chunks make an HNSW segment on the "hnsw" index.
SETTINGS = IndexTuning(approximate_min_vectors=100)


@pytest.fixture(scope="module", params=["flat", "hnsw"])
def store(request, tmp_path_factory):
    store = FaissDocumentStore.create(
        tmp_path_factory.mktemp("filters"), embedder="test/e", dimension=DIMENSION, index_type=request.param,
        settings=SETTINGS,
    )
    store.write_documents(corpus())
    opened = FaissDocumentStore.open(store.index_dir, settings=SETTINGS)
    assert opened.structure == request.param
    return opened


@pytest.mark.parametrize("filters", FILTERS)
def test_filter_documents_matches_haystack_semantics(store, filters):
    expected = [doc.id for doc in corpus() if document_matches_filter(filters, doc)]
    assert [doc.id for doc in store.filter_documents(filters)] == expected


@pytest.mark.parametrize("filters", FILTERS)
def test_filtered_search_is_the_exact_ranking_of_the_matching_chunks(store, filters):
    documents = corpus()
    query = np.random.default_rng(1).normal(size=DIMENSION).astype(np.float32)
    matching = [doc for doc in documents if document_matches_filter(filters, doc)]
    vectors = np.asarray([doc.embedding for doc in matching], dtype=np.float32).reshape(-1, DIMENSION)
    cosines = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    expected = [matching[i].id for i in np.argsort(-cosines, kind="stable")[:10]]
    results = store.search(query.tolist(), top_k=10, filters=filters)
    assert len(results) == min(10, len(matching))
    assert [doc.id for doc in results] == expected
    assert all(document_matches_filter(filters, doc) for doc in results)


@pytest.mark.parametrize("exact_max", [0, 100_000])
def test_a_selective_filter_still_fills_top_k(store, exact_max):
    # exact_max 0 forces the FAISS ID-selector path, 100000 the exact ranking of the subset.
    store = FaissDocumentStore.open(store.index_dir, settings=IndexTuning(approximate_min_vectors=100, filter_exact_max=exact_max))
    rare = {"field": "meta.page", "operator": "==", "value": 7}  # 42 of 300 chunks
    query = np.asarray(corpus()[0].embedding, dtype=np.float32)
    results = store.search(query.tolist(), top_k=25, filters=rare)
    assert len(results) == 25 and all(doc.meta["page"] == 7 for doc in results)
    scores = [doc.score for doc in results]
    assert scores == sorted(scores, reverse=True)


def under_corpus() -> list[Document]:
    sources = ["/kb/hr", "/kb/hr/a.pdf", "/kb/hr/deep/b.pdf", "/kb/hrx.pdf", "/kb/hr-old/c.pdf", "/kb/legal/d.pdf",
               "/kb/hr.pdf", "/other/hr/e.pdf"]
    rng = np.random.default_rng(3)
    return [
        Document(id=f"u{i}", content=f"text {i}", meta={"source": source, "page": 1},
                 embedding=rng.normal(size=DIMENSION).tolist())
        for i, source in enumerate(sources)
    ]


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ("/kb/hr", {"/kb/hr", "/kb/hr/a.pdf", "/kb/hr/deep/b.pdf"}),
        ("/kb/hr/", {"/kb/hr", "/kb/hr/a.pdf", "/kb/hr/deep/b.pdf"}),
        (["/kb/hr/deep", "/kb/legal"], {"/kb/hr/deep/b.pdf", "/kb/legal/d.pdf"}),
        ("/kb/hr/a.pdf", {"/kb/hr/a.pdf"}),
        ("/nowhere", set()),
    ],
)
def test_under_matches_a_path_and_what_lies_below_it_as_a_folder(tmp_path, folders, expected):
    store = FaissDocumentStore.create(tmp_path / "under", embedder="test/e", dimension=DIMENSION)
    store.write_documents(under_corpus())
    under = {"field": "meta.source", "operator": "under", "value": folders}
    found = {doc.meta["source"] for doc in store.filter_documents(under)}
    assert found == expected
    # Inside the ranking too, with top_k filled from the allowed chunks only.
    results = store.search([1.0] * DIMENSION, top_k=8, filters=under)
    assert {doc.meta["source"] for doc in results} == expected
    assert {doc.meta["source"] for doc in store.keyword_search("text", top_k=8, filters=under)} == expected


@pytest.mark.parametrize("value", ["/", "", [], ["/kb", 3]])
def test_under_needs_paths(store, value):
    with pytest.raises(ConfigError, match="under"):
        store.search([1.0] * DIMENSION, top_k=3, filters={"field": "meta.source", "operator": "under", "value": value})


def test_a_filter_nothing_matches_returns_nothing(store):
    nothing = {"field": "meta.page", "operator": "==", "value": 99}
    assert store.search([1.0] * DIMENSION, top_k=5, filters=nothing) == []


@pytest.mark.parametrize(
    "filters",
    [
        {"field": "meta.page", "value": 3},
        {"field": "meta.page", "operator": "~", "value": 3},
        {"operator": "XOR", "conditions": []},
        {"field": "page", "operator": "==", "value": 3},
        {"field": "meta.page", "operator": "in", "value": 3},
        {"field": "meta.date", "operator": ">", "value": "last tuesday"},
        {"field": "meta.page", "operator": ">", "value": [1, 2]},
        "meta.page == 3",
    ],
)
def test_bad_filters_raise_config_error_naming_the_problem(store, filters):
    with pytest.raises(ConfigError):
        store.search([1.0] * DIMENSION, top_k=3, filters=filters)


def test_retriever_applies_init_and_run_filters_and_round_trips(store):
    pdf_only = {"field": "meta.file_type", "operator": "==", "value": "pdf"}
    retriever = FaissEmbeddingRetriever(document_store=store, top_k=5, filters=pdf_only)
    assert all(doc.meta["file_type"] == "pdf" for doc in retriever.run(query_embedding=[1.0] * DIMENSION)["documents"])
    md_only = {"field": "meta.file_type", "operator": "==", "value": "md"}
    run_result = retriever.run(query_embedding=[1.0] * DIMENSION, filters=md_only)["documents"]
    assert len(run_result) == 5 and all(doc.meta["file_type"] == "md" for doc in run_result)
    restored = FaissEmbeddingRetriever.from_dict(retriever.to_dict())
    assert restored.filters == pdf_only
    with pytest.raises(ConfigError):
        FaissEmbeddingRetriever(document_store=store, filters={"operator": "??"})


@pytest.mark.parametrize(("filters", "expected"), [
    ({"field": "meta.tags", "operator": "contains", "value": "a"}, lambda i: i % 10 == 0),
    ({"field": "meta.tags", "operator": "contains", "value": ["zzz", "b"]}, lambda i: i % 10 == 0),
    ({"field": "meta.team", "operator": "contains", "value": "legal"}, lambda i: i % 3 == 0),  # a scalar: equal
    ({"field": "meta.tags", "operator": "==", "value": "a"}, lambda i: False),  # Haystack's ==: the whole list
])
def test_contains_finds_a_tag_in_a_list_field(store, filters, expected):
    assert [doc.id for doc in store.filter_documents(filters)] == [f"d{i}" for i in range(300) if expected(i)]
    query = np.asarray(corpus()[0].embedding, dtype=np.float32)
    hits = store.search(query.tolist(), top_k=5, filters=filters)
    assert len(hits) == min(5, sum(1 for i in range(300) if expected(i)))


@pytest.mark.parametrize(("filters", "index"), [
    ({"field": "meta.team", "operator": "==", "value": "legal"}, "chunk_meta_value"),
    ({"field": "meta.tags", "operator": "contains", "value": "a"}, "chunk_meta_value"),
    ({"field": "meta.date", "operator": ">=", "value": "2024-06-01"}, "chunk_meta_number"),
    ({"field": "meta.file_type", "operator": "in", "value": ["pdf", "txt"]}, "chunk_meta_value"),
])
def test_metadata_filters_read_the_value_index_not_each_chunk_s_json(store, filters, index):
    clause, params = filter_sql(filters)
    assert "json" not in clause
    plan = store._connection.execute(f"EXPLAIN QUERY PLAN SELECT id FROM chunks WHERE {clause}", params).fetchall()
    assert index in " ".join(str(row[-1]) for row in plan)
