"""The one query engine (spanqa.pipelines.engine.QueryEngine): what DocumentQA, the service and Ray
Serve answer through, equal to the public Haystack pipelines wired from the same parts."""

from __future__ import annotations

import pytest

from spanqa.errors import ConfigError, IndexMismatchError
from spanqa.indexing.retrieval.embedders import make_text_embedder
from spanqa.indexing.retrieval.embedding import EmbeddingSettings
from spanqa.pipelines import engine as engine_module
from spanqa.pipelines.builders import build_query_pipeline, build_search_pipeline
from spanqa.pipelines.engine import QueryEngine, Question
from spanqa.reader import ExtractiveReader
from spanqa.settings import QASettings, ReaderSettings

@pytest.fixture(scope="module")
def index_dir(facts_index):
    return facts_index


@pytest.fixture(scope="module")
def engine(index_dir, tiny_qa_model_dir) -> QueryEngine:
    engine = QueryEngine(index_dir, QASettings.from_keywords(reader=str(tiny_qa_model_dir), device="cpu"))
    engine.load()
    return engine


def _ids(documents) -> list[str]:
    return [document.id for document in documents]


def _text_embedder(engine: QueryEngine):
    # A component belongs to one pipeline: the pipelines get their own, made as the engine's are.
    store = engine.store
    embedder = make_text_embedder(store.embedder, "cpu", EmbeddingSettings.from_dict(store.embedding))
    embedder.warm_up()
    return embedder


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_the_engine_retrieves_as_the_search_pipeline_does(engine, mode):
    embedder = None if mode == "keyword" else _text_embedder(engine)
    pipeline = build_search_pipeline(engine.store, embedder, mode, engine.settings.retrieval.dense_weight)
    inputs = {"retriever": {"query": "When does the ferry leave?", "top_k": 2}}
    if mode != "keyword":
        inputs["embedder"] = {"text": "When does the ferry leave?"}

    expected = pipeline.run(inputs)["retriever"]["documents"]

    assert _ids(engine.retrieve("When does the ferry leave?", 2, mode=mode)) == _ids(expected)


def test_the_engine_answers_as_the_query_pipeline_does(engine):
    question = "How tall is the tower?"
    reader = ExtractiveReader.from_settings(engine.settings.reader, device="cpu")
    pipeline = build_query_pipeline(engine.store, _text_embedder(engine), reader)
    expected = pipeline.run({
        "embedder": {"text": question}, "retriever": {"query": question, "top_k": 3},
        "reader": {"query": question, "top_k": 2},
    })["reader"]["answers"]

    answers = engine.read(question, engine.retrieve(question, 3), 2, None)

    assert [(a.data, a.document.id) for a in answers] == [(a.data, a.document.id) for a in expected]
    assert [a.score for a in answers] == pytest.approx([a.score for a in expected])


def test_a_batch_reads_each_question_as_it_is_read_alone(engine):
    questions = [Question(text, engine.retrieve(text, 3), 2, None) for text in
                 ("When does the library open?", "When does the ferry leave?")]

    batched = engine.read_batch(questions)

    for question, answers in zip(questions, batched):
        alone = engine.read(question.text, question.documents, question.top_k, question.threshold)
        assert [a.data for a in answers] == [a.data for a in alone]
        assert [a.score for a in answers] == pytest.approx([a.score for a in alone], rel=1e-4)


def test_another_embedder_than_the_index_records_is_refused_when_the_index_opens(index_dir, tiny_qa_model_dir):
    settings = QASettings.from_keywords(reader=str(tiny_qa_model_dir), embedder="org/other-embedder")
    engine = QueryEngine(index_dir, settings)
    with pytest.raises(IndexMismatchError, match="built with embedder .* not 'org/other-embedder'"):
        engine.load()


def test_the_calibration_is_looked_up_once(index_dir, tiny_qa_model_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(engine_module, "index_calibration", lambda *args: calls.append(args))
    engine = QueryEngine(index_dir, QASettings.from_keywords(reader=str(tiny_qa_model_dir), device="cpu"))

    engine.load()
    assert engine.calibration is None and engine.reader.calibration is None

    # the default reranker is a hub model, which cannot load offline: the ranking is the one without it
    ranking = {"passage_weight": ReaderSettings.passage_weight, "evidence_weight": ReaderSettings.evidence_weight,
               "rerank": 0}
    assert calls == [(index_dir.resolve(), str(tiny_qa_model_dir.resolve()), ReaderSettings.rank_weight, False, ranking)]


def test_a_reader_setting_that_cannot_work_on_the_device_fails_where_it_is_made(index_dir):
    with pytest.raises(ConfigError, match="fast=True is a CPU mode"):
        QueryEngine(index_dir, QASettings.from_keywords(fast_reader=True, device="cuda"))
