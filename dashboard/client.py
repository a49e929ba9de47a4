"""The resumable client of the trace stream (contract §5), on httpx + httpx-sse.

``TraceStream`` keeps one SSE connection open and survives everything a long-lived connection meets:
it resumes with ``Last-Event-ID`` so nothing is missed, drops what it has already seen so nothing
arrives twice, backs off with full jitter so a restarted server is not stampeded, reloads the snapshot
when the server says the resume point is gone (``reset``), and says at all times how it is doing
(``stream.health``).

    async with TraceStream(url, token, model="gpt-4o") as stream:
        async for event in stream:
            ...

Fatal conditions end the iteration with an exception rather than a retry loop: a 401 (or a
``token_expired`` event) raises ``StreamAuthError``, another 4xx answer (a bad filter, a wrong URL)
raises ``TraceApiError``; in both cases ``health.status`` is ``"error"`` and ``health.last_error``
holds the server's reason. Everything else (refused connections, 5xx, 429, dead connections, a
server ``error`` event, a stream that just ends) is retried; 429 waits at least ``Retry-After``.
Every server ``error`` event is also yielded as a ``StreamError`` (before the exception, if fatal).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Literal, Protocol, TypeAlias

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

__all__ = [
    "Connected",
    "Ping",
    "Reset",
    "Snapshot",
    "StreamAuthError",
    "StreamError",
    "StreamEvent",
    "StreamHealth",
    "StreamStatus",
    "Subscribed",
    "TraceApiError",
    "TraceEvent",
    "TraceStream",
    "TraceStreamError",
    "fetch_snapshot",
]

log = logging.getLogger(__name__)

STREAM_PATH = "/api/analytics/traces/stream"
TRACES_PATH = "/api/analytics/traces"
MAX_PAGE = 1000  # the server's largest page
CONNECT_TIMEOUT = 10.0
QUEUE_SIZE = 256  # events read ahead of the consumer; a full queue stops reading, the server then drops us

StreamStatus: TypeAlias = Literal["off", "connecting", "connected", "reconnecting", "error"]


# --- errors ---------------------------------------------------------------------------------------


class TraceStreamError(Exception):
    """The root of every error this module raises."""


class TraceApiError(TraceStreamError):
    """An error answer from the API (``{"error": {"code", "message"}}``) that retrying will not fix."""

    def __init__(self, status_code: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


class StreamAuthError(TraceApiError):
    """The credentials were refused (401) or expired mid-stream: a new token is needed, so no retry."""


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted the stream; ``last_event_id`` is its position now."""

    user_id: str
    server_time: str
    last_event_id: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The live subscription is active; ``replaying_from`` is the resume point, if one was honoured."""

    filters: dict[str, Any]
    replaying_from: int | None


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """A trace inserted (``trace``) or changed (``trace_update``); ``trace`` is the whole row."""

    id: int
    kind: Literal["trace", "trace_update"]
    trace: dict[str, Any]

    @property
    def is_update(self) -> bool:
        return self.kind == "trace_update"


@dataclass(frozen=True, slots=True)
class Ping:
    """The server's keep-alive: the connection is alive even when no trace arrives."""

    server_time: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Traces newest first, and the stream position they reflect.

    Yielded by the stream after a server ``reset``: replace what you hold with ``traces``; the stream
    then continues after ``last_event_id``. ``next_cursor`` is set when more (older) traces exist.
    """

    traces: list[dict[str, Any]]
    last_event_id: int
    reason: str = ""
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """The server could not resume; only yielded with ``load_snapshot_on_reset=False``: reload yourself."""

    reason: str
    last_event_id: int


@dataclass(frozen=True, slots=True)
class StreamError:
    """A server ``error`` event; the connection ends after it (and is retried unless it is fatal)."""

    code: str
    message: str


StreamEvent: TypeAlias = Connected | Subscribed | TraceEvent | Ping | Snapshot | Reset | StreamError


# --- health ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """How the stream is doing, as an immutable snapshot (a new one on every change).

    ``attempt`` counts the failed connection attempts since the last good connection (0 when
    healthy); ``reconnects`` counts every connection attempt after the first, over the stream's life.
    ``last_error`` keeps the most recent failure even after recovery; read it with ``status``.
    Times are timezone-aware UTC datetimes.
    """

    status: StreamStatus = "off"
    last_event_at: datetime | None = None  # the last trace or trace_update
    last_ping_at: datetime | None = None
    connected_at: datetime | None = None  # when the current (or last) connection said `connected`
    reconnects: int = 0
    attempt: int = 0
    retry_delay: float | None = None  # the pending backoff wait, seconds
    next_retry_at: datetime | None = None
    last_error: str | None = None
    last_event_id: int | None = None

    @property
    def last_activity_at(self) -> datetime | None:
        """The last sign of life from the server: an event, a ping or the connection itself."""
        times = [t for t in (self.last_event_at, self.last_ping_at, self.connected_at) if t is not None]
        return max(times, default=None)

    def retry_in(self, now: datetime | None = None) -> float | None:
        """Seconds until the next connection attempt, if one is pending."""
        if self.next_retry_at is None:
            return None
        return max(0.0, (self.next_retry_at - (now or _now())).total_seconds())


# --- HTTP helpers ---------------------------------------------------------------------------------


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _filters(model: str | None, status: str | None) -> dict[str, str]:
    return {k: v for k, v in (("model", model), ("status", status)) if v is not None}


def _error_of(response: httpx.Response) -> TraceApiError:
    """The API's own reason for a non-2xx answer (the body must be read), as the right exception."""
    code, message = f"http_{response.status_code}", response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    elif response.text.strip():
        message = response.text.strip()[:200]
    kind = StreamAuthError if response.status_code == 401 else TraceApiError
    return kind(response.status_code, code, message)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (either form), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - _now()).total_seconds())


async def fetch_snapshot(
    api_url: str,
    token: str,
    *,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
    page_size: int | None = None,
    client: httpx.AsyncClient | None = None,
    reason: str = "",
) -> Snapshot:
    """Up to ``limit`` of the user's newest traces, following ``next_cursor`` pages.

    ``last_event_id`` is the first page's position: later pages can only be newer than it, so
    resuming the stream from it may repeat an update but never misses one.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    size = min(page_size or limit, limit, MAX_PAGE)
    owned = client is None
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(CONNECT_TIMEOUT, read=30.0))
    try:
        traces: list[dict[str, Any]] = []
        position: int | None = None
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": min(size, limit - len(traces)), **_filters(model, status)}
            if cursor is not None:
                params["cursor"] = cursor
            response = await http.get(api_url.rstrip("/") + TRACES_PATH, params=params, headers=_auth(token))
            if response.status_code != 200:
                raise _error_of(response)
            page = response.json()
            if position is None:
                position = int(page["last_event_id"])
            traces.extend(page["traces"])
            cursor = page.get("next_cursor")
            if cursor is None or len(traces) >= limit:
                return Snapshot(traces, position, reason, next_cursor=cursor)
    finally:
        if owned:
            await http.aclose()


# --- the stream -----------------------------------------------------------------------------------


def _decode(sse: ServerSentEvent) -> StreamEvent | None:
    """The typed event of one SSE message; None for a retry-only frame or an unknown event.

    Pure (no IO, no state), so it is tested and reasoned about apart from the connection.
    Raises ``ValueError`` for a malformed message.
    """
    kind = sse.event
    if kind == "message" and not sse.data:
        return None  # a `retry:`-only frame, or a blank line after an id
    try:
        data = json.loads(sse.data)
        if not isinstance(data, dict):
            raise TypeError("the data is not a JSON object")
        if kind == "trace" or kind == "trace_update":
            return TraceEvent(int(sse.id), kind, data)
        if kind == "ping":
            return Ping(str(data.get("server_time", "")))
        if kind == "connected":
            return Connected(str(data["user_id"]), str(data.get("server_time", "")), int(data["last_event_id"] or 0))
        if kind == "subscribed":
            return Subscribed(dict(data.get("filters") or {}), data.get("replaying_from"))
        if kind == "reset":
            return Reset(str(data.get("reason", "")), int(data["last_event_id"] or 0))
        if kind == "error":
            return StreamError(str(data.get("code") or "error"), str(data.get("message") or ""))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"a malformed {kind!r} event ({exc})") from None
    log.debug("trace stream: ignoring unknown event %r", kind)
    return None


class UniformSource(Protocol):
    """What the backoff needs of a random source (``random.Random`` fits; tests pass a stub)."""

    def uniform(self, a: float, b: float) -> float: ...


class _Retry(Exception):
    """This connection is over for a reason worth retrying; ``retry_after`` is the server's floor."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _End:
    """The producer's last word to the iterator: stop, raising ``error`` if set."""

    error: BaseException | None = None


