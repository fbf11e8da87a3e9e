"""`spanqa eval`: retrieval recall and MRR, reader and end-to-end EM/F1 on a SQuAD-format file.

Stages, for each question:

- retrieval: the question's passages from the index, best first; recall@k and MRR of the first
  relevant one. With an index built from the file's own contexts (`--build`) a passage is relevant
  when it was cut from the question's paragraph; with any other index, when its text contains a
  gold answer (normalised as SQuAD normalises answers).
- reader: the reader reads only the gold paragraph (this is the model card's setting).
- end to end: the reader reads the retrieved passages; its best answer is scored.

EM and F1 are SQuAD v1.1's (`spanqa.pipelines.metrics`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.answers import Passage
from spanqa.errors import ConfigError, DocumentError
from spanqa.pipelines.metrics import (
    best_over_golds,
    first_hit_rank,
    mean_reciprocal_rank,
    normalize_answer,
    recall_at,
)

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


def load_squad(path: str | Path) -> SquadSet:
    """Reads a SQuAD v1.1-format JSON file; a file of another shape is a DocumentError saying what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DocumentError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(path, f"not a readable JSON file ({error})") from None
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DocumentError(path, 'not SQuAD format: expected {"data": [{"title", "paragraphs": [...]}, ...]}')
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


def _file_title(title: str) -> str:
    """An article title as a file name: letters, digits, '-', '_' and '.'; the rest becomes '_'."""
    safe = re.sub(r"[^\w.-]+", "_", title, flags=re.UNICODE).strip("._")
    return safe[:100] if safe else "untitled"


def write_contexts(squad: SquadSet, directory: str | Path) -> dict[str, int]:
    """Writes each context to `directory/NNNNN/<title>.txt` (the article title names the file, so
    it is searchable like a document's name) and returns {path: context index}."""
    directory = Path(directory)
    sources: dict[str, int] = {}
    for index, (context, title) in enumerate(zip(squad.contexts, squad.titles, strict=True)):
        folder = directory / f"{index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_file_title(title)}.txt"
        path.write_text(context, encoding="utf-8")
        sources[str(path.resolve())] = index
    return sources


def contains_an_answer(text: str, answers: tuple[str, ...]) -> bool:
    normalized = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(answer)} " in normalized for answer in answers if normalize_answer(answer))


@dataclass
class EvalReport:
    """What `spanqa eval` prints. Rates are 0..1 (printed as percentages); None: stage not run."""

    file: str
    questions: int
    mode: str  # "full", "retrieval-only" or "reader-only"
    top_k: int  # passages the reader reads end to end
    relevance: str | None = None  # how a retrieved passage counts as relevant
    recall: dict[int, float] = field(default_factory=dict)
    mrr: float | None = None
    reader_exact_match: float | None = None
    reader_f1: float | None = None
    end_to_end_exact_match: float | None = None
    end_to_end_f1: float | None = None
    seconds_per_question: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "questions": self.questions,
            "mode": self.mode,
            "top_k": self.top_k,
            "retrieval": None
            if self.mrr is None
            else {"relevance": self.relevance, "recall": {str(k): v for k, v in self.recall.items()}, "mrr": self.mrr},
            "reader": None
            if self.reader_f1 is None
            else {"exact_match": self.reader_exact_match, "f1": self.reader_f1},
            "end_to_end": None
            if self.end_to_end_f1 is None
            else {"exact_match": self.end_to_end_exact_match, "f1": self.end_to_end_f1},
            "seconds_per_question": self.seconds_per_question,
        }

    def to_text(self) -> str:
        lines = [f"{self.file}: {self.questions} questions ({self.mode})"]
        if self.mrr is not None:
            recalls = "  ".join(f"R@{k} {100 * v:.1f}" for k, v in self.recall.items())
            lines.append(f"retrieval   {recalls}  MRR {self.mrr:.3f}   (relevant: {self.relevance})")
        if self.reader_f1 is not None:
            lines.append(
                f"reader      EM {100 * self.reader_exact_match:.1f}  F1 {100 * self.reader_f1:.1f}   (gold paragraph given)"
            )
        if self.end_to_end_f1 is not None:
            lines.append(
                f"end to end  EM {100 * self.end_to_end_exact_match:.1f}  F1 {100 * self.end_to_end_f1:.1f}"
                f"   (reader reads the top {self.top_k} passages)"
            )
        timings = "  ".join(f"{stage} {seconds * 1000:.0f} ms" for stage, seconds in self.seconds_per_question.items())
        lines.append(f"per question  {timings}")
        return "\n".join(lines)


