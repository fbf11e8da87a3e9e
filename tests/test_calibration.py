"""The answer calibration: known-answer metrics, fitting on separable data, the threshold's coverage,
and the JSON round trip."""

from __future__ import annotations

import pytest

from spanqa.errors import ConfigError
from spanqa.reader.calibration import (
    LONE_ANSWER_MARGIN,
    AnswerCalibration,
    answer_features,
    auroc,
    fit_calibration,
    risk_coverage,
)


def test_auroc_known_cases():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5  # ties count half
    assert auroc([2, 0], [1]) == 0.5


def test_risk_coverage_answers_the_most_confident_first():
    curve = risk_coverage([0.9, 0.1, 0.8, 0.2], [True, False, False, True], [0.25, 0.5, 1.0])
    assert curve == [(0.25, 0.0), (0.5, 0.5), (1.0, 0.5)]


def test_answer_features_margin_is_to_the_best_other_answer():
    rows = answer_features([9.0, 7.5, 2.0], [3, 1, 1], 0.6)
    assert [row["margin"] for row in rows] == [1.5, -1.5, -7.0]
    assert [row["passages"] for row in rows] == [3.0, 1.0, 1.0]
    assert {row["similarity"] for row in rows} == {0.6}
    assert answer_features([4.0], [1], None)[0]["margin"] == LONE_ANSWER_MARGIN


def test_without_a_similarity_there_is_no_confidence_and_no_fit():
    calibration = fitted()
    assert calibration.confidence({**ANSWERABLE[0], "similarity": None}) is None
    with pytest.raises(ConfigError, match="similarity"):
        fit_calibration([{**row, "similarity": None} for row in ANSWERABLE], UNANSWERABLE, reader="r",
                        rank_weight=2.0, passages=10, target_coverage=0.9, max_logit_sum=11.0)


def _rows(sums, margins, passages, similarities):
    return [
        {"ranking_sum": s, "margin": m, "passages": p, "similarity": c}
        for s, m, p, c in zip(sums, margins, passages, similarities, strict=True)
    ]


ANSWERABLE = _rows([9, 10, 8.5, 9.5, 7, 11, 8, 9], [2, 3, 1, 2, 0.5, 4, 1, 2], [3, 4, 2, 3, 1, 5, 2, 3],
                   [0.7, 0.8, 0.6, 0.75, 0.5, 0.9, 0.65, 0.7])
UNANSWERABLE = _rows([5, 6, 4, 6.5, 5.5, 3, 6, 4.5], [0.2, 0.1, 0.5, 0.4, 0, 0.3, 0.2, 0.1], [1, 1, 1, 1, 1, 1, 1, 1],
                     [0.3, 0.4, 0.2, 0.45, 0.35, 0.1, 0.3, 0.25])


def fitted(target_coverage=0.75):
    return fit_calibration(ANSWERABLE, UNANSWERABLE, reader="/models/r", rank_weight=2.0, passages=10,
                           target_coverage=target_coverage, max_logit_sum=11.0)


def test_fitted_confidence_separates_answerable_from_unanswerable():
    calibration = fitted()
    answerable = [calibration.confidence(row) for row in ANSWERABLE]
    unanswerable = [calibration.confidence(row) for row in UNANSWERABLE]
    assert auroc(answerable, unanswerable) == 1.0
    assert all(0.0 < value < 1.0 for value in answerable + unanswerable)


@pytest.mark.parametrize("target", [0.5, 0.75, 1.0])
def test_threshold_keeps_the_target_share_of_answerable_questions(target):
    calibration = fitted(target)
    kept = sum(calibration.confidence(row) >= calibration.threshold for row in ANSWERABLE) / len(ANSWERABLE)
    assert kept >= target
    # and it is the highest such threshold: just above it, fewer are kept
    higher = sum(calibration.confidence(row) > calibration.threshold for row in ANSWERABLE) / len(ANSWERABLE)
    assert higher < target or target == 0.0


def test_save_and_load_round_trip(tmp_path):
    calibration = fitted()
    path = tmp_path / "calibration.json"
    calibration.save(path)
    assert AnswerCalibration.load(path) == calibration
    assert AnswerCalibration.from_dict(calibration.to_dict()) == calibration


def test_missing_or_broken_calibration_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="spanqa calibrate"):
        AnswerCalibration.load(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"reader": "x"}')
    with pytest.raises(ConfigError, match="calibrate"):
        AnswerCalibration.load(broken)


def test_a_calibration_refuses_another_reader_or_ranking():
    calibration = fitted()
    calibration.check_matches("/models/r", 2.0)
    with pytest.raises(ConfigError, match="rank_weight"):
        calibration.check_matches("/models/r", 0.0)
    with pytest.raises(ConfigError, match="/models/other"):
        calibration.check_matches("/models/other", 2.0)


def test_fitting_needs_both_kinds_of_question():
    with pytest.raises(ConfigError, match="answerable and unanswerable"):
        fit_calibration(ANSWERABLE, UNANSWERABLE[:1], reader="r", rank_weight=2.0, passages=10,
                        target_coverage=0.9, max_logit_sum=11.0)
