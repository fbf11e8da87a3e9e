"""The before/after evaluation of a training run: its held-out questions read with the gold paragraph
(reader only) and, with an index, end to end, by spanqa's own evaluation (spanqa.pipelines.evaluation)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa.pipelines.api import DocumentQA
from spanqa.pipelines.evaluation import EvalQuestion, SquadSet, evaluate
from spanqa.settings import QASettings
from spanqa.training.data import TrainExample


@dataclass(frozen=True)
class HeldOutFigures:
    """EM and F1 (0..1) of one model on the held-out questions; end to end by passages read."""

    questions: int
    reader_only: dict[str, float]
    end_to_end: dict[int, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "reader_only": self.reader_only,
                "end_to_end": {str(count): scores for count, scores in self.end_to_end.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldOutFigures:
        return cls(data["questions"], data["reader_only"],
                   {int(count): scores for count, scores in data["end_to_end"].items()})

    def to_text(self) -> str:
        parts = [f"reader only EM {100 * self.reader_only['exact_match']:.1f} F1 {100 * self.reader_only['f1']:.1f}"]
        parts += [f"end to end reading {count}: EM {100 * s['exact_match']:.1f} F1 {100 * s['f1']:.1f}"
                  for count, s in self.end_to_end.items()]
        return f"{self.questions} held-out questions: " + "; ".join(parts)


def as_squad_set(examples: Sequence[TrainExample]) -> SquadSet:
    """Answerable examples as an evaluation set (each example's passage its own context)."""
    contexts, titles, questions = [], [], []
    positions: dict[tuple[str, str], int] = {}
    for example in examples:
        if not example.answers:
            continue
        key = (example.title, example.context)
        if key not in positions:
            positions[key] = len(contexts)
            contexts.append(example.context)
            titles.append(example.title)
        questions.append(EvalQuestion(example.example_id, example.question, example.answer_texts(), positions[key]))
    return SquadSet(tuple(contexts), tuple(titles), tuple(questions))


def held_out_figures(
    squad: SquadSet, settings: QASettings, index: Path | None, passages: tuple[int, ...], limit: int | None
) -> HeldOutFigures:
    """The reader of `settings` on `squad`'s first `limit` questions: with the gold paragraph, and (with
    `index`) reading the top `passages` retrieved."""
    with tempfile.TemporaryDirectory(prefix="spanqa-train-eval-") as scratch:
        qa = DocumentQA(Path(scratch) / "index" if index is None else index,
                        settings=settings.replace(retriever_top_k=max(passages)))
        mode = "reader-only" if index is None else "full"
        report = evaluate(qa, squad, file="held out", mode=mode, passages=passages, limit=limit)
    end_to_end = {count: scores.to_json() for (count, weight), scores in report.end_to_end.items()
                  if weight == report.rank_weight}
    return HeldOutFigures(report.questions, report.reader.to_json(), end_to_end)
