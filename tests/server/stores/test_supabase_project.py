"""The Supabase backend against a real Supabase project, when one is named: ``SUPABASE_URL`` and
``SUPABASE_KEY`` (its service-role key), with the output of ``python -m dashboard supabase-sql`` pasted
once into its SQL editor. Skipped otherwise (this machine has no network): the stand-in tests
(``test_supabase.py``) run the same adapter against a local imitation of the two servers.

    SUPABASE_URL=https://<project>.supabase.co SUPABASE_KEY=<service role key> \\
        .venv/bin/python -m pytest tests/server/stores/test_supabase_project.py

It writes one trace of a fresh random user and deletes it at the end.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from dashboard.schema import TraceCreate, now_iso
from dashboard.server.records import new_record
from dashboard.server.stores import StoreOptions, TraceQuery, open_backend

from ...support import wait_until

URL, KEY = os.environ.get("SUPABASE_URL"), os.environ.get("SUPABASE_KEY")
pytestmark = pytest.mark.skipif(not (URL and KEY), reason="no real Supabase project named: set SUPABASE_URL and "
                                "SUPABASE_KEY (service role) of a project with `python -m dashboard supabase-sql` pasted")


@pytest.fixture
async def backend():
    opened = open_backend("supabase", StoreOptions(supabase_url=URL, supabase_key=KEY))
    await opened.open()
    yield opened
    await opened.close()


async def test_a_trace_is_stored_read_back_listed_and_numbered_as_an_event_and_realtime_joins(backend):
    store = backend.traces
    user, trace_id = str(uuid.uuid4()), str(uuid.uuid4())
    before = (await backend.events.bounds()).watermark
    try:
        record = new_record(user, TraceCreate(id=trace_id, name="live-traces check", model="check", status="running"),
                            now_iso())
        await store.insert_traces([record])
        assert (await store.get_trace(user, trace_id))["name"] == "live-traces check"
        assert [trace.id for trace in (await store.list_traces(user, TraceQuery())).traces] == [trace_id]
        watermark = (await backend.events.bounds()).watermark
        events = await backend.events.events_after(before, watermark, 1000)
        assert [json.loads(event.body)["id"] for event in events if event.user_id == user] == [trace_id]
        await wait_until(lambda: store.realtime.subscribed, timeout=30)  # the project's Realtime took the channel
        assert await backend.tickets.spend_ticket(f"check-{trace_id}", 0.0)
        assert not await backend.tickets.spend_ticket(f"check-{trace_id}", 0.0)
    finally:
        await store.client.table("llm_traces").delete().eq("id", trace_id).execute()
