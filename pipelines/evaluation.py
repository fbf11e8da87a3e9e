"""`spanqa eval`: retrieval recall and MRR, reader and end-to-end EM/F1 on a SQuAD-format file.

Stages, for each question:

- retrieval: the question's passages from the index, best first; recall@k and MRR of the first
  relevant one. With an index built from the file's own contexts (`--build`) a passage is relevant
  when it was cut from the question's paragraph; with any other index, when its text contains a
  gold answer (normalised as SQuAD normalises answers).
- reader: the reader reads only the gold paragraph (this is the model card's setting).
- end to end: the reader reads the retrieved passages; its best answer is scored.

EM and F1 are SQuAD v1.1's (`spanqa.pipelines.eval_metrics`).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.errors import ConfigError, DocumentError
from spanqa.pipelines.eval_metrics import (
    best_over_golds,
    first_hit_rank,
    mean_reciprocal_rank,
    normalize_answer,
    recall_at,
)
from spanqa.records import Passage
from spanqa.settings import AUTO_THRESHOLD, RetrievalSettings

RECALL_CUTOFFS = (1, 5, 10, 20)
CONTEXTS_FOLDER = "contexts"  # where `--build` writes the file's contexts, one text file each


@dataclass(frozen=True)
class EvalQuestion:
    question_id: str
    question: str
    answers: tuple[str, ...]
    context_index: int


@dataclass(frozen=True)
class SquadSet:
    """A SQuAD-format file: its paragraphs (`contexts`, with their article `titles`) and questions."""

    contexts: tuple[str, ...]
    titles: tuple[str, ...]
    questions: tuple[EvalQuestion, ...]


def read_squad_articles(path: Path) -> tuple[bytes, list]:
    """A SQuAD-format JSON file's bytes and its `data` list of articles; a file that is missing, not
    JSON or without that list is a DocumentError saying which."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise DocumentError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(path, f"not a readable JSON file ({error})") from None
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DocumentError(path, 'not SQuAD format: expected {"data": [{"title", "paragraphs": [...]}, ...]}')
    return raw, articles


def load_squad(path: str | Path) -> SquadSet:
    """Reads a SQuAD v1.1-format JSON file; a file of another shape is a DocumentError saying what is wrong."""
    path = Path(path)
    _, articles = read_squad_articles(path)
    contexts: list[str] = []
    titles: list[str] = []
    questions: list[EvalQuestion] = []
    for article_number, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DocumentError(path, f"not SQuAD format: article {article_number} has no 'paragraphs' list")
        title = str(article.get("title", f"article {article_number}"))
        for paragraph_number, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not isinstance(paragraph.get("qas", []), list):
                raise DocumentError(
                    path, f"not SQuAD format: paragraph {paragraph_number} of article {article_number} "
                    "needs a 'context' string and a 'qas' list"
                )
            for qa in paragraph.get("qas", []):
                answers = tuple(
                    answer["text"] for answer in qa.get("answers", []) if isinstance(answer, dict) and "text" in answer
                )
                if not answers or not isinstance(qa.get("question"), str):
                    continue  # unanswerable (SQuAD 2.0 style) questions have nothing to score against
                questions.append(
                    EvalQuestion(str(qa.get("id", len(questions))), qa["question"], answers, len(contexts))
                )
            contexts.append(context)
            titles.append(title)
    if not questions:
        raise DocumentError(path, "holds no answerable questions (each needs a 'question' and 'answers' with 'text')")
    return SquadSet(tuple(contexts), tuple(titles), tuple(questions))


def context_file_name(title: str) -> str:
    """The file name `write_contexts` gives an article's contexts: the title's letters, digits, '-',
    '_' and '.' (the rest becomes '_'), then '.txt'."""
    safe = re.sub(r"[^\w.-]+", "_", title, flags=re.UNICODE).strip("._")
    return f"{safe[:100] if safe else 'untitled'}.txt"


