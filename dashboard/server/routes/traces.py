"""Writing and reading traces: POST/PATCH from writers, snapshot and single reads for viewers."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from ...schema import (
    TRACES_PATH,
    WRITE_PATH,
    ErrorResponse,
    ShortText,
    Trace,
    TraceBatchResult,
    TraceCreate,
    TracePage,
    TracePatch,
    TraceStatus,
    UtcMoment,
    utc_iso,
)
from ..errors import ApiError, describe_validation
from ..ingest.spans import trace_id_of_span
from ..json_body import JsonBeyondLimits, JsonError, load_json
from ..services import ServicesDep, UserDep
from ..stores import TraceQuery

router = APIRouter()
OTEL_IDS = re.compile(r"([0-9a-fA-F]{32})[-:]?([0-9a-fA-F]{16})")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 429)}


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request needs a JSON body")
    try:
        return load_json(raw)
    except JsonBeyondLimits as exc:
        raise ApiError(422, "invalid_request", f"the request body cannot be stored: {exc}") from None
    except JsonError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None


def validate(model: type[TraceCreate] | type[TracePatch], value: Any, prefix: str = "") -> Any:
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", f"{prefix.rstrip('.') or 'the body'} must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        summary, details = describe_validation(exc.errors(), prefix)
        raise ApiError(422, "invalid_request", summary, details=details) from None


def no_trace(trace_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no trace {trace_id!r}")


def check_storable_id(trace_id: str) -> None:
    """An id with NUL names no trace on any store (PostgreSQL cannot even be asked for one)."""
    if "\x00" in trace_id:
        raise no_trace(trace_id)


def check_owner(claimed: str | None, user_id: str) -> None:
    if claimed is not None and claimed != user_id:
        raise ApiError(403, "forbidden_user", "user_id must be your own (the token's subject)")


CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/TraceCreate"},
            {"type": "object", "properties": {"traces": {"type": "array", "items": {"$ref": "#/components/schemas/TraceCreate"}}},
             "required": ["traces"], "additionalProperties": False},
        ]}}},
    }
}


@router.post(WRITE_PATH, status_code=201, response_model=Trace | TraceBatchResult, responses=ERRORS,
             openapi_extra=CREATE_BODY, summary="Store a trace, or a batch as {\"traces\": [...]}")
async def create_traces(request: Request, user: UserDep, services: ServicesDep) -> Any:
    """All or nothing: one bad trace in a batch stores none and names the one at fault."""
    body = await read_json(request)
    batch = isinstance(body, dict) and set(body) == {"traces"}
    items = body["traces"] if batch else [body]
    if batch and not isinstance(items, list):
        raise ApiError(422, "invalid_request", "traces must be a list of trace objects")
    if batch and not items:
        raise ApiError(422, "invalid_request", "traces is empty: send at least one trace")
    limit = services.settings.max_batch_traces
    if len(items) > limit:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {limit} traces; this one has {len(items)}")
    services.limits.charge_writes(user.user_id, len(items))
    sent = []
    for index, item in enumerate(items):
        trace = validate(TraceCreate, item, f"traces[{index}]." if batch else "")
        check_owner(trace.user_id, user.user_id)
        sent.append(trace)
    stored = await services.writer.create(user.user_id, sent)
    return {"traces": stored} if batch else stored[0]


@router.patch(WRITE_PATH + "/{trace_id}", response_model=Trace, responses=ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/TracePatch"}}}}},
              summary="Change some fields of your trace; null clears a field")
async def update_trace(trace_id: str, request: Request, user: UserDep, services: ServicesDep) -> Any:
    check_storable_id(trace_id)
    services.limits.charge_writes(user.user_id, 1)
    patch = validate(TracePatch, await read_json(request))
    check_owner(patch.user_id, user.user_id)
    if not patch.model_fields_set - {"user_id"}:
        raise ApiError(422, "empty_patch", "the patch changes nothing: send at least one field")
    updated = await services.writer.update(user.user_id, trace_id, patch)
    if updated is None:
        raise no_trace(trace_id)
    return updated


@router.get(TRACES_PATH, response_model=TracePage, responses=ERRORS,
            summary="Your traces, newest first, with the stream position they reflect")
async def list_traces(
    user: UserDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor from the previous page")] = None,
    model: Annotated[ShortText | None, Query()] = None,
    status: TraceStatus | None = None,
    since: Annotated[UtcMoment | None, Query(description="only traces created at or after this time")] = None,
    until: Annotated[UtcMoment | None, Query(description="only traces created before this time")] = None,
) -> Any:
    """Load this, then open the stream with ``?last_event_id=<last_event_id>``: nothing missed, nothing twice."""
    return await services.backend.traces.list_traces(user.user_id, TraceQuery(
        limit=limit,
        cursor=cursor,
        model=model,
        status=status.value if status else None,
        since=utc_iso(since) if since else None,
        until=utc_iso(until) if until else None,
    ))


@router.get(TRACES_PATH + "/{trace_id}", response_model=Trace, responses=ERRORS,
            summary="One of your traces; for a span sent to /v1/traces, also by its OTel ids: <trace id>-<span id> in hex")
async def get_trace(trace_id: str, user: UserDep, services: ServicesDep) -> Any:
    check_storable_id(trace_id)
    trace = await services.backend.traces.get_trace(user.user_id, trace_id)
    if trace is None and (span := OTEL_IDS.fullmatch(trace_id)):
        trace = await services.backend.traces.get_trace(user.user_id, trace_id_of_span(span[1], span[2]))
    if trace is None:  # another user's trace answers exactly as a missing one
        raise no_trace(trace_id)
    return trace
