"""Conversions between Haystack's Document/ExtractedAnswer and spanqa's Answer/Passage records."""

from __future__ import annotations

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.chunk_meta import SIMILARITY_KEY, ChunkMeta
from spanqa.indexing.formats.cleaning import raw_span_of
from spanqa.records import Answer, AnswerEvidence, AnswerSource, Passage


def passage_from_document(document: Document) -> Passage:
    """A retrieved chunk as a Passage; its offsets are the chunk's span in the page text."""
    meta = ChunkMeta.from_meta(document.meta)
    similarity = document.meta.get(SIMILARITY_KEY)
    return Passage(
        text=document.content if document.content is not None else "",
        score=float(document.score) if document.score is not None else 0.0,
        source=meta.source,
        page=meta.page,
        start=meta.start,
        end=meta.end,
        chunk_id=document.id,
        similarity=None if similarity is None else float(similarity),
        rerank_score=_number(document.meta.get("rerank_score")),
        retrieval_score=_number(document.meta.get("retrieval_score")),
    )


def reranked_meta(passage: Passage) -> dict:
    """What a reader needs to know of a reranked passage (none for one not reranked)."""
    if passage.rerank_score is None:
        return {}
    return {"passage_score": passage.score, "rerank_score": passage.rerank_score,
            "retrieval_score": passage.retrieval_score}


def _number(value) -> float | None:
    return None if value is None else float(value)


def _page_place(chunk_meta: dict, start_in_chunk: int, end_in_chunk: int) -> AnswerSource:
    """Chunk offsets to page offsets. A chunk of cleaned text carries `pieces`, its map back to the
    page text (see spanqa.indexing.formats.cleaning); without it the chunk is the page text verbatim."""
    meta = ChunkMeta.from_meta(chunk_meta)
    if meta.pieces is not None:
        start, end = raw_span_of(meta.pieces, start_in_chunk, end_in_chunk)
    else:
        start, end = meta.start + start_in_chunk, meta.start + end_in_chunk
    return AnswerSource(source=meta.source, page=meta.page, start=start, end=end)


def answer_from_extracted(extracted: ExtractedAnswer) -> Answer:
    """Shift an answer's offsets from its chunk to the page the chunk was cut from.

    The reader lists every occurrence of the answer text in `meta["sources"]`; overlapping chunks
    of one page report the same place twice, which becomes one AnswerSource here.
    """
    document = extracted.document
    if document is None or extracted.document_offset is None or extracted.data is None:
        raise ValueError("an ExtractedAnswer without document, offsets or text cannot be placed on a page")
    quoted = _page_place(document.meta, extracted.document_offset.start, extracted.document_offset.end)
    places = [quoted]
    for occurrence in extracted.meta.get("sources", []):
        place = _page_place(occurrence["meta"], occurrence["start"], occurrence["end"])
        if place not in places:
            places.append(place)
    context = extracted.context if extracted.context is not None else extracted.data
    if extracted.context_offset is not None:
        answer_start_in_context = extracted.context_offset.start
        answer_end_in_context = extracted.context_offset.end
    else:
        answer_start_in_context, answer_end_in_context = 0, len(context)
    return Answer(
        text=extracted.data,
        score=float(extracted.score),
        source=quoted.source,
        page=quoted.page,
        start=quoted.start,
        end=quoted.end,
        context=context,
        answer_start_in_context=answer_start_in_context,
        answer_end_in_context=answer_end_in_context,
        sources=tuple(places),
        confidence=extracted.meta.get("confidence"),
        evidence=_evidence(extracted.meta.get("evidence")),
    )


def _evidence(evidence: dict | None) -> AnswerEvidence | None:
    if evidence is None:
        return None
    return AnswerEvidence(
        ranking_sum=float(evidence["ranking_sum"]),
        margin=float(evidence["margin"]),
        passages=int(evidence["passages"]),
        similarity=None if evidence.get("similarity") is None else float(evidence["similarity"]),
        logit_sum=float(evidence["logit_sum"]),
        passages_read=int(evidence["passages_read"]),
    )
