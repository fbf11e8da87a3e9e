"""HTTP errors of the service: always `{"error": code, "detail": message}` with the right status."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from spanqa.errors import StorageError


class ApiError(Exception):
    """An error to answer with: `status`, a short `code`, a `detail` saying what to do, extra headers."""

    def __init__(self, status: int, code: str, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def error_response(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def not_found(what: str = "no such file") -> ApiError:
    # The same answer for "does not exist" and "exists outside your scope": names must not leak.
    return ApiError(404, "not_found", what)


def storage_failure(exc: StorageError) -> ApiError:
    """507 for a full disk or quota, 503 for another I/O error; the message names no server path."""
    if exc.full:
        return ApiError(507, "insufficient_storage", str(exc))
    return ApiError(503, "storage_error", str(exc))
