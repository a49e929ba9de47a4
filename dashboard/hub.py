"""In-process fan-out: one follower of the store's event outbox per process, many streams.

The audited design opened one backend subscription per browser connection. Here one task reads the
outbox in order, encodes each event's frame once, and offers it to the bounded queue of every stream
of that user whose filters match. A stream whose queue is full is closed, never buffered without
bound and never allowed to slow the others; it resumes from its last id and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.sse import format_sse_event

from .metrics import Metrics
from .stores import StoredEvent, StoreError, TraceStore

log = logging.getLogger(__name__)

FOLLOW_BATCH = 1000  # at most; never more than half a stream's queue, so a stream that keeps up never overflows
POLL_SECONDS = 1.0  # notices writes made by other processes sharing the store
MAX_BACKOFF_SECONDS = 10.0


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this user already has {limit} open streams, the most allowed")
        self.limit = limit


class ShuttingDown(Exception):
    def __init__(self) -> None:
        super().__init__("the server is shutting down; reconnect in a moment")


class CloseReason:
    SLOW = "slow_consumer"
    SHUTDOWN = "server_shutdown"
    BACKEND = "backend_unavailable"


@dataclass(frozen=True, slots=True)
class StreamFilters:
    model: str | None = None
    status: str | None = None

    def matches(self, event: StoredEvent) -> bool:
        return (self.model is None or event.model == self.model) and (
            self.status is None or event.status == self.status
        )

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in (("model", self.model), ("status", self.status)) if value is not None}


def event_frame(event: StoredEvent) -> bytes:
    """The SSE frame of a stored event; the body is already JSON, so it is framed, not re-encoded."""
    return format_sse_event(data_str=event.body, event=event.kind, id=str(event.seq))


class Subscription:
    """One stream's bounded queue of (sequence id, frame) pairs, and why it closed, if it did."""

    def __init__(self, user_id: str, filters: StreamFilters, capacity: int) -> None:
        self.user_id = user_id
        self.filters = filters
        self.capacity = capacity
        self.closed_reason: str | None = None
        self.closed_message = ""
        self.on_slow: Callable[[], None] | None = None  # tears down a stream stuck writing to a stalled client
        self._items: deque[tuple[int, bytes]] = deque()
        self._ready = asyncio.Event()

    def offer(self, seq: int, frame: bytes) -> bool:
        """Queue a frame; False (and the subscription closed) when the stream has fallen too far behind."""
        if self.closed_reason is not None:
            return False
        if len(self._items) >= self.capacity:
            self.close(CloseReason.SLOW, f"the stream fell {self.capacity} events behind; resume with Last-Event-ID")
            if self.on_slow is not None:
                self.on_slow()
            return False
        self._items.append((seq, frame))
        self._ready.set()
        return True

    def close(self, reason: str, message: str = "") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.closed_message = message
            self._items.clear()
            self._ready.set()

    async def take(self, timeout: float) -> list[tuple[int, bytes]]:
        """Everything queued, waiting up to ``timeout`` seconds for something; empty on timeout or close."""
        if not self._items and self.closed_reason is None:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        items = list(self._items)
        self._items.clear()
        return items


class Hub:
    """Follows the store's outbox and fans each event out to the matching streams of its user."""

    def __init__(self, store: TraceStore, metrics: Metrics, *, max_streams_per_user: int, queue_size: int) -> None:
        self.store = store
        self.metrics = metrics
        self.max_streams_per_user = max_streams_per_user
        self.queue_size = queue_size
        self.follow_batch = max(1, min(FOLLOW_BATCH, queue_size // 2))
        self.position = 0
        self._by_user: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._healthy = asyncio.Event()
        self.shutting_down = False

    @property
    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    async def start(self) -> None:
        self.position = (await self.store.event_bounds()).head
        self._healthy.set()
        self._task = asyncio.create_task(self._follow(), name="hub-follow")

    async def stop(self) -> None:
        """End every stream (each with an ``error`` saying why) and stop following."""
        self.begin_shutdown()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def begin_shutdown(self) -> None:
        """Refuse new streams and end the open ones; called as soon as the server is asked to stop."""
        self.shutting_down = True
        self.close_all(CloseReason.SHUTDOWN, "the server is shutting down; reconnect in a moment")

    def subscribe(self, user_id: str, filters: StreamFilters) -> Subscription:
        if self.shutting_down:
            raise ShuttingDown()
        subs = self._by_user.setdefault(user_id, set())
        if len(subs) >= self.max_streams_per_user:
            raise TooManyStreams(self.max_streams_per_user)
        sub = Subscription(user_id, filters, self.queue_size)
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

    def close_all(self, reason: str, message: str) -> None:
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
                    if sub.filters.matches(event):
                        frame = frame or event_frame(event)
                        if not sub.offer(event.seq, frame):
                            self._dropped(sub)
            self.position = event.seq

    def _dropped(self, sub: Subscription) -> None:
        if sub.closed_reason == CloseReason.SLOW:
            self.metrics.slow_clients_dropped.inc()
            log.warning("closed a stream of user %s that fell %d events behind", sub.user_id, sub.capacity)

    async def _follow(self) -> None:
        backoff = 0.5
        while True:
            try:
                events = await self.store.events_after(self.position, self.follow_batch)
                if events:
                    self.publish(events)
                else:
                    await self.store.wait_for_events(self.position, POLL_SECONDS)
                if not self._healthy.is_set():
                    log.info("the store is reachable again")
                    self._healthy.set()
                backoff = 0.5
            except StoreError as exc:
                if self._healthy.is_set():
                    log.error("the store failed; closing open streams: %s", exc)
                    self._healthy.clear()
                self.close_all(CloseReason.BACKEND, f"the trace store is unavailable: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
