"""The one write path: every route and ingest adapter stores traces through ``TraceWriter``.

Writes are insert-or-update by id over the store's two primitives (insert refusing a taken id, and a
compare-and-set replace), so they need no transaction a REST backend could not give: an update reads
the trace, applies the change in Python, and writes it back only if nobody changed it meanwhile,
trying again if somebody did.
"""

from __future__ import annotations

from ..schema import TraceCreate, TracePatch, now_iso
from .metrics import Metrics
from .records import as_patch, new_record, patched_record
from .stores import DuplicateTraceError, Record, StoreError, TraceStore

MAX_ATTEMPTS = 20  # compare-and-set rounds before giving up on a trace other writers keep changing


class WriteConflict(StoreError):
    def __init__(self, trace_id: str) -> None:
        super().__init__(f"trace {trace_id!r} changed {MAX_ATTEMPTS} times while being updated; try again")


class TraceWriter:
    def __init__(self, store: TraceStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    async def create(self, user_id: str, sent: list[TraceCreate]) -> list[Record]:
        """New traces, all or none; ``DuplicateTraceError`` when an id is taken."""
        now = now_iso()
        records = [new_record(user_id, item, now) for item in sent]
        await self.store.insert_traces(records)
        self.metrics.traces_written.labels("insert").inc(len(records))
        return records

    async def update(self, user_id: str, trace_id: str, patch: TracePatch) -> Record | None:
        """The user's trace after the change; None when the user has no such trace."""
        for _ in range(MAX_ATTEMPTS):
            current = await self.store.get_trace(user_id, trace_id)
            if current is None:
                return None
            record = patched_record(current, patch, now_iso())
            if await self.store.replace_trace(record, expected_updated_at=current["updated_at"]):
                self.metrics.traces_written.labels("update").inc()
                return record
        raise WriteConflict(trace_id)

    async def insert_if_absent(self, user_id: str, sent: TraceCreate) -> Record | None:
        """Insert the trace unless the user has it already (None then, and nothing changes); a span's start
        reported late must not turn a finished call back. ``DuplicateTraceError`` when the id is another user's."""
        if sent.id is not None and await self.store.get_trace(user_id, sent.id) is not None:
            return None
        try:
            [record] = await self.create(user_id, [sent])
        except DuplicateTraceError:
            if await self.store.get_trace(user_id, sent.id or "") is None:
                raise  # taken by another user: never touched, never shown
            return None
        return record

    async def upsert(self, user_id: str, sent: TraceCreate) -> Record:
        """Insert the trace, or, when the user already has one with its id, update it with the fields
        sent (a span reported at its start and again at its end). ``DuplicateTraceError`` when the id
        is another user's."""
        for _ in range(MAX_ATTEMPTS):
            if sent.id is not None:
                updated = await self.update(user_id, sent.id, as_patch(sent))
                if updated is not None:
                    return updated
            try:
                [record] = await self.create(user_id, [sent])
                return record
            except DuplicateTraceError:
                if await self.store.get_trace(user_id, sent.id or "") is None:
                    raise  # taken by another user: never touched, never shown
        raise WriteConflict(sent.id or "")
