"""The TraceStore protocol: what the API and the hub need from any backend, and nothing more.

A store keeps traces and, in the same transaction, an outbox of events whose integer ids are the
stream's sequence numbers. The hub follows that outbox; replay reads it; snapshots name its head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol


class StoreError(Exception):
    """The backend failed; the message is safe to show a user."""


class DuplicateTraceError(StoreError):
    def __init__(self, trace_id: str) -> None:
        super().__init__(f"a trace with id {trace_id!r} already exists")
        self.trace_id = trace_id


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One outbox row: ``body`` is the trace's JSON as stored, sent to streams without re-encoding."""

    seq: int
    kind: str  # "trace" on insert, "trace_update" on update
    user_id: str
    model: str | None
    status: str
    body: str


@dataclass(frozen=True, slots=True)
class TraceQuery:
    limit: int = 100
    cursor: int | None = None  # only traces older than this position
    model: str | None = None
    status: str | None = None
    since: str | None = None  # ISO 8601 UTC; traces created at or after it


@dataclass(frozen=True, slots=True)
class TracePageData:
    traces: list[dict[str, Any]]
    next_cursor: int | None
    last_event_id: int


@dataclass(frozen=True, slots=True)
class EventBounds:
    """A stream can resume from any N with ``floor <= N <= head``; older points need a reset."""

    floor: int
    head: int


Patcher = Callable[[dict[str, Any]], dict[str, Any]]


class TraceStore(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert_traces(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store all or none; raises DuplicateTraceError when an id is taken."""

    async def update_trace(self, user_id: str, trace_id: str, patch: Patcher) -> dict[str, Any] | None:
        """Apply ``patch`` to the user's trace atomically; None when the user has no such trace."""

    async def get_trace(self, user_id: str, trace_id: str) -> dict[str, Any] | None: ...

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePageData: ...

    async def events_after(
        self, after: int, limit: int, *, user_id: str | None = None, model: str | None = None, status: str | None = None
    ) -> list[StoredEvent]:
        """Committed events with ``seq > after`` in order, optionally only one user's matching ones."""

    async def event_bounds(self) -> EventBounds: ...

    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Return once an event after ``after`` may exist, or after ``timeout`` seconds."""

    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        """True the first time a ticket id is spent, False ever after (until it has expired)."""


def open_store(db_url: str, *, replay_events: int = 10_000, replay_seconds: float = 600.0) -> TraceStore:
    """The store a ``TRACES_DB_URL`` names."""
    if db_url.startswith("sqlite:///"):
        from .sqlite import SQLiteTraceStore

        return SQLiteTraceStore(db_url[len("sqlite:///"):], replay_events=replay_events, replay_seconds=replay_seconds)
    scheme = db_url.split(":", 1)[0]
    raise StoreError(f"TRACES_DB_URL {scheme!r} is not supported yet; use sqlite:///path/to/traces.db")


__all__ = [
    "DuplicateTraceError", "EventBounds", "Patcher", "StoreError", "StoredEvent", "TracePageData",
    "TraceQuery", "TraceStore", "open_store",
]
