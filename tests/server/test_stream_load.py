"""Many streams, bursts, and a reader that stops reading: nothing lost, nobody slowed by the slow one."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from ..streams import open_stream, read_with_resume, stalled_reader
from ..support import wait_until


async def test_200_concurrent_streams_each_get_every_event_of_their_user_in_order(make_api):
    api = make_api(max_streams_per_user=60, ping_interval=30)
    users = [f"user{i}" for i in range(4)]
    per_user_streams, per_user_traces = 50, 40
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=httpx.Timeout(30)) as client, AsyncExitStack() as stack:
        streams = {}
        for user in users:
            streams[user] = [await stack.enter_async_context(open_stream(client, headers=api.headers(user)))
                             for _ in range(per_user_streams)]
        await asyncio.gather(*(stream.next("subscribed") for group in streams.values() for stream in group))
        assert api.services.hub.open_streams == 200

        async def write(user: str) -> list[str]:
            ids = [f"{user}-{i}" for i in range(per_user_traces)]
            half = per_user_traces // 2
            await client.post("/api/traces", headers=api.headers(user), json={"traces": [{"id": i} for i in ids[:half]]})
            for trace_id in ids[half:]:
                await client.post("/api/traces", headers=api.headers(user), json={"id": trace_id})
            return ids

        written = dict(zip(users, await asyncio.gather(*(write(user) for user in users))))

        async def read(stream) -> list[tuple[int, str]]:
            return [(event_id, trace["id"]) for event_id, _, trace in await stream.traces(per_user_traces, timeout=30)]

        received = {user: await asyncio.gather(*(read(stream) for stream in group)) for user, group in streams.items()}
    for user, per_stream in received.items():
        for got in per_stream:
            assert [trace_id for _, trace_id in got] == written[user]
            event_ids = [event_id for event_id, _ in got]
            assert event_ids == sorted(set(event_ids))


async def test_a_burst_of_10000_events_loses_nothing(make_api):
    api = make_api(ping_interval=30, write_rate=10_000)  # the whole burst at once: 5x the default write burst
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(60)) as client:
        ready = [asyncio.Event(), asyncio.Event()]
        readers = [asyncio.create_task(read_with_resume(client, alice, 10_000, event)) for event in ready]
        await asyncio.gather(*(event.wait() for event in ready))
        writes = [client.post("/api/traces", headers=alice, json={"traces": [{"name": "burst"}] * 1000})
                  for _ in range(10)]
        assert {response.status_code for response in await asyncio.gather(*writes)} == {201}
        for ids, _reconnects in await asyncio.gather(*readers):
            assert ids == list(range(1, 10_001))



@asynccontextmanager
async def healthy_beside_stalled(api, client: httpx.AsyncClient):
    """Alice's stream read to the end, and beside it one of hers that reads nothing; both open on entry."""
    async with open_stream(client, headers=api.headers("alice")) as healthy:
        await healthy.next("subscribed")
        stalled = stalled_reader(api.port, api.token("alice"))
        try:
            await wait_until(lambda: api.services.hub.open_streams == 2)
            yield healthy
        finally:
            stalled.close()


async def test_a_stalled_reader_is_dropped_while_the_others_keep_pace(make_api):
    api = make_api(ping_interval=30, stream_buffer_bytes=256 * 1024, max_streams_per_user=5,
                   write_rate=100_000)  # ~1,800 traces in under half a second: near the default burst
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(60)) as client:
        async with healthy_beside_stalled(api, client) as healthy:
            big = "x" * 2000
            total = 0
            while api.metric("traces_slow_clients_dropped_total") == 0:
                response = await client.post("/api/traces", headers=alice, json={"traces": [{"input": big}] * 200})
                assert response.status_code == 201
                total += 200
                got = await healthy.traces(200, timeout=10)  # the healthy reader keeps pace throughout
                assert got[-1][0] == total
                assert total < 20_000, "the stalled reader was never dropped"
            await wait_until(lambda: api.services.hub.open_streams == 1)
            await client.post("/api/traces", headers=alice, json={"id": "after-the-drop"})
            [(_, _, trace)] = await healthy.traces(1)
            assert trace["id"] == "after-the-drop"


async def test_a_stalled_reader_is_dropped_by_bytes_however_few_events_and_resumes_losing_nothing(make_api):
    """The probe's case: one socket stops reading while its user writes large traces. Bounded in events,
    the server grew by hundreds of MB; bounded in bytes, the stream is dropped after a few traces."""
    api = make_api(ping_interval=30, stream_buffer_bytes=1024 * 1024, max_body_bytes=2 * 1024 * 1024)
    alice = api.headers("alice")
    large = "x" * (1024 * 1024 - 2048)  # a trace of about 1 MB
    written = 0
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(60)) as client:
        async with healthy_beside_stalled(api, client) as healthy:
            while api.metric("traces_slow_clients_dropped_total") == 0:
                assert written < 40, "the stalled reader still held after 40 MB"
                response = await client.post("/api/traces", headers=alice, json={"id": f"large-{written}", "input": large})
                assert response.status_code == 201
                written += 1
                [(seq, _, _)] = await healthy.traces(1, timeout=20)  # the healthy reader keeps pace
                assert seq == written
            await wait_until(lambda: api.services.hub.open_streams == 1)
        # The dropped client read nothing; resuming from the start, it gets every trace, once, in order.
        async with open_stream(client, headers={**alice, "Last-Event-ID": "0"}) as resumed:
            got = await resumed.traces(written, timeout=30)
    assert [seq for seq, _, _ in got] == list(range(1, written + 1))
    assert [trace["id"] for _, _, trace in got] == [f"large-{i}" for i in range(written)]
    assert written <= 12  # dropped after about its buffer plus what the sockets hold, not thousands of events
