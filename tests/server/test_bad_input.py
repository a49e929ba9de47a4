"""Whatever a client sends, the answer is a clear 4xx in the API's error shape: nothing stored, nothing
logged as a server failure, and the connection still good for the next request. Never a 500.

Each case is an input that reached a 500 once: a value past what Python, SQLite or PostgreSQL can hold
(64-bit integers, years 1-9999 in UTC), or JSON that ``json.loads`` accepts but no store keeps as sent."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from dashboard.server.stores.postgres import make_cursor

from ..streams import STREAM, post_trace

DEEP = 254  # past pydantic's serialisation limit (and 64, the API's)


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.fixture
async def client(app_api):
    async with app_api.client() as http:
        yield http


@pytest.fixture
def server_errors(caplog):
    """What the server logged at ERROR: a 500 logs its traceback there; a client's mistake never does."""
    caplog.set_level(logging.ERROR)
    return lambda: [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def count_traces(client, headers) -> int:
    return len((await client.get("/api/analytics/traces", params={"limit": 1000}, headers=headers)).json()["traces"])


def assert_clear_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


BAD_SNAPSHOT_PARAMS = [
    ("cursor past 64 bits", {"cursor": "9223372036854775808"}, "cursor"),
    ("cursor of 199 digits", {"cursor": "9" * 199}, "cursor"),
    ("cursor of 4,300+ digits", {"cursor": "9" * 4301}, "cursor"),
    ("cursor of a superscript digit", {"cursor": "²"}, "cursor"),
    ("cursor of Arabic-Indic digits", {"cursor": "١٢"}, "cursor"),
    ("negative cursor", {"cursor": "-1"}, "cursor"),
    ("cursor naming an id with NUL", {"cursor": make_cursor("2026-01-01T00:00:00.000000Z", "a\x00b")}, "cursor"),
    ("cursor naming a time past 9999", {"cursor": make_cursor("9999-12-31T23:59:59-01:00", "a")}, "cursor"),
    ("since past year 9999 in UTC", {"since": "9999-12-31T23:59:59-01:00"}, "since"),
    ("until past year 9999 in UTC", {"until": "9999-12-31T23:59:59-01:00"}, "until"),
    ("since before year 1 in UTC", {"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ("model with NUL", {"model": "gpt\x00"}, "model"),
]


@pytest.mark.parametrize(("case", "params", "named"), BAD_SNAPSHOT_PARAMS, ids=[case[0] for case in BAD_SNAPSHOT_PARAMS])
async def test_a_snapshot_parameter_no_store_can_use_is_a_422_naming_it(app_api, client, server_errors, case, params, named):
    alice = app_api.headers("alice")
    await post_trace(client, alice, name="there")
    response = await client.get("/api/analytics/traces", params=params, headers=alice)
    assert_clear_error(response, 422, named)
    assert server_errors() == []


async def test_the_snapshot_pages_from_a_genuine_cursor_on_every_store(app_api, client):
    alice = app_api.headers("alice")
    for i in range(3):
        await post_trace(client, alice, id=f"t{i}")
    first = (await client.get("/api/analytics/traces", params={"limit": 1}, headers=alice)).json()
    rest = (await client.get("/api/analytics/traces", params={"cursor": first["next_cursor"]}, headers=alice)).json()
    assert [t["id"] for t in first["traces"] + rest["traces"]] == ["t2", "t1", "t0"]


BAD_TRACES = [
    ("started_at before year 1 in UTC", '{"started_at": "0001-01-01T00:00:00+01:00"}', "started_at"),
    ("ended_at past year 9999 in UTC", '{"ended_at": "9999-12-31T23:59:59-01:00"}', "ended_at"),
    ("metadata nested 254 deep", f'{{"metadata": {{"a": {nested(DEEP)}}}}}', "64"),
    ("input nested 65 deep", f'{{"input": {nested(65)}}}', "64"),
    ("output nested 10,000 deep", f'{{"output": {nested(10_000)}}}', "64"),
    ("a 5,000-digit integer in metadata", '{"metadata": {"a": ' + "9" * 5000 + "}}", "digits"),
    ("NaN in metadata", '{"metadata": {"a": NaN}}', "NaN"),
    ("Infinity in output", '{"output": [Infinity]}', "NaN"),
    ("-Infinity in input", '{"input": {"x": -Infinity}}', "NaN"),
    ("a number too large for a double in metadata", '{"metadata": {"a": 1e400}}', "NaN"),
    ("NaN for latency_ms", '{"latency_ms": NaN}', "latency_ms"),
    ("NUL in name", '{"name": "a\\u0000b"}', "name"),
    ("NUL in a metadata key", '{"metadata": {"a\\u0000": 1}}', "NUL"),
    ("NUL in input text", '{"input": "a\\u0000b"}', "NUL"),
    ("a lone surrogate in metadata", '{"metadata": {"a": "\\udc00"}}', "surrogate"),
    ("one such trace in a batch", '{"traces": [{"name": "ok"}, {"metadata": {"a": NaN}}]}', "traces[1].metadata"),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_TRACES, ids=[case[0] for case in BAD_TRACES])
async def test_a_trace_no_store_can_keep_as_sent_is_a_422_and_stores_nothing(app_api, client, server_errors,
                                                                          case, body, named):
    alice = app_api.headers("alice")
    response = await client.post("/api/traces", content=body.encode(), headers={**alice, "content-type": "application/json"})
    assert_clear_error(response, 422, named)
    assert await count_traces(client, alice) == 0
    assert server_errors() == []


@pytest.mark.parametrize(("case", "body", "named"), BAD_TRACES[:-1], ids=[case[0] for case in BAD_TRACES[:-1]])
async def test_such_a_patch_is_a_422_and_changes_nothing(app_api, client, server_errors, case, body, named):
    alice = app_api.headers("alice")
    original = await post_trace(client, alice, id="p1", status="running", metadata={"kept": True})
    response = await client.patch("/api/traces/p1", content=body.encode(), headers={**alice, "content-type": "application/json"})
    assert_clear_error(response, 422, named)
    assert (await client.get("/api/analytics/traces/p1", headers=alice)).json() == original
    assert server_errors() == []


async def test_values_at_the_edges_are_stored_and_read_back_as_sent(app_api, client):
    alice = app_api.headers("alice")
    deepest = json.loads(nested(63))  # 64 levels with metadata itself
    big = int("9" * 4000)
    sent = await post_trace(client, alice, id="edges", started_at="0001-01-01T00:00:00Z",
                            ended_at="9999-12-31T23:59:59.999999Z", metadata={"deep": deepest, "big": big})
    assert (sent["started_at"], sent["ended_at"]) == ("0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z")
    stored = (await client.get("/api/analytics/traces/edges", headers=alice)).json()
    assert stored == sent
    assert stored["metadata"] == {"deep": deepest, "big": big}
    listed = (await client.get("/api/analytics/traces", headers=alice)).json()["traces"]
    assert listed == [sent]


async def test_an_id_with_nul_in_the_path_is_no_trace(app_api, client, server_errors):
    alice = app_api.headers("alice")
    assert_clear_error(await client.get("/api/analytics/traces/a%00b", headers=alice), 404)
    assert_clear_error(await client.patch("/api/traces/a%00b", headers=alice, json={"name": "x"}), 404)
    assert server_errors() == []


BAD_RESUME_POINTS = [
    ("a superscript digit", b"\xb2"),
    ("5,000 digits", b"9" * 5000),
    ("past 64 bits", b"9223372036854775808"),
    ("negative", b"-1"),
    ("not a number", b"latest"),
]


@pytest.mark.parametrize(("case", "value"), BAD_RESUME_POINTS, ids=[case[0] for case in BAD_RESUME_POINTS])
async def test_a_resume_point_that_is_no_stream_position_is_a_422_before_the_stream_starts(app_api, client, server_errors,
                                                                                        case, value):
    alice = app_api.headers("alice")
    async with asyncio.timeout(10):  # a stream that started would never end here
        as_header = await client.get(STREAM, headers={**alice, "Last-Event-ID": value})
        as_query = await client.get(STREAM, headers=alice, params={"last_event_id": value.decode("latin-1")})
    assert_clear_error(as_header, 422, "Last-Event-ID")
    assert_clear_error(as_query, 422, "last_event_id")
    assert server_errors() == []


async def test_a_stream_filter_no_store_can_match_is_a_422_before_the_stream_starts(app_api, client):
    async with asyncio.timeout(10):
        response = await client.get(STREAM, headers=app_api.headers("alice"), params={"model": "gpt\x00"})
    assert_clear_error(response, 422, "model")


BAD_OTLP = [
    ("nested 10,000 deep", '{"resourceSpans": ' + nested(10_000) + "}"),
    ("a 5,000-digit integer", '{"resourceSpans": [], "x": ' + "9" * 5000 + "}"),
    ("a time past 64 bits", '{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": 1e400}]}]}]}'),
]


@pytest.mark.parametrize(("case", "body"), BAD_OTLP, ids=[case[0] for case in BAD_OTLP])
async def test_an_otlp_json_body_that_does_not_parse_is_a_400(app_api, client, server_errors, case, body):
    alice = app_api.headers("alice")
    response = await client.post("/v1/traces", content=body.encode(), headers={**alice, "content-type": "application/json"})
    assert_clear_error(response, 400)
    assert await count_traces(client, alice) == 0
    assert server_errors() == []


def otlp_llm_span(**attributes: str) -> dict:
    values = [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]
    values += [{"key": key, "value": {"stringValue": value}} for key, value in attributes.items()]
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "chat",
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000", "attributes": values,
    }]}]}]}


