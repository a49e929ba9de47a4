"""The hub as a unit: it follows an event log up to its watermark and fans frames out to streams.

Driven with ``await hub.catch_up()`` wherever possible; where the background follower is the point,
the test waits for what it expects (a frame, a closed stream), never for a guessed time.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from dashboard.schema import EventKind
from dashboard.server import hub as hub_module
from dashboard.server.hub import CloseReason, Hub, ShuttingDown, Subscription, TooManyStreams
from dashboard.server.metrics import Metrics
from dashboard.server.sse import event_frame
from dashboard.server.stores import EVERY_EVENT, EventBounds, EventFilter, StoredEvent, StoreError

ALICE = EventFilter(user_id="alice")
BOB = EventFilter(user_id="bob")


class FakeEventLogForTests:
    """A test stand-in for an ``EventLog``: events held by id in memory, the watermark set by the test.

    The watermark may lag behind the highest id, as on Postgres when transactions commit out of order
    (id 7 visible while id 6 is not yet committed): readers must stop at the watermark. ``fail`` makes
    every call raise ``StoreError`` until ``recover``, like a store that went away.
    """

    def __init__(self) -> None:
        self.events: dict[int, StoredEvent] = {}
        self.watermark = 0
        self.failure: StoreError | None = None
        self._changed = asyncio.Event()

    def write(self, *events: StoredEvent) -> None:
        """Events that exist but stay invisible to readers until the watermark passes them."""
        for event in events:
            self.events[event.seq] = event

    def advance(self, watermark: int) -> None:
        self.watermark = watermark
        self._changed.set()

    def commit(self, *events: StoredEvent) -> None:
        """Write and make visible at once (the watermark moves to the highest id)."""
        self.write(*events)
        self.advance(max(self.events))

    def fail(self, message: str = "connection refused") -> None:
        self.failure = StoreError(message)
        self._changed.set()  # wake a follower waiting for events, as a dropped connection would

    def recover(self) -> None:
        self.failure = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def bounds(self) -> EventBounds:
        self._check()
        return EventBounds(floor=0, watermark=self.watermark)

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        self._check()
        assert upto <= self.watermark, f"read up to {upto}, past the watermark {self.watermark}"
        found = [self.events[seq] for seq in sorted(self.events) if after < seq <= upto and which.matches(self.events[seq])]
        page, size = [], 0
        for stored in found[:limit]:  # as every store does: stop once the bodies reach max_bytes
            page.append(stored)
            size += len(stored.body)
            if max_bytes is not None and size >= max_bytes:
                break
        return page

    async def wait_for_events(self, after: int, timeout: float) -> None:
        self._check()
        if self.watermark > after:
            return
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass


def event(seq: int, user: str = "alice", model: str = "gpt-4o", status: str = "success") -> StoredEvent:
    body = json.dumps({"id": f"t{seq}", "user_id": user, "model": model, "status": status})
    return StoredEvent(seq, EventKind.trace, user, model, status, body)


FRAME = len(event_frame(event(1)))  # the bytes of one of these events' frames (ids up to 9 frame alike)


async def queued(sub: Subscription) -> list[int]:
    """The ids waiting in a stream's queue now, without waiting for more."""
    return [seq for seq, _ in await sub.take(0)]


async def receive(sub: Subscription, count: int, timeout: float = 5) -> list[int]:
    """Wait for ``count`` ids to reach a stream fed by the background follower."""
    got: list[int] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got += [seq for seq, _ in await sub.take(timeout)]
            assert sub.closed_reason is None, f"the stream was closed ({sub.closed_message}) after {got}"
    return got


@pytest.fixture
def log() -> FakeEventLogForTests:
    return FakeEventLogForTests()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def hub(log, metrics):
    hub = Hub(log, metrics, max_streams_per_user=3, max_streams=100, buffer_bytes=100 * FRAME)
    yield hub
    await hub.stop()


