"""What only the Supabase backend has: one Realtime channel per process as a wake-up that may lose
messages, drop the channel or refuse it, and a project that may lack the pasted SQL. Supabase's servers
are played by the stand-in (``tests/supabase_standin``) over the test PostgreSQL; the store contract
and the out-of-order commits run on it too (``test_store_contract.py``, ``test_postgres.py``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dashboard.server.stores import StoreError, StoreOptions, open_backend

from ...streams import open_stream, post_trace
from ...supabase_standin import SupabaseStandIn, service_key

ON_SUPABASE = pytest.mark.parametrize("store", ["supabase"])  # for the fixtures that make an API or a backend


async def test_without_the_project_named_the_backend_says_what_is_missing():
    with pytest.raises(StoreError, match="SUPABASE_URL .* SUPABASE_KEY"):
        open_backend("supabase", StoreOptions())


async def test_a_project_without_the_pasted_sql_is_refused_with_the_command_to_run(postgres_server):
    with SupabaseStandIn(postgres_server.new_database(), service_key()) as bare:
        backend = open_backend("supabase", StoreOptions(supabase_url=bare.url, supabase_key=bare.service_key))
        with pytest.raises(StoreError, match="python -m dashboard supabase-sql"):
            await backend.open()


async def test_a_wrong_key_is_refused_when_the_api_starts(supabase):
    wrong = service_key("another secret, long enough for HS256 keys")
    backend = open_backend("supabase", StoreOptions(supabase_url=supabase.url, supabase_key=wrong))
    with pytest.raises(StoreError):
        await backend.open()


@ON_SUPABASE
async def test_one_realtime_channel_serves_every_stream_of_a_process(make_api, supabase):
    api = make_api()
    await asyncio.to_thread(supabase.realtime.wait_for_joins, 1, 10)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        async with open_stream(client, headers=api.headers("alice")) as one, \
                open_stream(client, headers=api.headers("bob")) as two, \
                open_stream(client, headers=api.headers("alice"), params={"model": "gpt-4o"}) as three:
            for stream in (one, two, three):
                await stream.next("subscribed")
            await post_trace(client, api.headers("alice"), id="t-1", model="gpt-4o")
            await post_trace(client, api.headers("bob"), id="t-2", model="gpt-4o")
            assert [trace["id"] for _, _, trace in await one.traces(1)] == ["t-1"]
            assert [trace["id"] for _, _, trace in await two.traces(1)] == ["t-2"]
            assert [trace["id"] for _, _, trace in await three.traces(1)] == ["t-1"]
    assert supabase.realtime.joins == 1


@ON_SUPABASE
async def test_writes_around_the_api_reach_streams_when_realtime_loses_every_message(make_api, supabase, database_url):
    api = make_api()
    supabase.realtime.drop_messages(True)  # Realtime promises no delivery: the sweep reads what it never announced
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        async with open_stream(client, headers=api.headers("alice")) as stream:
            await stream.next("subscribed")
            await direct_insert(database_url, "around-1")
            await post_trace(client, api.headers("alice"), id="through-1")
            await direct_insert(database_url, "around-2")
            got = await stream.traces(3)
    assert sorted(trace["id"] for _, _, trace in got) == ["around-1", "around-2", "through-1"]
    assert [seq for seq, _, _ in got] == sorted(seq for seq, _, _ in got)


@ON_SUPABASE
@pytest.mark.parametrize("fault", ["channel error", "socket closed"])
async def test_a_lost_channel_ends_streams_with_an_error_and_they_resume_losing_nothing(make_api, supabase, fault):
    api = make_api()
    await asyncio.to_thread(supabase.realtime.wait_for_joins, 1, 10)
    alice = api.headers("alice")
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        async with open_stream(client, headers=alice) as stream:
            await stream.next("subscribed")
            await post_trace(client, alice, id="before")
            [(last, _, _)] = await stream.traces(1)
            supabase.realtime.error_channels() if fault == "channel error" else supabase.realtime.close_sockets()
            error = await stream.next("error")
            assert "Realtime" in error.data
        for i in range(3):  # written while the channel is down: PostgREST still takes them
            await post_trace(client, alice, id=f"during-{i}")
        await asyncio.to_thread(supabase.realtime.wait_for_joins, 2, 20)  # the process subscribed again by itself
        async with open_stream(client, headers={**alice, "Last-Event-ID": str(last)}) as stream:
            await stream.next("subscribed")
            await post_trace(client, alice, id="after")
            got = await stream.traces(4)
    assert [trace["id"] for _, _, trace in got] == ["during-0", "during-1", "during-2", "after"]
    assert [seq for seq, _, _ in got] == sorted(seq for seq, _, _ in got) and got[0][0] > last


@ON_SUPABASE
async def test_a_refused_channel_leaves_the_api_serving_from_the_sweep(make_api, supabase):
    supabase.realtime.refuse_joins(True)
    api = make_api()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        async with open_stream(client, headers=api.headers("alice")) as stream:
            await stream.next("subscribed")
            await post_trace(client, api.headers("alice"), id="swept")
            assert [trace["id"] for _, _, trace in await stream.traces(1)] == ["swept"]
    supabase.realtime.refuse_joins(False)


@ON_SUPABASE
async def test_closing_the_backend_leaves_the_channel_and_no_task_behind(db_url, store_options, supabase):
    before = asyncio.all_tasks()
    backend = open_backend(db_url, store_options)
    await backend.open()
    await asyncio.to_thread(supabase.realtime.wait_for_joins, 1, 10)
    started = asyncio.all_tasks() - before - {asyncio.current_task()}
    await backend.close()
    if started:  # tasks the client cancelled on close end as soon as they run their cancellation
        await asyncio.wait(started, timeout=0.5)
    left = {task for task in asyncio.all_tasks() - before if not task.done()} - {asyncio.current_task()}
    assert left == set(), [task.get_name() for task in left]


async def direct_insert(database_url: str, trace_id: str) -> None:
    """A writer that bypasses the API (supabase-js or psql in the audited app)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO llm_traces (id, user_id, name, status) VALUES (%s, 'alice', %s, 'running')",
                           (trace_id, trace_id))
