"""The resumable client of the trace stream, on httpx + httpx-sse: ``TraceStream`` (snapshot, then
live events across reconnects), ``fetch_snapshot``, ``fetch_history`` (any window, every page), the event
types, health, and errors; and ``Recorder``, which records calls from Python without OpenTelemetry. Private
modules behind ``__all__``; imports only what both sides share (the schema, the backoff policy)."""

from ._buffer import RecorderStats
from ._errors import StreamAuthError, TraceApiError, TraceStreamError, api_error
from ._events import Connected, Ping, Reset, Snapshot, StreamError, StreamEvent, Subscribed, TraceEvent
from ._health import ConnectionStatus, StreamHealth
from ._history import History, fetch_history
from ._recorder import Call, Recorder
from ._snapshot import fetch_snapshot
from ._stream import TraceStream

__all__ = [
    "Call",
    "ConnectionStatus",
    "History",
    "Connected",
    "Ping",
    "Recorder",
    "RecorderStats",
    "Reset",
    "Snapshot",
    "StreamAuthError",
    "StreamError",
    "StreamEvent",
    "StreamHealth",
    "Subscribed",
    "TraceApiError",
    "TraceEvent",
    "TraceStream",
    "TraceStreamError",
    "api_error",
    "fetch_history",
    "fetch_snapshot",
]
