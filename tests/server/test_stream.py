"""The SSE stream end to end on real uvicorn: credentials, events, filters, pings, resume, limits, cleanup."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
import jwt
import pytest

from dashboard.server.auth import TICKET_AUDIENCE

from ..streams import STREAM, open_stream, post_trace
from ..support import TEST_SECRET, wait_until


@pytest.fixture
async def client(api):
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(10, read=10)) as http:
        yield http


async def test_insert_and_update_arrive_as_trace_and_trace_update_with_ids(api, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice) as stream:
        assert stream.response.headers["content-type"] == "text/event-stream"
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-accel-buffering"] == "no"
        assert stream.response.headers["connection"] == "keep-alive"
        opening = await stream.next()
        assert (opening.retry, opening.data) == (api.settings.retry_ms, "")  # retry: alone, no event
        connected = await stream.next()
        assert connected.event == "connected" and connected.id == ""
        assert json.loads(connected.data)["user_id"] == "alice"
        assert json.loads(connected.data)["last_event_id"] == 0
        subscribed = await stream.next()
        assert (subscribed.event, json.loads(subscribed.data)) == ("subscribed", {"filters": {}, "replaying_from": None})
        await post_trace(client, alice, id="c1", model="gpt-4o", status="running")
        await client.patch("/api/traces/c1", headers=alice, json={"status": "success", "latency_ms": 812})
        (first_id, first_kind, first), (second_id, second_kind, second) = await stream.traces(2)
    assert (first_kind, first["status"]) == ("trace", "running")
    assert (second_kind, second["status"], second["latency_ms"]) == ("trace_update", "success", 812.0)
    assert first_id < second_id


async def test_the_body_opens_with_a_retry_hint(api, client):
    async with client.stream("GET", STREAM, headers=api.headers("alice")) as response:
        async for line in response.aiter_lines():
            assert line == f"retry: {api.settings.retry_ms}"
            break


async def test_only_the_users_own_traces_reach_the_stream(api, client):
    alice, bob = api.headers("alice"), api.headers("bob")
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        await post_trace(client, bob, id="bobs", name="bob's secret")
        await post_trace(client, alice, id="alices")
        [(_, _, trace)] = await stream.traces(1)
    assert trace["id"] == "alices"


async def test_model_and_status_filters(api, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice, params={"model": "gpt-4o", "status": "error"}) as stream:
        subscribed = await stream.next("subscribed")
        assert json.loads(subscribed.data)["filters"] == {"model": "gpt-4o", "status": "error"}
        await post_trace(client, alice, id="a", model="claude", status="error")
        await post_trace(client, alice, id="b", model="gpt-4o", status="running")
        await client.patch("/api/traces/b", headers=alice, json={"status": "error", "error": "Timeout"})
        [(_, kind, trace)] = await stream.traces(1)
    assert (kind, trace["id"], trace["status"]) == ("trace_update", "b", "error")


async def test_an_unknown_status_filter_is_422(api, client):
    response = await client.get(STREAM, params={"status": "done"}, headers=api.headers("alice"))
    assert response.status_code == 422


async def test_pings_come_every_interval_as_real_events(api, client):
    async with open_stream(client, headers=api.headers("alice")) as stream:
        await stream.next("subscribed")
        mark = len(stream.seen)
        pings = [await stream.next("ping", timeout=5) for _ in range(3)]  # a quiet stream keeps pinging
        between = stream.seen[mark:]
    assert [event.event for event in between] == ["ping"] * 3  # real events, nothing else on an idle stream
    assert all(ping.id == "" for ping in pings)  # not positions: a ping never moves Last-Event-ID
    sent = [datetime.fromisoformat(json.loads(ping.data)["server_time"].replace("Z", "+00:00")) for ping in pings]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(sent, sent[1:])]
    # By the server's own stamps: never sooner than the interval (a slow machine can only make gaps longer).
    assert all(gap >= api.settings.ping_interval - 0.005 for gap in gaps), gaps


# Credentials: each path that works, each way it fails.

async def test_a_ticket_opens_one_stream_once(api, client):
    alice = api.headers("alice")
    issued = (await client.post(STREAM + "/ticket", headers=alice)).json()
    assert issued["expires_in"] == 60
    async with open_stream(client, params={"ticket": issued["ticket"]}) as stream:
        assert json.loads((await stream.next("connected")).data)["user_id"] == "alice"
    reused = await client.get(STREAM, params={"ticket": issued["ticket"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "ticket_reused"


async def test_a_token_in_the_query_works_for_compatibility(api, client):
    async with open_stream(client, params={"token": api.token("alice")}) as stream:
        assert json.loads((await stream.next("connected")).data)["user_id"] == "alice"


def _jwt(**claims) -> str:
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize(("how", "code"), [
    ({}, "missing_credentials"),
    ({"headers": {"Authorization": "Basic abc"}}, "invalid_authorization"),
    ({"headers": {"Authorization": "Bearer not-a-jwt"}}, "invalid_token"),
    ({"headers": {"Authorization": "Bearer " + jwt.encode({"sub": "a", "aud": "authenticated", "exp": 2**31},
                                                          "wrong-secret-0123456789abcdef0123456", algorithm="HS256")}},
     "invalid_token"),
    ({"headers": {"Authorization": "Bearer " + _jwt(sub="a", aud="authenticated", exp=int(time.time()) - 5)}},
     "token_expired"),
    ({"headers": {"Authorization": "Bearer " + _jwt(sub="a", aud="service_role", exp=2**31)}}, "invalid_token"),
    ({"params": {"token": _jwt(sub="a", aud="authenticated", exp=int(time.time()) - 5)}}, "token_expired"),
    ({"params": {"ticket": "garbage"}}, "invalid_ticket"),
    ({"params": {"ticket": _jwt(sub="a", aud=TICKET_AUDIENCE, jti="x", exp=int(time.time()) - 5)}}, "ticket_expired"),
    ({"params": {"ticket": _jwt(sub="a", aud="authenticated", exp=2**31)}}, "invalid_ticket"),  # a token is no ticket
], ids=["missing", "not-bearer", "malformed", "wrong-signature", "expired", "wrong-audience", "expired-query-token",
        "garbage-ticket", "expired-ticket", "token-as-ticket"])
async def test_bad_credentials_get_401_json_and_no_stream(api, client, how, code):
    response = await client.get(STREAM, **how)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert api.services.hub.open_streams == 0


async def test_a_stream_ends_with_an_error_event_when_its_token_expires(api, client):
    short = {"Authorization": f"Bearer {api.token('alice', ttl=2)}"}
    async with open_stream(client, headers=short) as stream:
        rest = await stream.until_closed(timeout=6)
    error = [event for event in rest if event.event == "error"]
    assert error and json.loads(error[-1].data)["code"] == "token_expired"


# Limits and cleanup.

async def test_too_many_streams_is_429_with_retry_after(make_api):
    api = make_api(max_streams_per_user=2)
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url) as client:
        async with open_stream(client, headers=alice) as one, open_stream(client, headers=alice) as two:
            await one.next("subscribed")
            await two.next("subscribed")
            refused = await client.get(STREAM, headers=alice)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["error"]["code"] == "too_many_streams"
            async with open_stream(client, headers=api.headers("bob")) as bobs:  # the cap is per user
                await bobs.next("subscribed")


async def test_a_server_holding_its_most_streams_answers_429_to_any_user_until_one_leaves(make_api):
    api = make_api(max_streams=2)
    async with httpx.AsyncClient(base_url=api.url) as client:
        async with open_stream(client, headers=api.headers("alice")) as one:
            await one.next("subscribed")
            async with open_stream(client, headers=api.headers("bob")) as two:
                await two.next("subscribed")
                refused = await client.get(STREAM, headers=api.headers("carol"))
                assert refused.status_code == 429
                assert int(refused.headers["retry-after"]) > 0
                assert refused.json()["error"]["code"] == "server_full"
            await wait_until(lambda: api.services.hub.open_streams == 1)
            async with open_stream(client, headers=api.headers("carol")) as three:  # room again
                await three.next("subscribed")


async def test_a_ticket_refused_for_want_of_room_is_not_spent(make_api):
    api = make_api(max_streams_per_user=1)
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url) as client:
        ticket = (await client.post(STREAM + "/ticket", headers=alice)).json()["ticket"]
        async with open_stream(client, headers=alice) as held:
            await held.next("subscribed")
            refused = await client.get(STREAM, params={"ticket": ticket})
            assert refused.status_code == 429
        await wait_until(lambda: api.services.hub.open_streams == 0)
        async with open_stream(client, params={"ticket": ticket}) as stream:  # the same ticket, once there is room
            await stream.next("subscribed")


async def test_disconnecting_frees_the_stream_and_leaves_no_task(api, client):
    baseline = api.server_tasks()
    for _ in range(3):
        async with open_stream(client, headers=api.headers("alice")) as stream:
            await stream.next("subscribed")
            assert api.services.hub.open_streams == 1
    await wait_until(lambda: api.services.hub.open_streams == 0)
    await wait_until(lambda: api.server_tasks() <= baseline)
    metrics = (await client.get("/metrics", headers=api.headers("alice"))).text
    assert "traces_open_streams 0.0" in metrics


# Resume.

async def test_last_event_id_replays_what_was_missed_exactly_once_then_goes_live(api, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        await post_trace(client, alice, id="t1")
        [(last_seen, _, _)] = await stream.traces(1)
    for i in range(2, 6):  # while disconnected
        await post_trace(client, alice, id=f"t{i}")
    await post_trace(client, api.headers("bob"), id="b1")
    async with open_stream(client, headers={**alice, "Last-Event-ID": str(last_seen)}) as stream:
        subscribed = json.loads((await stream.next("subscribed")).data)
        assert subscribed["replaying_from"] == last_seen
        replayed = await stream.traces(4)
        await post_trace(client, alice, id="t6")
        live = await stream.traces(1)
    got = replayed + live
    assert [trace["id"] for _, _, trace in got] == ["t2", "t3", "t4", "t5", "t6"]
    ids = [event_id for event_id, _, _ in got]
    assert ids == sorted(set(ids)) and ids[0] > last_seen


async def test_snapshot_then_stream_from_its_position_misses_and_repeats_nothing(api, client):
    alice = api.headers("alice")
    for i in range(3):
        await post_trace(client, alice, id=f"old{i}", status="running")
    snapshot = (await client.get("/api/analytics/traces", headers=alice)).json()
    await client.patch("/api/traces/old0", headers=alice, json={"status": "success"})  # after the snapshot
    async with open_stream(client, headers=alice, params={"last_event_id": snapshot["last_event_id"]}) as stream:
        await post_trace(client, alice, id="new")
        got = await stream.traces(2)
    assert [(kind, trace["id"]) for _, kind, trace in got] == [("trace_update", "old0"), ("trace", "new")]
    assert {t["id"] for t in snapshot["traces"]} == {"old0", "old1", "old2"}


async def test_a_resume_point_older_than_the_window_gets_a_reset(make_api):
    api = make_api(replay_events=5, replay_seconds=0)
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url) as client:
        for _ in range(3):
            await client.post("/api/traces", headers=alice, json={"traces": [{"name": "x"}] * 10})
        async with open_stream(client, headers={**alice, "Last-Event-ID": "1"}) as stream:
            reset = await stream.next("reset")
            subscribed = await stream.next("subscribed")
            await post_trace(client, alice, id="after")
            [(event_id, _, trace)] = await stream.traces(1)
    assert json.loads(reset.data)["last_event_id"] == 30
    assert "replay window" in json.loads(reset.data)["reason"]
    assert json.loads(subscribed.data)["replaying_from"] is None
    assert (event_id, trace["id"]) == (31, "after")


async def test_a_resume_point_ahead_of_the_server_gets_a_reset(api, client):
    async with open_stream(client, headers={**api.headers("alice"), "Last-Event-ID": "999"}) as stream:
        reset = json.loads((await stream.next("reset")).data)
    assert reset["last_event_id"] == 0 and "ahead" in reset["reason"]


async def test_a_malformed_last_event_id_is_422(api, client):
    response = await client.get(STREAM, headers={**api.headers("alice"), "Last-Event-ID": "abc"})
    assert response.status_code == 422
