"""Placing reader answers on pages: chunk offsets become page offsets; one place is listed once."""

from __future__ import annotations

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.pipelines.documents import answer_from_extracted
from spanqa.records import AnswerSource

PAGE = "Aurora Bicycle Works was founded in 1984 in Bergen. It moved to Trondheim in 2003."


def chunk(start: int, end: int, source: str = "/docs/handbook.pdf", page: int = 2) -> Document:
    return Document(content=PAGE[start:end], meta={"source": source, "page": page, "start": start, "end": end})


def test_offsets_move_from_chunk_to_page_and_overlapping_chunks_give_one_place():
    first, second = chunk(0, 60), chunk(20, len(PAGE))
    other_file = Document(content="Founded in 1984.", meta={"source": "/docs/other.md", "page": 1, "start": 0, "end": 16})
    year_in = {doc.id: doc.content.index("1984") for doc in (first, second, other_file)}
    sources = [
        {"document_id": doc.id, "start": year_in[doc.id], "end": year_in[doc.id] + 4, "score": 0.7, "meta": doc.meta}
        for doc in (second, first, other_file)
    ]
    extracted = ExtractedAnswer(
        query="When?", score=0.7, data="1984", document=second, context=second.content,
        document_offset=ExtractedAnswer.Span(year_in[second.id], year_in[second.id] + 4),
        context_offset=ExtractedAnswer.Span(year_in[second.id], year_in[second.id] + 4),
        meta={"start_logit": 3.0, "end_logit": 4.0, "sources": sources},
    )

    answer = answer_from_extracted(extracted)

    page_start = PAGE.index("1984")
    assert (answer.source, answer.page, answer.start, answer.end) == ("/docs/handbook.pdf", 2, page_start, page_start + 4)
    assert PAGE[answer.start : answer.end] == answer.text
    assert answer.sources == (
        AnswerSource("/docs/handbook.pdf", 2, page_start, page_start + 4),
        AnswerSource("/docs/other.md", 1, 11, 15),
    )
    assert answer.to_json()["sources"][1] == {"source": "/docs/other.md", "page": 1, "start": 11, "end": 15}
