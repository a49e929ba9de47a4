"""One SSE message to one typed event: pure (no IO, no state), so it is tested apart from the connection."""

from __future__ import annotations

import json
import logging

from httpx_sse import ServerSentEvent

from ..schema import EventKind
from ._events import Connected, Ping, Reset, StreamError, StreamEvent, Subscribed, TraceEvent

log = logging.getLogger("dashboard.client")


def decode(sse: ServerSentEvent) -> StreamEvent | None:
    """The typed event of one SSE message; None for a retry-only frame or an unknown event.

    Raises ``ValueError`` for a malformed message.
    """
    kind = sse.event
    if kind == "message" and not sse.data:
        return None  # a `retry:`-only frame, or a blank line after an id
    try:
        data = json.loads(sse.data)
        if not isinstance(data, dict):
            raise TypeError("the data is not a JSON object")
        if kind in (EventKind.trace.value, EventKind.trace_update.value):
            return TraceEvent(int(sse.id), EventKind(kind), data)
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
