"""The whole path: sample files → index on disk → retrieval → reader → answers placed on their pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spanqa import AnswerSource, DocumentQA
from spanqa.errors import ConfigError, IndexMismatchError, IndexNotFoundError, ModelLoadError
from spanqa.indexing import read_pages
from spanqa.indexing.formats.cleaning import comparable, same_text
from spanqa.reader.answers import answer_key
from spanqa.settings import EmbedderSettings

FOUNDING_QUESTION = "When was Aurora Bicycle Works founded?"


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, sample_data_dir, minilm_dir, tiny_qa_model_dir):
    index_dir = tmp_path_factory.mktemp("kb") / "index"
    qa = DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    report = qa.index([sample_data_dir])
    return qa, report, index_dir


def _page_text(source: str, page: int) -> str:
    return read_pages(Path(source))[page - 1]


def test_sample_documents_are_all_indexed(sample_index, sample_data_dir):
    _, report, _ = sample_index
    indexed = sorted(Path(f.source).name for f in report.indexed)
    expected = sorted(
        p.name for p in sample_data_dir.iterdir() if p.suffix in {".pdf", ".md", ".txt", ".html"}
    )
    assert indexed == expected
    assert report.skipped == []
    assert report.chunk_count == sum(f.chunks for f in report.indexed) > 0
    assert all(f.pages >= 1 for f in report.indexed)


def test_answers_point_at_text_on_their_page(sample_index):
    qa, _, _ = sample_index
    answers = qa.ask(FOUNDING_QUESTION, top_k=5)
    assert 1 <= len(answers) <= 5
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    for answer in answers:
        page_text = _page_text(answer.source, answer.page)
        assert answer.text
        # start:end is the span of the page text the answer was read from; the text is that span
        # cleaned (line breaks inside paragraphs as spaces, hyphenated words joined).
        assert same_text(page_text[answer.start : answer.end], answer.text)
        assert answer.context[answer.answer_start_in_context : answer.answer_end_in_context] == answer.text
        assert same_text(page_text, answer.context) or comparable(answer.context) in comparable(page_text)
        assert answer.sources[0] == AnswerSource(answer.source, answer.page, answer.start, answer.end)
        assert len(set(answer.sources)) == len(answer.sources)
        for place in answer.sources:
            assert answer_key(_page_text(place.source, place.page)[place.start : place.end]) == answer_key(answer.text)
    assert len({answer_key(a.text) for a in answers}) == len(answers)  # one answer per answer text


def test_search_finds_the_page_that_holds_the_fact(sample_index):
    qa, _, _ = sample_index
    passages = qa.search(FOUNDING_QUESTION, top_k=3)
    assert len(passages) == 3
    best = passages[0]
    assert Path(best.source).name == "aurora_bicycle_works_handbook.pdf"
    assert "1984" in best.text
    for passage in passages:
        assert same_text(_page_text(passage.source, passage.page)[passage.start : passage.end], passage.text)
    assert passages[0].score >= passages[1].score >= passages[2].score


def test_index_is_persistent_and_reopens(sample_index, tiny_qa_model_dir):
    qa, _, index_dir = sample_index
    reopened = DocumentQA(index_dir, reader=str(tiny_qa_model_dir), device="cpu")
    assert reopened.search(FOUNDING_QUESTION, top_k=4) == qa.search(FOUNDING_QUESTION, top_k=4)


def test_reindexing_the_same_files_changes_nothing(tmp_path, sample_data_dir, minilm_dir):
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    pdf = sample_data_dir / "harbor_lighthouse_report.pdf"
    first = qa.index(pdf)
    second = qa.index(pdf)
    assert first.chunk_count == second.chunk_count > 0
    again = DocumentQA(tmp_path / "kb", device="cpu")
    assert again.search("How tall is the lighthouse?", top_k=100) == qa.search("How tall is the lighthouse?", top_k=100)
    assert len(qa.search("How tall is the lighthouse?", top_k=100)) == first.chunk_count


def test_a_corrupt_pdf_does_not_stop_the_batch(tmp_path, sample_data_dir, minilm_dir):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(sample_data_dir / "harbor_lighthouse_report.pdf", folder / "report.pdf")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog /Pages 2 0 R>>\nthis is not a pdf body")
    (folder / "empty.pdf").write_bytes(b"")
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    report = qa.index([folder])
    assert [Path(f.source).name for f in report.indexed] == ["report.pdf"]
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert set(reasons) == {"broken.pdf", "empty.pdf"}
    assert "empty" in reasons["empty.pdf"]
    assert "corrupt" in reasons["broken.pdf"] or "PDF" in reasons["broken.pdf"]
    assert qa.search("lighthouse", top_k=1)[0].source.endswith("report.pdf")


def test_missing_paths_are_reported_not_fatal(tmp_path, sample_data_dir, minilm_dir):
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    report = qa.index([tmp_path / "nowhere.pdf", sample_data_dir / "greenhouse_notes.md"])
    assert len(report.indexed) == 1
    assert len(report.skipped) == 1 and "no such file" in report.skipped[0].reason


def test_asking_with_another_embedder_is_an_error(sample_index):
    _, _, index_dir = sample_index
    with pytest.raises(IndexMismatchError, match="built with embedder"):
        DocumentQA(index_dir, embedder="sentence-transformers/all-mpnet-base-v2").search("anything")


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="spanqa index"):
        DocumentQA(tmp_path / "nothing-here").ask("Who?")


@pytest.mark.parametrize(("question", "top_k"), [("", 5), ("   ", 5), ("Who?", 0), ("Who?", -3)])
def test_bad_question_or_top_k_is_a_config_error(sample_index, question, top_k):
    qa, _, _ = sample_index
    with pytest.raises(ConfigError):
        qa.ask(question, top_k=top_k)


def test_unknown_device_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'tpu' is not a device"):
        DocumentQA(tmp_path, device="tpu")


def test_an_unloadable_embedder_is_a_model_load_error_and_creates_no_index(tmp_path, sample_data_dir):
    # A path that is not there fails where it is given (issue 24); one that holds no model, when it loads.
    with pytest.raises(ModelLoadError, match="no such directory .* \\(embedder takes a hub id"):
        DocumentQA(tmp_path / "kb", embedder=str(tmp_path / "no-such-model"), device="cpu")
    (tmp_path / "empty-model").mkdir()
    qa = DocumentQA(tmp_path / "kb", embedder=str(tmp_path / "empty-model"), device="cpu")
    with pytest.raises(ModelLoadError, match="cannot load embedder"):
        qa.index(sample_data_dir / "greenhouse_notes.md")
    assert not (tmp_path / "kb").exists()


@pytest.mark.parametrize("retrieval", ["hybrid", "dense", "keyword"])
def test_every_retrieval_mode_finds_the_founding_passage(sample_index, tiny_qa_model_dir, retrieval):
    _, _, index_dir = sample_index
    qa = DocumentQA(index_dir, reader=str(tiny_qa_model_dir), device="cpu", retrieval=retrieval)

    passages = qa.search("Aurora Bicycle Works founded", top_k=3)

    assert any("founded" in passage.text for passage in passages)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    if retrieval == "hybrid":
        assert all(0.0 <= p.score <= 1.0 for p in passages)


def test_bad_retrieval_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="retrieval='bm25' must be one of"):
        DocumentQA(tmp_path / "i", retrieval="bm25")
    with pytest.raises(ConfigError, match="dense_weight"):
        DocumentQA(tmp_path / "i", dense_weight=1.5)


def test_read_quotes_searched_passages_with_page_offsets(sample_index):
    qa, _, _ = sample_index
    passages = qa.search(FOUNDING_QUESTION, top_k=3)

    answers = qa.read(FOUNDING_QUESTION, passages, top_k=3)

    assert answers and all(p.chunk_id is not None for p in passages)
    for answer in answers:
        assert same_text(_page_text(answer.source, answer.page)[answer.start : answer.end], answer.text)


def test_read_of_a_passage_whose_chunk_is_gone_is_an_error_naming_it(tmp_path, minilm_dir, tiny_qa_model_dir):
    from spanqa import ChunkNotFoundError

    path = tmp_path / "notes.txt"
    path.write_text("The lamp was replaced in 2003 by the harbor board.\n", encoding="utf-8")
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu",
                    embedder_precision="float32")
    qa.index(path)
    [old] = qa.search("When was the lamp replaced?", top_k=1)
    # The file changes: its chunk is replaced by one with other text and other offsets.
    path.write_text("Harbor notes.\n\nThe lamp was replaced in 2011 by the town.\n", encoding="utf-8")
    qa.index(path)

    with pytest.raises(ChunkNotFoundError, match=f"chunk {old.chunk_id} is no longer in the index.*search again"):
        qa.read("When was the lamp replaced?", [old])
    [new] = qa.search("When was the lamp replaced?", top_k=1)
    for answer in qa.read("When was the lamp replaced?", [new], top_k=3):
        assert path.read_text(encoding="utf-8")[answer.start : answer.end] == answer.text


def test_read_takes_passages_of_ones_own_without_an_index(tmp_path, tiny_qa_model_dir):
    from spanqa import Passage

    qa = DocumentQA(tmp_path / "no-index", reader=str(tiny_qa_model_dir), device="cpu")
    text = "The lighthouse lamp was replaced in 2003 by the harbor board."
    mine = Passage(text=text, score=1.0, source="note", page=1, start=100, end=100 + len(text))

    answers = qa.read("When was the lamp replaced?", [mine], top_k=2)

    assert answers and not (tmp_path / "no-index").exists()
    for answer in answers:
        assert text[answer.start - 100 : answer.end - 100] == answer.text
    with pytest.raises(ConfigError, match="Passage"):
        qa.read("When?", ["just a string"])


def test_keyword_retrieval_loads_no_embedder(sample_index, tiny_qa_model_dir, monkeypatch):
    from spanqa.pipelines import engine

    _, _, index_dir = sample_index

    def no_embedder(*args, **kwargs):
        raise AssertionError("keyword retrieval must not load the embedder")

    monkeypatch.setattr(engine, "make_text_embedder", no_embedder)
    qa = DocumentQA(index_dir, reader=str(tiny_qa_model_dir), device="cpu", retrieval="keyword")

    assert qa.search("Aurora founded", top_k=2)
    assert qa.ask(FOUNDING_QUESTION, top_k=2)


def test_a_new_index_records_how_it_embeds_and_questions_follow_it(
    sample_index, tmp_path, sample_data_dir, minilm_dir, tiny_qa_model_dir
):
    import json

    from spanqa.indexing.retrieval.embedding import Int8TextEmbedder

    _, _, int8_dir = sample_index
    # On the CPU "auto" embeds in int8, reading the default number of word pieces of each chunk.
    recorded = json.loads((int8_dir / "manifest.json").read_text())["embedding"]
    assert recorded == {"precision": "int8", "max_tokens": EmbedderSettings.embed_max_tokens}
    reopened = DocumentQA(int8_dir, reader=str(tiny_qa_model_dir), device="cpu", embedder_precision="float32")
    assert isinstance(reopened.engine.text_embedder, Int8TextEmbedder)

    float_dir = tmp_path / "float32"
    qa = DocumentQA(
        float_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu",
        embedder_precision="float32", embed_max_tokens=None,
    )
    qa.index([sample_data_dir / "aurora_bicycle_works_handbook.pdf"])
    recorded = json.loads((float_dir / "manifest.json").read_text())["embedding"]
    assert recorded == {"precision": "float32", "max_tokens": None}
    embedder = qa.engine.text_embedder
    assert not isinstance(embedder, Int8TextEmbedder)
    assert "1984" in qa.search(FOUNDING_QUESTION, top_k=1)[0].text


@pytest.mark.parametrize("setting", [{"embedder_precision": "fp16"}, {"embed_max_tokens": 0}])
def test_bad_embedding_settings_fail_where_they_are_made(tmp_path, setting):
    with pytest.raises(ConfigError):
        DocumentQA(tmp_path / "index", **setting)
