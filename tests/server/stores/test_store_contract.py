"""The store contract, tested on the backend itself (no HTTP), unchanged for every backend.

Each test runs once per store: SQLite, PostgreSQL, and Supabase (through the stand-in for its servers;
``tests/conftest.py``: the ``store_settings`` fixture makes fresh, empty storage of each kind). Nothing
below may assume which backend it is testing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.schema import EventKind, TraceCreate, TracePatch, utc_iso
from dashboard.server.records import new_record, patched_record
from dashboard.server.stores import (
    Backend,
    DuplicateTraceError,
    EventFilter,
    Record,
    StoreOptions,
    TraceQuery,
    may_continue,
    open_backend,
)

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres", "supabase"])


class Backends:
    """Opens backends on one storage, as a process would, and closes whatever is still open at the end."""

    def __init__(self, url: str, base: StoreOptions) -> None:
        self.url = url
        self.base = base  # where the storage is, beside the URL (a Supabase project)
        self._open: list[tuple[Backend, StoreOptions]] = []

    async def open(self, options: StoreOptions | None = None) -> Backend:
        options = replace(options or StoreOptions(), supabase_url=self.base.supabase_url, supabase_key=self.base.supabase_key)
        backend = open_backend(self.url, options)
        await backend.open()
        self._open.append((backend, options))
        return backend

    async def close(self, backend: Backend) -> StoreOptions:
        [options] = [opts for opened, opts in self._open if opened is backend]
        self._open = [(opened, opts) for opened, opts in self._open if opened is not backend]
        await backend.close()
        return options

    async def reopen(self, backend: Backend) -> Backend:
        """Close ``backend`` and open the same storage again with the same options: a restart."""
        return await self.open(await self.close(backend))

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1][0])


@pytest.fixture
async def backends(db_url: str, store_options: StoreOptions) -> AsyncIterator[Backends]:
    opened = Backends(db_url, store_options)
    try:
        yield opened
    finally:
        await opened.close_all()


@pytest.fixture
async def backend(backends: Backends) -> Backend:
    return await backends.open()


@pytest.fixture
def reopen(backends: Backends) -> Callable[[Backend], Awaitable[Backend]]:
    return backends.reopen


BASE = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    return utc_iso(BASE + timedelta(seconds=seconds))


def record(user: str = "alice", *, when: float = 0, **fields) -> Record:
    return new_record(user, TraceCreate(**fields), at(when))


def changed(current: Record, **fields) -> Record:
    return patched_record(current, TracePatch(**fields), at(1000))


async def all_events(backend: Backend, after: int = 0, which: EventFilter | None = None):
    watermark = (await backend.events.bounds()).watermark
    return await backend.events.events_after(after, watermark, 10_000, which or EventFilter())


async def listed_ids(backend: Backend, user: str = "alice", **query) -> list[str]:
    page = await backend.traces.list_traces(user, TraceQuery(**query))
    return [trace.id for trace in page.traces]


# Traces


async def test_an_inserted_trace_is_read_back_whole_by_its_owner_only(backend: Backend):
    trace = record(id="t-1", model="gpt-4", input_tokens=3, output_tokens=4, metadata={"k": [1, 2]})
    await backend.traces.insert_traces([trace])
    assert await backend.traces.get_trace("alice", "t-1") == trace
    assert await backend.traces.get_trace("bob", "t-1") is None
    assert await backend.traces.get_trace("alice", "no-such-id") is None


async def test_users_ids_are_their_own_and_the_same_id_is_two_traces_for_two_users(backend: Backend):
    """The probe found one namespace: alice posting bob's id learnt it existed, and took it from him."""
    alices, bobs = record("alice", id="same", name="alice's"), record("bob", id="same", name="bob's")
    await backend.traces.insert_traces([alices])
    await backend.traces.insert_traces([bobs])
    assert await backend.traces.get_trace("alice", "same") == alices
    assert await backend.traces.get_trace("bob", "same") == bobs
    done = changed(bobs, status="success")
    assert await backend.traces.replace_trace(done, expected_updated_at=bobs["updated_at"])
    assert await backend.traces.get_trace("alice", "same") == alices  # bob's change is bob's alone
    assert [(e.user_id, e.kind) for e in await all_events(backend)] == [
        ("alice", EventKind.trace), ("bob", EventKind.trace), ("bob", EventKind.trace_update)]