UNKEEPABLE_INPUTS = [  # (what a span's input.value says, stored as: the text itself, or None for a rejected span)
    ("nested 10,000 deep", nested(10_000), "text"),
    ("a 5,000-digit integer", "[" + "9" * 5000 + "]", "text"),
    ("NaN", "[NaN]", None),
    ("NUL", "a\x00b", None),
]


@pytest.mark.parametrize(("case", "text", "kept"), UNKEEPABLE_INPUTS, ids=[case[0] for case in UNKEEPABLE_INPUTS])
async def test_an_otlp_span_whose_input_no_store_can_keep_is_kept_as_text_or_rejected(app_api, client, server_errors,
                                                                                     case, text, kept):
    """JSON text that cannot be read as JSON is the span's text; a value no store can hold rejects the span."""
    alice = app_api.headers("alice")
    response = await client.post("/v1/traces", json=otlp_llm_span(**{"input.value": text}), headers=alice)
    assert response.status_code == 200, response.text
    stored = (await client.get("/api/analytics/traces", headers=alice)).json()["traces"]
    if kept:
        assert [trace["input"] for trace in stored] == [text]
    else:
        assert (response.json()["partialSuccess"]["rejectedSpans"], stored) == ("1", [])
    assert server_errors() == []


KEEP_ALIVE_CASES = [
    ("GET", "/api/analytics/traces", {"params": {"cursor": "9223372036854775808"}}),
    ("GET", "/api/analytics/traces", {"params": {"since": "9999-12-31T23:59:59-01:00"}}),
    ("POST", "/api/traces", {"content": '{"metadata": {"a": ' + "9" * 5000 + "}}"}),
    ("POST", "/api/traces", {"content": f'{{"output": {nested(10_000)}}}'}),
    ("POST", "/api/traces", {"content": '{"started_at": "0001-01-01T00:00:00+01:00"}'}),
    ("GET", STREAM, {"headers": {"Last-Event-ID": b"\xb2"}}),
]


def test_after_any_of_these_the_same_connection_serves_the_next_request(api):
    """Over a real socket: the bad request is answered, and the keep-alive connection is still good."""
    alice = {**api.headers("alice"), "content-type": "application/json"}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        first = http.get("/healthz")
        used = first.extensions["network_stream"].get_extra_info("client_addr")
        for method, path, options in KEEP_ALIVE_CASES:
            bad = http.request(method, path, **{**options, "headers": {**alice, **options.get("headers", {})}})
            assert 400 <= bad.status_code < 500 and bad.json()["error"]["message"], (path, bad.status_code, bad.text)
            good = http.get("/api/analytics/traces", headers=alice)
            assert good.status_code == 200
            assert good.extensions["network_stream"].get_extra_info("client_addr") == used
        assert http.get("/api/analytics/traces", headers=alice).json()["traces"] == []
