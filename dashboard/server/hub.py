"""In-process fan-out: one follower of the event log per process, many streams.

The audited design opened one backend subscription per browser connection. Here one task follows
the log up to its watermark, encodes each event's frame once, and offers it to the bounded queue of
every stream of that user whose filters match. A stream whose queue is full is closed, never
buffered without bound and never allowed to slow the others; it resumes from its last id and loses
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from ..backoff import Backoff
from ..waits import cancel_and_wait, wait_for_event
from .metrics import Metrics
from .sse import event_frame
from .stores import EventFilter, EventLog, StoredEvent, StoreError

log = logging.getLogger(__name__)

FOLLOW_BATCH = 1000  # at most; never more than half a stream's queue, so a stream that keeps up never overflows
POLL_SECONDS = 1.0  # notices writes made by other processes sharing the store


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this user already has {limit} open streams, the most allowed")
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
    """One stream's bounded queue of (sequence id, frame) pairs, and why it closed, if it did."""

    def __init__(self, which: EventFilter, capacity: int) -> None:
        assert which.user_id is not None, "a stream always belongs to one user"
        self.which = which
        self.user_id: str = which.user_id
        self.capacity = capacity
        self.closed_reason: CloseReason | None = None
        self.closed_message = ""
        self.on_slow: Callable[[], None] | None = None  # tears down a stream stuck writing to a stalled client
        self._items: deque[tuple[int, bytes]] = deque()
        self._ready = asyncio.Event()

    def offer(self, seq: int, frame: bytes) -> bool:
        """Queue a frame; False (and the subscription closed) when the stream has fallen too far behind."""
        if self.closed_reason is not None:
            return False
        if len(self._items) >= self.capacity:
            self.close(CloseReason.slow_consumer,
                       f"the stream fell {self.capacity} events behind; resume with Last-Event-ID")
            if self.on_slow is not None:
                self.on_slow()
            return False
        self._items.append((seq, frame))
        self._ready.set()
        return True

    def close(self, reason: CloseReason, message: str = "") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.closed_message = message
            self._items.clear()
            self._ready.set()

    async def take(self, timeout: float) -> list[tuple[int, bytes]]:
        """Everything queued, waiting up to ``timeout`` seconds for something; empty on timeout or close."""
        if not self._items and self.closed_reason is None:
            self._ready.clear()
            if not await wait_for_event(self._ready, timeout):
                return []
        items = list(self._items)
        self._items.clear()
        return items


class Hub:
    """Follows the event log up to its watermark and fans each event out to the matching streams."""

    def __init__(self, events: EventLog, metrics: Metrics, *, max_streams_per_user: int, queue_size: int) -> None:
        self.events = events
        self.metrics = metrics
        self.max_streams_per_user = max_streams_per_user
        self.queue_size = queue_size
        self.follow_batch = max(1, min(FOLLOW_BATCH, queue_size // 2))
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
        if self.shutting_down:
            raise ShuttingDown()
        sub = Subscription(which, self.queue_size)
        subs = self._by_user.setdefault(sub.user_id, set())
        if len(subs) >= self.max_streams_per_user:
            if not subs:
                del self._by_user[sub.user_id]
            raise TooManyStreams(self.max_streams_per_user)
        subs.add(sub)
        self.metrics.open_streams.inc()
        return sub

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
            log.warning("closed a stream of user %s that fell %d events behind", sub.user_id, sub.capacity)

    async def catch_up(self) -> None:
        """Publish everything up to the log's watermark now (never past it: a later id may commit first)."""
        watermark = (await self.events.bounds()).watermark
        while self.position < watermark:
            events = await self.events.events_after(self.position, watermark, self.follow_batch)
            self.publish(events)
            full = len(events) == self.follow_batch
            self.position = events[-1].seq if full else watermark

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
