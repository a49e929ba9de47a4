"""``Recorder``: record LLM calls from plain Python, without OpenTelemetry, and post them in the background.

    recorder = Recorder("http://127.0.0.1:8000", token)

    @recorder.record(model="gpt-4o")               # a sync or an async function
    def summarize(text: str) -> ChatCompletion: ...

    with recorder.call("rerank", model="cohere-rerank") as call:   # or `async with`
        call.input, call.output, call.input_tokens, call.cost_usd = query, ranked, 812, 0.0004

A call is posted as ``running`` when it starts and updated when it ends (only the final version, if
the start had not left yet). The caller only encodes and queues (no IO, no exception from the
recorder; the call's own exception is recorded as ``error`` and re-raised unchanged). One daemon
thread sends batches (``POST /api/traces``) and updates (``PATCH``), retries with backoff while the
API is unreachable, drops (counting, and saying why) what it refuses, and flushes at exit."""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote

import httpx

from ..backoff import Backoff
from ..schema import MAX_NAME_CHARS, MAX_TEXT_CHARS, WRITE_PATH, TraceStatus, utc_iso
from ._buffer import Entry, RecorderStats, TraceBuffer, encode, jsonable
from ._errors import api_error
from ._snapshot import bearer, retry_after

log = logging.getLogger("dashboard.client")

F = TypeVar("F", bound=Callable[..., Any])

MAX_BATCH_TRACES = 1000  # the server's default limit per request
MAX_BATCH_BYTES = 1 << 20  # one request's body; a larger trace goes alone
SPLIT = frozenset({400, 409, 413, 422})  # a batch refused for one of its traces: find which by halves


