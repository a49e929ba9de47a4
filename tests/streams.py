"""Reading the SSE stream in tests with httpx-sse: wait for events by kind, never for a guessed time."""

from __future__ import annotations

import asyncio
import json
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
        raise AssertionError(f"the stream ended before a {kinds or 'any'} event; saw {[e.event for e in self.seen]}")

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
