"""What a reader learns from: SQuAD v1.1 files and the service's feedback, read into `TrainExample`s
(a question, the passage it was asked of, the spans marked right and those marked wrong), and the
held-out split the before/after evaluation reads."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from spanqa.errors import DocumentError
from spanqa.pipelines.evaluation import read_squad_articles

FEEDBACK_DATABASE = "service.sqlite"  # spanqa.service.database.DATABASE_FILE: the service's records in an index


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of an example's context."""

    start: int
    end: int


@dataclass(frozen=True)
class TrainExample:
    """One question about one passage: the spans that answer it (`answers`) and spans a user marked
    wrong (`wrong`); at least one of the two."""

    example_id: str
    question: str
    context: str
    title: str
    answers: tuple[Span, ...]
    wrong: tuple[Span, ...] = ()

    def answer_texts(self) -> tuple[str, ...]:
        return tuple(self.context[span.start : span.end] for span in self.answers)


@dataclass
class TrainingData:
    """Examples read from the inputs, what was left out and why, and each input's SHA-256 (the
    training record names exactly what a model learnt from)."""

    examples: list[TrainExample] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (example id, reason)
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> sha256

    def extend(self, other: TrainingData) -> None:
        self.examples.extend(other.examples)
        self.left_out.extend(other.left_out)
        self.inputs.update(other.inputs)


def answer_span(context: str, text: str, start: object) -> Span | None:
    """The span of answer `text` given at `start`; SQuAD files hold a few starts off by some characters,
    so the nearest occurrence of `text` is taken when `start` does not point at it. None: not found."""
    if not text.strip():
        return None
    if isinstance(start, int) and not isinstance(start, bool) and context[start : start + len(text)] == text:
        return Span(start, start + len(text))
    found, position = [], context.find(text)
    while position >= 0:
        found.append(position)
        position = context.find(text, position + 1)
    if not found:
        return None
    near = start if isinstance(start, int) and not isinstance(start, bool) else 0
    best = min(found, key=lambda p: abs(p - near))
    return Span(best, best + len(text))


def read_squad(path: str | Path) -> TrainingData:
    """The answerable questions of a SQuAD v1.1 file (the service's feedback export is one); an answer
    not found in its paragraph leaves its question out, listed with the reason. A file of another
    shape is a DocumentError saying what is wrong."""
    path = Path(path)
    raw, articles = read_squad_articles(path)
    result = TrainingData(inputs={path.name: hashlib.sha256(raw).hexdigest()})
    for number, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DocumentError(path, f"not SQuAD format: article {number} has no 'paragraphs' list")
        title = str(article.get("title", f"article {number}"))
        for paragraph in paragraphs:
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            questions = paragraph.get("qas", []) if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not isinstance(questions, list):
                raise DocumentError(path, f"not SQuAD format: a paragraph of article {number} needs a 'context' "
                                    "string and a 'qas' list")
            for qa in questions:
                _add_question(result, qa, context, title, f"{path.name}#{len(result.examples)}")
    return result


def _add_question(result: TrainingData, qa: object, context: str, title: str, fallback_id: str) -> None:
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not qa["question"].strip():
        result.left_out.append((fallback_id, "no question text"))
        return
    example_id = str(qa.get("id", fallback_id))
    spans = []
    for answer in qa.get("answers") or []:
        if isinstance(answer, dict) and isinstance(answer.get("text"), str):
            span = answer_span(context, answer["text"], answer.get("answer_start"))
            if span is not None and span not in spans:
                spans.append(span)
    if not spans:
        result.left_out.append((example_id, "no answer found in its paragraph"))
        return
    result.examples.append(TrainExample(example_id, qa["question"].strip(), context, title, tuple(spans)))


def read_feedback(index_dir: str | Path) -> TrainingData:
    """The feedback a service over `index_dir` collected: answers marked right become answers, those
    marked wrong become spans to unlearn; one example per (question, page text). Read-only."""
    path = Path(index_dir) / FEEDBACK_DATABASE
    if not path.is_file():
        raise DocumentError(Path(index_dir), "holds no feedback: no service has run over this index (its "
                            f"{FEEDBACK_DATABASE} is missing)")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
            rows = connection.execute(
                "SELECT id, question, source, start, end, correct, context, title FROM feedback ORDER BY id"
            ).fetchall()
    except sqlite3.Error as error:
        raise DocumentError(Path(index_dir), f"its feedback could not be read ({error})") from None
    grouped: dict[tuple[str, str], dict] = {}
    left_out = []
    for feedback_id, question, source, start, end, correct, context, title in rows:
        if not (0 <= start < end <= len(context)) or not question.strip():
            left_out.append((f"feedback-{feedback_id}", "its span is not inside its page text"))
            continue
        entry = grouped.setdefault((question.strip(), context), {
            "id": f"feedback-{feedback_id}", "title": title or source, "right": [], "wrong": []})
        kind = entry["right"] if correct else entry["wrong"]
        if Span(start, end) not in kind:
            kind.append(Span(start, end))
    digest = hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()
    examples = [
        TrainExample(entry["id"], question, context, entry["title"], tuple(entry["right"]),
                     tuple(span for span in entry["wrong"] if span not in entry["right"]))
        for (question, context), entry in grouped.items()
    ]
    return TrainingData(examples=examples, left_out=left_out, inputs={f"feedback of {Path(index_dir).name}": digest})


def held_out_split(
    examples: list[TrainExample], share: float, seed: int
) -> tuple[list[TrainExample], list[TrainExample]]:
    """(train, held out): a `share` of the articles (by title) held out whole, so no held-out question's
    paragraph was trained on; by question when there are fewer than two articles. Same seed, same split."""
    if share <= 0 or len(examples) < 2:
        return list(examples), []
    titles = sorted({example.title for example in examples})
    rng = random.Random(seed)
    if len(titles) >= 2:
        rng.shuffle(titles)
        held_titles = set(titles[: max(1, round(share * len(titles)))])
        held = [example for example in examples if example.title in held_titles]
        return [example for example in examples if example.title not in held_titles], held
    order = list(range(len(examples)))
    rng.shuffle(order)
    held_positions = set(order[: max(1, round(share * len(examples)))])
    return ([example for i, example in enumerate(examples) if i not in held_positions],
            [example for i, example in enumerate(examples) if i in held_positions])