class Call:
    """One call being recorded: the object ``with recorder.call(...) as call`` yields.

    Set what you know (``input``, ``output``, ``input_tokens``, ``output_tokens``, ``cost_usd``,
    ``metadata[...]``, ``model``); set ``error`` to mark the call failed without raising. The times,
    ``latency_ms`` and ``status`` are the recorder's.
    """

    __slots__ = ("id", "name", "model", "provider", "input", "output", "input_tokens", "output_tokens",
                 "cost_usd", "metadata", "error", "status", "started_at", "ended_at", "latency_ms",
                 "_recorder", "_began", "_clock", "_queued")

    def __init__(self, recorder: Recorder, name: str, model: str | None = None, provider: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.id = str(uuid.uuid4())
        self.name, self.model, self.provider = name, model, provider
        self.metadata: dict[str, Any] = _object(metadata)
        self.input: Any = None
        self.output: Any = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cost_usd: float | None = None
        self.error: str | None = None
        self.status = TraceStatus.pending
        self.started_at: str | None = None  # ISO 8601 UTC, set by the recorder
        self.ended_at: str | None = None
        self.latency_ms: float | None = None
        self._recorder = recorder
        self._began = datetime.now(UTC)
        self._clock = 0.0
        self._queued = False

    def capture(self, response: Any) -> None:
        """Take the model and token counts from an OpenAI-style response (``.model``, and ``.usage``
        with ``prompt_tokens``/``completion_tokens``, or ``input_tokens``/``output_tokens``), an object
        or a dict, filling only what is not set yet. Anything else is ignored."""
        try:
            usage, model = _get(response, "usage"), _get(response, "model")
            if usage is None or not isinstance(model, str):
                return
            self.model = self.model or model
            for mine, theirs in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
                count = _get(usage, theirs)
                count = _get(usage, mine) if count is None else count
                if getattr(self, mine) is None and isinstance(count, int) and not isinstance(count, bool):
                    setattr(self, mine, count)
        except Exception:  # a response object whose attributes raise: not ours to fail on
            log.debug("trace recorder: could not read usage from %r", type(response), exc_info=True)

    def __enter__(self) -> Call:
        self._recorder._begin(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._recorder._end(self, exc)

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.__exit__(kind, exc, tb)

    def _fields(self) -> dict[str, Any]:
        fields = {
            "name": _short(self.name), "model": _short(self.model), "provider": _short(self.provider),
            "status": self.status.value, "started_at": self.started_at, "ended_at": self.ended_at,
            "latency_ms": self.latency_ms, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd, "input": _payload(self.input), "output": _payload(self.output),
            "error": None if self.error is None else str(self.error)[:MAX_TEXT_CHARS],
            "metadata": _object(self.metadata) or None,
        }
        return {key: value for key, value in fields.items() if value is not None}


class Recorder:
    """Records calls and posts them to ``api_url`` as the token's user, from one background thread.

    ``max_buffer_bytes`` bounds what is held (encoded JSON, waiting or on the wire); ``batch_max``
    traces go per request, at most ``flush_interval`` seconds after the oldest was recorded (sooner
    when a batch is full or on ``flush``). ``client``: an ``httpx.Client`` to send with (yours to
    close); ``backoff``: the retry policy; ``exit_timeout``: how long the flush at exit may take.
    Close it with ``close()`` (or ``with Recorder(...)``); one not closed flushes at exit.
    """

    def __init__(self, api_url: str, token: str, *, max_buffer_bytes: int = 8 << 20, batch_max: int = 100,
                 flush_interval: float = 0.5, client: httpx.Client | None = None, backoff: Backoff | None = None,
                 exit_timeout: float = 5.0) -> None:
        url = httpx.URL(api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"api_url must be an http(s) URL, not {api_url!r}")
        if not 1 <= batch_max <= MAX_BATCH_TRACES:
            raise ValueError(f"batch_max must be between 1 and {MAX_BATCH_TRACES}")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.api_url = api_url.rstrip("/")
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.exit_timeout = exit_timeout
        self.last_error: str | None = None
        self._headers = {**bearer(token), "Content-Type": "application/json"}
        self._buffer = TraceBuffer(max_buffer_bytes, batch_max, MAX_BATCH_BYTES)
        self._client, self._owns_client = client, client is None
        self._backoff = backoff or Backoff(0.5, 30.0)
        self._failures = 0
        self._last_refusal: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._exit_hook: Callable[[], None] | None = None

    # --- recording ------------------------------------------------------------------------------

    @overload
    def record(self, name: F, /) -> F: ...

    @overload
    def record(self, name: str | None = None, *, model: str | None = None, provider: str | None = None,
               metadata: dict[str, Any] | None = None) -> Callable[[F], F]: ...

    def record(self, name: Any = None, *, model: str | None = None, provider: str | None = None,
               metadata: dict[str, Any] | None = None) -> Any:
        """Decorate a sync or async function so each call of it is recorded (``name`` defaults to the
        function's qualified name). An OpenAI-style return value fills the model and tokens."""
        if callable(name):
            return self.record()(name)

        def decorate(fn: F) -> F:
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                raise TypeError("record() times a call, not a generator: use `with recorder.call(...)` inside it")
            label = name or getattr(fn, "__qualname__", None) or repr(fn)

            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    with self.call(label, model=model, provider=provider, metadata=metadata) as call:
                        result = await fn(*args, **kwargs)
                        call.capture(result)
                        return result
                return run_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                with self.call(label, model=model, provider=provider, metadata=metadata) as call:
                    result = fn(*args, **kwargs)
                    call.capture(result)
                    return result
            return run  # type: ignore[return-value]

        return decorate

    def call(self, name: str, *, model: str | None = None, provider: str | None = None,
             metadata: dict[str, Any] | None = None) -> Call:
        """A call to record: ``with recorder.call("summarize", model="gpt-4o") as call:`` (or ``async with``)."""
        return Call(self, name, model, provider, metadata)

    def _begin(self, call: Call) -> None:
        try:
            call._clock = time.perf_counter()
            call._began = datetime.now(UTC)
            call.started_at = utc_iso(call._began)
            call.status = TraceStatus.running
            call._queued = self._put(call, follows=False)
        except Exception:
            log.exception("trace recorder: could not record the start of %r", call.name)

    def _end(self, call: Call, exc: BaseException | None) -> None:
        try:
            elapsed = time.perf_counter() - call._clock
            call.latency_ms = round(elapsed * 1000, 3)
            call.ended_at = utc_iso(call._began + timedelta(seconds=elapsed))  # agrees with latency_ms
            if exc is not None and call.error is None:
                call.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            call.status = TraceStatus.error if call.error is not None else TraceStatus.success
            self._put(call, follows=call._queued)
        except Exception:
            log.exception("trace recorder: could not record the end of %r", call.name)

    def _put(self, call: Call, *, follows: bool) -> bool:
        """Encode and queue (no IO). The end of a call may shed its input, output and metadata to fit,
        or to be JSON at all: its status and numbers matter more."""
        fields, final = call._fields(), call.status.final
        slim = functools.partial(encode, _slim(fields)) if final else None
        try:
            body = encode(fields)
        except (TypeError, ValueError, RecursionError) as exc:
            log.warning("trace recorder: %r is not JSON (%s)%s", call.name, exc, "; sending it without its data"
                        if slim else "; dropped")
            if slim is None:
                self._buffer.count_dropped()
                return False
            body, slim = slim(), None
        if self._thread is None:
            self._start()
        return self._buffer.put(call.id, body, follows=follows, slim=slim)

    # --- control --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Send now, and wait until everything recorded before this call is sent or dropped; False
        if that took longer than ``timeout`` seconds (the API unreachable, say)."""
        return self._buffer.wait_delivered(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is left, trying for up to ``timeout`` seconds, then stop; what is still not sent
        is dropped and counted. Records made after this are dropped. Safe to call again."""
        with self._lock:
            thread, hook = self._thread, self._exit_hook
            self._exit_hook = None
            self._buffer.close(timeout)
        if hook is not None:
            atexit.unregister(hook)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)  # a request still on the wire ends by its own timeout; the thread is a daemon
            self._give_up()

    @property
    def stats(self) -> RecorderStats:
        return self._buffer.stats(self.last_error)

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._buffer.closing:
                return
            self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
            atexit.register(self._exit_hook)
            thread = threading.Thread(target=self._run, name="trace-recorder", daemon=True)
            thread.start()
            self._thread = thread

    # --- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._buffer.next_batch(self.flush_interval)) is not None:
                try:
                    self._deliver(batch)
                except _Retry as failure:
                    self._buffer.release(batch)
                    self.last_error, self._failures = failure.message, self._failures + 1
                    log.log(logging.WARNING if self._failures == 1 else logging.DEBUG,
                            "trace recorder: %s; keeping what is recorded and retrying", failure.message)
                    self._buffer.pause(self._backoff.next_delay(at_least=failure.retry_after), failure.retry_after or 0.0)
                except Exception:
                    log.exception("trace recorder: could not send %d trace(s); dropped", len(batch))
                    self._buffer.settle(batch, sent=False)
                else:
                    if self._failures:
                        log.info("trace recorder: delivering again after %d failed attempt(s)", self._failures)
                    self._failures = 0
                    self._backoff.reset()
                    self._buffer.batch_count = min(self.batch_max, self._buffer.batch_count + 1)
        finally:
            self._give_up()
            if self._owns_client and self._client is not None:
                self._client.close()

    def _give_up(self) -> None:
        if left := self._buffer.abandon():
            log.warning("trace recorder: closed with %d record(s) not delivered (%s)", left, self.last_error or "no time left")

    def _deliver(self, batch: list[Entry]) -> None:
        """Send a batch (or one update), settling each entry; raises ``_Retry`` to try again later."""
        entry = batch[0]
        if entry.update:
            response = self._send("PATCH", f"{self.api_url}{WRITE_PATH}/{quote(entry.trace_id, safe='')}", entry.fields)
        else:
            body = b'{"traces":[' + b",".join(item.item for item in batch) + b"]}"
            response = self._send("POST", self.api_url + WRITE_PATH, body)
        status = response.status_code
        if response.is_success:
            self._buffer.settle(batch, sent=True)
            return
        reason = f"{api_error(response).message} (HTTP {status})"
        if status in (408, 429) or status >= 500:
            if status == 429:  # a batch over the server's burst would never pass: halve, regrow one by one
                self._buffer.batch_count = max(1, len(batch) // 2)
            raise _Retry(f"the API answered {reason}", retry_after(response))
        self.last_error = reason
        if len(batch) > 1 and status in SPLIT:
            half = len(batch) // 2
            self._deliver(batch[:half])
            self._deliver(batch[half:])
        elif not entry.switched and status == (404 if entry.update else 409):
            self._buffer.switch(entry)  # the start never arrived, or an earlier try did arrive
            self._deliver(batch)
        else:
            level = logging.WARNING if reason != self._last_refusal else logging.DEBUG  # once per reason in a row
            self._last_refusal = reason
            log.log(level, "trace recorder: the API refused %d trace(s): %s; dropped", len(batch), reason)
            self._buffer.settle(batch, sent=False)

    def _send(self, method: str, url: str, body: bytes) -> httpx.Response:
        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        try:
            return self._client.request(method, url, content=body, headers=self._headers)
        except httpx.TransportError as exc:
            raise _Retry(f"cannot reach {self.api_url}: {exc or type(exc).__name__}") from None


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def _close_at_exit(ref: weakref.ReferenceType[Recorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder.close(recorder.exit_timeout)


def _slim(fields: dict[str, Any]) -> dict[str, Any]:
    slim = {key: value for key, value in fields.items() if key not in ("input", "output", "metadata")}
    if "error" in slim:
        slim["error"] = slim["error"][:1000]
    return {**slim, "metadata": {"recorder_omitted": ["input", "output", "metadata"]}}


def _object(value: Any) -> dict[str, Any]:
    """Metadata as the API takes it: a JSON object (something else is kept under ``value``)."""
    return dict(value) if isinstance(value, dict) else {} if value is None else {"value": value}


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _short(text: str | None) -> str | None:
    return None if text is None else str(text)[:MAX_NAME_CHARS]


def _payload(value: Any) -> Any:
    """What the API takes as input or output: text, a list or an object."""
    if value is None or isinstance(value, (str, list, dict)):
        return value
    if isinstance(value, tuple):
        return list(value)
    converted = jsonable(value)
    return converted if isinstance(converted, (str, list, dict)) else str(value)
