"""A TraceFeed driven by hand, without a stream or a browser: what the ui tests share."""

from __future__ import annotations

from dashboard.client import StreamHealth, TraceEvent
from dashboard.ui.feed import TraceFeed

T0 = 1_800_000_000.0


def trace(trace_id: str, **fields) -> dict:
    base = {"id": trace_id, "user_id": "alice", "name": "summarize", "model": "gpt-4o", "status": "running",
            "created_at": "2026-11-25T10:00:00.000000Z", "latency_ms": None, "error": None}
    return base | fields


class Feed:
    """A TraceFeed driven by hand: events in, ``flush(at)`` out, toasts recorded."""

    def __init__(self, **params) -> None:
        self.feed = TraceFeed("token", **params)
        self.feed.on_health(StreamHealth(status="connected"))
        self.seq = 0

    def arrive(self, *traces: dict, update: bool = False) -> None:
        for item in traces:
            self.seq += 1
            self.feed.ingest(TraceEvent(self.seq, "trace_update" if update else "trace", item))

    def flush(self, at: float = T0):
        return self.feed.flush(now=at)

    def ids(self) -> list[str]:
        """Row ids oldest first (the frame itself is newest first, as the table shows it)."""
        return list(self.feed.frame["id"])[::-1]

    def flags(self) -> dict[str, str]:
        return dict(zip(self.feed.frame["id"], self.feed.frame["flag"]))