def write_contexts(squad: SquadSet, directory: str | Path) -> dict[str, int]:
    """Writes each context to `directory/NNNNN/<title>.txt` (the article title names the file, so
    it is searchable like a document's name) and returns {path: context index}."""
    directory = Path(directory)
    sources: dict[str, int] = {}
    for index, (context, title) in enumerate(zip(squad.contexts, squad.titles, strict=True)):
        folder = directory / f"{index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / context_file_name(title)
        path.write_text(context, encoding="utf-8")
        sources[str(path.resolve())] = index
    return sources


def contains_an_answer(text: str, answers: tuple[str, ...]) -> bool:
    normalized = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(answer)} " in normalized for answer in answers if normalize_answer(answer))


@dataclass(frozen=True)
class AnswerScores:
    """EM and F1 over all questions (a question left unanswered scores 0) and the share answered."""

    exact_match: float
    f1: float
    answered: float

    @classmethod
    def of(cls, scored: list[tuple[float, float, bool]]) -> AnswerScores:
        count = max(1, len(scored))
        return cls(
            exact_match=sum(em for em, _, _ in scored) / count,
            f1=sum(f1 for _, f1, _ in scored) / count,
            answered=sum(1 for _, _, answered in scored if answered) / count,
        )

    def to_json(self) -> dict[str, float]:
        return {"exact_match": self.exact_match, "f1": self.f1, "answered": self.answered}

    def to_text(self, with_answered: bool) -> str:
        text = f"EM {100 * self.exact_match:.1f}  F1 {100 * self.f1:.1f}"
        return f"{text}  answered {100 * self.answered:.1f}%" if with_answered else text


@dataclass
class EvalReport:
    """What `spanqa eval` prints. Rates are 0..1 (printed as percentages); None: stage not run."""

    file: str
    questions: int
    mode: str  # "full", "retrieval-only" or "reader-only"
    passages: tuple[int, ...]  # passages the reader reads end to end (one figure each)
    threshold: float | str | None = None
    rank_weight: float | None = None  # the settings' own: its rows rank as `ask` does (reranking included)
    relevance: str | None = None  # how a retrieved passage counts as relevant
    recall: dict[int, float] = field(default_factory=dict)
    mrr: float | None = None
    reader: AnswerScores | None = None
    end_to_end: dict[tuple[int, float], AnswerScores] = field(default_factory=dict)  # by (passages, rank weight)
    seconds_per_question: dict[str, float] = field(default_factory=dict)
    median_seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "questions": self.questions,
            "mode": self.mode,
            "passages": list(self.passages),
            "threshold": self.threshold,
            "retrieval": None
            if self.mrr is None
            else {"relevance": self.relevance, "recall": {str(k): v for k, v in self.recall.items()}, "mrr": self.mrr},
            "reader": None if self.reader is None else self.reader.to_json(),
            "end_to_end": [
                {"passages": count, "rank_weight": weight, **scores.to_json()}
                for (count, weight), scores in self.end_to_end.items()
            ] or None,
            "seconds_per_question": self.seconds_per_question,
            "median_seconds": self.median_seconds,
        }

    def to_text(self) -> str:
        lines = [f"{self.file}: {self.questions} questions ({self.mode})"]
        with_answered = self.threshold is not None
        if self.mrr is not None:
            recalls = "  ".join(f"R@{k} {100 * v:.1f}" for k, v in self.recall.items())
            lines.append(f"retrieval   {recalls}  MRR {self.mrr:.3f}   (relevant: {self.relevance})")
        if self.reader is not None:
            lines.append(f"reader      {self.reader.to_text(with_answered)}   (gold paragraph given)")
        for (count, weight), scores in self.end_to_end.items():
            if weight == self.rank_weight:
                ranking = "as ask ranks"
            else:
                ranking = "reader alone" if weight == 0 else f"rank weight {weight:g} alone"
            lines.append(
                f"end to end  {scores.to_text(with_answered)}   (reader reads the top {count} passages; {ranking})"
            )
        timings = "  ".join(
            f"{stage} {seconds * 1000:.0f} ms (median {self.median_seconds[stage] * 1000:.0f})"
            for stage, seconds in self.seconds_per_question.items()
        )
        lines.append(f"per question  {timings}")
        return "\n".join(lines)


