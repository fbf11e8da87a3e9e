from __future__ import annotations

import pytest
from haystack import Document

from spanqa.errors import ConfigError
from spanqa.indexing.hybrid import HybridRetriever
from spanqa.indexing.keyword import match_expression, query_terms
from spanqa.indexing.store import FaissDocumentStore

DIMENSION = 4
TEXTS = {
    "bikes": ("Aurora Bicycle Works was founded in 1987 in Portland.", "/kb/aurora/history.md", [1, 0, 0, 0]),
    "lamps": ("The harbor lighthouse lamp was replaced in 2003.", "/kb/harbor/report.pdf", [0, 1, 0, 0]),
    "plants": ("Tomatoes in the greenhouse need watering twice a day.", "/kb/garden/notes.md", [0, 0, 1, 0]),
    "frames": ("Bicycle frames are welded from chromoly steel tubes.", "/kb/aurora/frames.md", [0.9, 0, 0, 0.1]),
}


def _store(directory, index_type="flat"):
    store = FaissDocumentStore.create(directory, embedder="test/e", dimension=DIMENSION, index_type=index_type)
    store.write_documents(
        [
            Document(id=name, content=text, meta={"source": source, "page": 1, "start": 0, "end": len(text)},
                     embedding=vector)
            for name, (text, source, vector) in TEXTS.items()
        ]
    )
    store.save()
    return store


def test_query_terms_drop_stop_words_and_repeats():
    assert query_terms("When was the Aurora bicycle company founded, and when?") == ["aurora", "bicycle", "company", "founded"]
    assert match_expression("the of and") is None
    assert match_expression('say "hi"') == '"say" OR "hi"'


def test_keyword_search_ranks_by_words_with_stemming(tmp_path):
    store = _store(tmp_path / "i")

    found = store.keyword_search("Who welds bicycle frame tubes?", top_k=3)

    assert [d.id for d in found][:2] == ["frames", "bikes"]  # "welds"~"welded", "frame"~"frames"
    assert found[0].score > found[1].score > 0
    assert store.keyword_search("the and of", top_k=3) == []


def test_file_names_and_folders_are_searchable_words(tmp_path):
    store = _store(tmp_path / "i")

    assert [d.id for d in store.keyword_search("garden", top_k=2)] == ["plants"]


def test_keyword_index_follows_deletes_and_survives_reopening(tmp_path):
    store = _store(tmp_path / "i")
    store.delete_by_source("/kb/aurora/frames.md")
    store.save()

    reopened = FaissDocumentStore.open(tmp_path / "i")

    assert [d.id for d in reopened.keyword_search("bicycle", top_k=5)] == ["bikes"]


def test_an_unsaved_batch_is_not_seen_by_keyword_search_elsewhere(tmp_path):
    store = _store(tmp_path / "i")
    store.write_documents([Document(id="new", content="bicycle bicycle", meta={"source": "/n", "page": 1},
                                    embedding=[1, 0, 0, 0])])
    other = FaissDocumentStore.open(tmp_path / "i")

    assert "new" not in [d.id for d in other.keyword_search("bicycle", top_k=5)]
    store.rollback()


def test_keyword_search_applies_filters_inside_the_ranking(tmp_path):
    store = _store(tmp_path / "i")
    only_aurora = {"field": "meta.source", "operator": "==", "value": "/kb/aurora/frames.md"}

    assert [d.id for d in store.keyword_search("bicycle founded Portland", top_k=5, filters=only_aurora)] == ["frames"]


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_hybrid_finds_what_either_side_finds(tmp_path, index_type):
    store = _store(tmp_path / "i", index_type)
    retriever = HybridRetriever(store, top_k=2)

    # words point at the lighthouse, the embedding at the bicycles: both come back
    found = retriever.run(query="lighthouse lamp", query_embedding=[1, 0, 0, 0])["documents"]

    assert {d.id for d in found} == {"lamps", "bikes"}
    assert all(0.0 <= d.score <= 1.0 for d in found)


def test_hybrid_ranks_agreement_first(tmp_path):
    store = _store(tmp_path / "i")

    found = HybridRetriever(store, top_k=4).run(query="bicycle founded", query_embedding=[1, 0, 0, 0])["documents"]

    assert found[0].id == "bikes" and found[0].score == pytest.approx(1.0)


def test_modes_dense_and_keyword(tmp_path):
    store = _store(tmp_path / "i")

    dense = HybridRetriever(store, top_k=1, mode="dense").run(query="lighthouse", query_embedding=[0, 0, 1, 0])
    keyword = HybridRetriever(store, top_k=1, mode="keyword").run(query="lighthouse")

    assert [d.id for d in dense["documents"]] == ["plants"]
    assert dense["documents"][0].score == pytest.approx(1.0)  # cosine
    assert [d.id for d in keyword["documents"]] == ["lamps"]
    with pytest.raises(ConfigError, match="embedding"):
        HybridRetriever(store, mode="hybrid").run(query="x")


def test_passages_carry_their_cosine_similarity(tmp_path):
    store = _store(tmp_path / "i")
    query = [0.6, 0.8, 0, 0]  # cosine 0.6 with "bikes", 0.8 with "lamps"

    hybrid = HybridRetriever(store, top_k=3, candidates=1).run(query="greenhouse", query_embedding=query)["documents"]
    dense = HybridRetriever(store, top_k=2, mode="dense").run(query="x", query_embedding=query)["documents"]
    keyword = HybridRetriever(store, top_k=1, mode="keyword").run(query="greenhouse")["documents"]

    similarity = {d.id: d.meta.get("similarity") for d in hybrid}
    assert similarity["lamps"] == pytest.approx(0.8) and similarity["bikes"] == pytest.approx(0.6)
    assert similarity["plants"] == pytest.approx(0.0)  # found by its words only, measured all the same
    assert [d.meta["similarity"] for d in dense] == pytest.approx([0.8, 0.6])
    assert "similarity" not in keyword[0].meta
    # the store's own metadata is left as it was
    assert "similarity" not in store.filter_documents({"field": "id", "operator": "==", "value": "lamps"})[0].meta


def test_round_trip_and_bad_settings(tmp_path):
    store = _store(tmp_path / "i")
    retriever = HybridRetriever(store, top_k=3, mode="keyword", dense_weight=0.7, candidates=20)

    again = HybridRetriever.from_dict(retriever.to_dict())

    assert (again.top_k, again.mode, again.dense_weight, again.candidates) == (3, "keyword", 0.7, 20)
    assert again.document_store.index_dir == store.index_dir
    with pytest.raises(ConfigError):
        HybridRetriever(store, mode="bm25")
    with pytest.raises(ConfigError):
        HybridRetriever(store, dense_weight=2)
