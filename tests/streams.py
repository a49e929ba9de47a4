"""Reading the SSE stream in tests with httpx-sse: wait for events by kind, never for a guessed time."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

STREAM = "/api/analytics/traces/stream"


@dataclass
class StreamReader:
    response: httpx.Response
    events: AsyncIterator[ServerSentEvent]
    seen: list[ServerSentEvent] = field(default_factory=list)

    async def next(self, *kinds: str, timeout: float = 10) -> ServerSentEvent:
        """The next event of one of ``kinds`` (any kind when none given), skipping others."""
        async with asyncio.timeout(timeout):
            async for event in self.events:
                self.seen.append(event)
                if not kinds or event.event in kinds:
                    return event
        raise AssertionError(f"the stream ended before a {kinds or 'any'} event; saw {self.summary()}")

    def summary(self) -> str:
        """What the stream said so far, counted by kind, with the last event's data."""
        counts = Counter(event.event for event in self.seen)
        last = self.seen[-1].data[:200] if self.seen else ""
        return f"{dict(counts)}, last: {last}"

    async def traces(self, count: int, timeout: float = 10) -> list[tuple[int, str, dict[str, Any]]]:
        """The next ``count`` trace/trace_update events as (id, kind, trace)."""
        got = []
        while len(got) < count:
            event = await self.next("trace", "trace_update", timeout=timeout)
            got.append((int(event.id), event.event, json.loads(event.data)))
        return got

    async def until_closed(self, timeout: float = 10) -> list[ServerSentEvent]:
        """Every event until the server ends the stream."""
        rest = []
        async with asyncio.timeout(timeout):
            async for event in self.events:
                self.seen.append(event)
                rest.append(event)
        return rest


@asynccontextmanager
async def open_stream(client: httpx.AsyncClient, *, headers: dict[str, str] | None = None,
                      params: dict[str, Any] | None = None) -> AsyncIterator[StreamReader]:
    async with aconnect_sse(client, "GET", STREAM, headers=dict(headers or {}), params=params) as source:
        source.response.raise_for_status()
        yield StreamReader(source.response, source.aiter_sse())


async def post_trace(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/traces", json=fields, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def read_with_resume(client: httpx.AsyncClient, headers: dict[str, str], count: int,
                           started: asyncio.Event, timeout: float = 60) -> tuple[list[int], int]:
    """Read ``count`` trace ids, reconnecting with Last-Event-ID whenever the server ends the stream.

    Returns the ids and how many times it had to reconnect.
    """
    ids: list[int] = []
    reconnects = -1
    async with asyncio.timeout(timeout):
        while len(ids) < count:
            reconnects += 1
            resume = {"Last-Event-ID": str(ids[-1])} if ids else {}
            async with open_stream(client, headers={**headers, **resume}) as stream:
                await stream.next("subscribed")
                started.set()
                async for event in stream.events:
                    if event.event in ("trace", "trace_update"):
                        ids.append(int(event.id))
                        if len(ids) == count:
                            break
    return ids, reconnects


def stalled_reader(port: int, token: str) -> socket.socket:
    """A client that opens a stream with a tiny receive buffer and never reads it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock
