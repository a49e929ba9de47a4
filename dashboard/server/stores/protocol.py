"""What the API needs from a backend, in three parts that a backend may provide separately.

- ``TraceStore``: the traces themselves. Writes are whole records, refused when the id is taken
  (``insert_traces``) or applied only if nobody changed the trace meanwhile (``replace_trace``, a
  compare-and-set on ``updated_at``), so the write service can insert-or-update over any backend,
  SQL or HTTP, without running Python inside a transaction.
- ``EventLog``: every insert and update as an event with an integer sequence id. Ids may become
  visible out of order (concurrent transactions on Postgres commit late), so the log exposes a
  *watermark*: the highest id at or below which every event is committed or known never to exist.
  Readers go up to the watermark and never past it; on SQLite it is simply the newest id.
- ``TicketLedger``: single-use stream tickets, spent once across every API process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ...schema import EventKind, TracePage

Record = dict[str, Any]  # a whole trace, as stored and sent (the fields of schema.Trace)
MAX_SEQ = 2**63 - 1  # event ids (and SQLite's row seq) are 64-bit signed integers on every store


def parse_seq(text: str) -> int | None:
    """A sequence number a client sent back, or None: ASCII digits only (``str.isdigit`` also passes
    ``²``, which ``int`` refuses), and short enough to reach no store as a 64-bit overflow."""
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_SEQ)) and int(text) <= MAX_SEQ:
        return int(text)
    return None


class StoreError(Exception):
    """The backend failed; the message is safe to show a user."""


class DuplicateTraceError(StoreError):
    def __init__(self, trace_id: str) -> None:
        super().__init__(f"a trace with id {trace_id!r} already exists")
        self.trace_id = trace_id


class InvalidValue(StoreError):
    """A value this backend cannot hold (a trace id that is not a UUID where the table's id is a uuid):
    the client's mistake, answered 422, nothing stored."""


class InvalidCursor(StoreError):
    """A ``cursor`` that is not a ``next_cursor`` this backend gave: answered 422."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event: ``body`` is the trace's JSON as stored, sent to streams without re-encoding."""

    seq: int
    kind: EventKind
    user_id: str
    model: str | None
    status: str
    body: str


@dataclass(frozen=True, slots=True)
class TraceQuery:
    limit: int = 100
    cursor: str | None = None  # a next_cursor from the previous page: only traces older than it
    model: str | None = None
    status: str | None = None
    since: str | None = None  # ISO 8601 UTC; traces created at or after it
    until: str | None = None  # ISO 8601 UTC; traces created before it


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants: one user's, optionally of one model and one status."""

    user_id: str | None = None
    model: str | None = None
    status: str | None = None

    def matches(self, event: StoredEvent) -> bool:
        return ((self.user_id is None or event.user_id == self.user_id)
                and (self.model is None or event.model == self.model)
                and (self.status is None or event.status == self.status))

    def narrowing(self) -> dict[str, str]:
        """The model and status filters in force, as the ``subscribed`` event reports them."""
        return {key: value for key, value in (("model", self.model), ("status", self.status)) if value is not None}


EVERY_EVENT = EventFilter()


@dataclass(frozen=True, slots=True)
class EventBounds:
    """A stream can resume from any N with ``floor <= N <= watermark``; older points need a reset."""

    floor: int
    watermark: int


class TraceStore(Protocol):
    async def insert_traces(self, records: list[Record]) -> None:
        """Store all or none; ``DuplicateTraceError`` when an id is taken (by anyone)."""

    async def replace_trace(self, record: Record, *, expected_updated_at: str) -> bool:
        """Replace the user's trace with ``record`` if its ``updated_at`` is still ``expected_updated_at``;
        False (and nothing changes) otherwise, or when the user has no such trace."""

    async def get_trace(self, user_id: str, trace_id: str) -> Record | None: ...

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePage:
        """Newest first; ``last_event_id`` is the watermark the page reflects."""


class EventLog(Protocol):
    async def bounds(self) -> EventBounds: ...

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        """Events with ``after < seq <= upto`` (``upto`` at most the watermark) matching ``which``, in order:
        at most ``limit``, and none after the one whose body brings the page to ``max_bytes`` (so a page
        holds at least one event; ``may_continue`` says whether a page may have stopped short). Bodies are
        measured in characters (``len(body)``: bytes for ASCII), the same way by every store and caller."""

    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Return once the watermark may have passed ``after``, or after ``timeout`` seconds."""


def may_continue(page: list[StoredEvent], limit: int, max_bytes: int | None) -> bool:
    """Whether ``events_after`` may have stopped before ``upto``: the page is full by count or by bytes."""
    return len(page) >= limit or (max_bytes is not None and sum(len(event.body) for event in page) >= max_bytes)


class TicketLedger(Protocol):
    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        """True the first time a ticket id is spent, False ever after (until it has expired)."""


class Resource(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What a backend is told besides its URL: how much history to keep for resuming streams, and the
    project a ``supabase`` URL means (``SUPABASE_URL``, ``SUPABASE_KEY``)."""

    replay_events: int = 10_000
    replay_seconds: float = 600.0
    supabase_url: str | None = None
    supabase_key: str | None = None


@dataclass
class Backend:
    """The parts one ``TRACES_DB_URL`` names, and what must be opened and closed for them."""

    name: str
    traces: TraceStore
    events: EventLog
    tickets: TicketLedger
    resources: tuple[Resource, ...]

    async def open(self) -> None:
        opened: list[Resource] = []
        try:
            for resource in self.resources:
                await resource.open()
                opened.append(resource)
        except BaseException:
            for resource in reversed(opened):
                await resource.close()
            raise

    async def close(self) -> None:
        for resource in reversed(self.resources):
            await resource.close()
