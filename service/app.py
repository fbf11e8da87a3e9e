"""The FastAPI application of `spanqa serve`: middleware, errors, health, metrics and the web page.

Every response carries the security headers (a strict Content-Security-Policy: scripts and styles
from this server only, nothing inline, no framing), every error is `{"error", "detail"}` with its
status, and no traceback ever reaches a client (nor a server path: details show paths as
`spanqa.service.paths` does). JSON bodies are capped before they are parsed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError, IndexBusyError, IndexMismatchError, SpanQAError, StorageError
from spanqa.service.http_errors import ApiError, error_response, storage_failure
from spanqa.service.routes import router
from spanqa.service.training_routes import router as training_router
from spanqa.service.schemas import ErrorBody, Health
from spanqa.service.state import ServerConfig, ServiceState

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SECURITY_HEADER_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
UPLOAD_PATH = "/v1/files"


class GuardMiddleware:
    """Security headers on every response, JSON body size cap, per-route request metrics."""

    def __init__(self, app, state: ServiceState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen = {"status": 500, "started": False}

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"], status_seen["started"] = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in SECURITY_HEADER_NAMES]
                headers += SECURITY_HEADERS
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    # Answers and page images are the documents' contents: no shared cache may keep them.
                    static = scope["path"].startswith("/static/")
                    headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            upload = scope["method"] == "POST" and scope["path"] == UPLOAD_PATH
            if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and not upload:
                receive = await self._capped_body(scope, receive, send_with_headers)
                if receive is None:
                    return
            await self.app(scope, receive, send_with_headers)
        except Exception:  # noqa: BLE001 - a bug in a route: answered here, the connection kept alive
            # Caught here rather than by Starlette's outermost handler, which answers without the
            # security headers and then re-raises, so that uvicorn drops a kept-alive connection.
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if status_seen["started"]:
                raise  # half a response went out: only closing the connection can end it
            status_seen["status"] = 500
            response = error_response(500, "server_error", "the server failed to answer; the error is in its log")
            await response(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static/") else "other")
            self.state.metrics.observe_request(scope["method"], template, status_seen["status"],
                                               time.perf_counter() - started)

    async def _capped_body(self, scope, receive, send):
        """The body read in full, at most SERVICE_MAX_BODY_BYTES; None after answering 413."""
        limit = defaults.SERVICE_MAX_BODY_BYTES
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        while not too_large:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = size > limit
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if too_large:
            response = error_response(413, "too_large", f"the request body is over {limit} bytes")
            await response(scope, receive, send)
            return None
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def _validation_detail(exc: RequestValidationError) -> tuple[int, str, Any]:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return 400, "malformed_json", "the request body is not valid JSON"
    messages = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        messages.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return 422, "invalid_request", "; ".join(messages)


def create_app(config: ServerConfig, state: ServiceState | None = None, load_in_background: bool = True) -> FastAPI:
    """The app for `config`. The models load on a thread at startup; /readyz says when they are in."""
    state = state if state is not None else ServiceState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=state.start, name="spanqa-loader", daemon=True)
        loader.start()
        if not load_in_background:
            await asyncio.get_running_loop().run_in_executor(None, loader.join)
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, state.stop)

    app = FastAPI(
        title="spanqa",
        summary="Answers quoted from your documents, with the page and the exact span.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads scripts from a CDN; the API is described at /openapi.json
        redoc_url=None,
        responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422, 429, 503, 507)},
    )
    app.state.spanqa = state
    app.add_middleware(GuardMiddleware, state=state)
    install_error_handlers(app)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> dict:
        """The process answers (also while the reader is busy). No token needed."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz() -> Any:
        """200 once the index is open and the models are loaded; 503 (with the reason) until then, and
        for an index that fails its check (at startup, or a read found it inconsistent)."""
        if state.index_problem is not None:
            detail = state.paths().redact(state.index_problem)
            return JSONResponse({"status": "failed", "detail": detail}, status_code=503)
        if state.engine.ready and state.writer is not None:
            return {"status": "ready"}
        detail = None if state.engine.load_error is None else state.paths().redact(state.engine.load_error)
        return JSONResponse({"status": "failed" if detail else "loading", "detail": detail}, status_code=503)

    app.include_router(router)
    app.include_router(training_router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _shown(request: Request, detail: Any) -> Any:
    """An error's detail with every server path in its display form (spanqa.service.paths)."""
    return request.app.state.spanqa.paths().redact(detail) if isinstance(detail, str) else detail


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, _shown(request, exc.detail), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return error_response(exc.status_code, code, _shown(request, exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        status, code, detail = _validation_detail(exc)
        return error_response(status, code, _shown(request, detail))

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError) -> Response:
        return error_response(422, "invalid_request", _shown(request, str(exc)))

    @app.exception_handler(DocumentError)
    async def document_error(request: Request, exc: DocumentError) -> Response:
        return error_response(422, "unreadable_document", _shown(request, exc.reason))

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> Response:
        failure = storage_failure(exc)
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(failure.status, failure.code, _shown(request, failure.detail))

    @app.exception_handler(IndexBusyError)
    async def index_busy(request: Request, exc: IndexBusyError) -> Response:
        return error_response(503, "busy", "the index is being written by another process: retry shortly",
                              retry_after_header())

    @app.exception_handler(IndexMismatchError)
    async def index_damaged(request: Request, exc: IndexMismatchError) -> Response:
        # A read found the index inconsistent: /readyz fails from now on, with the way out.
        state: ServiceState = request.app.state.spanqa
        logger.error("%s %s: %s", request.method, request.url.path, exc)
        state.index_problem = f"{exc}: run `spanqa check --index DIR --repair`"
        return error_response(503, "index_damaged", _shown(request, state.index_problem))

    @app.exception_handler(SpanQAError)
    async def spanqa_error(request: Request, exc: SpanQAError) -> Response:
        return error_response(500, "server_error", _shown(request, str(exc)))


def retry_after_header() -> dict[str, str]:
    return {"Retry-After": str(defaults.SERVICE_RETRY_AFTER_S)}

