"""Typed records that cross spanqa's boundaries (API, CLI, JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class AnswerSource:
    """Where an answer's text stands: characters `start:end` of page `page` (1-based) of `source`."""

    source: str
    page: int
    start: int
    end: int


@dataclass(frozen=True)
class AnswerEvidence:
    """Why an answer ranks where it does (see `spanqa.reader.answers` and `spanqa.reader.calibration`).

    `ranking_sum`: the span's start + end logit plus its passage's retrieval prior; `margin`: how far
    it stands above the best other answer (negative below the first); `passages`: how many of the
    passages read hold it; `similarity`: the highest cosine similarity of a passage read to the
    question (None when the retriever gave none, e.g. keyword retrieval); `logit_sum`: the span's
    start + end logit alone; `passages_read`: how many passages the reader read for the question.
    """

    ranking_sum: float
    margin: float
    passages: int
    similarity: float | None
    logit_sum: float
    passages_read: int


@dataclass(frozen=True)
class Answer:
    """One answer, quoted from the extracted text of one page.

    `start`/`end` are character offsets into that page's text, `page` is 1-based, and
    `context[answer_start_in_context:answer_end_in_context]` is the answer itself. The same answer
    text found in several places (other files, pages, or overlapping chunks) is one Answer:
    `sources` lists every place, the quoted one first.
    """

    text: str
    score: float
    source: str
    page: int
    start: int
    end: int
    context: str
    answer_start_in_context: int
    answer_end_in_context: int
    sources: tuple[AnswerSource, ...] = ()
    # The calibrated confidence (0..1) that the question is answered, when the index has a
    # calibration (`spanqa calibrate`); None without one.
    confidence: float | None = None
    evidence: AnswerEvidence | None = None

    def to_json(self) -> dict:
        """The answer as `spanqa ask --json` prints it (`sources` and `evidence` as plain dicts)."""
        return {
            "text": self.text,
            "score": self.score,
            "confidence": self.confidence,
            "evidence": None if self.evidence is None else asdict(self.evidence),
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "context": self.context,
            "sources": [asdict(place) for place in self.sources],
        }


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: characters `start:end` of page `page` (1-based) of `source`."""

    text: str
    score: float
    source: str
    page: int
    start: int
    end: int
    chunk_id: str | None = None  # the indexed chunk it is (None: a passage not from the index)
    similarity: float | None = None  # cosine similarity to the query, when the embedding search found it
    # With reranking: the reranker's logit for (query, passage), and the score retrieval gave it (`score`
    # is then the passage score that orders the passages read; docs/concepts/scores.md).
    rerank_score: float | None = None
    retrieval_score: float | None = None

    def to_json(self) -> dict:
        """The passage as `spanqa search --json` prints it: every field."""
        return asdict(self)


@dataclass(frozen=True)
class IndexedFile:
    """A file that `index` indexed: its path, its pages and chunks, and how many pages were OCR'd."""

    source: str
    pages: int
    chunks: int
    ocr_pages: int = 0  # pages whose text was OCR'd in this run


@dataclass(frozen=True)
class SkippedFile:
    """A file that `index` could not index, and why (docs/guides/scans.md lists every reason)."""

    source: str
    reason: str


@dataclass
class IndexReport:
    """What one `index` call did: files indexed, files skipped with the reason, chunks written."""

    indexed: list[IndexedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    chunk_count: int = 0
    removed: list[str] = field(default_factory=list)  # sources dropped by a sync: their files are gone

    def to_json(self) -> dict:
        """The report as `spanqa index --json` prints it."""
        return {
            "indexed": [asdict(f) for f in self.indexed],
            "skipped": [asdict(f) for f in self.skipped],
            "chunk_count": self.chunk_count,
            "removed": list(self.removed),
        }