async def test_a_batch_with_a_taken_id_stores_nothing_and_names_the_id(backend: Backend):
    await backend.traces.insert_traces([record(id="taken")])
    before = await backend.events.bounds()
    batch = [record(id="new-1"), record(id="taken"), record(id="new-2")]
    with pytest.raises(DuplicateTraceError) as refused:
        await backend.traces.insert_traces(batch)
    assert refused.value.trace_id == "taken"
    for trace_id in ("new-1", "new-2"):
        assert await backend.traces.get_trace("alice", trace_id) is None
    assert (await backend.events.bounds()).watermark == before.watermark
    assert [json.loads(event.body)["id"] for event in await all_events(backend)] == ["taken"]


async def test_a_batch_repeating_an_id_stores_nothing(backend: Backend):
    with pytest.raises(DuplicateTraceError) as refused:
        await backend.traces.insert_traces([record(id="first"), record(id="twice"), record(id="twice")])
    assert refused.value.trace_id == "twice"
    assert await backend.traces.get_trace("alice", "first") is None
    assert await all_events(backend) == []


async def test_replace_applies_when_nobody_changed_the_trace_meanwhile(backend: Backend):
    trace = record(id="t-1", status="running")
    await backend.traces.insert_traces([trace])
    done = changed(trace, status="success", output="hi")
    assert await backend.traces.replace_trace(done, expected_updated_at=trace["updated_at"]) is True
    assert await backend.traces.get_trace("alice", "t-1") == done


async def test_replace_with_a_stale_updated_at_changes_nothing(backend: Backend):
    trace = record(id="t-1")
    await backend.traces.insert_traces([trace])
    first = changed(trace, name="first")
    assert await backend.traces.replace_trace(first, expected_updated_at=trace["updated_at"])
    before = await backend.events.bounds()
    late = changed(trace, name="late")
    assert await backend.traces.replace_trace(late, expected_updated_at=trace["updated_at"]) is False
    assert await backend.traces.get_trace("alice", "t-1") == first
    assert (await backend.events.bounds()).watermark == before.watermark


async def test_replace_of_another_users_or_a_missing_trace_is_refused(backend: Backend):
    trace = record(id="t-1")
    await backend.traces.insert_traces([trace])
    hijack = {**changed(trace, name="hijacked"), "user_id": "bob"}
    assert await backend.traces.replace_trace(hijack, expected_updated_at=trace["updated_at"]) is False
    missing = record(id="missing")
    assert await backend.traces.replace_trace(missing, expected_updated_at=missing["updated_at"]) is False
    assert await backend.traces.get_trace("alice", "t-1") == trace
    assert len(await all_events(backend)) == 1


# Listing


async def test_traces_are_listed_newest_first_and_pages_cover_each_exactly_once(backend: Backend):
    ids = [f"t-{i}" for i in range(10)]
    for i, trace_id in enumerate(ids):
        await backend.traces.insert_traces([record(id=trace_id, when=i)])
    assert await listed_ids(backend) == ids[::-1]
    seen, cursor = [], None
    while True:
        page = await backend.traces.list_traces("alice", TraceQuery(limit=3, cursor=cursor))
        assert len(page.traces) <= 3
        seen += [trace.id for trace in page.traces]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]


async def test_listing_filters_by_model_status_and_time_window(backend: Backend):
    await backend.traces.insert_traces([
        record(id="old-gpt", when=0, model="gpt-4", status="success"),
        record(id="new-gpt", when=10, model="gpt-4", status="running"),
        record(id="new-claude", when=20, model="claude", status="success"),
    ])
    assert await listed_ids(backend, model="gpt-4") == ["new-gpt", "old-gpt"]
    assert await listed_ids(backend, status="success") == ["new-claude", "old-gpt"]
    assert await listed_ids(backend, since=at(10)) == ["new-claude", "new-gpt"]
    assert await listed_ids(backend, until=at(10)) == ["old-gpt"]  # until is excluded: windows tile
    assert await listed_ids(backend, since=at(10), until=at(20)) == ["new-gpt"]
    assert await listed_ids(backend, model="gpt-4", status="success") == ["old-gpt"]
    assert await listed_ids(backend, model="llama") == []


async def test_listing_filters_see_a_trace_as_it_is_now(backend: Backend):
    trace = record(id="t-1", status="running")
    await backend.traces.insert_traces([trace])
    await backend.traces.replace_trace(changed(trace, status="success"), expected_updated_at=trace["updated_at"])
    assert await listed_ids(backend, status="running") == []
    [shown] = (await backend.traces.list_traces("alice", TraceQuery(status="success"))).traces
    assert shown.model_dump() == await backend.traces.get_trace("alice", "t-1")