EVAL_MODES = ("full", "retrieval-only", "reader-only")
STAGE_SECONDS = ("retrieve", "read (gold paragraph)", "read (retrieved)")  # timed stages, as reported


def evaluate(
    qa: Any,
    squad: SquadSet,
    *,
    file: str,
    mode: str = "full",
    passages: tuple[int, ...] = (RetrievalSettings.retriever_top_k,),
    limit: int | None = None,
    sources: dict[str, int] | None = None,
    threshold: float | str | None = None,
    on_question_done: Callable[[], None] | None = None,
) -> EvalReport:
    """Runs the stages of `mode` for the first `limit` questions (all when None) with `qa`, a DocumentQA.

    End to end, the reader reads the top `passages` retrieved passages (several counts: the
    passages are read once and the answers of each prefix scored, ranked with `qa`'s rank weight
    and by the reader alone, see `DocumentQA.read_prefixes`; one count: `DocumentQA.read`, which
    also reads adaptively when `qa` is set to). `threshold`
    is the one `qa` applies, reported with the share of questions answered ("auto": end to end
    only, as the calibration needs retrieved passages). `sources` maps indexed
    file paths to context indices (an index built by `write_contexts`); without it, a passage is
    relevant when it contains a gold answer.
    """
    _check_evaluation(mode, limit, passages, threshold)
    plan = _Plan(mode=mode, passages=tuple(sorted(set(passages))), threshold=threshold, sources=sources)
    questions = squad.questions if limit is None else squad.questions[:limit]
    tally = _Tally()
    if questions:
        plan.warm_up(qa, squad, questions[0])
    for question in questions:
        tally.add(qa, squad, question, plan)
        if on_question_done is not None:
            on_question_done()
    report = EvalReport(
        file=file, questions=len(questions), mode=mode, passages=plan.passages, threshold=threshold,
        rank_weight=qa.rank_weight,
    )
    tally.fill(report, plan)
    return report


def _check_evaluation(
    mode: str, limit: int | None, passages: tuple[int, ...], threshold: float | str | None
) -> None:
    if mode not in EVAL_MODES:
        raise ConfigError(f"eval mode {mode!r} is not one of {', '.join(EVAL_MODES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit={limit!r} must be a whole number >= 1 (or None for every question)")
    if not passages:
        raise ConfigError("passages must name at least one number of passages to read")
    if mode == "reader-only" and threshold == AUTO_THRESHOLD:
        raise ConfigError(
            "threshold 'auto' judges answers by the retrieved passages' similarity to the question, and "
            "--reader-only retrieves nothing: give a numeric threshold, or leave out --reader-only"
        )


@dataclass(frozen=True)
class _Plan:
    """Which stages an evaluation runs, and how."""

    mode: str
    passages: tuple[int, ...]  # sorted, distinct
    threshold: float | str | None
    sources: dict[str, int] | None

    @property
    def retrieves(self) -> bool:
        return self.mode != "reader-only"

    @property
    def reads_gold(self) -> bool:
        # The calibration reads how similar the retrieved passages are to the question; a gold
        # paragraph handed to the reader has no such figure, so "auto" cannot judge its answers.
        return self.mode != "retrieval-only" and self.threshold != AUTO_THRESHOLD

    @property
    def reads_retrieved(self) -> bool:
        return self.mode == "full"

    @property
    def depth(self) -> int:
        """Passages retrieved per question: enough for every recall cutoff and every count read."""
        return max(max(RECALL_CUTOFFS), *self.passages)

    def warm_up(self, qa: Any, squad: SquadSet, question: EvalQuestion) -> None:
        """Models load on first use: one untimed pass keeps loading out of the per-question times."""
        if self.retrieves:
            qa.search(question.question, top_k=1)
        if self.reads_gold:
            qa.read(question.question, [_gold_passage(squad.contexts[question.context_index])], top_k=1)


