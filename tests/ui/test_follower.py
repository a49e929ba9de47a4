"""StreamFollower: the latest request wins; a superseded stream's late events never reach the feed."""

from __future__ import annotations

import asyncio

from dashboard.client import Snapshot, StreamEvent
from dashboard.ui.follower import StreamFollower


class ScriptedStream:
    """A stand-in for TraceStream (the follower only iterates and closes it): yields its events, each
    once the test releases it."""

    def __init__(self, events: list[StreamEvent]) -> None:
        self.events = events
        self.release = asyncio.Event()
        self.closed = False

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for event in self.events:
            await self.release.wait()
            yield event
        await asyncio.Event().wait()  # then stays open, as a live stream does

    async def aclose(self) -> None:
        self.closed = True


async def test_a_superseded_streams_late_snapshot_is_dropped_and_the_new_one_is_taken():
    old = ScriptedStream([Snapshot([{"id": "gpt-row"}], last_event_id=5, reason="model gpt-4o")])
    new = ScriptedStream([Snapshot([{"id": "claude-row"}], last_event_id=7, reason="model claude")])
    streams = iter([old, new])
    opened = asyncio.Queue()
    taken: list[StreamEvent] = []
    got_new = asyncio.Event()

    def open_stream():
        stream = next(streams)
        opened.put_nowait(stream)
        return stream

    def ingest(event: StreamEvent) -> None:
        taken.append(event)
        if event.reason == "model claude":
            got_new.set()

    follower = StreamFollower(open_stream, ingest)
    task = asyncio.create_task(follower.run())
    try:
        assert await asyncio.wait_for(opened.get(), 5) is old
        follower.restart()  # the user picked another model...
        old.release.set()  # ...and only then does the old stream's snapshot arrive
        assert await asyncio.wait_for(opened.get(), 5) is new
        new.release.set()
        await asyncio.wait_for(got_new.wait(), 5)
        assert [event.reason for event in taken] == ["model claude"]
        assert old.closed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert new.closed
