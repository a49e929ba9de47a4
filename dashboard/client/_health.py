"""How a stream is doing: its connection state and the times a dashboard shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class ConnectionStatus(StrEnum):
    """The state of the connection to the server (not to be confused with a trace's status)."""

    off = "off"
    connecting = "connecting"
    connected = "connected"
    reconnecting = "reconnecting"
    error = "error"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """How the stream is doing, as an immutable snapshot (a new one on every change).

    ``attempt`` counts the failed connection attempts since the last good connection (0 when
    healthy); ``reconnects`` counts every connection attempt after the first, over the stream's life.
    ``last_error`` keeps the most recent failure even after recovery; read it with ``status``.
    Times are timezone-aware UTC datetimes.
    """

    status: ConnectionStatus = ConnectionStatus.off
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
        return max(0.0, (self.next_retry_at - (now or utc_now())).total_seconds())
