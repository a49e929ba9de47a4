"""Keeps one TraceStream open for a feed, and replaces it when the feed asks (new filters, a Refresh,
a new token, live turned off or on). The stream itself loads the snapshot, resumes and backs off.

The latest request always wins: from the moment a restart is asked for, nothing the superseded stream
still delivers (a snapshot for the old filters, say) reaches the feed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..client import StreamEvent, TraceStream, TraceStreamError


class StreamFollower:
    """``await follower.run()`` until cancelled; ``open_stream()`` returns None while there should be none."""

    def __init__(self, open_stream: Callable[[], TraceStream | None], ingest: Callable[[StreamEvent], None]) -> None:
        self._open_stream = open_stream
        self._ingest = ingest
        self._wake = asyncio.Event()  # something changed: try again (a stream that failed for good waits for it)
        self._restart = asyncio.Event()  # replace the open stream

    def restart(self) -> None:
        self._wake.set()
        self._restart.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self._restart.clear()
            stream = self._open_stream()
            if stream is None:
                await self._wake.wait()
                continue
            try:
                await self._follow(stream)
            except TraceStreamError:  # 401, a bad filter: retrying will not help until something changes
                await self._wake.wait()
            finally:
                await stream.aclose()

    async def _follow(self, stream: TraceStream) -> None:
        """Take the stream's events until it fails for good or a restart is asked for."""
        consume = asyncio.ensure_future(self._consume(stream))
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            done, _ = await asyncio.wait({consume, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (consume, restart):
                task.cancel()
            await asyncio.gather(consume, restart, return_exceptions=True)
        if consume in done:
            consume.result()  # a fatal stream error propagates

    async def _consume(self, stream: TraceStream) -> None:
        async for event in stream:
            if self._restart.is_set():  # superseded (new filters, a Refresh): what it still says is stale
                return
            self._ingest(event)