def metric(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


# The watermark.

async def test_an_event_above_the_watermark_is_held_until_the_ids_below_it_commit(hub, log):
    sub = hub.subscribe(ALICE)
    log.write(*(event(seq) for seq in (1, 2, 3, 4, 5, 7)))  # 6 not yet committed
    log.advance(5)
    await hub.catch_up()
    assert await queued(sub) == [1, 2, 3, 4, 5]
    await hub.catch_up()  # the watermark has not moved: nothing new, nothing again
    assert await queued(sub) == []
    log.write(event(6))
    log.advance(7)
    await hub.catch_up()
    assert await queued(sub) == [6, 7]
    await hub.catch_up()
    assert await queued(sub) == []


async def test_a_backlog_longer_than_one_batch_arrives_whole_and_in_order(log, metrics):
    hub = Hub(log, metrics, max_streams_per_user=3, max_streams=100, buffer_bytes=40 * FRAME)
    sub = hub.subscribe(ALICE)
    reader = asyncio.create_task(receive(sub, 99))  # a stream that keeps up, taking whatever is queued
    log.commit(*(event(seq) for seq in range(1, 100)))  # five batches of half the buffer each
    await hub.catch_up()
    assert await reader == list(range(1, 100))
    assert sub.closed_reason is None


async def test_the_follower_delivers_new_events_as_the_watermark_moves(hub, log):
    log.commit(event(1), event(2))  # before the hub starts: history, not news
    await hub.start()
    sub = hub.subscribe(ALICE)
    log.write(event(3), event(5))
    log.advance(3)
    assert await receive(sub, 1) == [3]
    log.write(event(4))
    log.advance(5)
    assert await receive(sub, 2) == [4, 5]
    assert await queued(sub) == []


# Who gets what.

async def test_events_reach_only_their_users_streams_whose_filters_match(hub, log):
    everything = hub.subscribe(ALICE)
    gpt = hub.subscribe(EventFilter(user_id="alice", model="gpt-4o"))
    errors = hub.subscribe(EventFilter(user_id="alice", status="error"))
    bobs = hub.subscribe(BOB)
    log.commit(event(1, "alice", "gpt-4o", "success"), event(2, "alice", "claude", "error"),
               event(3, "bob", "gpt-4o", "error"), event(4, "alice", "gpt-4o", "error"), event(5, "carol"))
    await hub.catch_up()
    assert await queued(everything) == [1, 2, 4]
    assert await queued(gpt) == [1, 4]
    assert await queued(errors) == [2, 4]
    assert await queued(bobs) == [3]


async def test_a_frame_is_built_once_and_the_same_bytes_go_to_every_matching_stream(hub, log, monkeypatch):
    built: list[int] = []

    def counting_frame(stored: StoredEvent) -> bytes:
        built.append(stored.seq)
        return event_frame(stored)

    monkeypatch.setattr(hub_module, "event_frame", counting_frame)
    one, two = hub.subscribe(ALICE), hub.subscribe(ALICE)
    hub.subscribe(EventFilter(user_id="alice", model="claude"))  # matches nothing
    log.commit(event(1), event(2, user="nobody-listening"))
    await hub.catch_up()
    [(_, first)], [(_, second)] = await one.take(0), await two.take(0)
    assert first is second
    assert first == event_frame(event(1))
    assert built == [1]  # once for two streams, never for an event nobody wants


# Slow streams.

async def test_a_stream_whose_unsent_frames_pass_its_buffer_is_closed_and_the_others_carry_on(log, metrics):
    hub = Hub(log, metrics, max_streams_per_user=3, max_streams=100, buffer_bytes=4 * FRAME)
    slow, fast = hub.subscribe(ALICE), hub.subscribe(ALICE)
    slowed: list[bool] = []
    slow.on_slow = lambda: slowed.append(True)
    log.commit(*(event(seq) for seq in range(1, 5)))
    await hub.catch_up()
    assert await queued(fast) == [1, 2, 3, 4]  # the fast reader keeps up; the slow one reads nothing
    log.commit(event(5))
    await hub.catch_up()
    assert slow.closed_reason == CloseReason.slow_consumer
    assert "bytes behind" in slow.closed_message and "Last-Event-ID" in slow.closed_message
    assert slowed == [True]
    assert metric(metrics, "traces_slow_clients_dropped_total") == 1
    assert await slow.take(5) == []  # closed: returns at once, its backlog dropped
    assert await queued(fast) == [5]
    assert fast.closed_reason is None


async def test_a_slow_stream_is_counted_once_even_when_more_events_follow(log, metrics):
    hub = Hub(log, metrics, max_streams_per_user=3, max_streams=100, buffer_bytes=4 * FRAME)
    slow = hub.subscribe(ALICE)
    log.commit(*(event(seq) for seq in range(1, 10)))
    await hub.catch_up()
    assert slow.closed_reason == CloseReason.slow_consumer
    assert metric(metrics, "traces_slow_clients_dropped_total") == 1


# Limits and shutdown.

async def test_a_user_may_hold_only_so_many_streams_and_leaving_frees_a_slot(hub, metrics):
    held = [hub.subscribe(ALICE) for _ in range(3)]
    with pytest.raises(TooManyStreams) as refused:
        hub.subscribe(ALICE)
    assert refused.value.limit == 3
    hub.subscribe(BOB)  # the limit is per user
    hub.unsubscribe(held[0])
    hub.unsubscribe(held[0])  # twice is harmless
    assert hub.open_streams == 3
    assert metric(metrics, "traces_open_streams") == 3
    hub.subscribe(ALICE)
    assert hub.open_streams == 4


async def test_unsubscribed_streams_get_nothing_more(hub, log):
    gone, staying = hub.subscribe(ALICE), hub.subscribe(ALICE)
    hub.unsubscribe(gone)
    log.commit(event(1))
    await hub.catch_up()
    assert (await queued(gone), await queued(staying)) == ([], [1])


async def test_shutdown_closes_every_stream_and_refuses_new_ones(hub, log):
    streams = [hub.subscribe(ALICE), hub.subscribe(BOB)]
    hub.begin_shutdown()
    for sub in streams:
        assert sub.closed_reason == CloseReason.server_shutdown
        assert "shutting down" in sub.closed_message
        assert await sub.take(5) == []  # returns at once
    with pytest.raises(ShuttingDown):
        hub.subscribe(ALICE)
    log.commit(event(1))
    await hub.catch_up()
    assert await queued(streams[0]) == []


# The store failing.

async def test_a_failing_store_closes_open_streams_and_the_hub_recovers(hub, log):
    await hub.start()
    before = hub.subscribe(ALICE)
    log.fail("connection refused")
    assert await before.take(5) == []  # woken by the close
    assert before.closed_reason == CloseReason.backend_unavailable
    assert "unavailable" in before.closed_message and "connection refused" in before.closed_message

    log.recover()
    after = hub.subscribe(ALICE)
    log.commit(event(1))
    assert await receive(after, 1, timeout=15) == [1]  # after the follower's backoff
    assert await queued(before) == []


async def test_catch_up_raises_store_errors_to_its_caller(hub, log):
    log.fail("disk I/O error")
    with pytest.raises(StoreError, match="disk I/O error"):
        await hub.catch_up()


@pytest.mark.parametrize(("while_", "closed_by"), [("waiting for events", CloseReason.server_shutdown),
                                                   ("backing off after a failure", CloseReason.backend_unavailable)])
async def test_stop_ends_the_streams_and_leaves_no_task(hub, log, while_, closed_by):
    tasks_before = asyncio.all_tasks()
    await hub.start()
    sub = hub.subscribe(ALICE)
    if while_ == "backing off after a failure":
        log.fail()
        assert await sub.take(5) == []
    else:
        log.commit(event(1))
        assert await receive(sub, 1) == [1]
    async with asyncio.timeout(5):
        await hub.stop()
    assert asyncio.all_tasks() == tasks_before
    assert sub.closed_reason == closed_by  # the first reason sticks
    with pytest.raises(ShuttingDown):
        hub.subscribe(ALICE)
