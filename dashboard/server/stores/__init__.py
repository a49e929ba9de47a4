"""Where traces and their events are kept: the contract every backend meets (``protocol``), the
registry that picks one by ``TRACES_DB_URL`` scheme, and the backends themselves."""

from .protocol import (
    EVERY_EVENT,
    MAX_SEQ,
    Backend,
    DuplicateTraceError,
    EventBounds,
    EventFilter,
    EventLog,
    InvalidCursor,
    InvalidValue,
    Record,
    StoredEvent,
    StoreError,
    StoreOptions,
    TicketLedger,
    TraceQuery,
    TraceStore,
    may_continue,
    parse_seq,
)
from .registry import open_backend

__all__ = [
    "EVERY_EVENT", "MAX_SEQ", "Backend", "DuplicateTraceError", "EventBounds", "EventFilter", "EventLog", "InvalidCursor",
    "InvalidValue", "Record", "StoreError",
    "StoreOptions", "StoredEvent", "TicketLedger", "TraceQuery", "TraceStore", "may_continue", "open_backend", "parse_seq",
]
