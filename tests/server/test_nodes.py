"""Several API processes on one PostgreSQL database or Supabase project, as a deployment runs them: a
stream on any node receives what is written through every node, in id order and once, and a client
whose node is killed resumes on another with nothing missing and nothing twice."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ..streams import open_stream

# On Supabase each node reaches the project over PostgREST and one Realtime channel (the stand-in's).
pytestmark = pytest.mark.parametrize("store", ["postgres", "supabase"])
PER_WRITER = 60


async def write(client: httpx.AsyncClient, node, token_headers: dict[str, str], prefix: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = await client.post(node.url + "/api/traces", headers=token_headers,
                                     json={"id": f"{prefix}-{i}", "name": prefix, "model": "gpt-4o", "status": "running"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def test_a_stream_on_one_node_gets_the_writes_of_every_node_in_order_once_and_survives_its_node(api_process, store_env):
    a, b, c = (api_process(env=store_env) for _ in range(3))
    alice = a.headers("alice")
    seen: list[tuple[int, str]] = []
    async with httpx.AsyncClient(timeout=10) as writer:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as reader, open_stream(reader, headers=alice) as stream:
            await stream.next("subscribed")  # live before the first write: every write is for this stream
            writers = [asyncio.create_task(write(writer, node, alice, name, PER_WRITER))
                       for node, name in ((a, "via-a"), (c, "via-c"))]
            while len(seen) < PER_WRITER:  # half the writes, read on B while A and C keep writing
                event = await stream.next("trace")
                seen.append((int(event.id), json.loads(event.data)["id"]))
        b.kill()  # SIGKILL: the client's node is gone mid-stream
        resume = {**alice, "Last-Event-ID": str(seen[-1][0])}
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as reader, open_stream(reader, headers=resume) as stream:
            while len(seen) < 2 * PER_WRITER:
                event = await stream.next("trace", timeout=15)
                seen.append((int(event.id), json.loads(event.data)["id"]))
        written = [trace_id for task in writers for trace_id in await task]
    ids = [seq for seq, _ in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # in order, nothing twice
    assert sorted(trace_id for _, trace_id in seen) == sorted(written)  # nothing missing
