"""Answer building: threshold, merging the same answer text across passages, ranking, top_k."""

from __future__ import annotations

import pytest
from haystack import Document

from spanqa.errors import ConfigError
from spanqa.reader import ExtractiveReader
from spanqa.reader.answers import answer_key, build_answers, group_spans
from spanqa.reader.decoding import comparable_score
from spanqa.reader.span_reader import PassageSpan

PASSAGES = [
    "Ingrid Solberg founded the company in 1984.",
    "In 1984 the first workshop opened.",
    "The company moved in 2003.",
]


def span(passage: int, text: str, logit_sum: float, occurrence: int = 0) -> PassageSpan:
    start = -1
    for _ in range(occurrence + 1):
        start = PASSAGES[passage].index(text, start + 1)
    return PassageSpan(passage, start, start + len(text), logit_sum / 2, logit_sum / 2)


def test_answer_key_ignores_runs_of_white_space_only():
    assert answer_key(" Ingrid\n Solberg ") == "Ingrid Solberg"
    assert answer_key("ingrid solberg") != answer_key("Ingrid Solberg")


def test_same_text_in_several_passages_is_one_group_ranked_by_its_best_occurrence():
    spans = [[span(0, "1984", 6.0), span(0, "Ingrid Solberg", 9.0)], [span(1, "1984", 12.0)], [span(2, "2003", 3.0)]]
    groups = group_spans(spans, PASSAGES, merge_same_text=True, score_threshold=None)
    texts = [PASSAGES[g.best.passage_index][g.best.start : g.best.end] for g in groups]
    assert texts == ["1984", "Ingrid Solberg", "2003"]
    assert [o.passage_index for o in groups[0].spans] == [1, 0]  # best occurrence first


def test_without_merging_every_distinct_span_stands_alone():
    spans = [[span(0, "1984", 6.0)], [span(1, "1984", 12.0)]]
    groups = group_spans(spans, PASSAGES, merge_same_text=False, score_threshold=None)
    assert [len(g.spans) for g in groups] == [1, 1]
    assert [g.best.passage_index for g in groups] == [1, 0]


def test_the_same_span_reported_twice_is_one_occurrence():
    spans = [[span(0, "1984", 6.0), span(0, "1984", 6.0)]]
    groups = group_spans(spans, PASSAGES, merge_same_text=True, score_threshold=None)
    assert len(groups) == 1 and len(groups[0].spans) == 1


def test_threshold_drops_low_scores_and_none_keeps_all():
    spans = [[span(0, "1984", 10.0)], [span(2, "2003", -10.0)]]
    threshold = float(comparable_score(0.0))  # 0.5: keeps positive logit sums only
    kept = group_spans(spans, PASSAGES, merge_same_text=True, score_threshold=threshold)
    assert [PASSAGES[g.best.passage_index][g.best.start : g.best.end] for g in kept] == ["1984"]
    assert len(group_spans(spans, PASSAGES, merge_same_text=True, score_threshold=None)) == 2
    assert group_spans(spans, PASSAGES, merge_same_text=True, score_threshold=0.999) == []


def test_built_answers_quote_the_best_occurrence_and_list_every_source():
    documents = [Document(content=text, meta={"page": number}) for number, text in enumerate(PASSAGES, start=1)]
    spans = [[span(0, "1984", 6.0)], [span(1, "1984", 12.0)], [span(2, "2003", 3.0)]]
    answers = build_answers("When?", documents, PASSAGES, spans, top_k=1, context_chars=5,
                            merge_same_text=True, score_threshold=None)
    assert len(answers) == 1
    best = answers[0]
    assert best.data == "1984" and best.document is documents[1]
    assert best.score == pytest.approx(float(comparable_score(12.0)))
    assert [(s["document_id"], s["meta"]["page"]) for s in best.meta["sources"]] == [
        (documents[1].id, 2), (documents[0].id, 1)
    ]
    for source in best.meta["sources"]:
        document = next(d for d in documents if d.id == source["document_id"])
        assert document.content[source["start"] : source["end"]] == "1984"


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "high", True])
def test_bad_threshold_is_a_config_error(threshold):
    with pytest.raises(ConfigError, match="score_threshold"):
        ExtractiveReader(score_threshold=threshold)


def test_bad_merge_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="merge_same_answers"):
        ExtractiveReader(merge_same_answers="yes")