class TraceStream:
    """The user's trace events, live, across reconnects: ``async for event in stream``.

    One background task reads the connection into a small bounded queue the iterator drains; it
    starts on the first iteration and stops in ``aclose()`` (or at the end of ``async with``).
    A consumer that falls behind stops the reading, the server drops the stream, and the client
    resumes from the last id it read: slow costs a reconnect, never memory or events.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        model: str | None = None,
        status: str | None = None,
        last_event_id: int | None = None,
        max_backoff: float = 30.0,
        initial_backoff: float = 0.5,
        read_timeout: float | None = 90.0,
        client: httpx.AsyncClient | None = None,
        load_snapshot_on_reset: bool = True,
        snapshot_limit: int = 1000,
        on_health: Callable[[StreamHealth], None] | None = None,
        rng: UniformSource | None = None,
    ) -> None:
        if initial_backoff <= 0 or max_backoff < initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self.api_url = api_url.rstrip("/")
        self._model = model
        self._status = status
        self._token = token
        self._max_backoff = max_backoff
        self._initial_backoff = initial_backoff
        self._read_timeout = read_timeout
        self._timeout = httpx.Timeout(CONNECT_TIMEOUT, read=read_timeout)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)
        self._load_snapshot_on_reset = load_snapshot_on_reset
        self._snapshot_limit = snapshot_limit
        self._on_health = on_health
        self._rng: UniformSource = rng or random.Random()

        self._position = last_event_id  # the highest trace id seen (or the snapshot's position)
        self._server_retry: float | None = None  # from the server's `retry:` field, seconds
        self._attempt = 0
        self._connects = 0
        self._health = StreamHealth(last_event_id=last_event_id)
        self._queue: asyncio.Queue[StreamEvent | _End] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._finished = False

    # -- public surface

    @property
    def health(self) -> StreamHealth:
        return self._health

    @property
    def last_event_id(self) -> int | None:
        """Where the stream would resume: the highest trace id seen, or the last snapshot's position."""
        return self._position

    def retry_now(self) -> None:
        """Cut a pending backoff wait short (a "Retry" button); no effect while connected."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop now: cancel the reader (and any backoff wait), close the connection and our client."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        while not self._queue.empty():  # wake an iterator blocked on get(): it ends cleanly
            self._queue.get_nowait()
        self._queue.put_nowait(_End())
        if self._owns_client:
            await self._client.aclose()
        if self._health.status != "error":
            self._update(status="off", retry_delay=None, next_retry_at=None)

    async def __aenter__(self) -> TraceStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> TraceStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._finished:
            raise StopAsyncIteration
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"trace-stream {self.api_url}")
        item = await self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    # -- the reader task

    async def _run(self) -> None:
        try:
            await self._reconnect_forever()
        except TraceStreamError as exc:
            self._update(status="error", last_error=str(exc), retry_delay=None, next_retry_at=None)
            await self._queue.put(_End(exc))
        except Exception as exc:  # a bug: say so through the iterator rather than die silently
            log.exception("the trace stream failed")
            self._update(status="error", last_error=f"internal error: {exc!r}", retry_delay=None, next_retry_at=None)
            error = TraceStreamError(f"the trace stream failed: {exc!r}")
            error.__cause__ = exc
            await self._queue.put(_End(error))

    async def _reconnect_forever(self) -> None:
        while True:
            try:
                await self._connect_once()
                failure = _Retry("the server closed the stream")
            except _Retry as exc:
                failure = exc
            delay = self._backoff_delay(failure.retry_after)
            self._attempt += 1
            log.info("trace stream: %s; reconnecting in %.2f s", failure.message, delay)
            await self._wait(delay, failure.message)

    def _backoff_delay(self, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt)), the base raised to the server's ``retry:``."""
        base = max(self._initial_backoff, self._server_retry or 0.0)
        ceiling = min(self._max_backoff, base * 2.0 ** min(self._attempt, 64))
        delay = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    async def _wait(self, delay: float, reason: str) -> None:
        self._wake.clear()  # before publishing, so an on_health callback may already call retry_now()
        self._update(status="reconnecting", attempt=self._attempt, last_error=reason,
                     retry_delay=delay, next_retry_at=_now() + timedelta(seconds=delay))
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._update(retry_delay=None, next_retry_at=None)

    async def _connect_once(self) -> None:
        """One connection, to its end; raises ``_Retry`` or a fatal ``TraceStreamError``."""
        first = self._connects == 0
        self._connects += 1
        params: dict[str, str | int] = _filters(self._model, self._status)
        headers = _auth(self._token)
        if self._position is not None:
            if first:
                params["last_event_id"] = self._position
            else:
                headers["Last-Event-ID"] = str(self._position)
        if first:
            self._update(status="connecting")
        else:
            self._update(status="reconnecting", reconnects=self._health.reconnects + 1)
        try:
            async with aconnect_sse(self._client, "GET", self.api_url + STREAM_PATH, params=params,
                                    headers=headers, timeout=self._timeout) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise self._refusal(response)
                async for sse in source.aiter_sse():
                    if sse.retry is not None:
                        self._server_retry = sse.retry / 1000
                    try:
                        event = _decode(sse)
                    except ValueError as exc:
                        raise _Retry(f"the server sent {exc}") from None
                    if event is not None:
                        await self._handle(event)
        except httpx.ConnectError as exc:
            raise _Retry(f"cannot connect to {self.api_url}: {exc or type(exc).__name__}") from None
        except httpx.ConnectTimeout:
            raise _Retry(f"cannot connect to {self.api_url}: timed out") from None
        except httpx.ReadTimeout:
            raise _Retry(f"no data from the server for {self._read_timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"the connection was lost: {exc or type(exc).__name__}") from None

    def _refusal(self, response: httpx.Response) -> Exception:
        """What a non-200 answer to the stream request means: fatal for 401 and other 4xx, else retry."""
        error = _error_of(response)
        status = response.status_code
        if status == 429 or status == 408 or status >= 500:
            return _Retry(f"{error.message} (HTTP {status})", _retry_after(response))
        return error

    async def _handle(self, event: StreamEvent) -> None:
        """Update position and health for one event and pass it on (or not: duplicates, resets)."""
        match event:
            case TraceEvent(id=seq):
                if self._position is not None and seq <= self._position:
                    return  # seen already (or reflected in the snapshot we loaded)
                self._position = seq
                self._update(last_event_at=_now(), last_event_id=seq)
            case Ping():
                self._update(last_ping_at=_now())
            case Connected(last_event_id=head):
                if self._position is None:  # a fresh start, not a resume: resuming from here misses nothing
                    self._position = head
                self._attempt = 0
                self._update(status="connected", attempt=0, connected_at=_now(), last_event_id=self._position)
            case Reset(reason=reason) if self._load_snapshot_on_reset:
                await self._queue.put(await self._reload(reason))
                return
            case Reset(last_event_id=head):
                self._position = head
                self._update(last_event_id=head)
            case StreamError(code=code, message=message):
                await self._queue.put(event)
                if code == "token_expired":
                    raise StreamAuthError(None, code, message or "the token expired")
                raise _Retry(f"{message or 'the server reported an error'} ({code})")
        await self._queue.put(event)

    async def _reload(self, reason: str) -> Snapshot:
        """The resume point is gone: load what the user should hold, and continue after it."""
        try:
            snapshot = await fetch_snapshot(self.api_url, self._token, model=self._model, status=self._status,
                                            limit=self._snapshot_limit, client=self._client, reason=reason)
        except StreamAuthError:
            raise
        except (TraceApiError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _Retry(f"the stream was reset ({reason}) and the snapshot failed to load: {exc}") from None
        self._position = snapshot.last_event_id  # may go down: a replaced store starts its ids again
        self._update(last_event_id=self._position)
        return snapshot

    def _update(self, **changes: Any) -> None:
        health = dataclasses.replace(self._health, **changes)
        if health == self._health:
            return
        self._health = health
        if self._on_health is not None:
            try:
                self._on_health(health)
            except Exception:
                log.exception("trace stream: the on_health callback failed")
