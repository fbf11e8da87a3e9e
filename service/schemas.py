"""Request and response bodies of the HTTP API, as explicit pydantic models (so /openapi.json is complete)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from spanqa import defaults
from spanqa.settings import RETRIEVAL_MODES, ReaderSettings, RetrievalSettings, TrainSettings

Retrieval = Literal[RETRIEVAL_MODES]  # the modes `RetrievalSettings.retrieval` takes


class Strict(BaseModel):
    # A misspelt field ("topk") is an error rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="a short code: unauthorized, forbidden, not_found, invalid_request, ...")
    detail: Any = Field(description="what went wrong and how to fix it")


class AskRequest(Strict):
    question: str = Field(min_length=1, max_length=defaults.SERVICE_MAX_QUESTION_CHARS)
    top_k: int = Field(default=ReaderSettings.answer_top_k, ge=1, le=defaults.SERVICE_MAX_TOP_K,
                       description="answers to return")
    passages: int | None = Field(default=None, ge=1, le=defaults.SERVICE_MAX_TOP_K,
                                 description="retrieved passages the reader reads (default: the server's)")
    filters: dict[str, Any] | None = Field(default=None, description="a Haystack metadata filter")
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] | None = Field(
        default=None,
        description="drop answers scoring below it; 'auto': drop answers the index's answer calibration finds unlikely",
    )
    retrieval: Retrieval | None = Field(default=None, description="default: the server's (hybrid)")


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=defaults.SERVICE_MAX_QUESTION_CHARS)
    top_k: int = Field(default=RetrievalSettings.search_top_k, ge=1, le=defaults.SERVICE_MAX_TOP_K)
    filters: dict[str, Any] | None = None
    retrieval: Retrieval | None = None


SOURCE_DESCRIPTION = (
    "the file as users see it, never a server path: relative to the folder it was indexed from "
    "(docs/hr/a.pdf for /srv/docs/hr/a.pdf indexed as /srv/docs), an upload as folder/name"
)


class Box(BaseModel):
    """A highlight box in PDF user-space points of its page (origin bottom-left, as pdfium and pdf.js)."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float


class Place(BaseModel):
    source: str = Field(description=SOURCE_DESCRIPTION)
    name: str
    file_id: str
    page: int
    start: int
    end: int


class EvidenceBody(BaseModel):
    """Why an answer ranks where it does (spanqa.records.AnswerEvidence)."""

    ranking_sum: float = Field(description="start + end logit plus the passage's retrieval prior")
    margin: float = Field(description="how far it stands above the best other answer")
    passages: int = Field(description="passages read that hold it")
    logit_sum: float
    passages_read: int


class AnswerBody(BaseModel):
    text: str
    score: float
    source: str = Field(description=SOURCE_DESCRIPTION)
    name: str = Field(description="the file's name for display (an upload's original name)")
    file_id: str
    file_type: str = Field(description="pdf, txt, md, html, ...: only PDF answers have page images and boxes")
    page: int = Field(description="1-based")
    start: int = Field(description="character offset of the answer in the page's text")
    end: int
    context: str
    answer_start_in_context: int
    answer_end_in_context: int
    sources: list[Place] = Field(description="every place the same answer text was found, this one first")
    highlight: list[Box] = Field(description="one box per line the answer covers; empty for non-PDF files")
    highlight_error: str | None = Field(
        default=None, description="why `highlight` is empty on a PDF page, when its page could not be drawn "
        "(e.g. the page is over the server's time or memory budget); else null"
    )
    confidence: float | None = Field(
        default=None, description="calibrated chance the question is answered (with `spanqa calibrate`; else null)"
    )
    evidence: EvidenceBody | None = None


class AskResponse(BaseModel):
    question: str
    answers: list[AnswerBody]


class PassageBody(BaseModel):
    text: str
    score: float
    source: str = Field(description=SOURCE_DESCRIPTION)
    name: str
    file_id: str
    file_type: str
    page: int
    start: int
    end: int
    highlight: list[Box]
    highlight_error: str | None = Field(default=None, description="as in an answer: why a PDF page has no boxes")
    similarity: float | None = Field(default=None, description="cosine similarity to the query; null with keyword retrieval")
    rerank_score: float | None = Field(
        default=None, description="the passage reranker's logit for (query, passage); null where it was not reranked"
    )
    retrieval_score: float | None = Field(
        default=None, description="the score retrieval gave it before reranking (`score` is then the passage score)"
    )


class SearchResponse(BaseModel):
    query: str
    passages: list[PassageBody]


class FileBody(BaseModel):
    id: str
    source: str = Field(description=SOURCE_DESCRIPTION)
    name: str
    pages: int
    chunks: int
    indexed_at: str
    file_type: str


class FilesResponse(BaseModel):
    files: list[FileBody]


class DeletedResponse(BaseModel):
    deleted: FileBody


class JobFileBody(BaseModel):
    name: str
    status: Literal["pending", "indexed", "skipped", "failed"]
    reason: str | None
    file_id: str | None


class JobBody(BaseModel):
    job: str
    status: Literal["queued", "running", "done", "failed"]
    detail: str | None
    submitted_by: str
    submitted_at: str
    started_at: str | None
    finished_at: str | None
    files: list[JobFileBody]


class PageBody(BaseModel):
    file_id: str
    page: int
    pages: int
    width: float = Field(description="width of the page as shown, in points (the crop box, turned by `rotation`)")
    height: float = Field(description="height of the page as shown, in points")
    box: Box = Field(description="the crop box in user space: what the page image shows")
    rotation: int = Field(description="clockwise degrees the page is shown turned (0, 90, 180, 270)")


class FeedbackAnswer(Strict):
    file_id: str
    page: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str = Field(max_length=defaults.SERVICE_MAX_QUESTION_CHARS)


class FeedbackRequest(Strict):
    question: str = Field(min_length=1, max_length=defaults.SERVICE_MAX_QUESTION_CHARS)
    answer: FeedbackAnswer
    correct: bool


class FeedbackResponse(BaseModel):
    id: int


class MeResponse(BaseModel):
    name: str
    role: Literal["read", "admin"]
    scope: list[str] = Field(description="the folders the token sees, shown as sources are (empty: every file)")
    auth: bool = Field(description="whether the server checks tokens")


class Health(BaseModel):
    status: str
    detail: str | None = None


def _training_request() -> type[BaseModel]:
    """`POST /v1/training`'s body: any of `TrainSettings`' settings (declared there, with their docs);
    a value a setting cannot take is a 422 naming it."""
    fields: dict[str, Any] = {
        info.name: (Any, Field(default=None, description=f"{info.doc} (default: {info.default!r})"))
        for info in TrainSettings.infos()
    }
    return create_model("TrainingRequest", __base__=Strict, **fields)


TrainingRequest = _training_request()


class TrainingStatus(BaseModel):
    state: Literal["idle", "running", "stopping", "done", "failed", "stopped"]
    job: str | None = Field(default=None, description="the run's id; its reader is kept as readers/JOB in the index")
    submitted_by: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    stage: str | None = Field(default=None, description="what is being trained: reader")
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    steps: int | None = None
    detail: str | None = Field(default=None, description="why it failed, or what it did")
    base: str | None = Field(default=None, description="the reader the run started from")
    before: dict[str, Any] | None = Field(default=None, description="held-out EM/F1 of the reader before the run")
    after: dict[str, Any] | None = Field(default=None, description="held-out EM/F1 of the trained reader")
    serving: str = Field(description="the reader the server answers with")
    previous: str | None = Field(default=None, description="the reader a rollback goes back to (None: none)")
