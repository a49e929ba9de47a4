"""POST /v1/traces as OpenTelemetry's own OTLP/HTTP exporter sends it, to the real API under uvicorn;
and every body that is not an export answered 400 with nothing stored."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from dashboard.server.ingest.spans import trace_id_of_span

from ...streams import open_stream
from .otel import SpanFactory
from .test_spans import GENAI, OPENINFERENCE

TRACES = "/api/analytics/traces"


def exporter(api, user: str = "alice", **options) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{api.url}/v1/traces", headers={"Authorization": f"Bearer {api.token(user)}"},
                            timeout=10, **options)


def stored(api, user: str = "alice") -> list[dict]:
    return httpx.get(api.url + TRACES, headers=api.headers(user), params={"limit": 1000}).json()["traces"]


def hex_ids(span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_delivers_llm_spans_as_the_users_traces(api, compression):
    spans = SpanFactory()
    genai = spans.span("chat gpt-4o", GENAI)
    spans.span("ChatCompletion", OPENINFERENCE)
    spans.span("GET /health", {"http.route": "/health"})  # not an LLM call
    assert exporter(api, compression=compression).export(spans.exporter.get_finished_spans()) == SpanExportResult.SUCCESS
    traces = {t["name"]: t for t in stored(api)}
    assert set(traces) == {"chat gpt-4o", "ChatCompletion"}
    assert traces["chat gpt-4o"]["id"] == trace_id_of_span(*hex_ids(genai))
    assert traces["chat gpt-4o"]["user_id"] == "alice" and traces["ChatCompletion"]["cost_usd"] == 0.0004
    assert stored(api, "bob") == []
    trace_hex, span_hex = hex_ids(genai)  # the call of a span, found by the ids a tracing tool shows
    for key in (f"{trace_hex}-{span_hex}", f"{trace_hex}{span_hex}".upper()):
        assert httpx.get(f"{api.url}{TRACES}/{key}", headers=api.headers("alice")).json()["name"] == "chat gpt-4o"
    assert httpx.get(f"{api.url}{TRACES}/{trace_hex}-{span_hex}", headers=api.headers("bob")).status_code == 404


async def test_a_span_sent_at_its_start_then_at_its_end_streams_as_a_trace_then_its_update(api):
    spans = SpanFactory()
    span = spans.span("chat gpt-4o", {"gen_ai.request.model": "gpt-4o"}, end=False)
    send = exporter(api)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client, \
            open_stream(client, headers=api.headers("alice")) as stream:
        await stream.next("subscribed")
        assert await asyncio.to_thread(send.export, [span]) == SpanExportResult.SUCCESS  # before its end: end time 0
        span.end()
        assert await asyncio.to_thread(send.export, [span]) == SpanExportResult.SUCCESS
        (_, first, started), (_, second, ended) = await stream.traces(2)
    assert (first, started["status"], started["ended_at"]) == ("trace", "running", None)
    assert (second, ended["status"], ended["id"]) == ("trace_update", "success", started["id"])
    assert ended["latency_ms"] > 0


def test_a_late_start_report_never_turns_a_finished_call_back_to_running(api):
    spans = SpanFactory()
    span = spans.span("chat", {"gen_ai.request.model": "gpt-4o"}, end=False)
    start_report = spans.export(span)
    span.end()
    send = exporter(api)
    assert send.export([span]) == SpanExportResult.SUCCESS
    response = httpx.post(api.url + "/v1/traces", content=start_report.SerializeToString(),
                          headers={**api.headers("alice"), "Content-Type": "application/x-protobuf"})
    assert response.status_code == 200
    assert [t["status"] for t in stored(api)] == ["success"]


def test_otlp_json_with_hex_ids_is_read_as_hex(api):
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
                               "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
                                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                   "parentSpanId": "eee19b7ec3c1b173", "name": "chat", "kind": 3,
                                   "startTimeUnixNano": "1764590400000000000", "endTimeUnixNano": 1764590400250000000,
                                   "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                                                  {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}],
                                   "status": {"code": 2, "message": "boom"}, "someFutureField": True}]}]}]}
    response = httpx.post(api.url + "/v1/traces", json=body, headers=api.headers("alice"))
    assert (response.status_code, response.headers["content-type"], response.json()) == (200, "application/json", {})
    [trace] = stored(api)
    assert trace["id"] == trace_id_of_span("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    assert trace["metadata"]["otel"] | {} == {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
                                              "parent_span_id": "eee19b7ec3c1b173", "kind": "client", "service": "js-app",
                                              "scope": "manual"}
    assert (trace["status"], trace["error"], trace["latency_ms"], trace["input_tokens"]) == ("error", "boom", 250.0, 12)
    assert trace["started_at"] == "2025-12-01T12:00:00.000000Z"


def test_the_same_span_sent_by_two_users_is_a_trace_of_each_and_neither_learns_of_the_other(api):
    spans = SpanFactory()
    span = spans.span("chat", {"gen_ai.request.model": "gpt-4o"})
    assert exporter(api, "alice").export([span]) == SpanExportResult.SUCCESS
    body = spans.export(span).SerializeToString()
    response = httpx.post(api.url + "/v1/traces", content=body,
                          headers={**api.headers("bob"), "Content-Type": "application/x-protobuf"})
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 0
    [alices], [bobs] = stored(api, "alice"), stored(api, "bob")
    assert alices["id"] == bobs["id"] and (alices["user_id"], bobs["user_id"]) == ("alice", "bob")


BAD = [
    ("application/x-protobuf", b"\xff\xff\xff\xff not a protobuf", None),
    ("application/json", b'{"resourceSpans": [', None),
    ("application/json", b"[]", None),
    ("application/json", b'{"resourceSpans": 5}', None),
    ("application/json", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "not-hex", "spanId": "eee19b7ec3c1b174", "name": "x"}]}]}]}).encode(), None),
    ("application/json", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8e", "spanId": "eee19b7ec3c1b174", "name": "x"}]}]}]}).encode(), None),
    ("application/json", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"name": 5, "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}]}]}]}).encode(), None),
    ("text/plain", b"hello", None),
    ("application/x-protobuf", b"\x1f\x8b\x08 truncated gzip", "gzip"),
    ("application/x-protobuf", b"whatever", "br"),
]


@pytest.mark.parametrize(("content_type", "body", "encoding"), BAD)
def test_a_body_that_is_not_an_export_is_400_and_stores_nothing(api, content_type, body, encoding):
    headers = {**api.headers("alice"), "Content-Type": content_type} | ({"Content-Encoding": encoding} if encoding else {})
    response = httpx.post(api.url + "/v1/traces", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_otlp"
    assert stored(api) == []


def test_a_gzip_bomb_is_refused_without_inflating_it(make_api):
    api = make_api(max_body_bytes=64 * 1024)
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MB of zeros in about 50 kB
    response = httpx.post(api.url + "/v1/traces", content=bomb,
                          headers={**api.headers("alice"), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert response.status_code == 400 and "decompressed" in response.json()["error"]["message"]


def test_without_a_token_nothing_is_read(api):
    response = httpx.post(api.url + "/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 401
