"""A calibrated confidence for answers, so that a question the documents cannot answer gets none.

The reader's score ranks answers; it does not say whether the best one answers the question at all.
A calibration is a logistic regression over a few features of an answer among the others found for
the same question (`answer_features`), fitted on questions asked once with the passages that answer
them and once without (`spanqa calibrate`). Its `threshold` is the confidence that keeps a chosen
share of the answerable questions answered on the questions it was fitted on; `--threshold auto`
drops answers below it. Pure functions and a small record: no model is needed to fit or apply it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spanqa.errors import ConfigError
from spanqa.file_modes import private_opener
from spanqa.settings import ReaderSettings, RerankSettings

# What a confidence is computed from (see `answer_features`).
CONFIDENCE_FEATURES = ("ranking_sum", "margin", "passages", "similarity")
# Margin of an answer with no other answer beside it: as clear as answers get.
LONE_ANSWER_MARGIN = 10.0
CALIBRATION_FILE = "calibration.json"
# The answer ranking of a calibration fitted before passages were reranked (see `answer_ranking`).
NO_RERANKING = {"passage_weight": 0.0, "evidence_weight": 0.0, "rerank": 0}
_L2 = 1e-2  # ridge on standardised weights: a few hundred questions fit without over-fitting
_STEPS = 3000


def answer_features(
    ranking_sums: Sequence[float], passage_counts: Sequence[int], similarity: float | None
) -> list[dict[str, float | None]]:
    """Each answer's features, given every answer of one question best first.

    `ranking_sum`: its ranking sum (logits plus retrieval prior); `margin`: how far it stands above
    the best *other* answer (negative below the first); `passages`: how many passages read hold it;
    `similarity`: the highest cosine similarity of a passage read to the question (the same for
    every answer; None when the retriever measured none). On SQuAD questions asked without their
    article, the reader's features alone separated them from answerable ones far less well than
    with the similarity beside them (docs/measurements/answer-quality.md).
    """
    # The best other answer of each is the first's runner-up for the first, the first for the rest:
    # one pass, not one per answer (a question has dozens of candidate answers).
    best_at = max(range(len(ranking_sums)), key=ranking_sums.__getitem__, default=0)
    others_of_best = [total for position, total in enumerate(ranking_sums) if position != best_at]
    runner_up = max(others_of_best, default=None)
    features = []
    for index, (total, count) in enumerate(zip(ranking_sums, passage_counts, strict=True)):
        best_other = runner_up if index == best_at else ranking_sums[best_at]
        margin = LONE_ANSWER_MARGIN if best_other is None else total - best_other
        features.append(
            {"ranking_sum": float(total), "margin": float(margin), "passages": float(count), "similarity": similarity}
        )
    return features


@dataclass(frozen=True)
class AnswerCalibration:
    """A fitted confidence: `confidence(features)` is P(the question is answered by this answer's kind).

    It holds for the reader, rank weight and number of passages it was fitted with, and for the rest
    of the answer ranking (`ranking`: see `answer_ranking`), which it records.
    """

    reader: str
    rank_weight: float
    passages: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float  # confidence of the operating point
    max_logit_sum: float  # the highest start + end logit of a best answer on the fit questions (adaptive reading)
    target_coverage: float  # share of answerable questions the threshold keeps answered (fit set)
    fitted_questions: int
    features: tuple[str, ...] = CONFIDENCE_FEATURES
    ranking: dict = field(default_factory=dict)  # answer_ranking(); a file from before reranking has none

    def confidence(self, features: dict[str, float | None]) -> float | None:
        """The calibrated confidence; None when a feature it needs is missing (no similarity)."""
        if any(features.get(name) is None for name in self.features):
            return None
        z = self.bias + sum(
            weight * (features[name] - mean) / scale
            for name, mean, scale, weight in zip(self.features, self.mean, self.scale, self.weights, strict=True)
        )
        return 0.5 * (1.0 + math.tanh(0.5 * z))  # the logistic function, without overflow

    def check_matches(self, reader: str, rank_weight: float, ranking: dict | None = None) -> None:
        """ConfigError unless the calibration was fitted for this reader and answer ranking."""
        own = {**NO_RERANKING, **self.ranking}
        ranking = {**NO_RERANKING, **({} if ranking is None else ranking)}
        if reader != self.reader or not math.isclose(rank_weight, self.rank_weight) or ranking != own:
            differing = {key: value for key, value in ranking.items() if own.get(key) != value}
            raise ConfigError(
                f"the answer calibration was fitted for reader '{self.reader}' with rank_weight={self.rank_weight}"
                f"{''.join(f', {key}={own.get(key)!r}' for key in differing)}, not reader '{reader}' with "
                f"rank_weight={rank_weight}{''.join(f', {key}={value!r}' for key, value in differing.items())}: "
                "its confidences would mean nothing; run `spanqa calibrate` again with these settings, or give "
                "a numeric threshold"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AnswerCalibration:
        try:
            values = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
            for name in ("mean", "scale", "weights", "features"):
                values[name] = tuple(values[name])
            calibration = cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"not an answer calibration ({type(error).__name__}: {error}): run `spanqa calibrate` again") from None
        if not len(calibration.features) == len(calibration.mean) == len(calibration.scale) == len(calibration.weights):
            raise ConfigError("the answer calibration's features and weights differ in number: run `spanqa calibrate` again")
        return calibration

    def save(self, path: str | Path) -> None:
        path = Path(path)
        temporary = path.with_suffix(".tmp")
        # Owner-only, as the index it lives in (issue 24).
        with open(temporary, "w", encoding="utf-8", opener=private_opener) as handle:
            handle.write(json.dumps(self.to_dict(), indent=2))
        temporary.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> AnswerCalibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"threshold 'auto' needs an answer calibration and there is none at '{path}': run "
                "`spanqa calibrate QUESTIONS.json --index DIR` first, or give a numeric threshold"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read the answer calibration '{path}': {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"the answer calibration '{path}' is not a JSON object: run `spanqa calibrate` again")
        return cls.from_dict(data)


def _feature_matrix(rows: Sequence[dict[str, float | None]]) -> np.ndarray:
    return np.array([[row[name] for name in CONFIDENCE_FEATURES] for row in rows], dtype=np.float64)


def fit_calibration(
    answerable: Sequence[dict[str, float | None]],
    unanswerable: Sequence[dict[str, float | None]],
    *,
    reader: str,
    rank_weight: float,
    passages: int,
    target_coverage: float,
    max_logit_sum: float,
    ranking: dict | None = None,
) -> AnswerCalibration:
    """Logistic regression of answerable (1) vs unanswerable (0) on the best answer's features.

    `answerable`/`unanswerable`: the best answer's features for each question asked with and
    without the passages that answer it (questions that got no answer at all are left out);
    `max_logit_sum`: the highest start + end logit among those best answers, which adaptive
    reading takes as the most an unread passage could offer.
    The threshold is the highest confidence that still keeps `target_coverage` of the answerable
    questions at or above it.
    """
    if any(row.get(name) is None for row in (*answerable, *unanswerable) for name in CONFIDENCE_FEATURES):
        raise ConfigError(
            "a calibration needs every feature of every answer, and some have no similarity: the passages "
            "must come from embedding search (retrieval hybrid or dense), not keyword search alone"
        )
    if len(answerable) < 2 or len(unanswerable) < 2:
        raise ConfigError(
            f"a calibration needs answerable and unanswerable questions, got {len(answerable)} and "
            f"{len(unanswerable)}: use a question file with more questions and articles"
        )
    if not 0.0 < target_coverage <= 1.0:
        raise ConfigError(f"target coverage {target_coverage!r} must be above 0 and at most 1 (e.g. 0.9)")
    features = np.concatenate([_feature_matrix(answerable), _feature_matrix(unanswerable)])
    labels = np.concatenate([np.ones(len(answerable)), np.zeros(len(unanswerable))])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    standardised = (features - mean) / scale
    weights = np.zeros(standardised.shape[1])
    bias = 0.0
    for _ in range(_STEPS):  # gradient descent on a convex loss: a few features, a few hundred rows
        predicted = 0.5 * (1.0 + np.tanh(0.5 * (standardised @ weights + bias)))
        error = predicted - labels
        weights -= 0.5 * (standardised.T @ error / len(labels) + _L2 * weights)
        bias -= 0.5 * float(error.mean())
    calibration = AnswerCalibration(
        reader=reader, rank_weight=float(rank_weight), passages=int(passages),
        mean=tuple(float(v) for v in mean), scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in weights), bias=float(bias), threshold=0.0, max_logit_sum=float(max_logit_sum),
        target_coverage=float(target_coverage), fitted_questions=len(answerable),
        ranking={} if ranking is None else dict(ranking),
    )
    confidences = sorted(calibration.confidence(row) for row in answerable)
    # The largest threshold with at least target_coverage of the answerable confidences >= it.
    keep = math.ceil(target_coverage * len(confidences))
    threshold = confidences[len(confidences) - keep]
    return AnswerCalibration(**{**calibration.__dict__, "threshold": float(threshold)})


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half)."""
    if not positive or not negative:
        raise ValueError("AUROC needs at least one positive and one negative score")
    values = np.concatenate([np.asarray(positive, float), np.asarray(negative, float)])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    order_ranks = np.cumsum(counts) - (counts - 1) / 2.0  # average 1-based rank of each distinct value
    ranks = order_ranks[inverse]
    positives = len(positive)
    return float((ranks[:positives].sum() - positives * (positives + 1) / 2) / (positives * len(negative)))


def risk_coverage(confidences: Sequence[float], correct: Sequence[bool], points: Sequence[float]) -> list[tuple[float, float]]:
    """(coverage, risk) when answering only the most confident `coverage` share of the questions:
    risk is the share of the answered ones that are wrong. `points` are the coverages asked for."""
    if len(confidences) != len(correct) or not confidences:
        raise ValueError("risk_coverage needs one correctness flag per confidence, and at least one")
    order = np.argsort(-np.asarray(confidences, float), kind="stable")
    wrong = ~np.asarray(correct, bool)[order]
    curve = []
    for coverage in points:
        answered = max(1, round(coverage * len(order)))
        curve.append((answered / len(order), float(wrong[:answered].mean())))
    return curve


def answer_ranking(reader: ReaderSettings, rerank: RerankSettings) -> dict:
    """What, beside the reader and rank weight, makes an answer's ranking sum: an answer calibration
    holds only for the same (the reranker's settings count only when it reranks)."""
    ranking = {"passage_weight": reader.passage_weight, "evidence_weight": reader.evidence_weight,
               "rerank": rerank.rerank}
    if rerank.rerank:
        ranking.update(reranker=rerank.reranker, retrieval_weight=rerank.retrieval_weight)
    return ranking


def index_calibration(
    index_dir: Path, reader: str, rank_weight: float, needed: bool, ranking: dict | None = None
) -> AnswerCalibration | None:
    """The answer calibration in `index_dir` when it was fitted for this reader and rank weight.

    Without one (or with one fitted for other settings) answers simply carry no confidence, unless
    it is `needed` (threshold "auto", adaptive reading): then a ConfigError says how to make one.
    """
    path = Path(index_dir) / CALIBRATION_FILE
    if not needed and not path.is_file():
        return None
    calibration = AnswerCalibration.load(path)
    try:
        calibration.check_matches(reader, rank_weight, ranking)
    except ConfigError:
        if needed:
            raise
        return None
    return calibration
