"""SIGKILL mid-burst: the API dies while writers post and streams read, and restarts on the same port and store.

What a user relies on afterwards: every write the server acknowledged (201) reached every stream exactly
once, in strictly increasing id order; a write that got no answer is either absent or whole (a batch all or
nothing), and nothing appears twice.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..streams import open_stream
from ..support import wait_until

WRITERS = 4
TRACES_PER_WRITER = 150
READERS = 3
KILL_AFTER = WRITERS * TRACES_PER_WRITER // 2  # acknowledged traces before the kill


def units_for(writer: int) -> list[list[dict[str, Any]]]:
    """One writer's writes: single traces and batches of 2 or 3, every trace distinct and checkable."""
    units, n = [], 0
    while n < TRACES_PER_WRITER:
        size = min((1, 3, 1, 2)[len(units) % 4], TRACES_PER_WRITER - n)
        units.append([{"id": f"w{writer}-{n + i}", "name": f"call {writer}/{n + i}", "model": f"m{writer}",
                       "status": "success", "input_tokens": n + i, "input": {"prompt": "x" * (n + i)}}
                      for i in range(size)])
        n += size
    return units


@dataclass
class Outcome:
    acknowledged: list[list[dict[str, Any]]] = field(default_factory=list)  # answered 201
    unanswered: list[list[dict[str, Any]]] = field(default_factory=list)  # an attempt got no answer, none 201


@dataclass
class Reader:
    events: list[tuple[int, str]] = field(default_factory=list)  # (event id, trace id)
    reconnects: int = 0
    resets: int = 0
    subscribed: bool = False


async def write(url: str, headers: dict[str, str], units: list[list[dict[str, Any]]], up: asyncio.Event,
                outcome: Outcome, acked: list[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for unit in units:
            body = unit[0] if len(unit) == 1 else {"traces": unit}
            lost = False
            while True:
                try:
                    response = await client.post("/api/traces", json=body, headers=headers)
                except httpx.TransportError:  # no answer: unacknowledged; retry once the server is back
                    lost = True
                    await up.wait()
                    continue
                if response.status_code == 201:
                    outcome.acknowledged.append(unit)
                    acked[0] += len(unit)
                elif response.status_code == 409 and lost:  # an unanswered attempt was stored after all
                    outcome.unanswered.append(unit)
                else:
                    raise AssertionError(f"{response.status_code} {response.text}")
                break


async def read(url: str, headers: dict[str, str], up: asyncio.Event, reader: Reader) -> None:
    """A resuming client: reconnect with Last-Event-ID whenever the stream ends or the connection drops."""
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=None)) as client:
        first = True
        while True:
            if not first:
                reader.reconnects += 1
            first = False
            resume = {"Last-Event-ID": str(reader.events[-1][0])} if reader.events else {}
            try:
                async with open_stream(client, headers={**headers, **resume}) as stream:
                    async for event in stream.events:
                        if event.event == "subscribed":
                            reader.subscribed = True
                        elif event.event == "reset":
                            reader.resets += 1
                        elif event.event == "trace":
                            reader.events.append((int(event.id), json.loads(event.data)["id"]))
            except httpx.TransportError:
                await up.wait()


async def test_sigkill_mid_burst_loses_no_acknowledged_write_and_half_writes_nothing(api_process, store_env):
    env = {**store_env, "TRACES_WRITE_RATE": "0"}
    server = api_process(env=env)
    alice = server.headers("alice")
    up = asyncio.Event()
    up.set()
    readers = [Reader() for _ in range(READERS)]
    reading = [asyncio.create_task(read(server.url, alice, up, reader)) for reader in readers]
    # every stream subscribed before the first write: each trace is then live or replayed to each
    await wait_until(lambda: all(reader.subscribed for reader in readers), timeout=15)
    outcomes = [Outcome() for _ in range(WRITERS)]
    acked = [0]
    writing = [asyncio.create_task(write(server.url, alice, units_for(w), up, outcomes[w], acked))
               for w in range(WRITERS)]
    await wait_until(lambda: acked[0] >= KILL_AFTER, timeout=30)
    up.clear()
    server.kill()
    restarted = await asyncio.to_thread(api_process, env=env, port=server.port)
    up.set()
    try:
        await asyncio.wait_for(asyncio.gather(*writing), timeout=40)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as client:
            stored = await _all_traces(client, alice)
            position = (await client.get("/api/analytics/traces", params={"limit": 1}, headers=alice)).json()[
                "last_event_id"]
            await wait_until(lambda: all(r.events and r.events[-1][0] >= position for r in readers), timeout=20)

            sent = {t["id"]: t for o in outcomes for unit in o.acknowledged + o.unanswered for t in unit}
            acknowledged = {t["id"] for o in outcomes for unit in o.acknowledged for t in unit}
            # nothing is stored that was not sent, nothing twice, and each stored trace is exactly as sent
            assert len(stored) == len({t["id"] for t in stored}), "a trace is listed twice"
            for trace in stored:
                assert trace["id"] in sent, trace["id"]
                assert {k: trace[k] for k in sent[trace["id"]]} == sent[trace["id"]]
            stored_ids = {t["id"] for t in stored}
            assert acknowledged <= stored_ids, f"acknowledged but lost: {sorted(acknowledged - stored_ids)[:10]}"
            # an unanswered write: absent or whole, per trace and per batch (GET, as a user would check)
            for outcome in outcomes:
                for unit in outcome.unanswered:
                    found = []
                    for trace in unit:
                        response = await client.get(f"/api/analytics/traces/{trace['id']}", headers=alice)
                        assert response.status_code in (200, 404), response.text
                        if response.status_code == 200:
                            body = response.json()
                            assert {k: body[k] for k in trace} == trace
                        found.append(response.status_code == 200)
                    assert all(found) or not any(found), f"half a batch stored: {unit}"
    finally:
        for task in reading + writing:
            task.cancel()
        await asyncio.gather(*reading, *writing, return_exceptions=True)
    assert acked[0] == WRITERS * TRACES_PER_WRITER - sum(len(u) for o in outcomes for u in o.unanswered)
    assert any(reader.reconnects for reader in readers), "the kill did not cut the streams"
    for reader in readers:  # every stored trace reached every stream once, ids strictly increasing
        ids = [event_id for event_id, _ in reader.events]
        assert reader.resets == 0
        assert all(a < b for a, b in zip(ids, ids[1:])), "ids out of order or repeated"
        trace_ids = [trace_id for _, trace_id in reader.events]
        assert len(trace_ids) == len(set(trace_ids)), "a trace reached a stream twice"
        assert set(trace_ids) == stored_ids


async def _all_traces(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    traces, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/analytics/traces", params=params, headers=headers)).json()
        traces += page["traces"]
        cursor = page["next_cursor"]
        if not cursor:
            return traces
