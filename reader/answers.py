"""From each passage's decoded spans to the reader's answers: threshold, merge, rank, cut to top_k.

Answers are ranked by a *ranking sum*: the span's start + end logit plus its passage's retrieval
prior, `-rank_weight * ln(1 + rank)` for the passage at retrieval rank 0, 1, 2, ... A reader
trained on single paragraphs gives confident spans in wrong passages too; with the reader's logits
alone, reading the top 10 passages of SQuAD questions answered fewer questions right than reading
the first one (docs/measurements/answer-quality.md), and the prior lets a lower-ranked passage win only with a
clearly better span.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from haystack import Document
from haystack.dataclasses import ExtractedAnswer
from spanqa.errors import ConfigError
from spanqa.reader.calibration import AnswerCalibration, answer_features
from spanqa.reader.decoding import comparable_score
from spanqa.reader.reranking import evidence_sum, passage_priors
from spanqa.reader.span_reader import PassageSpan

_WHITESPACE = re.compile(r"\s+")


def answer_key(text: str) -> str:
    """Texts that read the same (up to runs of white space, e.g. a line break in a PDF) are one answer."""
    return _WHITESPACE.sub(" ", text).strip()


def rank_priors(passage_count: int, rank_weight: float) -> list[float]:
    """What each passage's rank adds to its spans' ranking sums: `-rank_weight * ln(1 + rank)`."""
    return [-rank_weight * math.log1p(rank) for rank in range(passage_count)]


def document_priors(documents: Sequence[Document], rank_weight: float, passage_weight: float) -> list[float]:
    """Each Document's prior (`spanqa.reader.reranking.passage_priors`), from the passage score a
    reranker left in `meta["passage_score"]` (none: the rank term alone)."""
    scores = [document.meta.get("passage_score") for document in documents]
    return passage_priors(scores, rank_weight, passage_weight)


@dataclass(frozen=True)
class SpanGroup:
    """Every occurrence of one answer text, best first; `best` is the one the answer quotes.

    `ranking_sum` is the best occurrence's logit sum plus its passage's prior: what groups are
    ranked by, and what the answer's score is made from.
    """

    spans: tuple[PassageSpan, ...]
    ranking_sum: float

    @property
    def best(self) -> PassageSpan:
        return self.spans[0]

    @property
    def passage_count(self) -> int:
        """How many of the passages read hold this answer."""
        return len({span.passage_index for span in self.spans})


def group_spans(
    spans_per_passage: list[list[PassageSpan]],
    passage_texts: list[str],
    *,
    merge_same_text: bool,
    score_threshold: float | None,
    passage_priors: Sequence[float] | None = None,
    evidence_weight: float = 0.0,
) -> list[SpanGroup]:
    """Rank all passages' spans by their ranking sum and group the ones with the same text.

    A span's ranking sum is its start + end logit plus `passage_priors[passage]` (None: no prior).
    Spans whose score, `comparable_score(ranking sum)`, is below `score_threshold` are dropped
    first (None keeps all). With `merge_same_text`, spans whose text is the same (see
    `answer_key`) become one group, whose ranking sum is `evidence_sum` of its best span in each
    passage holding it (with `evidence_weight` 0, its best span's); otherwise every distinct
    (passage, start, end) is its own group. Ties keep passage order.
    """
    def ranking_sum(span: PassageSpan) -> float:
        prior = 0.0 if passage_priors is None else passage_priors[span.passage_index]
        return span.start_logit + span.end_logit + prior

    ranked = [(ranking_sum(span), span) for passage_spans in spans_per_passage for span in passage_spans]
    if score_threshold is not None:
        ranked = [(total, span) for total, span in ranked if float(comparable_score(total)) >= score_threshold]
    ranked.sort(key=lambda item: item[0], reverse=True)

    groups: dict[object, tuple[float, list[PassageSpan]]] = {}
    for total, span in ranked:
        if merge_same_text:
            key: object = answer_key(passage_texts[span.passage_index][span.start : span.end])
        else:
            key = (span.passage_index, span.start, span.end)
        _, occurrences = groups.setdefault(key, (total, []))
        if all((o.passage_index, o.start, o.end) != (span.passage_index, span.start, span.end) for o in occurrences):
            occurrences.append(span)
    if evidence_weight == 0:
        return [SpanGroup(tuple(occurrences), total) for total, occurrences in groups.values()]
    summed = []
    for occurrences in (occurrences for _, occurrences in groups.values()):
        per_passage: dict[int, float] = {}
        for span in occurrences:  # best first: the first of each passage is its best
            per_passage.setdefault(span.passage_index, ranking_sum(span))
        summed.append(SpanGroup(tuple(occurrences), evidence_sum(list(per_passage.values()), evidence_weight)))
    summed.sort(key=lambda group: group.ranking_sum, reverse=True)  # stable: ties keep their order
    return summed


def extracted_answer(
    query: str, documents: list[Document], passage_texts: list[str], group: SpanGroup, context_chars: int
) -> ExtractedAnswer:
    """The Haystack answer for one group: it quotes the best occurrence and lists them all in meta.

    `meta["sources"]` holds one entry per occurrence, best first (the quoted one included):
    {"document_id", "start", "end", "score", "meta"} with offsets into that document's content.
    """
    span = group.best
    document = documents[span.passage_index]
    content = passage_texts[span.passage_index]
    context_start = max(0, span.start - context_chars)
    context_end = min(len(content), span.end + context_chars)
    sources = [
        {
            "document_id": documents[o.passage_index].id,
            "start": o.start,
            "end": o.end,
            "score": o.score,
            "meta": dict(documents[o.passage_index].meta),
        }
        for o in group.spans
    ]
    return ExtractedAnswer(
        query=query,
        score=float(comparable_score(group.ranking_sum)),
        data=content[span.start : span.end],
        document=document,
        context=content[context_start:context_end],
        document_offset=ExtractedAnswer.Span(span.start, span.end),
        context_offset=ExtractedAnswer.Span(span.start - context_start, span.end - context_start),
        meta={
            "start_logit": span.start_logit,
            "end_logit": span.end_logit,
            "ranking_sum": group.ranking_sum,
            "sources": sources,
        },
    )


def build_answers(
    query: str,
    documents: list[Document],
    passage_texts: list[str],
    spans_per_passage: list[list[PassageSpan]],
    *,
    top_k: int,
    context_chars: int,
    merge_same_text: bool,
    score_threshold: float | None,
    rank_weight: float = 0.0,
    passage_weight: float = 0.0,
    evidence_weight: float = 0.0,
    calibration: AnswerCalibration | None = None,
    confidence_threshold: float | None = None,
) -> list[ExtractedAnswer]:
    """The reader's answers to one query: at most `top_k`, best first.

    Passages are taken in the order read; each one's prior is `document_priors`' and the same answer
    in several passages gains by `evidence_weight` (`spanqa.reader.reranking`). With a `calibration`, each answer's
    `meta["confidence"]` is its calibrated confidence (None when the Documents carry no
    `meta["similarity"]`), and answers below `confidence_threshold` (None: keep all) are dropped.
    """
    groups = group_spans(
        spans_per_passage, passage_texts, merge_same_text=merge_same_text, score_threshold=score_threshold,
        passage_priors=document_priors(documents, rank_weight, passage_weight), evidence_weight=evidence_weight,
    )
    similarities = [d.meta["similarity"] for d in documents if d.meta.get("similarity") is not None]
    features = answer_features(
        [g.ranking_sum for g in groups], [g.passage_count for g in groups], max(similarities, default=None)
    )
    answers = []
    for group, evidence in zip(groups, features, strict=True):
        confidence = None if calibration is None else calibration.confidence(evidence)
        if confidence_threshold is not None:
            if confidence is None:
                raise ConfigError(
                    "the answer calibration needs each passage's similarity to the question, and these "
                    "passages have none (keyword retrieval, or passages of your own): use hybrid or dense "
                    "retrieval, or a numeric threshold"
                )
            if confidence < confidence_threshold:
                continue
        answer = extracted_answer(query, documents, passage_texts, group, context_chars)
        answer.meta["evidence"] = {
            **evidence,
            "logit_sum": group.best.start_logit + group.best.end_logit,
            "passages_read": len(passage_texts),
        }
        if confidence is not None:
            answer.meta["confidence"] = confidence
        answers.append(answer)
        if len(answers) == top_k:
            break
    return answers
