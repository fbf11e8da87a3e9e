"""`spanqa calibrate`: fit the answer calibration of an index and measure abstention.

Each question of a SQuAD-format file is asked twice against an index that holds the file's
contexts (built by `spanqa eval FILE --build`): once as it is (answerable) and once with its
article's files filtered out of the search (unanswerable: the collection no longer holds the
answer). The calibration (`spanqa.reader.calibration`) is fitted on the questions of the first
half of the articles and measured on the rest: AUROC of answerable vs unanswerable for the reader's
raw score, the ranked score and the calibrated confidence, the risk-coverage curve, and what the
threshold does on questions it was not fitted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.errors import ConfigError
from spanqa.pipelines.eval_metrics import best_over_golds
from spanqa.pipelines.evaluation import SquadSet, context_file_name
from spanqa.reader.calibration import AnswerCalibration, answer_ranking, auroc, fit_calibration, risk_coverage
from spanqa.records import Answer

COVERAGE_POINTS = (0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class AskedTwice:
    """One question's best answer with its article (answerable) and without it (unanswerable)."""

    article: str
    answerable: Answer | None
    answerable_correct: bool
    unanswerable: Answer | None


@dataclass
class AbstentionReport:
    file: str
    passages: int
    fit_articles: list[str]
    report_articles: list[str]
    fit_questions: int
    report_questions: int
    auroc: dict[str, float] = field(default_factory=dict)  # by score: raw, ranked, calibrated
    threshold: float = 0.0
    answerable_answered: float = 0.0  # on the report half, at the threshold
    unanswerable_abstained: float = 0.0
    risk_coverage: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    saved_to: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def to_text(self) -> str:
        lines = [
            f"{self.file}: fitted on {self.fit_questions} questions ({len(self.fit_articles)} articles), "
            f"measured on {self.report_questions} others ({len(self.report_articles)} articles), "
            f"each asked with and without its article; the reader reads the top {self.passages} passages",
            "AUROC answerable vs unanswerable  " + "  ".join(f"{name} {value:.3f}" for name, value in self.auroc.items()),
            f"threshold {self.threshold:.3f}: answers {100 * self.answerable_answered:.1f}% of the answerable "
            f"questions, abstains on {100 * self.unanswerable_abstained:.1f}% of the unanswerable ones",
            "risk (share of answered questions answered wrongly, unanswerable included) by coverage:",
        ]
        for name, curve in self.risk_coverage.items():
            lines.append(f"  {name:10s} " + "  ".join(f"{100 * c:.0f}%: {100 * r:.1f}" for c, r in curve))
        lines.append(f"calibration saved to {self.saved_to}")
        return "\n".join(lines)


def article_sources(squad: SquadSet, indexed: list[str]) -> dict[str, list[str]]:
    """Each article's indexed files: those named after its title, as `write_contexts` names them."""
    by_name: dict[str, list[str]] = {}
    for source in indexed:
        by_name.setdefault(Path(source).name, []).append(source)
    found = {title: by_name.get(context_file_name(title), []) for title in dict.fromkeys(squad.titles)}
    missing = [title for title, sources in found.items() if not sources]
    if missing:
        raise ConfigError(
            f"the index holds no file of article(s) {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}: "
            "calibrate needs an index of the question file's contexts; build one with "
            "`spanqa eval FILE --build --index DIR`"
        )
    return found


def ask_twice(qa: Any, squad: SquadSet, *, passages: int, limit: int | None,
              on_question_done: Callable[[], None] | None = None) -> list[AskedTwice]:
    sources = article_sources(squad, [stored.source for stored in qa.files()])
    asked = []
    for question in squad.questions if limit is None else squad.questions[:limit]:
        article = squad.titles[question.context_index]
        without = {"operator": "NOT", "conditions": [
            {"field": "meta.source", "operator": "in", "value": sources[article]}]}
        found = qa.read(question.question, qa.search(question.question, top_k=passages), top_k=1)
        missing = qa.read(question.question, qa.search(question.question, top_k=passages, filters=without), top_k=1)
        best = found[0] if found else None
        correct = best is not None and best_over_golds(best.text, question.answers)[0] == 1.0
        asked.append(AskedTwice(article, best, correct, missing[0] if missing else None))
        if on_question_done is not None:
            on_question_done()
    return asked


def _features(answer: Answer) -> dict[str, float | None]:
    evidence = answer.evidence
    if evidence is None:
        raise ValueError("an answer without evidence cannot be calibrated")
    return {
        "ranking_sum": evidence.ranking_sum, "margin": evidence.margin, "passages": float(evidence.passages),
        "similarity": evidence.similarity,
    }


def calibrate(
    qa: Any, squad: SquadSet, *, file: str, passages: int, target_coverage: float, limit: int | None = None,
    on_question_done: Callable[[], None] | None = None,
) -> tuple[AnswerCalibration, AbstentionReport]:
    """Fits the calibration for `qa`'s reader and rank weight on the first half of the articles and
    measures it on the rest."""
    asked = ask_twice(qa, squad, passages=passages, limit=limit, on_question_done=on_question_done)
    articles = list(dict.fromkeys(item.article for item in asked))
    if len(articles) < 2:
        raise ConfigError("calibrate needs questions of at least two articles: one half to fit, one to measure")
    fit_articles = set(articles[: len(articles) // 2])
    fit = [item for item in asked if item.article in fit_articles]
    held_out = [item for item in asked if item.article not in fit_articles]
    best_answers = [answer for item in fit for answer in (item.answerable, item.unanswerable) if answer is not None]
    calibration = fit_calibration(
        [_features(item.answerable) for item in fit if item.answerable is not None],
        [_features(item.unanswerable) for item in fit if item.unanswerable is not None],
        reader=qa.reader_model, rank_weight=qa.rank_weight, passages=passages, target_coverage=target_coverage,
        max_logit_sum=max(answer.evidence.logit_sum for answer in best_answers if answer.evidence is not None),
        ranking=answer_ranking(qa.settings.reader, qa.settings.rerank),
    )
    report = AbstentionReport(
        file=file, passages=passages, fit_articles=[a for a in articles if a in fit_articles],
        report_articles=[a for a in articles if a not in fit_articles],
        fit_questions=len(fit), report_questions=len(held_out), threshold=calibration.threshold,
    )
    scores: dict[str, Callable[[Answer], float]] = {
        "raw": lambda answer: answer.evidence.logit_sum,
        "ranked": lambda answer: answer.evidence.ranking_sum,
        "calibrated": lambda answer: calibration.confidence(_features(answer)),
    }
    for name, score in scores.items():
        positive = [score(item.answerable) if item.answerable else float("-inf") for item in held_out]
        negative = [score(item.unanswerable) if item.unanswerable else float("-inf") for item in held_out]
        report.auroc[name] = auroc(positive, negative)
        report.risk_coverage[name] = risk_coverage(
            positive + negative, [item.answerable_correct for item in held_out] + [False] * len(held_out),
            COVERAGE_POINTS,
        )

    def confident(answer: Answer | None) -> bool:
        return answer is not None and calibration.confidence(_features(answer)) >= calibration.threshold

    report.answerable_answered = sum(confident(item.answerable) for item in held_out) / max(1, len(held_out))
    report.unanswerable_abstained = sum(not confident(item.unanswerable) for item in held_out) / max(1, len(held_out))
    return calibration, report
