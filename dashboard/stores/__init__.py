"""Trace stores: one protocol, a backend per ``TRACES_DB_URL`` scheme."""

from .base import (
    DuplicateTraceError,
    EventBounds,
    StoredEvent,
    StoreError,
    TracePageData,
    TraceQuery,
    TraceStore,
    open_store,
)

__all__ = [
    "DuplicateTraceError", "EventBounds", "StoreError", "StoredEvent", "TracePageData", "TraceQuery",
    "TraceStore", "open_store",
]
