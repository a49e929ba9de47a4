"""TraceWriter, the one write path, over real backends (every backend the store contract tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from dashboard.schema import EventKind, TraceCreate, TracePatch
from dashboard.server import writes
from dashboard.server.metrics import Metrics
from dashboard.server.records import TRACE_FIELDS
from dashboard.server.stores import (
    Backend,
    DuplicateTraceError,
    Record,
    StoredEvent,
    StoreOptions,
    TraceQuery,
    TraceStore,
)
from dashboard.server.writes import MAX_ATTEMPTS, TraceWriter, WriteConflict

from .stores.test_store_contract import Backends

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres", "supabase"])
STARTED = "2025-01-01T00:00:00.000000Z"
ENDED = "2025-01-01T00:00:01.500000Z"


@pytest.fixture
async def backend(db_url: str, store_options: StoreOptions) -> AsyncIterator[Backend]:
    backends = Backends(db_url, store_options)
    try:
        yield await backends.open()
    finally:
        await backends.close_all()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def writer(backend: Backend, metrics: Metrics) -> TraceWriter:
    return TraceWriter(backend.traces, metrics)


class WatchedStore:
    """The real store, counting compare-and-set attempts; with ``refuse=True`` every one of them fails."""

    def __init__(self, store: TraceStore, *, refuse: bool = False) -> None:
        self.store = store
        self.refuse = refuse
        self.replace_attempts = 0

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    async def replace_trace(self, record: Record, *, expected_updated_at: str) -> bool:
        self.replace_attempts += 1
        return not self.refuse and await self.store.replace_trace(record, expected_updated_at=expected_updated_at)


def written(metrics: Metrics, kind: str) -> float:
    return metrics.registry.get_sample_value("traces_written_total", {"kind": kind}) or 0


async def events_since(backend: Backend, after: int) -> list[StoredEvent]:
    watermark = (await backend.events.bounds()).watermark
    return await backend.events.events_after(after, watermark, 10_000)


async def watermark(backend: Backend) -> int:
    return (await backend.events.bounds()).watermark


# create


async def test_create_returns_whole_records_owned_by_the_caller(writer: TraceWriter, backend: Backend, metrics: Metrics):
    sent = [TraceCreate(name="a"), TraceCreate(name="b", user_id="mallory"),
            TraceCreate(id="mine", input_tokens=2, output_tokens=3)]
    records = await writer.create("alice", sent)
    assert [set(r) for r in records] == [set(TRACE_FIELDS)] * 3
    assert [r["user_id"] for r in records] == ["alice"] * 3
    generated = {records[0]["id"], records[1]["id"]}
    assert len(generated) == 2 and "mine" not in generated and all(generated)
    assert records[2]["id"] == "mine" and records[2]["total_tokens"] == 5
    assert all(r["status"] == "pending" and r["created_at"] == r["updated_at"] for r in records)
    for r in records:
        assert await backend.traces.get_trace("alice", r["id"]) == r
    assert await backend.traces.get_trace("mallory", records[1]["id"]) is None
    assert written(metrics, "insert") == 3


async def test_create_with_a_taken_id_stores_none_of_the_batch(writer: TraceWriter, backend: Backend):
    await writer.create("alice", [TraceCreate(id="taken")])
    with pytest.raises(DuplicateTraceError):
        await writer.create("alice", [TraceCreate(id="fresh"), TraceCreate(id="taken")])
    assert await backend.traces.get_trace("alice", "fresh") is None


async def test_an_id_another_user_has_is_free_for_each_user(writer: TraceWriter, backend: Backend):
    [bobs] = await writer.create("bob", [TraceCreate(id="taken", name="bob's")])
    [alices] = await writer.create("alice", [TraceCreate(id="taken", name="alice's")])
    assert await backend.traces.get_trace("bob", "taken") == bobs
    assert await backend.traces.get_trace("alice", "taken") == alices


# update


async def test_update_changes_only_the_fields_sent(writer: TraceWriter, backend: Backend, metrics: Metrics):
    [trace] = await writer.create("alice", [TraceCreate(
        id="t", name="chat", model="gpt-4", input="q", input_tokens=10, output_tokens=5, error="oops", metadata={"a": 1})])
    updated = await writer.update("alice", "t", TracePatch(status="success", output="answer", error=None))
    assert updated == {**trace, "status": "success", "output": "answer", "error": None,
                       "updated_at": updated["updated_at"]}
    assert updated["updated_at"] > trace["updated_at"]
    assert await backend.traces.get_trace("alice", "t") == updated
    assert written(metrics, "update") == 1


async def test_update_derives_total_tokens_and_latency(writer: TraceWriter):
    await writer.create("alice", [TraceCreate(id="t", input_tokens=10, output_tokens=5)])
    updated = await writer.update("alice", "t", TracePatch(output_tokens=7))
    assert updated["total_tokens"] == 17
    updated = await writer.update("alice", "t", TracePatch(started_at=STARTED, ended_at=ENDED))
    assert updated["latency_ms"] == 1500.0
    updated = await writer.update("alice", "t", TracePatch(total_tokens=100))
    assert updated["total_tokens"] == 100


async def test_update_of_a_missing_or_another_users_trace_returns_none(writer: TraceWriter, backend: Backend):
    [bobs] = await writer.create("bob", [TraceCreate(id="t", name="bob's")])
    before = await watermark(backend)
    assert await writer.update("alice", "t", TracePatch(name="taken over")) is None
    assert await writer.update("alice", "no-such-id", TracePatch(name="x")) is None
    assert await backend.traces.get_trace("bob", "t") == bobs
    assert await events_since(backend, before) == []


async def test_updated_at_moves_forward_even_within_one_microsecond(writer: TraceWriter, monkeypatch):
    monkeypatch.setattr(writes, "now_iso", lambda: STARTED)  # a clock that never moves
    [trace] = await writer.create("alice", [TraceCreate(id="t")])
    first = await writer.update("alice", "t", TracePatch(name="first"))
    second = await writer.update("alice", "t", TracePatch(name="second"))
    assert trace["updated_at"] < first["updated_at"] < second["updated_at"]
    assert second["name"] == "second"


async def test_concurrent_updates_to_one_trace_never_lose_one(backend: Backend, metrics: Metrics):
    store = WatchedStore(backend.traces)
    writer = TraceWriter(store, metrics)
    await writer.create("alice", [TraceCreate(id="t")])
    before = await watermark(backend)
    patches = [
        TracePatch(name="chat"), TracePatch(model="gpt-4"), TracePatch(provider="openai"), TracePatch(status="success"),
        TracePatch(started_at=STARTED), TracePatch(ended_at=ENDED), TracePatch(input_tokens=1),
        TracePatch(output_tokens=2), TracePatch(cost_usd=0.5), TracePatch(input="q"), TracePatch(output="a"),
        TracePatch(error="none"), TracePatch(metadata={"k": "v"}),
    ]
    await asyncio.gather(*(writer.update("alice", "t", patch) for patch in patches))

    final = await backend.traces.get_trace("alice", "t")
    for patch in patches:
        for field, value in patch.model_dump(mode="json", exclude_unset=True).items():
            assert final[field] == value, f"the update of {field} was lost"
    assert final["total_tokens"] == 3 and final["latency_ms"] == 1500.0
    events = await events_since(backend, before)
    assert [event.kind for event in events] == [EventKind.trace_update] * len(patches)
    assert json.loads(events[-1].body) == final
    assert store.replace_attempts > len(patches)  # writers did collide, and retried
    assert written(metrics, "update") == len(patches)


async def test_update_gives_up_with_write_conflict_when_the_trace_keeps_changing(backend: Backend, metrics: Metrics):
    store = WatchedStore(backend.traces, refuse=True)
    writer = TraceWriter(store, metrics)
    [trace] = await writer.create("alice", [TraceCreate(id="t")])
    with pytest.raises(WriteConflict):
        await writer.update("alice", "t", TracePatch(name="never"))
    assert store.replace_attempts == MAX_ATTEMPTS
    assert await backend.traces.get_trace("alice", "t") == trace


# upsert


async def test_upsert_of_a_new_id_inserts_it(writer: TraceWriter, backend: Backend):
    before = await watermark(backend)
    record = await writer.upsert("alice", TraceCreate(id="span-1", name="llm", status="running"))
    assert record["id"] == "span-1" and record["user_id"] == "alice" and record["status"] == "running"
    assert await backend.traces.get_trace("alice", "span-1") == record
    [event] = await events_since(backend, before)
    assert event.kind == EventKind.trace and json.loads(event.body) == record


async def test_upsert_without_an_id_inserts_with_a_generated_one(writer: TraceWriter, backend: Backend):
    record = await writer.upsert("alice", TraceCreate(name="llm"))
    assert record["id"] and await backend.traces.get_trace("alice", record["id"]) == record


async def test_upsert_of_the_users_existing_id_updates_it_with_the_fields_sent(writer: TraceWriter, backend: Backend):
    start = await writer.upsert("alice", TraceCreate(id="span-1", name="llm", status="running", started_at=STARTED))
    before = await watermark(backend)
    end = await writer.upsert("alice", TraceCreate(id="span-1", status="success", ended_at=ENDED, output="done"))
    assert end == {**start, "status": "success", "ended_at": ENDED, "output": "done", "latency_ms": 1500.0,
                   "updated_at": end["updated_at"]}
    [event] = await events_since(backend, before)
    assert event.kind == EventKind.trace_update and json.loads(event.body) == end
    page = await backend.traces.list_traces("alice", TraceQuery())
    assert [trace.id for trace in page.traces] == ["span-1"]


async def test_upsert_of_an_id_another_user_has_makes_the_users_own_trace_and_leaves_theirs(writer: TraceWriter,
                                                                                             backend: Backend):
    [bobs] = await writer.create("bob", [TraceCreate(id="span-1", name="bob's")])
    alices = await writer.upsert("alice", TraceCreate(id="span-1", name="alice's"))
    assert alices["user_id"] == "alice" and alices["name"] == "alice's"
    assert await backend.traces.get_trace("bob", "span-1") == bobs
