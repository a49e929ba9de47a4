"""Every error as JSON ``{"error": {"code", "message"}}``: a clear reason, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import AuthError
from .stores import DuplicateTraceError, InvalidCursor, InvalidValue, StoreError

log = logging.getLogger(__name__)

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 409: "conflict", 413: "payload_too_large", 422: "invalid_request", 429: "too_many_requests"}


class ApiError(Exception):
    """Raised anywhere in a request to answer with this status, code and message."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def describe_validation(errors: list[dict[str, Any]], prefix: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Pydantic errors as one readable sentence plus a list a program can use."""
    details = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "header", "path")]
        where = prefix + ".".join(loc) if loc else (prefix.rstrip(".") or "body")
        message = error.get("msg", "is invalid")
        if error.get("type") == "extra_forbidden":
            message = "is not a known field"
        details.append({"field": where, "message": message})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    return summary, details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, details=exc.details)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        request.app.state.services.metrics.auth_failures.labels(exc.code).inc()
        request.app.state.services.limits.auth_failed(request)  # every 401 passes here: one count per address
        return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        summary, details = describe_validation(errors)
        return error_response(422, "invalid_request", summary, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(DuplicateTraceError)
    async def _duplicate(_: Request, exc: DuplicateTraceError) -> JSONResponse:
        return error_response(409, "duplicate_id", f"{exc}; change it with PATCH /api/traces/{{id}}")

    @app.exception_handler(InvalidValue)
    async def _invalid_value(_: Request, exc: InvalidValue) -> JSONResponse:
        return error_response(422, "invalid_value", str(exc))

    @app.exception_handler(InvalidCursor)
    async def _invalid_cursor(_: Request, exc: InvalidCursor) -> JSONResponse:
        return error_response(422, "invalid_cursor", str(exc))

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("store failure: %s", exc)
        return error_response(503, "store_unavailable", "the trace store is unavailable; try again shortly")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "the server failed unexpectedly; it has been logged")
