from __future__ import annotations

import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from spanqa.errors import ConfigError
from spanqa.indexing.retrieval.hybrid import HybridRetriever
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.keyword import cjk_bigrams, cjk_match_expression, match_expression, query_terms

DIMENSION = 4
TEXTS = {
    "bikes": ("Aurora Bicycle Works was founded in 1987 in Portland.", "/kb/aurora/history.md", [1, 0, 0, 0]),
    "lamps": ("The harbor lighthouse lamp was replaced in 2003.", "/kb/harbor/report.pdf", [0, 1, 0, 0]),
    "plants": ("Tomatoes in the greenhouse need watering twice a day.", "/kb/garden/notes.md", [0, 0, 1, 0]),
    "frames": ("Bicycle frames are welded from chromoly steel tubes.", "/kb/aurora/frames.md", [0.9, 0, 0, 0.1]),
}


CJK_TEXTS = {
    "fax": ("传真文件内容包括合同编号和付款日期。请在三日内确认收货，并回传签字页。", "/kb/fax/0412.pdf", [0, 0, 0, 1]),
    # OCR output: spaces and a line break between the characters of one phrase
    "scan": ("会 议 纪 要\n下周讨论预算", "/kb/fax/0413.pdf", [0, 0, 0, 1]),
    "mixed": ("Aurora 在 Portland 签订了合同编号 A-17。", "/kb/fax/0414.pdf", [0, 0, 0, 1]),
    "ja": ("請求書の支払期日は来月末です。", "/kb/jp/督促状.pdf", [0, 0, 0, 1]),
    "ko": ("계약서를 어제 보냈습니다.", "/kb/kr/memo.md", [0, 0, 0, 1]),
}


def _documents(texts):
    return [
        Document(id=name, content=text, meta={"source": source, "page": 1, "start": 0, "end": len(text)},
                 embedding=vector)
        for name, (text, source, vector) in texts.items()
    ]


def _store(directory, index_type="flat", texts=TEXTS):
    store = FaissDocumentStore.create(directory, embedder="test/e", dimension=DIMENSION, index_type=index_type)
    store.write_documents(_documents(texts))
    return store


def _ids(store, query, **settings):
    return [d.id for d in store.keyword_search(query, top_k=10, **settings)]


def _cjk_rows(store):
    return store._connection.execute("SELECT COUNT(*) FROM chunks_cjk").fetchone()[0]


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

    reopened = FaissDocumentStore.open(tmp_path / "i")

    assert [d.id for d in reopened.keyword_search("bicycle", top_k=5)] == ["bikes"]


def test_an_unsaved_batch_is_not_seen_by_keyword_search_elsewhere(tmp_path):
    store = _store(tmp_path / "i")
    other = FaissDocumentStore.open(tmp_path / "i")
    with pytest.raises(RuntimeError), store.writer():
        store.write_documents([Document(id="new", content="bicycle bicycle", meta={"source": "/n", "page": 1},
                                        embedding=[1, 0, 0, 0])])
        assert "new" in [d.id for d in store.keyword_search("bicycle", top_k=5)]
        assert "new" not in [d.id for d in other.keyword_search("bicycle", top_k=5)]
        raise RuntimeError("the batch fails")
    assert "new" not in [d.id for d in store.keyword_search("bicycle", top_k=5)]


def test_keyword_search_applies_filters_inside_the_ranking(tmp_path):
    store = _store(tmp_path / "i")
    only_aurora = {"field": "meta.source", "operator": "==", "value": "/kb/aurora/frames.md"}

    assert [d.id for d in store.keyword_search("bicycle founded Portland", top_k=5, filters=only_aurora)] == ["frames"]


def test_cjk_runs_are_indexed_as_character_pairs():
    assert cjk_bigrams("传真 合同编号, ok 款") == "传真 真合 合同 同编 编号 号 款"  # white space does not end a run
    assert cjk_bigrams("English only") == "" and cjk_bigrams(None) is None
    assert cjk_match_expression("合同编号 and 款 合同编号") == '"合同 同编 编号" OR "款"*'
    assert cjk_match_expression("English only") is None


