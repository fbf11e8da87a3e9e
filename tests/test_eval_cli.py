"""`spanqa eval` end to end on a tiny SQuAD-format set indexed through the real pipeline."""

from __future__ import annotations

import json

import pytest

from spanqa.cli import main

ARTICLES = [
    ("Aurora_Bicycle_Works", [
        ("Aurora Bicycle Works was founded in 1984 in Portland by two frame builders.",
         [("When was Aurora Bicycle Works founded?", "1984"), ("Where was Aurora founded?", "Portland")]),
        ("The company welds its bicycle frames from chromoly steel tubes in its own shop.",
         [("What are the frames made of?", "chromoly steel")]),
    ]),
    ("Harbor_Lighthouse", [
        ("The harbor lighthouse lamp was replaced in 2003 after a winter storm broke the lens.",
         [("When was the lighthouse lamp replaced?", "2003")]),
        ("Greenhouse tomatoes need watering twice a day during the dry summer months.",
         [("How often do tomatoes need watering?", "twice a day")]),
    ]),
]


@pytest.fixture()
def squad_file(tmp_path):
    data = {"version": "1.1", "data": [
        {"title": title, "paragraphs": [
            {"context": context,
             "qas": [{"id": f"{title}-{n}-{m}", "question": q,
                      "answers": [{"text": a, "answer_start": context.index(a)}]} for m, (q, a) in enumerate(qas)]}
            for n, (context, qas) in enumerate(paragraphs)]}
        for title, paragraphs in ARTICLES]}
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(data))
    return path


def test_eval_builds_an_index_and_reports_every_stage(tmp_path, squad_file, minilm_dir, tiny_qa_model_dir, capsys):
    index_dir = tmp_path / "index"
    code = main(["eval", str(squad_file), "--build", "--index", str(index_dir), "--embedder", str(minilm_dir),
                 "--reader", str(tiny_qa_model_dir), "--device", "cpu", "--passages", "2", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert report["questions"] == 5 and report["mode"] == "full" and report["passages"] == [2]
    retrieval = report["retrieval"]
    assert retrieval["relevance"] == "passage from the question's paragraph"
    # keyword-heavy questions about 4 distinct paragraphs: the hybrid retriever ranks most first
    assert retrieval["recall"]["1"] >= 0.8 and retrieval["recall"]["20"] == 1.0
    assert retrieval["recall"]["1"] <= retrieval["recall"]["2"] <= retrieval["recall"]["5"]
    assert 0 < retrieval["mrr"] <= 1
    for scores in (report["reader"], *report["end_to_end"]):
        assert 0.0 <= scores["exact_match"] <= scores["f1"] <= 1.0
    assert set(report["seconds_per_question"]) == {"retrieve", "read (gold paragraph)", "read (retrieved)"}
    assert (tmp_path / "index-contexts").is_dir()  # the contexts, next to the index


def test_eval_retrieval_only_on_an_existing_index_with_a_limit(tmp_path, squad_file, minilm_dir, capsys):
    index_dir = tmp_path / "index"
    assert main(["eval", str(squad_file), "--build", "--index", str(index_dir), "--embedder", str(minilm_dir),
                 "--retrieval-only", "--json", "--retrieval", "keyword"]) == 0
    capsys.readouterr()

    code = main(["eval", str(squad_file), "--index", str(index_dir), "--retrieval-only", "--limit", "2"])
    text = capsys.readouterr().out

    assert code == 0
    assert "2 questions (retrieval-only)" in text
    assert "relevant: passage contains a gold answer" in text and "R@1" in text and "reader" not in text


def test_eval_without_an_index_or_build_is_a_clear_error(squad_file, capsys):
    assert main(["eval", str(squad_file)]) == 1
    assert "--index DIR" in capsys.readouterr().err


def test_eval_of_a_file_that_is_not_squad_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    assert main(["eval", str(bad), "--reader-only"]) == 1
    assert "not SQuAD format" in capsys.readouterr().err


def test_calibrate_fits_on_half_the_articles_saves_and_ask_uses_it(
    tmp_path, squad_file, minilm_dir, tiny_qa_model_dir, capsys
):
    index_dir = tmp_path / "index"
    reader = ["--reader", str(tiny_qa_model_dir), "--device", "cpu"]
    assert main(["eval", str(squad_file), "--build", "--index", str(index_dir), "--embedder", str(minilm_dir),
                 "--retrieval-only", "--json", *reader]) == 0
    capsys.readouterr()
    assert main(["ask", "When was Aurora founded?", "--index", str(index_dir), "--threshold", "auto", *reader]) == 1
    assert "spanqa calibrate" in capsys.readouterr().err  # no calibration yet: the error says how to make one

    code = main(["calibrate", str(squad_file), "--index", str(index_dir), "--passages", "2", "--json", *reader])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert report["fit_articles"] == ["Aurora_Bicycle_Works"] and report["report_articles"] == ["Harbor_Lighthouse"]
    assert (report["fit_questions"], report["report_questions"]) == (3, 2)
    assert set(report["auroc"]) == {"raw", "ranked", "calibrated"}
    assert report["saved_to"] == str(index_dir / "calibration.json")
    saved = json.loads((index_dir / "calibration.json").read_text())
    assert saved["reader"] == str(tiny_qa_model_dir.resolve()) and saved["passages"] == 2
    assert saved["features"] == ["ranking_sum", "margin", "passages", "similarity"]

    assert main(["ask", "When was Aurora founded?", "--index", str(index_dir), "--threshold", "auto",
                 "--adaptive", "--passages", "4", "--json", *reader]) == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    assert all(answer["confidence"] >= saved["threshold"] for answer in answers)
    assert all(answer["evidence"]["passages_read"] <= 4 for answer in answers)
    # another rank weight makes the calibration meaningless: "auto" refuses it
    assert main(["ask", "When was Aurora founded?", "--index", str(index_dir), "--threshold", "auto",
                 "--rank-weight", "0", *reader]) == 1
    assert "rank_weight" in capsys.readouterr().err
