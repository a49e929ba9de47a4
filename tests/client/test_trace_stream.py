"""dashboard.client: the resumable SSE client.

Backoff, dedupe, reset and error handling are driven through ``httpx.MockTransport`` with scripted
responses (the socket is not the point there); live delivery, pings and restarts use real servers.
No test sleeps for a guessed time: each waits for an event or a health change, under a timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dashboard.client import (
    Connected,
    Ping,
    Reset,
    Snapshot,
    StreamAuthError,
    StreamError,
    StreamEvent,
    StreamHealth,
    Subscribed,
    TraceApiError,
    TraceEvent,
    TraceStream,
    TraceStreamError,
    fetch_snapshot,
)

from ..support import wait_until

API = "http://api.test"
FAST = {"initial_backoff": 0.05, "max_backoff": 0.5}


# --- helpers --------------------------------------------------------------------------------------


def frame(event: str, data: Any, id: int | None = None) -> bytes:
    lines = f"event: {event}\ndata: {json.dumps(data)}\n" + (f"id: {id}\n" if id is not None else "")
    return (lines + "\n").encode()


def retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


def connected(head: int = 0) -> bytes:
    return frame("connected", {"user_id": "alice", "server_time": "2025-01-01T00:00:00Z", "last_event_id": head})


def trace(seq: int, kind: str = "trace", **fields: Any) -> bytes:
    return frame(kind, {"id": f"t{seq}", "user_id": "alice", "status": "running", **fields}, id=seq)


def sse_response(*frames: bytes, hold: asyncio.Event | None = None, closed: list[bool] | None = None) -> httpx.Response:
    """A stream that sends ``frames`` and then ends, or stays open until ``hold`` is set."""

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in frames:
                yield chunk
            if hold is not None:
                await hold.wait()
        finally:
            if closed is not None:
                closed.append(True)

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


Responder = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Script:
    """A fake API: each stream request gets the next scripted answer (then a stream that stays open)."""

    def __init__(self, *answers: Responder, pages: Iterable[dict[str, Any]] = ()) -> None:
        self.answers = list(answers)
        self.pages = list(pages)
        self.requests: list[httpx.Request] = []
        self.page_requests: list[httpx.Request] = []
        self.forever = asyncio.Event()  # never set: the last stream idles until the client closes it

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/analytics/traces":
            self.page_requests.append(request)
            return httpx.Response(200, json=self.pages.pop(0))
        self.requests.append(request)
        if not self.answers:
            return sse_response(retry(1000), connected(), hold=self.forever)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class TopOfRange:
    """A random source that always draws the top of its range, and remembers each range."""

    def __init__(self) -> None:
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


class BottomOfRange(TopOfRange):
    def uniform(self, a: float, b: float) -> float:
        super().uniform(a, b)
        return a


class Watch:
    """Records every health change; ``until`` waits for one that matches. ``skip_waits`` presses Retry."""

    def __init__(self, *, skip_waits: bool = False) -> None:
        self.history: list[StreamHealth] = []
        self.stream: TraceStream | None = None
        self.skip_waits = skip_waits
        self._changed = asyncio.Event()

    def __call__(self, health: StreamHealth) -> None:
        self.history.append(health)
        self._changed.set()
        if self.skip_waits and health.next_retry_at is not None and self.stream is not None:
            self.stream.retry_now()

    @property
    def delays(self) -> list[float]:
        return [h.retry_delay for h in self.history if h.retry_delay is not None]

    async def until(self, predicate: Callable[[StreamHealth], bool], *, since: int = 0, timeout: float = 3) -> StreamHealth:
        async with asyncio.timeout(timeout):
            while True:
                for health in self.history[since:]:
                    if predicate(health):
                        return health
                self._changed.clear()
                await self._changed.wait()


class Reader:
    """Iterates a stream in a task, keeping what arrives and how the iteration ended."""

    def __init__(self, stream: TraceStream) -> None:
        self.stream = stream
        self.events: list[StreamEvent] = []
        self.error: BaseException | None = None
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.stream:
                self.events.append(event)
                self._changed.set()
        except TraceStreamError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def traces(self) -> list[TraceEvent]:
        return self.of(TraceEvent)

    async def until(self, predicate: Callable[[Reader], bool], timeout: float = 3) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.ended.is_set():
                    raise AssertionError(f"the stream ended early: {self.error!r}; got {self.events}")
                self._changed.clear()
                await self._changed.wait()

    async def count(self, kind: type, n: int, timeout: float = 3) -> list[Any]:
        await self.until(lambda r: len(r.of(kind)) >= n, timeout)
        return self.of(kind)

    async def finish(self, timeout: float = 3) -> None:
        async with asyncio.timeout(timeout):
            await self.ended.wait()


@pytest.fixture
async def opened() -> AsyncIterator[Callable[..., tuple[TraceStream, Reader, Watch]]]:
    """Open a stream with a reader and a health watch; everything is closed afterwards."""
    made: list[tuple[TraceStream, Reader, httpx.AsyncClient | None]] = []

    def open_stream(url: str, token: str, *, script: Script | None = None, skip_waits: bool = False,
                    **kwargs: Any) -> tuple[TraceStream, Reader, Watch]:
        watch = Watch(skip_waits=skip_waits)
        client = script.client() if script is not None else None
        stream = TraceStream(url, token, client=client, on_health=watch, **kwargs)
        watch.stream = stream
        reader = Reader(stream)
        made.append((stream, reader, client))
        return stream, reader, watch

    yield open_stream
    for stream, reader, client in made:
        await stream.aclose()
        await reader.finish()
        if client is not None:
            await client.aclose()


def ceilings(rng: TopOfRange) -> list[float]:
    assert all(low == 0 for low, _ in rng.ranges), "full jitter draws from zero"
    return [high for _, high in rng.ranges]


# --- scripted: protocol and backoff logic ---------------------------------------------------------


async def test_sends_bearer_filters_and_resumes_with_last_event_id(opened) -> None:
    script = Script(
        sse_response(retry(1000), connected(5), trace(6), trace(7, "trace_update")),
        sse_response(retry(1000), connected(7), trace(8)),
    )
    stream, reader, _ = opened(API, "tok", script=script, model="gpt-4o", status="running",
                               last_event_id=5, skip_waits=True)
    events = await reader.count(TraceEvent, 3)

    assert [(e.id, e.kind, e.is_update) for e in events] == [
        (6, "trace", False), (7, "trace_update", True), (8, "trace", False)]
    first, second = script.requests[:2]
    assert first.headers["authorization"] == "Bearer tok"
    assert first.headers["accept"] == "text/event-stream"
    assert dict(first.url.params) == {"model": "gpt-4o", "status": "running", "last_event_id": "5"}
    assert "last-event-id" not in first.headers
    # a reconnect resumes by header from the highest id seen, and keeps the filters
    assert second.headers["last-event-id"] == "7"
    assert dict(second.url.params) == {"model": "gpt-4o", "status": "running"}
    assert stream.health.last_event_id == 8 and stream.last_event_id == 8


async def test_fresh_start_resumes_from_the_connected_position(opened) -> None:
    """No trace seen yet: a reconnect still resumes from where the first stream began, missing nothing."""
    script = Script(sse_response(retry(1000), connected(41)))
    stream, reader, watch = opened(API, "tok", script=script, skip_waits=True)
    await reader.count(Connected, 2)
    assert "last-event-id" not in script.requests[0].headers
    assert script.requests[1].headers["last-event-id"] == "41"


async def test_drops_duplicates_by_id(opened) -> None:
    script = Script(
        sse_response(connected(0), trace(1), trace(2), trace(3)),
        sse_response(connected(3), trace(2), trace(3), trace(3, "trace_update"), trace(4, "trace_update"), trace(5)),
    )
    _, reader, _ = opened(API, "tok", script=script, skip_waits=True)
    events = await reader.count(TraceEvent, 5)
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert script.requests[1].headers["last-event-id"] == "3"


async def test_backoff_is_full_jitter_doubling_to_the_cap(opened) -> None:
    script = Script(*[error_response(503, "unavailable", "down for maintenance")] * 9)
    rng = TopOfRange()
    stream, _, watch = opened(API, "tok", script=script, rng=rng, skip_waits=True,
                              initial_backoff=0.5, max_backoff=30.0)
    await watch.until(lambda h: h.attempt >= 8)

    assert ceilings(rng)[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert watch.delays[:8] == ceilings(rng)[:8]  # the top of each range was drawn
    health = stream.health
    assert health.last_error == "down for maintenance (HTTP 503)"
    assert health.reconnects >= 8


async def test_backoff_draws_uniformly_from_zero(opened) -> None:
    script = Script(*[error_response(502, "bad_gateway", "upstream gone")] * 6)
    stream, _, watch = opened(API, "tok", script=script, rng=random.Random(7), skip_waits=True,
                              initial_backoff=1.0, max_backoff=10.0)
    await watch.until(lambda h: h.attempt >= 5)

    expected = random.Random(7)
    assert watch.delays[:5] == [expected.uniform(0, c) for c in (1.0, 2.0, 4.0, 8.0, 10.0)]
    assert all(0 <= d <= 10.0 for d in watch.delays)


async def test_backoff_resets_after_a_connection_that_said_connected(opened) -> None:
    down = error_response(503, "unavailable", "down")
    script = Script(down, down, sse_response(retry(100), connected()), down)
    rng = TopOfRange()
    _, _, watch = opened(API, "tok", script=script, rng=rng, skip_waits=True, initial_backoff=0.5, max_backoff=30.0)
    await watch.until(lambda h: len(rng.ranges) >= 4)
    assert ceilings(rng)[:4] == [0.5, 1.0, 0.5, 1.0]
    assert any(h.status == "connected" for h in watch.history)


async def test_server_retry_field_is_the_minimum_base(opened) -> None:
    script = Script(sse_response(retry(4000), connected()), error_response(503, "unavailable", "down"))
    rng = TopOfRange()
    _, _, watch = opened(API, "tok", script=script, rng=rng, skip_waits=True, initial_backoff=0.5, max_backoff=30.0)
    await watch.until(lambda h: len(rng.ranges) >= 2)
    assert ceilings(rng)[:2] == [4.0, 8.0]


async def test_429_waits_at_least_retry_after(opened) -> None:
    script = Script(error_response(429, "too_many_streams", "10 streams are open; close one or retry later",
                                   headers={"Retry-After": "7"}))
    opened_at = datetime.now(UTC)
    stream, reader, watch = opened(API, "tok", script=script, rng=BottomOfRange())
    waiting = await watch.until(lambda h: h.retry_delay is not None)
    seen_at = datetime.now(UTC)
    assert waiting.retry_delay == 7.0
    assert waiting.status == "reconnecting"
    # The countdown said 7 s when the wait began (some moment between opening and seeing it).
    assert waiting.retry_in(now=opened_at) >= 7.0 >= waiting.retry_in(now=seen_at)
    assert "close one or retry later" in (waiting.last_error or "")
    assert len(script.requests) == 1

    stream.retry_now()  # the Retry button: no need to sit out the wait
    await reader.count(Connected, 1)
    assert stream.health.status == "connected"


async def test_401_stops_with_the_servers_reason(opened) -> None:
    script = Script(error_response(401, "token_expired", "the token has expired"))
    stream, reader, _ = opened(API, "tok", script=script, skip_waits=True)
    await reader.finish()

    assert isinstance(reader.error, StreamAuthError)
    assert reader.error.status_code == 401 and reader.error.code == "token_expired"
    assert str(reader.error) == "the token has expired"
    assert stream.health.status == "error"
    assert stream.health.last_error == "the token has expired"
    assert stream.health.next_retry_at is None
    assert len(script.requests) == 1  # not retried


async def test_other_client_errors_are_fatal_too(opened) -> None:
    script = Script(error_response(422, "invalid_request", "status: Input should be 'pending', 'running', 'success' or 'error'"))
    stream, reader, _ = opened(API, "tok", script=script, skip_waits=True)
    await reader.finish()
    assert type(reader.error) is TraceApiError and reader.error.status_code == 422
    assert stream.health.status == "error" and "Input should be" in (stream.health.last_error or "")
    assert len(script.requests) == 1


async def test_token_expired_event_stops(opened) -> None:
    script = Script(sse_response(connected(), trace(1),
                                 frame("error", {"code": "token_expired", "message": "your token expired; sign in again"})))
    stream, reader, _ = opened(API, "tok", script=script, skip_waits=True)
    await reader.finish()

    assert reader.of(StreamError) == [StreamError("token_expired", "your token expired; sign in again")]
    assert isinstance(reader.error, StreamAuthError)
    assert stream.health.status == "error"
    assert stream.health.last_error == "your token expired; sign in again"
    assert len(script.requests) == 1


async def test_server_error_event_reconnects_and_resumes(opened) -> None:
    script = Script(
        sse_response(connected(), trace(1), frame("error", {"code": "backend_unavailable", "message": "store down"})),
        sse_response(connected(1), trace(2), hold=asyncio.Event()),
    )
    stream, reader, _ = opened(API, "tok", script=script, skip_waits=True)
    events = await reader.count(TraceEvent, 2)
    assert [e.id for e in events] == [1, 2]
    assert reader.of(StreamError) == [StreamError("backend_unavailable", "store down")]
    assert script.requests[1].headers["last-event-id"] == "1"
    assert stream.health.last_error == "store down (backend_unavailable)"
    assert stream.health.reconnects == 1


async def test_reset_reloads_the_snapshot_and_skips_what_it_holds(opened) -> None:
    pages = [
        {"traces": [{"id": "c"}, {"id": "b"}], "next_cursor": "7", "last_event_id": 22},
        {"traces": [{"id": "a"}], "next_cursor": None, "last_event_id": 24},
    ]
    script = Script(
        sse_response(connected(20), frame("reset", {"reason": "resume point 50 is ahead", "last_event_id": 20}),
                     frame("subscribed", {"filters": {"model": "m1"}, "replaying_from": None}),
                     trace(21), trace(22, "trace_update"), trace(23)),
        pages=pages,
    )
    stream, reader, _ = opened(API, "tok", script=script, model="m1", last_event_id=50, skip_waits=True)
    await reader.count(TraceEvent, 1)

    kinds = [type(e) for e in reader.events[:4]]
    assert kinds == [Connected, Snapshot, Subscribed, TraceEvent]
    snapshot = reader.of(Snapshot)[0]
    assert snapshot == Snapshot([{"id": "c"}, {"id": "b"}, {"id": "a"}], 22, "resume point 50 is ahead")
    assert [e.id for e in reader.traces] == [23]  # 21 and 22 are in the snapshot
    assert [dict(r.url.params) for r in script.page_requests] == [
        {"limit": "1000", "model": "m1"}, {"limit": "998", "model": "m1", "cursor": "7"}]
    assert script.page_requests[0].headers["authorization"] == "Bearer tok"
    assert stream.last_event_id == 23  # went below the stale 50: the store's ids restarted


async def test_reset_without_snapshot_loading_yields_reset(opened) -> None:
    script = Script(sse_response(connected(9), frame("reset", {"reason": "too old", "last_event_id": 9}), trace(10)))
    stream, reader, _ = opened(API, "tok", script=script, last_event_id=1, load_snapshot_on_reset=False)
    await reader.count(TraceEvent, 1)
    assert reader.of(Reset) == [Reset("too old", 9)]
    assert not script.page_requests


async def test_aclose_cancels_a_backoff_wait() -> None:
    script = Script(error_response(503, "unavailable", "down"))
    watch = Watch()
    async with script.client() as client:
        stream = TraceStream(API, "tok", client=client, on_health=watch, rng=TopOfRange(),
                             initial_backoff=30.0, max_backoff=30.0)
        reader = Reader(stream)
        await watch.until(lambda h: h.retry_delay == 30.0)
        async with asyncio.timeout(1):
            await stream.aclose()
            await reader.finish()
    assert reader.error is None
    assert stream.health.status == "off" and stream.health.next_retry_at is None


async def test_aclose_closes_an_open_stream_but_not_a_callers_client() -> None:
    closed: list[bool] = []
    script = Script(sse_response(connected(), hold=asyncio.Event(), closed=closed))
    async with script.client() as client:
        stream = TraceStream(API, "tok", client=client)
        reader = Reader(stream)
        await reader.count(Connected, 1)
        assert stream.health.status == "connected"
        async with asyncio.timeout(1):
            await stream.aclose()
            await reader.finish()
        assert closed == [True]  # the response body was closed
        assert not client.is_closed  # the caller's client is the caller's to close
        assert stream.health.status == "off"
        assert [e async for e in stream] == []  # a closed stream stays closed
        await stream.aclose()  # and closing twice is harmless


async def test_malformed_and_unknown_events(opened) -> None:
    script = Script(
        sse_response(connected(), frame("future_event", {"x": 1}), b"event: trace\ndata: {not json\nid: 1\n\n"),
        sse_response(connected(), trace(1), hold=asyncio.Event()),
    )
    stream, reader, watch = opened(API, "tok", script=script, skip_waits=True)
    (event,) = await reader.count(TraceEvent, 1)
    assert event.id == 1  # the malformed frame cost a reconnect, the unknown event nothing
    assert any("malformed 'trace' event" in (h.last_error or "") for h in watch.history)


async def test_fetch_snapshot_follows_pages_up_to_the_limit() -> None:
    script = Script(pages=[
        {"traces": [{"id": "3"}, {"id": "2"}], "next_cursor": "2", "last_event_id": 9},
        {"traces": [{"id": "1"}], "next_cursor": "1", "last_event_id": 9},
    ])
    async with script.client() as client:
        snapshot = await fetch_snapshot(API, "tok", status="error", limit=3, page_size=2, client=client)
    assert snapshot == Snapshot([{"id": "3"}, {"id": "2"}, {"id": "1"}], 9, "", next_cursor="1")
    assert [dict(r.url.params) for r in script.page_requests] == [
        {"limit": "2", "status": "error"}, {"limit": "1", "status": "error", "cursor": "2"}]


# --- against the real server ----------------------------------------------------------------------


async def post(client: httpx.AsyncClient, url: str, token: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(url + "/api/traces", json={"status": "running", **fields},
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()


async def test_live_trace_and_update_of_the_users_own_traces(api, opened) -> None:
    token = api.token("alice")
    stream, reader, watch = opened(api.url, token, **FAST)
    await reader.count(Subscribed, 1)
    async with httpx.AsyncClient() as http:
        await post(http, api.url, api.token("bob"), name="not yours")
        created = await post(http, api.url, token, name="first", model="m1")
        response = await http.patch(f"{api.url}/api/traces/{created['id']}", json={"status": "success"},
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200

    insert, update = await reader.count(TraceEvent, 2)
    assert (insert.kind, insert.trace["id"], insert.trace["name"]) == ("trace", created["id"], "first")
    assert (update.kind, update.trace["id"], update.trace["status"]) == ("trace_update", created["id"], "success")
    assert update.id > insert.id
    assert all(e.trace["user_id"] == "alice" for e in reader.traces)
    health = stream.health
    assert health.status == "connected" and health.last_event_id == update.id
    assert health.last_event_at is not None and health.connected_at is not None


async def test_health_shows_connected_and_pings(api, opened) -> None:
    stream, reader, watch = opened(api.url, api.token("alice"), **FAST)
    # The reader's task has not run yet (nothing was awaited): a stream not yet iterated is "off".
    assert stream.health.status == "off" and watch.history == []
    ping = (await reader.count(Ping, 1))[0]
    assert ping.server_time
    health = stream.health
    assert health.status == "connected" and health.last_ping_at is not None
    assert health.last_activity_at == health.last_ping_at
    assert [h.status for h in watch.history][:2] == ["connecting", "connected"]


async def test_filters_reach_the_server(api, opened) -> None:
    token = api.token("alice")
    _, reader, _ = opened(api.url, token, model="m1", **FAST)
    subscribed = (await reader.count(Subscribed, 1))[0]
    assert subscribed.filters.get("model") == "m1"
    async with httpx.AsyncClient() as http:
        await post(http, api.url, token, model="m2", name="other model")
        await post(http, api.url, token, model="m1", name="wanted")
    (event,) = await reader.count(TraceEvent, 1)
    assert event.trace["name"] == "wanted"


async def test_first_connect_resumes_after_a_snapshot(api, opened) -> None:
    token = api.token("alice")
    async with httpx.AsyncClient() as http:
        for name in ("a", "b"):
            await post(http, api.url, token, name=name)
        snapshot = await fetch_snapshot(api.url, token, client=http)
        assert [t["name"] for t in snapshot.traces] == ["b", "a"]
        await post(http, api.url, token, name="after the snapshot")

    _, reader, _ = opened(api.url, token, last_event_id=snapshot.last_event_id, **FAST)
    (event,) = await reader.count(TraceEvent, 1)
    assert event.trace["name"] == "after the snapshot" and event.id > snapshot.last_event_id
    assert reader.of(Subscribed)[0].replaying_from == snapshot.last_event_id


async def test_reset_from_the_server_reloads_the_snapshot(api, opened) -> None:
    token = api.token("alice")
    async with httpx.AsyncClient() as http:
        await post(http, api.url, token, name="old")
        stream, reader, _ = opened(api.url, token, last_event_id=10_000, **FAST)  # ahead of this store
        (snapshot,) = await reader.count(Snapshot, 1)
        assert [t["name"] for t in snapshot.traces] == ["old"]
        assert "ahead" in snapshot.reason
        await reader.count(Subscribed, 1)
        await post(http, api.url, token, name="new")
    (event,) = await reader.count(TraceEvent, 1)
    assert event.trace["name"] == "new" and event.id > snapshot.last_event_id
    assert stream.last_event_id == event.id


async def test_expired_token_is_refused_once(api, opened) -> None:
    stream, reader, watch = opened(api.url, api.token("alice", ttl=-10), **FAST)
    await reader.finish()
    assert isinstance(reader.error, StreamAuthError)
    assert stream.health.status == "error"
    assert stream.health.last_error == "the token has expired"
    assert stream.health.reconnects == 0 and not watch.delays


async def test_token_expiring_mid_stream_stops(api, opened) -> None:
    stream, reader, _ = opened(api.url, api.token("alice", ttl=2), **FAST)
    await reader.count(Connected, 1)
    await reader.finish(timeout=4)
    assert [e.code for e in reader.of(StreamError)] == ["token_expired"]
    assert isinstance(reader.error, StreamAuthError)
    assert stream.health.status == "error" and "expired" in (stream.health.last_error or "")
    assert len(reader.of(Connected)) == 1  # not reconnected with the dead token


async def test_too_many_streams_waits_retry_after(make_api, opened) -> None:
    server = make_api(max_streams_per_user=1, ping_interval=0.5)
    token = server.token("alice")
    _, first, _ = opened(server.url, token, **FAST)
    await first.count(Subscribed, 1)
    second, _, watch = opened(server.url, token, rng=BottomOfRange(), **FAST)
    waiting = await watch.until(lambda h: h.retry_delay is not None)
    assert waiting.retry_delay == 5.0  # Retry-After beats the 0.5 s cap
    assert "retry later" in (waiting.last_error or "")
    assert second.health.status == "reconnecting"


async def test_aclose_ends_the_servers_stream(api) -> None:
    stream = TraceStream(api.url, api.token("alice"), **FAST)  # owns its client
    reader = Reader(stream)
    await reader.count(Subscribed, 1)
    assert api.services.hub.open_streams == 1
    async with asyncio.timeout(1):
        await stream.aclose()
        await reader.finish()
    assert stream._client.is_closed
    await wait_until(lambda: api.services.hub.open_streams == 0, timeout=3)  # the server notices


def stream_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("trace-stream ")]


@pytest.mark.parametrize("leave", ["break", "raise"])
async def test_leaving_async_for_closes_the_stream_without_aclose(api, leave) -> None:
    """A consumer that just stops iterating (no aclose, no ``async with``) leaves no task or connection."""
    watch = Watch()
    stream = TraceStream(api.url, api.token("alice"), on_health=watch, **FAST)  # owns its client

    async def consume() -> None:
        async for event in stream:
            if isinstance(event, Connected):
                assert stream_tasks() and api.services.hub.open_streams == 1  # really open, until we leave
                if leave == "break":
                    break
                raise LookupError("the consumer failed")

    if leave == "break":
        await consume()
    else:
        with pytest.raises(LookupError, match="the consumer failed"):  # the consumer's error, unchanged
            await consume()
    # The loop's iterator is closed as it is dropped; "off" is said only once the reader task has ended.
    off = await watch.until(lambda h: h.status == "off", timeout=5)
    assert off.last_error is None
    await wait_until(lambda: api.services.hub.open_streams == 0, timeout=5)  # the server saw it go
    assert stream_tasks() == []
    assert stream._client.is_closed


async def test_survives_sigkill_and_restart(api_process, opened) -> None:
    first = api_process()
    token = first.token("alice")
    stream, reader, watch = opened(first.url, token, **FAST)
    await reader.count(Subscribed, 1)
    async with httpx.AsyncClient() as http:
        await post(http, first.url, token, name="t1")
        await reader.count(TraceEvent, 1)

        first.kill()
        mark = len(watch.history)
        await watch.until(lambda h: h.status == "reconnecting", since=mark)
        await watch.until(lambda h: (h.last_error or "").startswith("cannot connect"), since=mark)

        second = api_process(port=first.port)
        for name in ("t2", "t3", "t4"):
            await post(http, second.url, token, name=name)
        events = await reader.count(TraceEvent, 4, timeout=4)
    assert [e.trace["name"] for e in events] == ["t1", "t2", "t3", "t4"]
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + 4))
    assert stream.health.status == "connected" and stream.health.reconnects >= 1


async def test_traces_written_while_disconnected_arrive_once_in_order(api_process, opened) -> None:
    """The client is parked in a (long) backoff while the server restarts and takes writes; Retry resumes."""
    first = api_process()
    token = first.token("alice")
    stream, reader, watch = opened(first.url, token, rng=TopOfRange(), initial_backoff=30.0, max_backoff=30.0)
    await reader.count(Subscribed, 1)
    async with httpx.AsyncClient() as http:
        t1 = await post(http, first.url, token, name="t1")
        await reader.count(TraceEvent, 1)
        first.kill()
        await watch.until(lambda h: h.status == "reconnecting" and h.retry_delay == 30.0)

        second = api_process(port=first.port)
        for name in ("t2", "t3", "t4"):
            await post(http, second.url, token, name=name)
        await http.patch(f"{second.url}/api/traces/{t1['id']}", json={"status": "success"},
                         headers={"Authorization": f"Bearer {token}"})
        stream.retry_now()
        await reader.count(Subscribed, 2)
        await post(http, second.url, token, name="t5")
        events = await reader.count(TraceEvent, 6)

    assert [(e.kind, e.trace["name"]) for e in events] == [
        ("trace", "t1"), ("trace", "t2"), ("trace", "t3"), ("trace", "t4"), ("trace_update", "t1"), ("trace", "t5")]
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + 6))
    assert reader.of(Subscribed)[1].replaying_from == events[0].id
    assert stream.health.reconnects == 1
