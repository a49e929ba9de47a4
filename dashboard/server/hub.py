"""In-process fan-out: one follower of the event log per process, many streams.

The audited design opened one backend subscription per browser connection. Here one task follows
the log up to its watermark, encodes each event's frame once, and offers it to the queue of every
stream of that user whose filters match. A queue is bounded in bytes (``TRACES_STREAM_BUFFER_BYTES``),
not in events: a stream whose unsent frames pass it is closed, never buffered without bound and never
allowed to slow the others; it resumes from its last id and loses nothing. The hub reads the log in
batches of at most half that, so a stream that keeps up is never closed by one batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from ..backoff import Backoff
from ..waits import cancel_and_wait
from .metrics import Metrics
from .sse import event_frame
from .stores import EventFilter, EventLog, StoredEvent, StoreError, may_continue

log = logging.getLogger(__name__)

FOLLOW_BATCH = 1000  # events per read of the log, at most (and at most half a stream's buffer in bytes)
POLL_SECONDS = 1.0  # notices writes made by other processes sharing the store


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this user already has {limit} open streams, the most allowed")
        self.limit = limit


class ServerFull(TooManyStreams):
    """This process holds as many streams as it may (``TRACES_MAX_STREAMS``), all users together."""

    def __init__(self, limit: int) -> None:
        Exception.__init__(self, f"this server already holds {limit} open streams, the most it takes")
        self.limit = limit


class ShuttingDown(Exception):
    def __init__(self) -> None:
        super().__init__("the server is shutting down; reconnect in a moment")


class CloseReason(StrEnum):
    """Why the server ended a stream: the ``code`` of its last ``error`` event."""

    slow_consumer = "slow_consumer"
    server_shutdown = "server_shutdown"
    backend_unavailable = "backend_unavailable"
    token_expired = "token_expired"


class Subscription:
    """One stream's queue of (sequence id, frame) pairs, bounded in bytes, and why it closed, if it did."""

    def __init__(self, which: EventFilter, capacity_bytes: int) -> None:
        assert which.user_id is not None, "a stream always belongs to one user"
        self.which = which
        self.user_id: str = which.user_id
        self.capacity_bytes = capacity_bytes
        self.closed_reason: CloseReason | None = None
        self.closed_message = ""
        self.on_slow: Callable[[], None] | None = None  # tears down a stream stuck writing to a stalled client
        self._items: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()

    def offer(self, seq: int, frame: bytes) -> bool:
        """Queue a frame; False (and the subscription closed) when the unsent frames would pass the limit.
        A frame larger than the whole limit still goes to a stream with nothing waiting: one big trace
        must reach a reader that keeps up."""
        if self.closed_reason is not None:
            return False
        if self._items and self._bytes + len(frame) > self.capacity_bytes:
            self.close(CloseReason.slow_consumer,
                       f"the stream fell more than {self.capacity_bytes} bytes behind; resume with Last-Event-ID")
            if self.on_slow is not None:
                self.on_slow()
            return False
        self._items.append((seq, frame))
        self._bytes += len(frame)
        self._ready.set()
        return True

    def close(self, reason: CloseReason, message: str = "") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.closed_message = message
            self._items.clear()
            self._bytes = 0
            self._ready.set()

    async def take(self, timeout: float) -> list[tuple[int, bytes]]:
        """Everything queued, waiting up to ``timeout`` seconds for something; empty on timeout or close."""
        if not self._items and self.closed_reason is None:
            if timeout <= 0:
                return []
            # Woken by offer() directly (no helper task in between): one loop pass after the hub offers a
            # batch, a stream that keeps up has taken it, so the hub's next batch finds its queue empty.
            self._ready.clear()
            timer = asyncio.get_running_loop().call_later(timeout, self._ready.set)
            try:
                await self._ready.wait()
            finally:
                timer.cancel()
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        return items


