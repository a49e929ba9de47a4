"""OTLP/HTTP trace export (``POST /v1/traces``): what an OpenTelemetry exporter sends, stored as traces.

A span reported before it ends is stored as ``running`` and never turns a finished trace back; the
same span sent with its end updates that trace (its ``trace_update``). The answer is an
``ExportTraceServiceResponse`` in the request's encoding, with ``partial_success`` naming spans that
could not be stored (another user's span id, impossible values); a body that is not an export is 400
and stores nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from ...schema import ErrorResponse, TraceCreate, TraceStatus
from ..errors import ApiError
from ..ingest.otlp import Encoding, OtlpError, decode_request, encode_response, encoding_of, inflate
from ..ingest.spans import llm_traces
from ..services import Services, ServicesDep, UserDep
from ..stores import DuplicateTraceError

router = APIRouter()
OTLP_PATH = "/v1/traces"
BODY = {"requestBody": {"required": True, "content": {
    Encoding.protobuf.value: {"schema": {"type": "string", "format": "binary",
                                         "description": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"}},
    Encoding.json.value: {"schema": {"type": "object", "description": "OTLP/JSON ExportTraceServiceRequest (hex ids)"}},
}}}
ANSWER = {200: {"content": {Encoding.protobuf.value: {}, Encoding.json.value: {}},
                "description": "ExportTraceServiceResponse, partial_success when some spans were not stored"}}


@router.post(OTLP_PATH, response_class=Response, openapi_extra=BODY,
             responses=ANSWER | {code: {"model": ErrorResponse} for code in (400, 401, 413, 429)},
             summary="OTLP/HTTP trace export: the LLM spans in it become your traces")
async def export_traces(request: Request, user: UserDep, services: ServicesDep) -> Response:
    try:
        encoding = encoding_of(request.headers.get("content-type"))
        body = inflate(await request.body(), request.headers.get("content-encoding"), services.settings.max_body_bytes)
        export = decode_request(body, encoding)
    except OtlpError as exc:
        raise ApiError(400, "invalid_otlp", str(exc)) from None
    result = llm_traces(export)
    services.limits.charge_writes(user.user_id, len(result.traces))  # the LLM spans it would store; others are free
    if not await store_new_spans(services, user.user_id, result.traces):
        for trace in result.traces:
            try:
                await store_span(services, user.user_id, trace)
            except DuplicateTraceError:
                result.reject(f"span {trace.name!r}: its id belongs to a trace that is not yours")
    return Response(encode_response(encoding, result.rejected, "; ".join(result.reasons)), media_type=encoding.value)


async def store_new_spans(services: Services, user_id: str, traces: list[TraceCreate]) -> bool:
    """The usual export, spans never seen before, in one write; False when some are known (a start
    reported earlier, an export retried): then they are stored one by one."""
    if not traces or len({trace.id for trace in traces}) < len(traces):
        return not traces
    try:
        await services.writer.create(user_id, traces)
    except DuplicateTraceError:
        return False
    return True


async def store_span(services: Services, user_id: str, trace: TraceCreate) -> Any:
    """An ended span is written over what its start said; a start never overwrites anything."""
    if trace.status != TraceStatus.running:
        return await services.writer.upsert(user_id, trace)
    return await services.writer.insert_if_absent(user_id, trace)
