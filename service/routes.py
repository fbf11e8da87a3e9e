"""The HTTP API: questions, passages, files, upload jobs, page images, feedback.

Every route acts for a principal (a token's name, role and scope). The scope is a store filter
ANDed into every search, so retrieval only ever ranks chunks the token may read (top_k still fills
from those); file, page and job routes look files up through the catalog, which answers 404 for a
file outside the scope exactly as for a file that does not exist. No server path leaves: every
`source` is the file's display form (`service.paths`), and job reasons are redacted the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from spanqa import defaults
from spanqa.errors import DocumentError, StorageError, is_storage_failure
from spanqa.indexing.formats.cleaning import same_text
from spanqa.indexing.store.filters import filter_sql
from spanqa.pipelines.documents import answer_from_extracted, passage_from_document
from spanqa.records import Answer, Passage
from spanqa.service.catalog import CatalogFile, CatalogSnapshot, FileCatalog, file_id, file_type
from spanqa.service.database import Feedback, squad_export
from spanqa.service.engine import NotReady, ServiceBusy
from spanqa.service.http_errors import ApiError, not_found, storage_failure
from spanqa.service.jobs import Job
from spanqa.service.metrics import CONTENT_TYPE
from spanqa.service.page_workers import PageOverBudget
from spanqa.service.paths import server_filters
from spanqa.service.schemas import (
    AskRequest,
    AskResponse,
    DeletedResponse,
    FeedbackRequest,
    FeedbackResponse,
    FilesResponse,
    JobBody,
    MeResponse,
    PageBody,
    SearchRequest,
    SearchResponse,
)
from spanqa.service.state import ANONYMOUS, ServiceState
from spanqa.service.tokens import Principal
from spanqa.service.uploads import UploadReceiver, UploadRejected, check_folder

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="a token made with `spanqa token add`")
UPLOAD_ERROR_CODES = {400: "bad_upload", 413: "too_large", 415: "unsupported_media_type"}
MEDIA_TYPES = {".pdf": "application/pdf", ".html": "text/html", ".htm": "text/html", ".md": "text/markdown",
               ".markdown": "text/markdown", ".txt": "text/plain",
               ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
               ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
               ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def service(request: Request) -> ServiceState:
    return request.app.state.spanqa


def retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(seconds, defaults.SERVICE_RETRY_AFTER_S))}


async def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """Who is asking: the token's principal (401 without a known token), after the rate limit (429)."""
    state = service(request)
    if state.tokens is None:
        who, key = ANONYMOUS, "client:" + (request.client.host if request.client is not None else "?")
    else:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None or credentials.scheme.lower() != "bearer" or credentials.credentials == "":
            raise ApiError(401, "unauthorized", "send a token: 'Authorization: Bearer <token>'", challenge)
        found = state.tokens.authenticate(credentials.credentials)
        if found is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token", challenge)
        who, key = found, "token:" + found.name
    wait = state.limiter.take(key)
    if wait > 0:
        state.metrics.rejected.labels("rate_limit").inc()
        raise ApiError(429, "rate_limited", f"too many requests for this token: retry in {wait} s", retry_after(wait))
    return who


async def admin(who: Principal = Depends(principal)) -> Principal:
    if not who.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin token")
    return who


def catalog_of(state: ServiceState) -> FileCatalog:
    if state.catalog is None or state.writer is None:
        detail = state.paths().redact(state.engine.load_error or "the models are still loading: retry shortly")
        raise ApiError(503, "not_ready", detail, retry_after(defaults.SERVICE_RETRY_AFTER_S))
    return state.catalog


async def files_now(state: ServiceState) -> CatalogSnapshot:
    """The indexed files as of the last commit, read off the event loop (the store may be busy)."""
    return await run_in_threadpool(catalog_of(state).snapshot)


def scoped_filters(
    filters: dict[str, Any] | None, who: Principal, catalog: CatalogSnapshot | None = None
) -> dict[str, Any] | None:
    """The request's filters (their `meta.source` values in the form users see them turned into
    server paths, with `catalog`) ANDed with the token's scope (checked first: a bad filter is a 422)."""
    if filters is not None:
        filter_sql(filters)
        if catalog is not None:
            filters = server_filters(filters, catalog.sources_shown_as, catalog.paths.folders)
    scope = who.scope_filter()
    if scope is None:
        return filters
    return scope if filters is None else {"operator": "AND", "conditions": [scope, filters]}


def admitted(state: ServiceState):
    try:
        return state.engine.admit()
    except ServiceBusy as exc:
        state.metrics.rejected.labels("queue_full").inc()
        raise ApiError(503, "busy", str(exc), retry_after(defaults.SERVICE_RETRY_AFTER_S)) from exc
    except NotReady as exc:
        raise ApiError(503, "not_ready", str(exc), retry_after(defaults.SERVICE_RETRY_AFTER_S)) from exc