@dataclass
class _Tally:
    """What the questions of an evaluation gave so far, stage by stage."""

    ranks: list[int | None] = field(default_factory=list)
    reader: list[tuple[float, float, bool]] = field(default_factory=list)
    end_to_end: dict[tuple[int, float], list[tuple[float, float, bool]]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGE_SECONDS})

    def add(self, qa: Any, squad: SquadSet, question: EvalQuestion, plan: _Plan) -> None:
        """Runs `plan`'s stages for one question and records their scores and times."""
        retrieved: list[Passage] = []
        if plan.retrieves:
            started = time.perf_counter()
            retrieved = qa.search(question.question, top_k=plan.depth)
            self.seconds["retrieve"].append(time.perf_counter() - started)
            self.ranks.append(first_hit_rank((_relevant(p, question, plan.sources) for p in retrieved), True))
        if plan.reads_gold:
            gold = squad.contexts[question.context_index]
            started = time.perf_counter()
            answers = qa.read(question.question, [_gold_passage(gold)], top_k=1)
            self.seconds["read (gold paragraph)"].append(time.perf_counter() - started)
            self.reader.append(_scored(answers, question))
        if plan.reads_retrieved:
            started = time.perf_counter()
            found = _read_retrieved(qa, question, retrieved, plan)
            self.seconds["read (retrieved)"].append(time.perf_counter() - started)
            for key, answers in found.items():
                self.end_to_end.setdefault(key, []).append(_scored(answers, question))

    def fill(self, report: EvalReport, plan: _Plan) -> None:
        """`report`'s figures from the questions tallied."""
        if self.ranks:
            report.relevance = (
                "passage contains a gold answer" if plan.sources is None else "passage from the question's paragraph"
            )
            report.recall = {k: recall_at(self.ranks, k) for k in sorted({*RECALL_CUTOFFS, *plan.passages})}
            report.mrr = mean_reciprocal_rank(self.ranks)
        if self.reader:
            report.reader = AnswerScores.of(self.reader)
        if plan.reads_retrieved:
            report.end_to_end = {key: AnswerScores.of(scored) for key, scored in sorted(self.end_to_end.items())}
        count = max(1, report.questions)
        timed = {stage: times for stage, times in self.seconds.items() if times}
        report.seconds_per_question = {stage: sum(times) / count for stage, times in timed.items()}
        report.median_seconds = {stage: float(statistics.median(times)) for stage, times in timed.items()}


def _read_retrieved(
    qa: Any, question: EvalQuestion, retrieved: list[Passage], plan: _Plan
) -> dict[tuple[int, float], list]:
    """The best answer from each count of `plan.passages` of the retrieved passages, by (count, rank weight)."""
    if len(plan.passages) == 1:
        count = plan.passages[0]
        return {(count, qa.rank_weight): qa.read(question.question, retrieved[:count], top_k=1)}
    # the reader alone beside the prior; not under "auto", whose calibration holds for one weight
    alone = [] if plan.threshold == AUTO_THRESHOLD else [0.0]
    weights = list(dict.fromkeys([qa.rank_weight, *alone]))
    return qa.read_prefixes(question.question, retrieved[: plan.passages[-1]], plan.passages, 1, weights)


def _scored(answers: list, question: EvalQuestion) -> tuple[float, float, bool]:
    exact_match, f1 = best_over_golds(answers[0].text if answers else "", question.answers)
    return exact_match, f1, bool(answers)


def _relevant(passage: Passage, question: EvalQuestion, sources: dict[str, int] | None) -> bool:
    if sources is not None:
        return sources.get(passage.source) == question.context_index
    return contains_an_answer(passage.text, question.answers)


def _gold_passage(context: str) -> Passage:
    return Passage(text=context, score=1.0, source="gold paragraph", page=1, start=0, end=len(context))