def test_chinese_japanese_and_korean_phrases_are_found_inside_their_runs(tmp_path):
    store = _store(tmp_path / "i", texts={**TEXTS, **CJK_TEXTS})

    assert sorted(_ids(store, "合同")) == ["fax", "mixed"]
    assert _ids(store, "付款日期") == ["fax"]
    assert _ids(store, "合同编号是多少？") == []  # the whole run is one phrase, and this one is in no chunk
    assert _ids(store, "编号合同") == []  # its characters are there, not in this order
    assert _ids(store, "日确") == []  # a pair across punctuation
    assert _ids(store, "会议纪要") == _ids(store, "纪要") == ["scan"]  # OCR spaces
    assert _ids(store, "要下周") == ["scan"]  # a line break inside the run
    assert _ids(store, "页") == ["fax"]  # one character, ending a run
    assert _ids(store, "支払期日") == ["ja"] and _ids(store, "督促状") == ["ja"]  # the file name counts too
    assert _ids(store, "계약서") == ["ko"]  # a Korean word before its particle
    assert all(d.score > 0 for d in store.keyword_search("合同", top_k=5))


def test_a_query_mixing_cjk_and_other_words_fuses_both_rankings(tmp_path):
    store = _store(tmp_path / "i", texts={**TEXTS, **CJK_TEXTS})

    found = store.keyword_search("Portland 合同编号", top_k=10)

    assert found[0].id == "mixed" and found[0].score == pytest.approx(1.0)  # best on both sides
    assert {"fax", "bikes"} <= {d.id for d in found}
    assert all(0.0 <= d.score <= 1.0 for d in found)


def test_english_keyword_results_do_not_change_with_the_cjk_index(tmp_path):
    english = _store(tmp_path / "english")
    both = _store(tmp_path / "both", texts={**TEXTS, **CJK_TEXTS})
    queries = ("Who welds bicycle frame tubes?", "Portland lighthouse", "garden")
    with_table = {query: [(d.id, d.score) for d in both.keyword_search(query, top_k=10)] for query in queries}

    assert _cjk_rows(english) == 0  # English chunks add nothing to it
    assert _cjk_rows(both) == len(CJK_TEXTS)
    both._connection.execute("DROP TABLE chunks_cjk")  # only read from here on
    for query in queries:
        assert with_table[query] == [(d.id, d.score) for d in both.keyword_search(query, top_k=10)]
        assert [i for i, _ in with_table[query] if i in TEXTS] == _ids(english, query)
    assert any("mixed" in [i for i, _ in found] for found in with_table.values())


def test_filters_apply_to_cjk_keyword_hits(tmp_path):
    store = _store(tmp_path / "i", texts={**TEXTS, **CJK_TEXTS})
    fax_folder = {"field": "meta.source", "operator": "under", "value": "/kb/fax"}
    not_0412 = {"field": "meta.source", "operator": "!=", "value": "/kb/fax/0412.pdf"}

    assert set(_ids(store, "合同", filters=fax_folder)) == {"fax", "mixed"}
    assert _ids(store, "合同", filters=not_0412) == ["mixed"]
    assert _ids(store, "付款", filters=not_0412) == []
    assert sorted(_ids(store, "Portland 付款", filters=not_0412)) == ["bikes", "mixed"]


def test_deleting_or_replacing_a_file_removes_its_cjk_words(tmp_path):
    store = _store(tmp_path / "i", texts={**TEXTS, **CJK_TEXTS})
    store.delete_by_source("/kb/fax/0412.pdf")
    assert _ids(store, "付款日期") == [] and _cjk_rows(store) == len(CJK_TEXTS) - 1

    replaced = Document(id="mixed", content="Aurora 在 Portland 收到了发票。", meta={"source": "/kb/fax/0414.pdf"},
                        embedding=[0, 0, 0, 1])
    with pytest.raises(RuntimeError), store.writer():
        store.write_documents([replaced], policy=DuplicatePolicy.OVERWRITE)
        store.write_documents([Document(id="unsaved", content="合同草稿", meta={"source": "/u"}, embedding=[0, 0, 0, 1])])
        raise RuntimeError("the batch fails")
    assert _ids(store, "合同") == ["mixed"]  # the rolled back batch took its CJK rows with it
    store.write_documents([replaced], policy=DuplicatePolicy.OVERWRITE)

    reopened = FaissDocumentStore.open(tmp_path / "i")
    assert _ids(reopened, "合同") == [] and _ids(reopened, "发票") == ["mixed"]
    assert _cjk_rows(reopened) == len(CJK_TEXTS) - 1
    # any change of a chunk's text keeps the CJK words in step, not only the store's own writes
    reopened._connection.execute("UPDATE chunks SET content = 'contract sent' WHERE doc_id = 'ko'")
    assert _ids(reopened, "계약서") == [] and _cjk_rows(reopened) == len(CJK_TEXTS) - 2


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
