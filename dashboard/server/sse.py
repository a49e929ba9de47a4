"""SSE framing, in one place: every byte a stream sends is built here with ``fastapi.sse``."""

from __future__ import annotations

import json
from typing import Any

from fastapi.sse import format_sse_event

from .stores import StoredEvent


def retry_frame(milliseconds: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return format_sse_event(retry=milliseconds)


def control_frame(event: str, data: Any) -> bytes:
    """A frame without an id: control events are not positions in the stream."""
    return format_sse_event(data_str=json.dumps(data, separators=(",", ":")), event=event)


def event_frame(event: StoredEvent) -> bytes:
    """A stored event's frame, its id the sequence number; the body is already JSON, framed as is."""
    return format_sse_event(data_str=event.body, event=event.kind.value, id=str(event.seq))
