"""Writing and reading traces over HTTP: what is stored, and every bad input refused with nothing stored.

Plain requests and answers: the app is called in-process through httpx's ASGITransport."""

from __future__ import annotations

import pytest

from ..streams import post_trace


@pytest.fixture
async def client(app_api):
    async with app_api.client() as http:
        yield http


async def count_traces(client, headers) -> int:
    return len((await client.get("/api/analytics/traces", params={"limit": 1000}, headers=headers)).json()["traces"])


async def test_a_posted_trace_is_stored_with_server_fields(app_api, client):
    alice = app_api.headers("alice")
    trace = await post_trace(client, alice, name="summarize", model="gpt-4o", status="running",
                             started_at="2026-11-25T10:00:00+01:00", input_tokens=10, output_tokens=5,
                             metadata={"route": "/chat"})
    assert trace["user_id"] == "alice"
    assert trace["id"]  # generated
    assert trace["started_at"] == "2026-11-25T09:00:00.000000Z"  # normalised to UTC
    assert trace["total_tokens"] == 15
    assert trace["created_at"] == trace["updated_at"]
    fetched = (await client.get(f"/api/analytics/traces/{trace['id']}", headers=alice)).json()
    assert fetched == trace


async def test_a_patch_changes_only_what_it_sends_and_returns_the_whole_trace(app_api, client):
    alice = app_api.headers("alice")
    trace = await post_trace(client, alice, id="call-1", name="chat", model="gpt-4o", status="running",
                             started_at="2026-11-25T09:00:00Z")
    response = await client.patch("/api/traces/call-1", headers=alice,
                                  json={"status": "success", "ended_at": "2026-11-25T09:00:00.812Z", "output": "hi"})
    assert response.status_code == 200
    updated = response.json()
    assert (updated["status"], updated["output"], updated["name"]) == ("success", "hi", "chat")
    assert updated["latency_ms"] == 812.0  # derived from the two times
    assert updated["updated_at"] > trace["updated_at"]


async def test_a_batch_is_stored_whole(app_api, client):
    alice = app_api.headers("alice")
    response = await client.post("/api/traces", headers=alice,
                                 json={"traces": [{"name": f"t{i}", "model": "m"} for i in range(5)]})
    assert response.status_code == 201
    assert [t["name"] for t in response.json()["traces"]] == [f"t{i}" for i in range(5)]
    assert await count_traces(client, alice) == 5


async def test_the_snapshot_is_newest_first_pages_and_names_its_stream_position(app_api, client):
    alice = app_api.headers("alice")
    for i in range(5):
        await post_trace(client, alice, id=f"t{i}", model="gpt-4o" if i % 2 else "claude", status="running")
    page = (await client.get("/api/analytics/traces", params={"limit": 2}, headers=alice)).json()
    assert [t["id"] for t in page["traces"]] == ["t4", "t3"]
    assert page["last_event_id"] == 5
    rest = (await client.get("/api/analytics/traces", params={"limit": 10, "cursor": page["next_cursor"]}, headers=alice)).json()
    assert [t["id"] for t in rest["traces"]] == ["t2", "t1", "t0"]
    assert rest["next_cursor"] is None
    only = (await client.get("/api/analytics/traces", params={"model": "gpt-4o"}, headers=alice)).json()
    assert [t["id"] for t in only["traces"]] == ["t3", "t1"]


async def test_users_never_see_each_others_traces(app_api, client):
    alice, bob = app_api.headers("alice"), app_api.headers("bob")
    trace = await post_trace(client, alice, id="secret", name="alice's")
    assert (await client.get("/api/analytics/traces/secret", headers=bob)).status_code == 404
    assert (await client.get("/api/analytics/traces", headers=bob)).json()["traces"] == []
    patch = await client.patch("/api/traces/secret", headers=bob, json={"status": "error"})
    assert patch.status_code == 404
    assert (await client.get("/api/analytics/traces/secret", headers=alice)).json() == trace