async def test_each_user_lists_only_their_own_traces(backend: Backend):
    await backend.traces.insert_traces([record("alice", id="a-1"), record("bob", id="b-1"), record("alice", id="a-2")])
    assert await listed_ids(backend, "alice") == ["a-2", "a-1"]
    assert await listed_ids(backend, "bob") == ["b-1"]
    assert await listed_ids(backend, "carol") == []


async def test_a_page_reports_the_watermark_it_reflects(backend: Backend):
    empty = await backend.traces.list_traces("alice", TraceQuery())
    assert empty.last_event_id == (await backend.events.bounds()).watermark
    for i in range(3):
        await backend.traces.insert_traces([record(id=f"t-{i}")])
        page = await backend.traces.list_traces("alice", TraceQuery())
        assert page.last_event_id == (await backend.events.bounds()).watermark
    assert page.last_event_id > empty.last_event_id


# Events


async def test_inserts_and_replaces_append_events_carrying_the_whole_record(backend: Backend):
    first, second = record(id="t-1", model="gpt-4"), record("bob", id="t-2", status="running")
    await backend.traces.insert_traces([first, second])
    done = changed(second, status="success")
    await backend.traces.replace_trace(done, expected_updated_at=second["updated_at"])
    events = await all_events(backend)
    assert [event.kind for event in events] == [EventKind.trace, EventKind.trace, EventKind.trace_update]
    assert [json.loads(event.body) for event in events] == [first, second, done]
    assert [(e.user_id, e.model, e.status) for e in events] == [
        ("alice", "gpt-4", "pending"), ("bob", None, "running"), ("bob", None, "success")]
    seqs = [event.seq for event in events]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0
    assert seqs[-1] == (await backend.events.bounds()).watermark


async def test_events_after_respects_after_upto_and_limit(backend: Backend):
    for i in range(6):
        await backend.traces.insert_traces([record(id=f"t-{i}")])
    seqs = [event.seq for event in await all_events(backend)]
    assert [e.seq for e in await backend.events.events_after(seqs[1], seqs[4], 100)] == seqs[2:5]
    assert [e.seq for e in await backend.events.events_after(seqs[1], seqs[-1], 2)] == seqs[2:4]
    assert await backend.events.events_after(seqs[-1], seqs[-1], 100) == []


async def test_events_after_stops_at_a_byte_budget_and_pages_through_everything_once(backend: Backend):
    """A page of large traces is bounded in size, not only in count: readers hold one page at a time."""
    for i in range(6):
        await backend.traces.insert_traces([record(id=f"big-{i}", input="é" * 5000)])  # 5,000 characters, not ASCII
    everything = await all_events(backend)
    budget = 12_000  # two and a bit of these bodies: each page ends with the event that reaches it
    pages, after, upto = [], 0, everything[-1].seq
    while after < upto:
        page = await backend.events.events_after(after, upto, 100, max_bytes=budget)
        pages.append(page)
        after = page[-1].seq if may_continue(page, 100, budget) else upto
    assert [len(page) for page in pages] == [3, 3]
    assert [event.seq for page in pages for event in page] == [event.seq for event in everything]
    one = await backend.events.events_after(0, upto, 100, max_bytes=1)
    assert [event.seq for event in one] == [everything[0].seq]  # never empty while events remain


async def test_events_after_keeps_only_the_events_a_filter_asks_for(backend: Backend):
    await backend.traces.insert_traces([
        record("alice", id="a-gpt", model="gpt-4"),
        record("alice", id="a-claude", model="claude", status="running"),
        record("bob", id="b-gpt", model="gpt-4"),
    ])

    async def ids(**which) -> list[str]:
        return [json.loads(event.body)["id"] for event in await all_events(backend, which=EventFilter(**which))]

    assert await ids(user_id="alice") == ["a-gpt", "a-claude"]
    assert await ids(user_id="alice", model="gpt-4") == ["a-gpt"]
    assert await ids(model="gpt-4") == ["a-gpt", "b-gpt"]
    assert await ids(status="running") == ["a-claude"]
    assert await ids(user_id="bob", status="running") == []


async def test_bounds_start_empty_and_the_watermark_follows_the_newest_event(backend: Backend):
    empty = await backend.events.bounds()
    assert empty.floor == empty.watermark
    await backend.traces.insert_traces([record(id="t-1"), record(id="t-2")])
    bounds = await backend.events.bounds()
    events = await backend.events.events_after(empty.watermark, bounds.watermark, 100)
    assert bounds.floor <= empty.watermark < bounds.watermark == events[-1].seq
    assert len(events) == 2


