"""``TraceStream``: the user's trace events, live, across reconnects (contract §5).

It keeps one SSE connection open and survives everything a long-lived connection meets: it can load
the snapshot first and stream on from its position; it resumes with ``Last-Event-ID`` so nothing is
missed, drops what it has already seen so nothing arrives twice, backs off with full jitter so a
restarted server is not stampeded, reloads the snapshot when the server says the resume point is gone
(``reset``), and says at all times how it is doing (``stream.health``).

Fatal conditions end the iteration with an exception rather than a retry loop: a 401 (or a
``token_expired`` event) raises ``StreamAuthError``, another 4xx answer (a bad filter, a wrong URL)
raises ``TraceApiError``; in both cases ``health.status`` is ``error`` and ``health.last_error``
holds the server's reason. Everything else (refused connections, 5xx, 429, dead connections, a
server ``error`` event, a stream that just ends) is retried; 429 waits at least ``Retry-After``.
Every server ``error`` event is also yielded as a ``StreamError`` (before the exception, if fatal).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from ..backoff import Backoff, UniformSource
from ..schema import STREAM_PATH
from ..waits import wait_for_event
from ._decode import decode
from ._errors import StreamAuthError, TraceApiError, TraceStreamError, api_error
from ._events import Connected, Ping, Reset, Snapshot, StreamError, StreamEvent, TraceEvent
from ._health import ConnectionStatus, StreamHealth, utc_now
from ._http import new_client
from ._snapshot import CONNECT_TIMEOUT, bearer, fetch_snapshot, filter_params, retry_after

log = logging.getLogger("dashboard.client")

QUEUE_SIZE = 256  # events read ahead of the consumer; a full queue stops reading, the server then drops us


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

        async with TraceStream(url, token, model="gpt-4o", load_snapshot=True) as stream:
            async for event in stream:   # a Snapshot first, then TraceEvent, Ping, ...
                ...

    One background task reads the connection into a small bounded queue the iterator drains; it
    starts on the first iteration and stops in ``aclose()``, at the end of ``async with``, or when
    the consumer leaves its ``async for`` (the loop's iterator closes the stream when it is dropped).
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
        load_snapshot: bool = False,
        max_backoff: float = 30.0,
        initial_backoff: float = 0.5,
        read_timeout: float | None = 90.0,
        client: httpx.AsyncClient | None = None,
        load_snapshot_on_reset: bool = True,
        snapshot_limit: int = 1000,
        on_health: Callable[[StreamHealth], None] | None = None,
        rng: UniformSource | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._model = model
        self._status = status
        self._token = token
        self._backoff = Backoff(initial_backoff, max_backoff, rng)
        self._read_timeout = read_timeout
        self._timeout = httpx.Timeout(CONNECT_TIMEOUT, read=read_timeout)
        self._owns_client = client is None
        self._client = client or new_client(self._timeout)
        self._needs_snapshot = load_snapshot
        self._load_snapshot_on_reset = load_snapshot_on_reset
        self._snapshot_limit = snapshot_limit
        self._on_health = on_health

        self._position = last_event_id  # the highest trace id seen (or the snapshot's position)
        self._server_retry: float | None = None  # from the server's `retry:` field, seconds
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
        if self._closed and self._task is None:
            return
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
        if self._health.status != ConnectionStatus.error:
            self._update(status=ConnectionStatus.off, retry_delay=None, next_retry_at=None)

    async def __aenter__(self) -> TraceStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._closing_iterator()

    async def _closing_iterator(self) -> AsyncIterator[StreamEvent]:
        """What ``async for`` drives: when the loop is left (``break``, an exception, or simply
        dropped), the generator is finalised and the stream closed, so no reader task or connection
        outlives its consumer."""
        try:
            while True:
                try:
                    yield await self.__anext__()
                except StopAsyncIteration:
                    return
        finally:
            await self.aclose()

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
            self._update(status=ConnectionStatus.error, last_error=str(exc), retry_delay=None, next_retry_at=None)
            await self._queue.put(_End(exc))
        except Exception as exc:  # a bug: say so through the iterator rather than die silently
            log.exception("the trace stream failed")
            self._update(status=ConnectionStatus.error, last_error=f"internal error: {exc!r}", retry_delay=None,
                         next_retry_at=None)
            error = TraceStreamError(f"the trace stream failed: {exc!r}")
            error.__cause__ = exc
            await self._queue.put(_End(error))

    async def _reconnect_forever(self) -> None:
        while True:
            try:
                if self._needs_snapshot:
                    if self._connects == 0:
                        self._update(status=ConnectionStatus.connecting)
                    await self._queue.put(await self._reload("", f"cannot load traces from {self.api_url}"))
                    self._needs_snapshot = False
                await self._connect_once()
                failure = _Retry("the server closed the stream")
            except _Retry as exc:
                failure = exc
            delay = self._backoff.next_delay(base=self._server_retry, at_least=failure.retry_after)
            log.info("trace stream: %s; reconnecting in %.2f s", failure.message, delay)
            await self._wait(delay, failure.message)

    async def _wait(self, delay: float, reason: str) -> None:
        self._wake.clear()  # before publishing, so an on_health callback may already call retry_now()
        self._update(status=ConnectionStatus.reconnecting, attempt=self._backoff.attempt, last_error=reason,
                     retry_delay=delay, next_retry_at=utc_now() + timedelta(seconds=delay))
        await wait_for_event(self._wake, delay)
        self._update(retry_delay=None, next_retry_at=None)

    async def _connect_once(self) -> None:
        """One connection, to its end; raises ``_Retry`` or a fatal ``TraceStreamError``."""
        first = self._connects == 0
        self._connects += 1
        params: dict[str, str | int] = filter_params(self._model, self._status)
        headers = bearer(self._token)
        if self._position is not None:
            if first:
                params["last_event_id"] = self._position
            else:
                headers["Last-Event-ID"] = str(self._position)
        if first:
            self._update(status=ConnectionStatus.connecting)
        else:
            self._update(status=ConnectionStatus.reconnecting, reconnects=self._health.reconnects + 1)
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
                        event = decode(sse)
                    except ValueError as exc:
                        raise _Retry(f"the server sent {exc}") from None
                    if event is not None:
                        await self._handle(event)
        except httpx.HTTPError as exc:
            raise _Retry(self._describe(exc)) from None

    def _describe(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.ConnectTimeout):
            return f"cannot connect to {self.api_url}: timed out"
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect to {self.api_url}: {exc or type(exc).__name__}"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no data from the server for {self._read_timeout:g} s"
        return f"the connection was lost: {exc or type(exc).__name__}"

    def _refusal(self, response: httpx.Response) -> Exception:
        """What a non-200 answer to the stream request means: fatal for 401 and other 4xx, else retry."""
        error = api_error(response)
        status = response.status_code
        if status == 429 or status == 408 or status >= 500:
            return _Retry(f"{error.message} (HTTP {status})", retry_after(response))
        return error

    async def _handle(self, event: StreamEvent) -> None:
        """Update position and health for one event and pass it on (or not: duplicates, resets)."""
        match event:
            case TraceEvent(id=seq):
                if self._position is not None and seq <= self._position:
                    return  # seen already (or reflected in the snapshot we loaded)
                self._position = seq
                self._update(last_event_at=utc_now(), last_event_id=seq)
            case Ping():
                self._update(last_ping_at=utc_now())
            case Connected(last_event_id=head):
                if self._position is None:  # a fresh start, not a resume: resuming from here misses nothing
                    self._position = head
                self._backoff.reset()
                self._update(status=ConnectionStatus.connected, attempt=0, connected_at=utc_now(),
                             last_event_id=self._position)
            case Reset(reason=reason) if self._load_snapshot_on_reset:
                failure = f"the stream was reset ({reason}) and the snapshot failed to load"
                await self._queue.put(await self._reload(reason, failure))
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

    async def _reload(self, reason: str, failure: str) -> Snapshot:
        """Load what the user should hold, and continue after it; ``failure`` says what a failed load means."""
        try:
            snapshot = await fetch_snapshot(self.api_url, self._token, model=self._model, status=self._status,
                                            limit=self._snapshot_limit, client=self._client, reason=reason)
        except StreamAuthError:
            raise
        except httpx.HTTPError as exc:
            raise _Retry(f"{failure}: {exc or type(exc).__name__}") from None
        except TraceApiError as exc:
            if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429):
                raise _Retry(f"{failure}: {exc}") from None
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise _Retry(f"{failure}: {exc}") from None
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