async def place_boxes(
    state: ServiceState, catalog: CatalogSnapshot, source: str, page: int, start: int, end: int, text: str
) -> dict[str, Any]:
    """`highlight` (the boxes) and `highlight_error` (why a PDF page has none: e.g. it is over budget)."""
    entry = catalog.entry_for(source)
    shown = await state.pages.highlight(source, None if entry is None else entry.sha256, page, start, end, text)
    error = None if shown.error is None else catalog.paths.redact(shown.error)  # no server path leaves
    return {"highlight": shown.boxes, "highlight_error": error}


async def answer_body(state: ServiceState, catalog: CatalogSnapshot, answer: Answer) -> dict[str, Any]:
    body = answer.to_json()
    body.update(
        source=catalog.shown(answer.source), name=catalog.name_of(answer.source), file_id=file_id(answer.source),
        file_type=file_type(answer.source), answer_start_in_context=answer.answer_start_in_context,
        answer_end_in_context=answer.answer_end_in_context,
        **await place_boxes(state, catalog, answer.source, answer.page, answer.start, answer.end, answer.text),
    )
    for place in body["sources"]:
        source = place["source"]
        place.update(source=catalog.shown(source), name=catalog.name_of(source), file_id=file_id(source))
    return body


async def passage_body(state: ServiceState, catalog: CatalogSnapshot, passage: Passage) -> dict[str, Any]:
    body = passage.to_json()
    body.pop("chunk_id", None)
    body.update(
        source=catalog.shown(passage.source), name=catalog.name_of(passage.source), file_id=file_id(passage.source),
        file_type=file_type(passage.source),
        **await place_boxes(state, catalog, passage.source, passage.page, passage.start, passage.end, passage.text),
    )
    return body


# -- questions -------------------------------------------------------------------------------------


@router.post("/v1/ask", response_model=AskResponse, tags=["questions"])
async def ask(body: AskRequest, request: Request, who: Principal = Depends(principal)) -> dict:
    """Answers quoted from the files the token may read, best first, each with its highlight boxes."""
    state = service(request)
    catalog_of(state)
    filters = scoped_filters(body.filters, who, await files_now(state))
    with admitted(state):
        extracted = await state.engine.ask(
            body.question, top_k=body.top_k, passages=body.passages, filters=filters, threshold=body.threshold,
            mode=body.retrieval,
        )
    answers = [answer_from_extracted(answer) for answer in extracted]
    catalog = await files_now(state)
    bodies = await asyncio.gather(*(answer_body(state, catalog, answer) for answer in answers))
    return {"question": body.question, "answers": list(bodies)}


@router.post("/v1/search", response_model=SearchResponse, tags=["questions"])
async def search(body: SearchRequest, request: Request, who: Principal = Depends(principal)) -> dict:
    """The passages most related to the query among the files the token may read, without reading them."""
    state = service(request)
    catalog_of(state)
    filters = scoped_filters(body.filters, who, await files_now(state))
    with admitted(state):
        documents = await state.engine.search(body.query, body.top_k, filters, body.retrieval)
    passages = [passage_from_document(document) for document in documents]
    catalog = await files_now(state)
    bodies = await asyncio.gather(*(passage_body(state, catalog, passage) for passage in passages))
    return {"query": body.query, "passages": list(bodies)}


@router.get("/v1/me", response_model=MeResponse, tags=["tokens"])
async def me(request: Request, who: Principal = Depends(principal)) -> dict:
    """The token's name, role and scope (the web page shows admin views to admins only)."""
    state = service(request)
    if state.catalog is not None and who.scope:
        # The roots as of the last commit: the scope is shown relative to them.
        await run_in_threadpool(state.catalog.snapshot)
    return {**who.to_json(), "scope": state.paths().scope(who.scope), "auth": state.auth}


# -- files -----------------------------------------------------------------------------------------


async def visible_file(state: ServiceState, identifier: str, who: Principal) -> CatalogFile:
    entry = (await files_now(state)).visible(identifier, who)
    if entry is None:
        raise not_found()
    return entry


@router.get("/v1/files", response_model=FilesResponse, tags=["files"])
async def list_files(request: Request, who: Principal = Depends(principal)) -> dict:
    """The indexed files the token may see."""
    entries = (await files_now(service(request))).files(who)
    return {"files": [entry.to_json() for entry in sorted(entries, key=lambda e: (e.name.lower(), e.source))]}


