"""OTLP/HTTP bodies in and out: an ``ExportTraceServiceRequest`` from protobuf or JSON (gzip or deflate,
bounded once inflated), and the ``ExportTraceServiceResponse`` in the request's own encoding.

OTLP/JSON writes trace and span ids as hex; protobuf's ``json_format`` reads bytes fields as base64 and
would take a hex id as other, wrong bytes without complaint. The ids are turned into base64 first.
"""

from __future__ import annotations

import base64
import json
import zlib
from enum import StrEnum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..json_body import JsonError, load_json

ID_BYTES = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8, "parentSpanId": 8, "parent_span_id": 8}


class OtlpError(ValueError):
    """A body that is not an OTLP trace export: answered 400, nothing stored."""


class Encoding(StrEnum):
    protobuf = "application/x-protobuf"
    json = "application/json"


def encoding_of(content_type: str | None) -> Encoding:
    media = (content_type or "").split(";")[0].strip().lower()
    for encoding in Encoding:
        if media == encoding.value:
            return encoding
    raise OtlpError(f"Content-Type must be {Encoding.protobuf.value} or {Encoding.json.value}, not {media or 'missing'!r}")


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body as sent before compression, refused once it would pass ``max_bytes`` (no zip bombs)."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise OtlpError(f"Content-Encoding {coding!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpError(f"the body is not valid {coding}: {exc}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise OtlpError(f"the body is larger than {max_bytes} bytes once decompressed")
    if not inflater.eof:
        raise OtlpError(f"the body is truncated {coding}")
    return data


def decode_request(body: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    if encoding is Encoding.protobuf:
        try:
            return ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            raise OtlpError(f"the body is not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    try:
        document = load_json(body)
    except JsonError as exc:
        raise OtlpError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpError("an OTLP/JSON body is an object with resourceSpans")
    try:  # unknown fields are ignored, as OTLP asks of receivers
        return json_format.ParseDict(_ids_as_base64(document), ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpError(f"the body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None


def encode_response(encoding: Encoding, rejected: int = 0, message: str = "") -> bytes:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=rejected, error_message=message))
    if encoding is Encoding.protobuf:
        return response.SerializeToString()
    return json.dumps(json_format.MessageToDict(response)).encode()


def _ids_as_base64(document: dict[str, Any]) -> dict[str, Any]:
    """A copy with every span and link id turned from hex (OTLP/JSON) to base64 (``json_format``)."""
    document = dict(document)
    resource_spans = []
    for resource in _list(document, "resourceSpans", "resource_spans"):
        resource = dict(_object(resource))
        scopes = []
        for scope in _list(resource, "scopeSpans", "scope_spans"):
            scope = dict(_object(scope))
            spans = []
            for span in _list(scope, "spans"):
                span = _with_ids(_object(span))
                if "links" in span:
                    span["links"] = [_with_ids(_object(link)) for link in _list(span, "links")]
                spans.append(span)
            scope["spans"] = spans
            scopes.append(scope)
        resource["scopeSpans"] = scopes
        resource.pop("scope_spans", None)
        resource_spans.append(resource)
    document["resourceSpans"] = resource_spans
    document.pop("resource_spans", None)
    return document


def _with_ids(obj: dict[str, Any]) -> dict[str, Any]:
    obj = dict(obj)
    for key, size in ID_BYTES.items():
        value = obj.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise OtlpError(f"{key} must be a hex string")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise OtlpError(f"{key} {value[:40]!r} is not hex") from None
        if len(raw) != size:
            raise OtlpError(f"{key} must be {size} bytes ({2 * size} hex digits), not {len(raw)}")
        obj[key] = base64.b64encode(raw).decode()
    return obj


def _list(obj: dict[str, Any], *keys: str) -> list[Any]:
    for key in keys:
        if key in obj and obj[key] is not None:
            if not isinstance(obj[key], list):
                raise OtlpError(f"{key} must be a list")
            return obj[key]
    return []


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OtlpError("resourceSpans, scopeSpans, spans and links hold objects")
    return value
