"""What only PostgreSQL has: transactions that commit out of order, roll back or stay open; writers that
bypass the API (plain SQL, as supabase-js or psql would write); and an ``llm_traces`` that existed before,
with ``uuid`` ids and rows in it. Each test runs on its own database of the test PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import psycopg
import pytest

from dashboard.schema import TraceCreate
from dashboard.server.records import new_record
from dashboard.server.stores import Backend, InvalidValue, StoreOptions, TraceQuery, open_backend
from dashboard.server.stores.pg_schema import MIGRATIONS

# The PostgreSQL store, and the Supabase store over the same schema (its servers played by the stand-in):
# both number events in the database, so what commits out of order is theirs to get right.
SEQUENCED = pytest.mark.parametrize("store", ["postgres", "supabase"])
POSTGRES = pytest.mark.parametrize("store", ["postgres"])


@pytest.fixture
async def backend(db_url: str, store_options: StoreOptions):
    opened = open_backend(db_url, store_options)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def sql(database_url: str):
    """Connections of a writer that is not the API (each its own transactions)."""
    connections: list[psycopg.AsyncConnection] = []

    async def connect() -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        connections.append(conn)
        return conn

    yield connect
    for conn in connections:
        await conn.close()


def api_record(trace_id: str, user: str = "alice") -> dict:
    return new_record(user, TraceCreate(id=trace_id, name=trace_id, model="gpt-4o", status="running"),
                      "2026-12-01T10:00:00.000000Z")


async def direct_insert(conn: psycopg.AsyncConnection, trace_id: str, user: str = "alice") -> None:
    await conn.execute("INSERT INTO llm_traces (id, user_id, name, model, status) VALUES (%s, %s, %s, 'gpt-4o', 'running')",
                       (trace_id, user, trace_id))


async def follow(backend: Backend, after: int, count: int, timeout: float = 10) -> list[tuple[int, str, str]]:
    """Read as a stream does: up to the watermark, then wait; the next ``count`` events as (seq, kind, id)."""
    got: list[tuple[int, str, str]] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            watermark = (await backend.events.bounds()).watermark
            for event in await backend.events.events_after(after, watermark, 1000):
                got.append((event.seq, event.kind.value, json.loads(event.body)["id"]))
                after = event.seq
            if len(got) < count:
                await backend.events.wait_for_events(after, timeout=1)
    return got


@SEQUENCED
async def test_a_transaction_that_commits_late_is_read_in_order_and_not_skipped(backend, sql):
    late, early = await sql(), await sql()
    await late.execute("BEGIN")
    await direct_insert(late, "late")  # takes the first outbox row, commits last
    await early.execute("BEGIN")
    await direct_insert(early, "early")
    await early.execute("COMMIT")
    first = await follow(backend, 0, 1)
    assert [trace_id for _, _, trace_id in first] == ["early"]
    await late.execute("COMMIT")
    second = await follow(backend, first[-1][0], 1)
    assert [trace_id for _, _, trace_id in second] == ["late"]
    assert second[0][0] > first[0][0]  # ids only grow: a reader taking "above the last one seen" misses nothing


@SEQUENCED
async def test_concurrent_writers_through_the_api_and_around_it_are_all_read_once_in_id_order(backend, sql):
    connections = [await sql() for _ in range(4)]

    async def direct(conn, n):
        for i in range(25):
            async with conn.transaction():
                await direct_insert(conn, f"sql-{n}-{i}")

    async def api(n):
        for i in range(25):
            await backend.traces.insert_traces([api_record(f"api-{n}-{i}")])

    reader = asyncio.create_task(follow(backend, 0, 200, timeout=30))
    await asyncio.gather(*(direct(conn, n) for n, conn in enumerate(connections)), *(api(n) for n in range(4)))
    events = await reader
    ids = [seq for seq, _, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert len({trace_id for _, _, trace_id in events}) == 200


@SEQUENCED
async def test_a_rolled_back_write_leaves_no_hole_to_wait_on(backend, sql):
    rolled, other = await sql(), await sql()
    await rolled.execute("BEGIN")
    await direct_insert(rolled, "never")
    await direct_insert(other, "kept")
    await rolled.execute("ROLLBACK")
    began = time.monotonic()
    assert [trace_id for _, _, trace_id in await follow(backend, 0, 1)] == ["kept"]
    assert time.monotonic() - began < 1.0
    await backend.traces.insert_traces([api_record("after")])
    assert [trace_id for _, _, trace_id in await follow(backend, 1, 1)] == ["after"]


@SEQUENCED
async def test_a_long_open_transaction_holds_back_only_its_own_events(backend, sql):
    long = await sql()
    await long.execute("BEGIN")
    await direct_insert(long, "slow")
    began = time.monotonic()
    for i in range(20):
        await backend.traces.insert_traces([api_record(f"quick-{i}")])
    quick = await follow(backend, 0, 20)
    assert time.monotonic() - began < 5.0
    assert [trace_id for _, _, trace_id in quick] == [f"quick-{i}" for i in range(20)]
    await long.execute("COMMIT")
    assert [trace_id for _, _, trace_id in await follow(backend, quick[-1][0], 1)] == ["slow"]


@SEQUENCED
async def test_direct_inserts_and_updates_are_events_like_the_apis(backend, sql):
    conn = await sql()
    await direct_insert(conn, "d-1")
    await conn.execute("UPDATE llm_traces SET status = 'success', latency_ms = 812 WHERE id = 'd-1'")
    events = await follow(backend, 0, 2)
    assert [(kind, trace_id) for _, kind, trace_id in events] == [("trace", "d-1"), ("trace_update", "d-1")]
    trace = await backend.traces.get_trace("alice", "d-1")
    assert (trace["status"], trace["latency_ms"], trace["metadata"]) == ("success", 812.0, {})
    assert trace["updated_at"] > trace["created_at"]  # moved forward though the writer did not set it
    [later] = await backend.events.events_after(events[0][0], events[1][0], 10)
    assert json.loads(later.body)["status"] == "success"


@SEQUENCED
async def test_another_users_direct_write_is_in_no_stream_of_alice(backend, sql):
    await direct_insert(await sql(), "bobs", user="bob")
    await backend.traces.insert_traces([api_record("alices")])
    watermark = (await backend.events.bounds()).watermark
    from dashboard.server.stores import EventFilter

    mine = await backend.events.events_after(0, watermark, 100, EventFilter(user_id="alice"))
    assert [json.loads(event.body)["id"] for event in mine] == ["alices"]
    assert await backend.traces.get_trace("alice", "bobs") is None


@POSTGRES
async def test_an_existing_table_with_uuid_ids_is_adopted_without_a_row_rewritten(db_url):
    existing = [uuid.uuid4() for _ in range(3)]
    alice = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("""CREATE TABLE llm_traces (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL, name text, model text,
            status text NOT NULL DEFAULT 'pending', latency_ms double precision, created_at timestamptz DEFAULT now())""")
        for n, trace_id in enumerate(existing):
            await conn.execute("INSERT INTO llm_traces (id, user_id, name, model, status, created_at) "
                               "VALUES (%s, %s, %s, 'gpt-4o', 'success', now() - make_interval(mins => %s))",
                               (trace_id, alice, f"old-{n}", 10 - n))
        before = await (await conn.execute("SELECT ctid, xmin::text FROM llm_traces ORDER BY id")).fetchall()
    backend = open_backend(db_url, StoreOptions())
    await backend.open()
    try:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            after = await (await conn.execute("SELECT ctid, xmin::text FROM llm_traces ORDER BY id")).fetchall()
        assert after == before  # the same row versions: nothing rewritten
        page = await backend.traces.list_traces(str(alice), TraceQuery())
        assert [trace.name for trace in page.traces] == ["old-2", "old-1", "old-0"]
        fresh = str(uuid.uuid4())
        await backend.traces.insert_traces([api_record(fresh, user=str(alice))])
        assert (await backend.traces.get_trace(str(alice), fresh))["id"] == fresh
        with pytest.raises(InvalidValue):
            await backend.traces.insert_traces([api_record("not-a-uuid", user=str(alice))])
        with pytest.raises(InvalidValue):
            await backend.traces.insert_traces([api_record(str(uuid.uuid4()), user="alice")])
        assert await backend.traces.get_trace(str(alice), "not-a-uuid") is None
        assert (await backend.traces.list_traces("alice", TraceQuery())).traces == []
    finally:
        await backend.close()


@POSTGRES
async def test_processes_starting_together_apply_the_schema_once(db_url):
    backends = [open_backend(db_url, StoreOptions()) for _ in range(4)]
    await asyncio.gather(*(backend.open() for backend in backends))
    try:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            rows = await (await conn.execute("SELECT version FROM traces_schema_migrations ORDER BY version")).fetchall()
        assert rows == [(version,) for version, _, _ in MIGRATIONS]  # each once
    finally:
        await asyncio.gather(*(backend.close() for backend in backends))


@POSTGRES
async def test_streams_lose_nothing_when_postgresql_restarts(make_api, postgres_server):
    from dashboard.client import TraceEvent, TraceStream

    api = make_api(ping_interval=0.5)
    received: list[str] = []

    async def post(trace_id: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(api.url + "/api/traces", headers=api.headers("alice"), json={"id": trace_id})
            assert response.status_code == 201, response.text

    async with TraceStream(api.url, api.token("alice"), last_event_id=0, initial_backoff=0.1, max_backoff=0.5) as stream:
        events = aiter(stream)

        async def take(count: int) -> None:
            async with asyncio.timeout(30):
                while count:
                    event = await anext(events)
                    if isinstance(event, TraceEvent):
                        received.append(event.trace["id"])
                        count -= 1

        await post("before")
        await take(1)
        await asyncio.to_thread(postgres_server.restart)
        for i in range(5):
            await post(f"after-{i}")
        await take(5)
    assert received == ["before", *(f"after-{i}" for i in range(5))]