class Hub:
    """Follows the event log up to its watermark and fans each event out to the matching streams."""

    def __init__(self, events: EventLog, metrics: Metrics, *, max_streams_per_user: int, max_streams: int,
                 buffer_bytes: int) -> None:
        self.events = events
        self.metrics = metrics
        self.max_streams_per_user = max_streams_per_user
        self.max_streams = max_streams
        self.buffer_bytes = buffer_bytes
        self.batch_bytes = max(1, buffer_bytes // 2)
        self.position = 0  # every event at or below this has been offered to the streams
        self._by_user: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self.shutting_down = False

    @property
    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    async def start(self) -> None:
        self.position = (await self.events.bounds()).watermark
        self._task = asyncio.create_task(self._follow(), name="hub-follow")

    async def stop(self) -> None:
        """End every stream (each with an ``error`` saying why) and stop following."""
        self.begin_shutdown()
        if self._task is not None:
            if not await cancel_and_wait(self._task):
                log.error("the hub's follower did not stop; left behind")
            self._task = None

    def begin_shutdown(self) -> None:
        """Refuse new streams and end the open ones; called as soon as the server is asked to stop."""
        self.shutting_down = True
        self.close_all(CloseReason.server_shutdown, "the server is shutting down; reconnect in a moment")

    def subscribe(self, which: EventFilter) -> Subscription:
        self.check_room(which.user_id)
        sub = Subscription(which, self.buffer_bytes)
        self._by_user.setdefault(sub.user_id, set()).add(sub)
        self.metrics.open_streams.inc()
        return sub

    def check_room(self, user_id: str | None) -> None:
        """Raise what ``subscribe`` would for this user now (asked before a single-use ticket is spent)."""
        if self.shutting_down:
            raise ShuttingDown()
        if len(self._by_user.get(user_id or "", ())) >= self.max_streams_per_user:
            raise TooManyStreams(self.max_streams_per_user)
        if self.open_streams >= self.max_streams:
            raise ServerFull(self.max_streams)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._by_user[sub.user_id]
        self.metrics.open_streams.dec()

    def close_all(self, reason: CloseReason, message: str) -> None:
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                sub.close(reason, message)

    def publish(self, events: list[StoredEvent]) -> None:
        """Offer each event, framed once, to its user's matching streams."""
        for event in events:
            subs = self._by_user.get(event.user_id)
            if subs:
                frame: bytes | None = None
                for sub in list(subs):
                    if sub.closed_reason is None and sub.which.matches(event):
                        frame = frame or event_frame(event)
                        if not sub.offer(event.seq, frame):
                            self._dropped(sub)

    def _dropped(self, sub: Subscription) -> None:
        if sub.closed_reason == CloseReason.slow_consumer:
            self.metrics.slow_clients_dropped.inc()
            log.warning("closed a stream of user %s that fell more than %d bytes behind", sub.user_id, sub.capacity_bytes)

    async def catch_up(self) -> None:
        """Publish everything up to the log's watermark now (never past it: a later id may commit first)."""
        watermark = (await self.events.bounds()).watermark
        while self.position < watermark:
            events = await self.events.events_after(self.position, watermark, FOLLOW_BATCH, max_bytes=self.batch_bytes)
            self.publish(events)
            more = may_continue(events, FOLLOW_BATCH, self.batch_bytes)
            self.position = events[-1].seq if more else watermark
            if more:
                await asyncio.sleep(0)  # the streams take this batch before the next is offered

    async def _follow(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await self.catch_up()
                if not self._healthy:
                    log.info("the store is reachable again")
                    self._healthy = True
                backoff.reset()
                await self.events.wait_for_events(self.position, POLL_SECONDS)
            except StoreError as exc:
                if self._healthy:
                    log.error("the store failed; closing open streams: %s", exc)
                    self._healthy = False
                self.close_all(CloseReason.backend_unavailable, f"the trace store is unavailable: {exc}")
                await asyncio.sleep(backoff.next_delay())