EVAL_MODES = ("full", "retrieval-only", "reader-only")


def evaluate(
    qa: Any,
    squad: SquadSet,
    *,
    file: str,
    mode: str = "full",
    top_k: int = 10,
    limit: int | None = None,
    sources: dict[str, int] | None = None,
    on_question_done: Callable[[], None] | None = None,
) -> EvalReport:
    """Runs the stages of `mode` for the first `limit` questions (all when None) with `qa`, a DocumentQA.

    `sources` maps indexed file paths to context indices (an index built by `write_contexts`);
    without it, a passage is relevant when it contains a gold answer.
    """
    if mode not in EVAL_MODES:
        raise ConfigError(f"eval mode {mode!r} is not one of {', '.join(EVAL_MODES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit={limit!r} must be a whole number >= 1 (or None for every question)")
    questions = squad.questions if limit is None else squad.questions[:limit]
    report = EvalReport(file=file, questions=len(questions), mode=mode, top_k=top_k)
    depth = max(max(RECALL_CUTOFFS), top_k)
    ranks: list[int | None] = []
    reader_scores: list[tuple[float, float]] = []
    end_to_end_scores: list[tuple[float, float]] = []
    seconds = {"retrieve": 0.0, "read (gold paragraph)": 0.0, "read (retrieved)": 0.0}
    if questions:
        # Models load on first use: one untimed pass keeps loading out of the per-question times.
        warm_up = questions[0]
        if mode != "reader-only":
            qa.search(warm_up.question, top_k=1)
        if mode != "retrieval-only":
            qa.read(warm_up.question, [_gold_passage(squad.contexts[warm_up.context_index])], top_k=1)
    for question in questions:
        if mode != "reader-only":
            started = time.perf_counter()
            passages = qa.search(question.question, top_k=depth)
            seconds["retrieve"] += time.perf_counter() - started
            ranks.append(first_hit_rank((_relevant(p, question, sources) for p in passages), True))
        if mode != "retrieval-only":
            gold = squad.contexts[question.context_index]
            started = time.perf_counter()
            answers = qa.read(question.question, [_gold_passage(gold)], top_k=1)
            seconds["read (gold paragraph)"] += time.perf_counter() - started
            reader_scores.append(best_over_golds(answers[0].text if answers else "", question.answers))
        if mode == "full":
            started = time.perf_counter()
            answers = qa.read(question.question, passages[:top_k], top_k=1)
            seconds["read (retrieved)"] += time.perf_counter() - started
            end_to_end_scores.append(best_over_golds(answers[0].text if answers else "", question.answers))
        if on_question_done is not None:
            on_question_done()

    count = max(1, len(questions))
    if ranks:
        report.relevance = "passage from the question's paragraph" if sources is not None else "passage contains a gold answer"
        report.recall = {k: recall_at(ranks, k) for k in sorted({*RECALL_CUTOFFS, top_k})}
        report.mrr = mean_reciprocal_rank(ranks)
    if reader_scores:
        report.reader_exact_match = sum(em for em, _ in reader_scores) / count
        report.reader_f1 = sum(f for _, f in reader_scores) / count
    if end_to_end_scores:
        report.end_to_end_exact_match = sum(em for em, _ in end_to_end_scores) / count
        report.end_to_end_f1 = sum(f for _, f in end_to_end_scores) / count
    report.seconds_per_question = {stage: total / count for stage, total in seconds.items() if total > 0}
    return report


def _relevant(passage: Passage, question: EvalQuestion, sources: dict[str, int] | None) -> bool:
    if sources is not None:
        return sources.get(passage.source) == question.context_index
    return contains_an_answer(passage.text, question.answers)


def _gold_passage(context: str) -> Passage:
    return Passage(text=context, score=1.0, source="gold paragraph", page=1, start=0, end=len(context))
