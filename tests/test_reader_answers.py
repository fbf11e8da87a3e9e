"""Answer building: threshold, merging the same answer text across passages, ranking, top_k."""

from __future__ import annotations

import math

import pytest
from haystack import Document

from spanqa.errors import ConfigError
from spanqa.reader import ExtractiveReader
from spanqa.reader.answers import answer_key, build_answers, group_spans, rank_priors
from spanqa.reader.calibration import AnswerCalibration
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


def _text(group) -> str:
    return PASSAGES[group.best.passage_index][group.best.start : group.best.end]


def test_rank_priors_fall_with_the_log_of_the_rank():
    assert rank_priors(3, 2.0) == pytest.approx([0.0, -2 * math.log(2), -2 * math.log(3)])
    assert rank_priors(2, 0.0) == [0.0, 0.0]


def test_the_rank_prior_lets_a_later_passage_win_only_with_a_clearly_better_span():
    close = [[span(0, "1984", 8.0)], [], [span(2, "2003", 9.0)]]
    alone = group_spans(close, PASSAGES, merge_same_text=True, score_threshold=None)
    fused = group_spans(close, PASSAGES, merge_same_text=True, score_threshold=None, passage_priors=rank_priors(3, 2.0))
    assert [_text(g) for g in alone] == ["2003", "1984"]
    assert [_text(g) for g in fused] == ["1984", "2003"]
    assert fused[1].ranking_sum == pytest.approx(9.0 - 2 * math.log(3))

    clearly = [[span(0, "1984", 8.0)], [], [span(2, "2003", 12.0)]]
    fused = group_spans(clearly, PASSAGES, merge_same_text=True, score_threshold=None, passage_priors=rank_priors(3, 2.0))
    assert _text(fused[0]) == "2003"


def test_answers_carry_their_evidence_and_the_score_of_their_ranking_sum():
    documents = [Document(content=text) for text in PASSAGES]
    spans = [[span(0, "1984", 6.0)], [span(1, "1984", 12.0)], [span(2, "2003", 3.0)]]
    answers = build_answers("When?", documents, PASSAGES, spans, top_k=2, context_chars=5,
                            merge_same_text=True, score_threshold=None, rank_weight=2.0)
    best = answers[0]
    assert best.data == "1984"
    ranking_sum = 12.0 - 2 * math.log(2)
    assert best.score == pytest.approx(float(comparable_score(ranking_sum)))
    evidence = best.meta["evidence"]
    assert evidence["ranking_sum"] == pytest.approx(ranking_sum)
    assert evidence["margin"] == pytest.approx(ranking_sum - (3.0 - 2 * math.log(3)))
    assert (evidence["passages"], evidence["passages_read"], evidence["logit_sum"]) == (2, 3, 12.0)
    assert evidence["similarity"] is None
    assert "confidence" not in best.meta


def test_a_calibration_gives_confidences_and_its_threshold_drops_unlikely_answers():
    # confidence = sigmoid(ranking_sum - 10): above 0.5 exactly when the ranking sum is above 10
    calibration = AnswerCalibration(
        reader="r", rank_weight=0.0, passages=3, mean=(0.0,) * 4, scale=(1.0,) * 4,
        weights=(1.0, 0.0, 0.0, 0.0), bias=-10.0, threshold=0.5, max_logit_sum=20.0, target_coverage=0.9,
        fitted_questions=10,
    )
    documents = [Document(content=text, meta={"similarity": 0.5}) for text in PASSAGES]
    spans = [[span(0, "Ingrid Solberg", 12.0)], [span(1, "1984", 9.0)], []]
    kept = build_answers("Who?", documents, PASSAGES, spans, top_k=5, context_chars=5, merge_same_text=True,
                         score_threshold=None, calibration=calibration, confidence_threshold=0.5)
    assert [a.data for a in kept] == ["Ingrid Solberg"]
    assert kept[0].meta["confidence"] == pytest.approx(1 / (1 + math.exp(-2.0)))
    every = build_answers("Who?", documents, PASSAGES, spans, top_k=5, context_chars=5, merge_same_text=True,
                          score_threshold=None, calibration=calibration)
    assert [a.data for a in every] == ["Ingrid Solberg", "1984"]
    # passages without a similarity (keyword retrieval) give no confidence, and "auto" cannot decide
    plain = [Document(content=text) for text in PASSAGES]
    unsure = build_answers("Who?", plain, PASSAGES, spans, top_k=5, context_chars=5, merge_same_text=True,
                           score_threshold=None, calibration=calibration)
    assert "confidence" not in unsure[0].meta and unsure[0].meta["evidence"]["similarity"] is None
    with pytest.raises(ConfigError, match="similarity"):
        build_answers("Who?", plain, PASSAGES, spans, top_k=5, context_chars=5, merge_same_text=True,
                      score_threshold=None, calibration=calibration, confidence_threshold=0.5)
