"""Conversions between Haystack's Document/ExtractedAnswer and spanqa's Answer/Passage records."""

from __future__ import annotations

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.answers import Answer, Passage


def passage_from_document(document: Document) -> Passage:
    """A retrieved chunk as a Passage; its offsets are the chunk's span in the page text."""
    meta = document.meta
    return Passage(
        text=document.content if document.content is not None else "",
        score=float(document.score) if document.score is not None else 0.0,
        source=str(meta["source"]),
        page=int(meta["page"]),
        start=int(meta["start"]),
        end=int(meta["end"]),
    )


def answer_from_extracted(extracted: ExtractedAnswer) -> Answer:
    """Shift an answer's offsets from its chunk to the page the chunk was cut from."""
    document = extracted.document
    if document is None or extracted.document_offset is None or extracted.data is None:
        raise ValueError("an ExtractedAnswer without document, offsets or text cannot be placed on a page")
    meta = document.meta
    chunk_start = int(meta["start"])
    start = chunk_start + extracted.document_offset.start
    end = chunk_start + extracted.document_offset.end
    context = extracted.context if extracted.context is not None else extracted.data
    if extracted.context_offset is not None:
        answer_start_in_context = extracted.context_offset.start
        answer_end_in_context = extracted.context_offset.end
    else:
        answer_start_in_context, answer_end_in_context = 0, len(context)
    return Answer(
        text=extracted.data,
        score=float(extracted.score),
        source=str(meta["source"]),
        page=int(meta["page"]),
        start=start,
        end=end,
        context=context,
        answer_start_in_context=answer_start_in_context,
        answer_end_in_context=answer_end_in_context,
    )