async def test_events_beyond_the_replay_window_are_pruned_and_the_rest_kept(backends: Backends):
    backend = await backends.open(StoreOptions(replay_events=5, replay_seconds=0))
    written = []
    for batch in range(12):  # far more events than replay_events, and than any backend's pruning interval
        records = [record(id=f"t-{batch}-{i}") for i in range(100)]
        await backend.traces.insert_traces(records)
        written += records
    bounds = await backend.events.bounds()
    assert 0 < bounds.floor < bounds.watermark
    kept = await backend.events.events_after(bounds.floor, bounds.watermark, 10_000)
    assert len(kept) >= 5 and kept[-1].seq == bounds.watermark
    assert [json.loads(event.body) for event in kept] == written[-len(kept):]


async def test_a_waiting_reader_wakes_as_soon_as_a_trace_is_written(backend: Backend):
    start = (await backend.events.bounds()).watermark
    waiter = asyncio.create_task(backend.events.wait_for_events(start, timeout=60))
    await asyncio.sleep(0)  # one turn of the loop, so the reader is waiting before the write
    assert not waiter.done()
    await backend.traces.insert_traces([record()])
    await asyncio.wait_for(waiter, timeout=5)
    assert (await backend.events.bounds()).watermark > start


async def test_a_reader_behind_the_watermark_is_not_kept_waiting(backend: Backend):
    await backend.traces.insert_traces([record()])
    await asyncio.wait_for(backend.events.wait_for_events(0, timeout=60), timeout=5)


async def test_a_waiting_reader_returns_after_its_timeout_when_nothing_is_written(backend: Backend):
    await backend.traces.insert_traces([record()])
    watermark = (await backend.events.bounds()).watermark
    waiter = asyncio.create_task(backend.events.wait_for_events(watermark, timeout=0.2))
    await asyncio.sleep(0)  # one turn of the loop: a reader at the watermark waits rather than returning at once...
    assert not waiter.done()
    await asyncio.wait_for(waiter, timeout=5)  # ...and, nothing written, returns by itself (5 s: a hang guard)
    assert (await backend.events.bounds()).watermark == watermark


# Tickets


async def test_a_ticket_is_spent_once(backend: Backend):
    expires_at = time.time() + 60
    assert await backend.tickets.spend_ticket("ticket-1", expires_at) is True
    assert await backend.tickets.spend_ticket("ticket-1", expires_at) is False
    assert await backend.tickets.spend_ticket("ticket-2", expires_at) is True


# Durability


async def test_traces_events_and_tickets_survive_a_restart(backend: Backend, reopen):
    trace = record(id="t-1", status="running")
    await backend.traces.insert_traces([trace])
    done = changed(trace, status="success")
    await backend.traces.replace_trace(done, expected_updated_at=trace["updated_at"])
    await backend.tickets.spend_ticket("ticket-1", time.time() + 60)
    before, events = await backend.events.bounds(), await all_events(backend)

    backend = await reopen(backend)
    assert await backend.traces.get_trace("alice", "t-1") == done
    assert await listed_ids(backend) == ["t-1"]
    assert (await backend.events.bounds()).watermark == before.watermark
    assert await all_events(backend) == events
    assert await backend.tickets.spend_ticket("ticket-1", time.time() + 60) is False
    await asyncio.wait_for(backend.events.wait_for_events(0, timeout=60), timeout=5)

    await backend.traces.insert_traces([record(id="t-2")])
    [new] = await all_events(backend, after=before.watermark)
    assert new.seq > before.watermark and json.loads(new.body)["id"] == "t-2"


async def test_two_processes_on_one_storage_share_traces_events_and_tickets(backends: Backends):
    one, other = await backends.open(), await backends.open()
    trace = record(id="t-1")
    await one.traces.insert_traces([trace])
    assert await other.traces.get_trace("alice", "t-1") == trace
    assert await all_events(other) == await all_events(one)
    with pytest.raises(DuplicateTraceError):  # the id is taken for alice, whichever process writes it
        await other.traces.insert_traces([record("alice", id="t-1")])
    assert await one.tickets.spend_ticket("ticket-1", time.time() + 60) is True
    assert await other.tickets.spend_ticket("ticket-1", time.time() + 60) is False
