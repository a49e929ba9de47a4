"""The API as its own process: killed and restarted on the same file, stopped by SIGTERM, and its logs."""

from __future__ import annotations

import json

import httpx
import pytest

from ..streams import open_stream, post_trace


async def test_after_sigkill_and_restart_a_resuming_client_gets_every_missed_event_once(api_process):
    server = api_process()
    alice = {"Authorization": f"Bearer {server.token('alice')}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with open_stream(client, headers=alice) as stream:
            await stream.next("subscribed")
            await post_trace(client, alice, id="before", status="running")
            [(last_seen, _, _)] = await stream.traces(1)
            await post_trace(client, alice, id="unseen")  # committed, maybe never delivered
            server.kill()
            with pytest.raises(httpx.RemoteProtocolError):  # cut off mid-stream, as a crash does
                await stream.until_closed()
    restarted = api_process(port=server.port)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as client:
        await client.patch("/api/traces/before", headers=alice, json={"status": "success"})
        await post_trace(client, alice, id="after")
        async with open_stream(client, headers={**alice, "Last-Event-ID": str(last_seen)}) as stream:
            got = await stream.traces(3)
            await post_trace(client, alice, id="live")
            got += await stream.traces(1)
    assert [(kind, trace["id"]) for _, kind, trace in got] == [
        ("trace", "unseen"), ("trace_update", "before"), ("trace", "after"), ("trace", "live")]
    ids = [event_id for event_id, _, _ in got]
    assert ids == sorted(set(ids)) and ids[0] == last_seen + 1


async def test_sigterm_ends_open_streams_promptly_with_a_reason(api_process):
    server = api_process(env={"TRACES_PING_INTERVAL": "30"})
    alice = {"Authorization": f"Bearer {server.token('alice')}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with open_stream(client, headers=alice) as first, open_stream(client, headers=alice) as second:
            await first.next("subscribed")
            await second.next("subscribed")
            server.terminate()  # waits for the process to exit (a hang guard, not a stopwatch)
            endings = [await first.until_closed(), await second.until_closed()]
    for rest in endings:  # the server itself ended each stream, saying why...
        assert json.loads(rest[-1].data)["code"] == "server_shutdown"
    log = server.log()
    # ...so uvicorn did not sit out its graceful timeout (30 s pings: nothing else would end them) and cut them off
    assert "timeout graceful shutdown exceeded" not in log
    assert "Traceback" not in log


async def test_credentials_in_the_query_never_reach_the_log(api_process):
    server = api_process()
    token = server.token("alice")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        ticket = (await client.post("/api/analytics/traces/stream/ticket",
                                    headers={"Authorization": f"Bearer {token}"})).json()["ticket"]
        for params in ({"token": token, "model": "gpt-4o"}, {"ticket": ticket}):
            async with open_stream(client, params=params) as stream:
                await stream.next("subscribed")
        await client.get("/api/analytics/traces/stream", params={"token": "eyJbad.eyJbad.sig"})
    server.terminate()
    log = server.log()
    assert "GET /api/analytics/traces/stream?" in log  # the lines are there...
    assert token not in log and ticket not in log and "eyJbad" not in log  # ...without the secrets
    assert "model=gpt-4o" in log