@router.delete("/v1/files/{file_id}", response_model=DeletedResponse, tags=["files"])
async def delete_file(file_id: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """Removes the file and its chunks from the index (and an uploaded file from the server's disk)."""
    state = service(request)
    entry = await visible_file(state, file_id, who)
    await asyncio.wrap_future(state.writer.submit_removal(entry.source))
    return {"deleted": entry.to_json()}


@router.post("/v1/files", status_code=202, response_model=JobBody, tags=["files"])
async def upload(request: Request, who: Principal = Depends(admin)) -> dict:
    """Upload files (multipart, field `files`, repeatable; optional field `folder`); they are indexed in
    the background by the one writer. Poll `GET /v1/jobs/{job}` for each file's status."""
    state = service(request)
    catalog_of(state)
    config = state.config
    max_files = config.service.max_files_per_upload
    limit = max_files * config.max_file_bytes + defaults.SERVICE_MAX_BODY_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the upload is over {limit} bytes ({max_files} files "
                       f"of at most {config.service.upload_max_file_mb:g} MB)")
    try:
        receiver = UploadReceiver(config.uploads, config.max_file_bytes, max_files)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    try:
        await receiver.receive(request.headers.get("content-type", ""), _capped(request, limit))
        folder = check_folder(receiver.fields.get("folder"))
    except UploadRejected as exc:
        raise ApiError(exc.status, UPLOAD_ERROR_CODES.get(exc.status, "bad_upload"), exc.detail) from exc
    except StorageError as exc:  # the receiver removed what it had staged
        raise storage_failure(exc) from exc
    except Exception:
        receiver.discard()
        raise
    target = str(config.uploads.joinpath(*folder))
    if not receiver.files:
        receiver.discard()
        raise ApiError(422, "invalid_request", "no files: send each file in a multipart field named 'files'")
    if not who.may_see(target):
        receiver.discard()
        raise ApiError(403, "forbidden", "uploads go to a folder outside this token's scope: give a 'folder' inside it")
    try:
        # Off the event loop: the files are moved to their place and the job journaled (synced) first.
        job = await run_in_threadpool(state.writer.submit_upload, receiver.files, folder, who.name)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    return job_body(state, job)


async def _capped(request: Request, limit: int):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadRejected(413, f"the upload is over {limit} bytes")
        yield chunk


@router.get("/v1/jobs/{job_id}", response_model=JobBody, tags=["files"])
async def job_status(job_id: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """An upload job and the status of each of its files (pending, indexed, skipped or failed, with the reason)."""
    state = service(request)
    catalog_of(state)
    job = await run_in_threadpool(state.writer.job, job_id)  # finished jobs are read from the journal
    if job is None or (who.scope and job.submitted_by != who.name):
        raise not_found("no such job")
    await files_now(state)  # the roots as of the last commit: reasons name files relative to them
    return job_body(state, job)


def job_body(state: ServiceState, job: Job) -> dict[str, Any]:
    """The job as its user sees it: reasons and details name files by their display form."""
    body = job.to_json(file_id)
    paths = state.paths()
    if body["detail"] is not None:
        body["detail"] = paths.redact(body["detail"])
    for entry in body["files"]:
        if entry["reason"] is not None:
            entry["reason"] = paths.redact(entry["reason"])
    return body


def _pdf_only(entry: CatalogFile) -> None:
    if entry.file_type != "pdf":
        raise ApiError(404, "not_found", f"{entry.name} is a {entry.file_type or 'text'} file: pages exist as images "
                       "for PDF files only")


def over_budget(entry: CatalogFile, exc: PageOverBudget) -> ApiError:
    """A page whose work went over the server's budget: a 422 saying so (the server goes on serving)."""
    return ApiError(422, "page_over_budget", f"{entry.name}: {exc.reason}")


async def _checked_page(state: ServiceState, entry: CatalogFile, page: int) -> int:
    _pdf_only(entry)
    try:
        count = await state.pages.page_count(entry.source)
    except PageOverBudget as exc:
        raise over_budget(entry, exc) from exc
    except DocumentError as exc:
        raise ApiError(404, "not_found", f"{entry.name}: {exc.reason}") from exc
    if not 1 <= page <= count:
        raise not_found(f"{entry.name} has {count} page(s), not a page {page}")
    return count


@router.get("/v1/files/{file_id}/pages/{page:int}", response_model=PageBody, tags=["pages"])
async def page_geometry(file_id: str, page: int, request: Request, who: Principal = Depends(principal)) -> dict:
    """The page's crop box (user-space points) and rotation: how to lay highlight boxes over its image."""
    state = service(request)
    entry = await visible_file(state, file_id, who)
    count = await _checked_page(state, entry, page)
    try:
        geometry = await state.pages.geometry(entry.source, page)
    except PageOverBudget as exc:
        raise over_budget(entry, exc) from exc
    box = {"page": page, "x0": geometry.x0, "y0": geometry.y0, "x1": geometry.x1, "y1": geometry.y1}
    return {"file_id": entry.id, "page": page, "pages": count, "width": geometry.width, "height": geometry.height,
            "box": box, "rotation": geometry.rotation}


@router.get("/v1/files/{file_id}/pages/{page:int}.png", tags=["pages"],
            responses={200: {"content": {"image/png": {}}, "description": "the page as a PNG image"}})
async def page_image(
    file_id: str, page: int, request: Request,
    width: int = Query(default=defaults.SERVICE_PAGE_WIDTH, ge=50, le=defaults.SERVICE_MAX_PAGE_WIDTH),
    who: Principal = Depends(principal),
) -> Response:
    """The page rendered `width` pixels wide (the crop box, turned by the page's rotation)."""
    state = service(request)
    entry = await visible_file(state, file_id, who)
    await _checked_page(state, entry, page)
    try:
        png = await state.pages.png(entry.source, page, width)
    except PageOverBudget as exc:
        raise over_budget(entry, exc) from exc
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=300"})


def attachment(name: str) -> str:
    fallback = "".join(char if char.isascii() and char.isprintable() and char not in '"\\;' else "_" for char in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/v1/files/{file_id}/raw", tags=["files"],
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the original file"}})
async def raw_file(file_id: str, request: Request, who: Principal = Depends(principal)) -> Response:
    """The original file, as an attachment under its display name."""
    entry = await visible_file(service(request), file_id, who)
    suffix = "." + entry.file_type
    name = entry.name if entry.name.lower().endswith(suffix) else entry.name + suffix
    try:
        return FileResponse(entry.source, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
                            headers={"content-disposition": attachment(name)})
    except (FileNotFoundError, RuntimeError) as exc:
        raise not_found(f"{entry.name} is no longer on the server") from exc


# -- feedback --------------------------------------------------------------------------------------


@router.post("/v1/feedback", status_code=201, response_model=FeedbackResponse, tags=["feedback"])
async def feedback(body: FeedbackRequest, request: Request, who: Principal = Depends(principal)) -> dict:
    """Mark an answer right or wrong. Answers marked right become an evaluation set (`/v1/feedback/export`)."""
    state = service(request)
    answer = body.answer
    entry = await visible_file(state, answer.file_id, who)
    if not await asyncio.get_running_loop().run_in_executor(None, state.pages.unchanged, entry.source, entry.sha256):
        raise ApiError(409, "conflict", f"{entry.name} changed since it was indexed: ask again")
    try:
        text = await state.pages.page_text(entry.source, answer.page)
    except PageOverBudget as exc:
        raise over_budget(entry, exc) from exc
    except DocumentError as exc:
        raise ApiError(422, "invalid_request", f"{entry.name}: {exc.reason}") from exc
    if not 0 <= answer.start < answer.end <= len(text) or not same_text(text[answer.start : answer.end], answer.text):
        raise ApiError(422, "invalid_request", f"characters {answer.start}-{answer.end} of page {answer.page} of "
                       f"{entry.name} are not {answer.text!r}: send the answer's file_id, page, start, end and text "
                       "as /v1/ask returned them")
    record = Feedback(question=body.question, source=entry.source, page=answer.page, start=answer.start,
                      end=answer.end, text=text[answer.start : answer.end], correct=body.correct, context=text,
                      title=entry.name, given_by=who.name)
    try:
        return {"id": await run_in_threadpool(state.database.add_feedback, record)}
    except Exception as exc:
        if is_storage_failure(exc):
            raise storage_failure(StorageError("the feedback could not be recorded", exc)) from exc
        raise


@router.get("/v1/feedback/export", tags=["feedback"],
            responses={200: {"content": {"application/json": {}}, "description": "SQuAD v1.1 JSON"}})
async def feedback_export(request: Request, who: Principal = Depends(admin)) -> Response:
    """The questions whose answers users marked correct, as a SQuAD v1.1 file (`spanqa eval` reads it)."""
    state = service(request)
    confirmed = [(key, item) for key, item in state.database.confirmed_feedback() if who.may_see(item.source)]
    return JSONResponse(squad_export(confirmed), headers={"content-disposition": attachment("spanqa-feedback.json")})


# -- operations ------------------------------------------------------------------------------------


@router.get("/metrics", tags=["health"], responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, who: Principal = Depends(principal)) -> Response:
    """Prometheus metrics: requests and latencies per route, queue depth, reader batch sizes."""
    return Response(service(request).metrics.text(), media_type=CONTENT_TYPE)
