"""The store failing under open streams, end to end on real uvicorn: what a client sees, and how it resumes.

The traces and tickets live in a real SQLite store; the event log is that store's, wrapped so the test
can make it fail (every read raises ``StoreError``) and recover, as a database going away and back would.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.config import Settings
from dashboard.server import create_app
from dashboard.server.runner import build_server
from dashboard.server.stores import EVERY_EVENT, Backend, EventBounds, EventFilter, StoredEvent, StoreError
from dashboard.server.stores.sqlite import SQLiteStore

from ..streams import StreamReader, open_stream, post_trace
from ..support import ThreadedApi, wait_until
from ..support import test_settings as settings_in  # (a test_* name here would be collected as a test)


class SwitchableEventLog:
    """A test stand-in for an ``EventLog``: the real SQLite store's log, which the test can switch into
    failing (``bounds``, ``events_after`` and ``wait_for_events`` raise ``StoreError``) and back.

    ``fail`` and ``recover`` are coroutines to run on the server's loop (``api.call``).
    """

    def __init__(self, real: SQLiteStore) -> None:
        self.real = real
        self.failing = False
        self._switched = asyncio.Event()

    async def fail(self) -> None:
        self.failing = True
        self._switched.set()  # a follower waiting for events notices at once, as on a dropped connection

    async def recover(self) -> None:
        self.failing = False

    def _check(self) -> None:
        if self.failing:
            raise StoreError("the database failed: connection refused")

    async def bounds(self) -> EventBounds:
        self._check()
        return await self.real.bounds()

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        self._check()
        return await self.real.events_after(after, upto, limit, which, max_bytes)

    async def wait_for_events(self, after: int, timeout: float) -> None:
        self._check()
        self._switched.clear()
        waits = [asyncio.ensure_future(self.real.wait_for_events(after, timeout)),
                 asyncio.ensure_future(self._switched.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._check()


class ThreadedApiOver(ThreadedApi):
    """``ThreadedApi`` (real uvicorn on loopback, in a thread) over a backend the test built."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        super().__init__(settings)
        self.app = create_app(settings, backend=backend)
        self.server = build_server(self.app, "127.0.0.1", 0, access_log=False, log_level="warning")
        self._thread = threading.Thread(target=self.server.run, name="test-api", daemon=True)


@pytest.fixture
def event_log(tmp_path: Path) -> SwitchableEventLog:
    return SwitchableEventLog(SQLiteStore(tmp_path / "traces.db"))


@pytest.fixture
def api(tmp_path: Path, event_log: SwitchableEventLog) -> Iterator[ThreadedApi]:
    """Unlike conftest's ``api``: the same server, but its event log is the switchable one."""
    store = event_log.real
    backend = Backend(name="sqlite, switchable events", traces=store, events=event_log, tickets=store, resources=(store,))
    server = ThreadedApiOver(settings_in(tmp_path), backend).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(api):
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(10, read=20)) as http:
        yield http


def assert_ends_with_unavailable(rest: list) -> None:
    """The stream's last words: one ``error`` saying the store is unavailable, then the end."""
    kinds = [event.event for event in rest if event.event != "ping"]
    assert kinds[-1:] == ["error"], kinds
    error = json.loads(rest[-1].data)
    assert error["code"] == "backend_unavailable"
    assert "store is unavailable" in error["message"]


async def ids_of(stream: StreamReader, count: int, timeout: float = 10) -> list[tuple[int, str]]:
    return [(event_id, trace["id"]) for event_id, _, trace in await stream.traces(count, timeout=timeout)]


async def test_an_open_stream_gets_backend_unavailable_and_ends(api, event_log, client):
    async with open_stream(client, headers=api.headers("alice")) as stream:
        await stream.next("subscribed")
        api.call(event_log.fail())
        rest = await stream.until_closed()
    assert_ends_with_unavailable(rest)
    await wait_until(lambda: api.services.hub.open_streams == 0)


async def test_a_stream_opened_while_the_store_fails_gets_retry_then_an_error_not_a_500(api, event_log, client):
    api.call(event_log.fail())
    async with open_stream(client, headers=api.headers("alice")) as stream:
        assert stream.response.status_code == 200
        opening = await stream.next()
        assert (opening.retry, opening.event, opening.data) == (api.settings.retry_ms, "message", "")
        rest = await stream.until_closed()
    assert [event.event for event in rest] == ["error"]
    assert_ends_with_unavailable(rest)


async def test_after_the_store_recovers_a_resuming_client_gets_every_missed_event_once_in_order(api, event_log, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        await post_trace(client, alice, id="t1")
        [(last_seen, _)] = await ids_of(stream, 1)
        api.call(event_log.fail())
        assert_ends_with_unavailable(await stream.until_closed())

    for i in (2, 3, 4):  # written while the client could not read them
        await post_trace(client, alice, id=f"t{i}")
    resume = {**alice, "Last-Event-ID": str(last_seen)}
    async with open_stream(client, headers=resume) as stream:  # too soon: still failing
        assert_ends_with_unavailable(await stream.until_closed())

    api.call(event_log.recover())
    async with open_stream(client, headers=resume) as stream:
        subscribed = json.loads((await stream.next("subscribed")).data)
        assert subscribed["replaying_from"] == last_seen
        replayed = await ids_of(stream, 3)
        await post_trace(client, alice, id="t5")
        live = await ids_of(stream, 1, timeout=20)  # once the hub's follower is back from its backoff
        await post_trace(client, alice, id="t6")
        after = await ids_of(stream, 1)  # the next trace event is t6: nothing came twice in between
    got = replayed + live + after
    assert [trace_id for _, trace_id in got] == ["t2", "t3", "t4", "t5", "t6"]
    ids = [event_id for event_id, _ in got]
    assert ids == sorted(set(ids)) and ids[0] > last_seen