BAD_BODIES = [
    ("malformed JSON", b'{"name": "x",', 400, "invalid_json"),
    ("empty body", b"", 400, "empty_body"),
    ("not an object", b"[1, 2]", 422, "invalid_request"),
    ("unknown field", b'{"name": "x", "colour": "red"}', 422, "invalid_request"),
    ("server-set field", b'{"created_at": "2026-01-01T00:00:00Z"}', 422, "invalid_request"),
    ("unknown status", b'{"status": "done"}', 422, "invalid_request"),
    ("wrong type", b'{"latency_ms": "fast"}', 422, "invalid_request"),
    ("negative tokens", b'{"input_tokens": -1}', 422, "invalid_request"),
    ("fractional tokens", b'{"input_tokens": 1.5}', 422, "invalid_request"),
    ("metadata not an object", b'{"metadata": [1]}', 422, "invalid_request"),
    ("bad id", b'{"id": "has space"}', 422, "invalid_request"),
    ("another user's id", b'{"user_id": "bob"}', 403, "forbidden_user"),
    ("one bad trace in a batch", b'{"traces": [{"name": "ok"}, {"status": "nope"}]}', 422, "invalid_request"),
    ("empty batch", b'{"traces": []}', 422, "invalid_request"),
    ("batch of non-objects", b'{"traces": [1]}', 422, "invalid_request"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
async def test_bad_input_is_refused_clearly_and_stores_nothing(app_api, client, case, body, status, code):
    alice = app_api.headers("alice")
    response = await client.post("/api/traces", content=body, headers={**alice, "content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and "Traceback" not in response.text
    assert await count_traces(client, alice) == 0


async def test_the_error_names_the_field_and_the_batch_position(app_api, client):
    response = await client.post("/api/traces", headers=app_api.headers("alice"),
                                 json={"traces": [{"name": "ok"}, {"status": "done"}]})
    assert "traces[1].status" in response.json()["error"]["message"]


async def test_an_oversize_body_is_413_and_stores_nothing(make_app_api):
    api = await make_app_api(max_body_bytes=2048)
    alice = api.headers("alice")
    async with api.client() as client:
        response = await client.post("/api/traces", headers=alice, json={"name": "x", "input": "a" * 4000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(4):
                yield b" " * 1000
            yield b'{"name": "x"}'

        response = await client.post("/api/traces", headers=alice, content=chunks())
        assert response.status_code == 413
        assert await count_traces(client, alice) == 0


async def test_an_oversize_batch_is_413(make_app_api):
    api = await make_app_api()
    async with api.client() as client:
        response = await client.post("/api/traces", headers=api.headers("alice"),
                                     json={"traces": [{"name": "x"}] * (api.settings.max_batch_traces + 1)})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "batch_too_large"
        assert await count_traces(client, api.headers("alice")) == 0


async def test_a_duplicate_id_is_refused_and_the_original_kept(app_api, client):
    alice = app_api.headers("alice")
    original = await post_trace(client, alice, id="dup", name="first")
    response = await client.post("/api/traces", headers=alice, json={"traces": [{"id": "new"}, {"id": "dup", "name": "second"}]})
    assert response.status_code == 409
    assert (await client.get("/api/analytics/traces/dup", headers=alice)).json() == original
    assert await count_traces(client, alice) == 1


@pytest.mark.parametrize(("body", "status"), [
    (b'{"status": "nope"}', 422), (b'{}', 422), (b'{"user_id": "bob"}', 403), (b'{"id": "other"}', 422), (b'{', 400),
])
async def test_a_bad_patch_changes_nothing(app_api, client, body, status):
    alice = app_api.headers("alice")
    original = await post_trace(client, alice, id="p1", status="running")
    response = await client.patch("/api/traces/p1", content=body, headers=alice)
    assert response.status_code == status, response.text
    assert (await client.get("/api/analytics/traces/p1", headers=alice)).json() == original


@pytest.mark.parametrize(("params", "code"), [
    ({"limit": 0}, "invalid_request"), ({"limit": 1001}, "invalid_request"), ({"limit": "ten"}, "invalid_request"),
    ({"status": "done"}, "invalid_request"), ({"cursor": "abc"}, "invalid_cursor"), ({"since": "yesterday"}, "invalid_request"),
])
async def test_bad_snapshot_parameters_are_422(app_api, client, params, code):
    response = await client.get("/api/analytics/traces", params=params, headers=app_api.headers("alice"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(("path", "method"), [("/api/traces", "POST"), ("/api/analytics/traces", "GET"),
                                              ("/api/analytics/traces/x", "GET"), ("/api/traces/x", "PATCH"),
                                              ("/metrics", "GET"), ("/api/analytics/traces/stream/ticket", "POST")])
async def test_every_endpoint_but_healthz_needs_a_token(app_api, client, path, method):
    response = await client.request(method, path, json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_credentials"


async def test_docs_describe_the_stream_and_its_events(app_api, client):
    schema = (await client.get("/openapi.json")).json()
    stream = schema["paths"]["/api/analytics/traces/stream"]["get"]
    for event in ("connected", "subscribed", "trace", "trace_update", "ping", "reset", "error"):
        assert f"`{event}`" in stream["description"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {"ConnectedData", "Trace", "PingData", "ResetData", "TraceCreate"} <= set(schema["components"]["schemas"])
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_are_prometheus_text(app_api, client):
    response = await client.get("/metrics", headers=app_api.headers("alice"))
    assert response.status_code == 200
    for name in ("traces_open_streams", "traces_events_sent_total", "traces_slow_clients_dropped_total",
                 "traces_replays_total", "traces_auth_failures_total"):
        assert name in response.text


async def test_the_dashboard_origin_may_call_the_api_from_a_browser(app_api, client):
    preflight = await client.options("/api/analytics/traces/stream/ticket", headers={
        "Origin": "http://127.0.0.1:5006", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:5006"
    other = await client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
