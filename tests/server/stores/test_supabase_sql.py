"""``python -m dashboard supabase-sql``, applied to the real PostgreSQL the tests start, made to look as a
Supabase project does (its roles, ``auth.uid()``, default grants, the Realtime publication): a user's own
token reads only their rows, the API's tables stay closed, and a direct insert reaches the streams."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import psycopg
import pytest

from dashboard.server.stores import StoreOptions, open_backend

from ...supabase_standin import SUPABASE_LOOK

pytestmark = pytest.mark.parametrize("store", ["postgres"])

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())


def printed_sql() -> str:
    done = subprocess.run([sys.executable, "-m", "dashboard", "supabase-sql"], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
async def project(db_url: str) -> str:
    """A database that looks like a Supabase project, with the printed SQL pasted (twice: it is safe to rerun)."""
    sql = printed_sql()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(SUPABASE_LOOK)
        await conn.execute(sql)
        await conn.execute(sql)
        for user, name in ((ALICE, "alices"), (BOB, "bobs")):
            await conn.execute("INSERT INTO llm_traces (user_id, name, status) VALUES (%s, %s, 'success')", (user, name))
    return db_url


async def as_user(conn: psycopg.AsyncConnection, role: str, sub: str | None = None) -> None:
    await conn.execute(f"SET ROLE {role}")
    if sub is not None:
        await conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": sub, "role": role}),))


async def test_a_users_own_token_reads_only_their_rows_and_nothing_of_the_apis(project):
    async with await psycopg.AsyncConnection.connect(project, autocommit=True) as conn:
        await as_user(conn, "authenticated", ALICE)
        names = [row[0] for row in await (await conn.execute("SELECT name FROM llm_traces")).fetchall()]
        assert names == ["alices"]
        assert await (await conn.execute("SELECT count(*) FROM traces_outbox")).fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT traces_sequence_events()")
    async with await psycopg.AsyncConnection.connect(project, autocommit=True) as conn:
        await as_user(conn, "anon")
        assert await (await conn.execute("SELECT count(*) FROM llm_traces")).fetchone() == (0,)


async def test_the_outbox_is_in_the_realtime_publication(project):
    async with await psycopg.AsyncConnection.connect(project) as conn:
        tables = await (await conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'")).fetchall()
    assert tables == [("traces_outbox",)]


async def test_a_direct_insert_with_a_users_token_or_the_service_role_is_streamed(project):
    backend = open_backend(project, StoreOptions())  # the API on this project, by its database URL
    await backend.open()
    try:
        start = (await backend.events.bounds()).watermark
        async with await psycopg.AsyncConnection.connect(project, autocommit=True) as conn:
            # As the audited app does with supabase-js and a user's token, under a policy of the app's own.
            await conn.execute("CREATE POLICY app_inserts ON llm_traces FOR INSERT TO authenticated "
                               "WITH CHECK (user_id::text = auth.uid()::text)")
            await as_user(conn, "authenticated", ALICE)
            await conn.execute("INSERT INTO llm_traces (user_id, name, status) VALUES (%s, 'from-the-browser', 'running')",
                               (ALICE,))
            await conn.execute("RESET ROLE")
            await as_user(conn, "service_role")
            await conn.execute("INSERT INTO llm_traces (user_id, name, status) VALUES (%s, 'from-a-service', 'running')",
                               (ALICE,))
        async with asyncio.timeout(10):
            while (await backend.events.bounds()).watermark < start + 2:
                await backend.events.wait_for_events(start, 1)
        events = await backend.events.events_after(start, start + 2, 10)
        assert [json.loads(event.body)["name"] for event in events] == ["from-the-browser", "from-a-service"]
        assert {event.user_id for event in events} == {ALICE}
    finally:
        await backend.close()
