"""From each passage's decoded spans to the reader's answers: threshold, merge, rank, cut to top_k."""

from __future__ import annotations

import re
from dataclasses import dataclass

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.reader.span_reader import PassageSpan

_WHITESPACE = re.compile(r"\s+")


def answer_key(text: str) -> str:
    """Texts that read the same (up to runs of white space, e.g. a line break in a PDF) are one answer."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class SpanGroup:
    """Every occurrence of one answer text, best first; `best` is the one the answer quotes."""

    spans: tuple[PassageSpan, ...]

    @property
    def best(self) -> PassageSpan:
        return self.spans[0]


def group_spans(
    spans_per_passage: list[list[PassageSpan]],
    passage_texts: list[str],
    *,
    merge_same_text: bool,
    score_threshold: float | None,
) -> list[SpanGroup]:
    """Rank all passages' spans by their comparable score and group the ones with the same text.

    Spans below `score_threshold` are dropped first (None keeps all). With `merge_same_text`,
    spans whose text is the same (see `answer_key`) become one group, ranked where its best span
    ranks; otherwise every distinct (passage, start, end) is its own group. Ranking uses the
    logit sum, the order of `score` without its float saturation near 1; ties keep passage order.
    """
    spans = [span for passage_spans in spans_per_passage for span in passage_spans]
    if score_threshold is not None:
        spans = [span for span in spans if span.score >= score_threshold]
    spans.sort(key=lambda span: span.start_logit + span.end_logit, reverse=True)

    groups: dict[object, list[PassageSpan]] = {}
    for span in spans:
        if merge_same_text:
            key: object = answer_key(passage_texts[span.passage_index][span.start : span.end])
        else:
            key = (span.passage_index, span.start, span.end)
        occurrences = groups.setdefault(key, [])
        if all((o.passage_index, o.start, o.end) != (span.passage_index, span.start, span.end) for o in occurrences):
            occurrences.append(span)
    return [SpanGroup(tuple(occurrences)) for occurrences in groups.values()]


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
        score=span.score,
        data=content[span.start : span.end],
        document=document,
        context=content[context_start:context_end],
        document_offset=ExtractedAnswer.Span(span.start, span.end),
        context_offset=ExtractedAnswer.Span(span.start - context_start, span.end - context_start),
        meta={"start_logit": span.start_logit, "end_logit": span.end_logit, "sources": sources},
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
) -> list[ExtractedAnswer]:
    """The reader's answers to one query: at most `top_k`, best first."""
    groups = group_spans(
        spans_per_passage, passage_texts, merge_same_text=merge_same_text, score_threshold=score_threshold
    )
    return [
        extracted_answer(query, documents, passage_texts, group, context_chars) for group in groups[:top_k]
    ]
