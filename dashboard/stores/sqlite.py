"""The embedded store: one SQLite file in WAL mode, traces and their event outbox in one transaction.

All database work runs on one dedicated thread with one connection, so the event loop never blocks
on disk and SQLite's single writer never contends with itself. SQLite commits one transaction at a
time, so event ids become visible in order: a reader taking "everything after N" cannot skip one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..records import encode
from .base import DuplicateTraceError, EventBounds, Patcher, StoredEvent, StoreError, TracePageData, TraceQuery

T = TypeVar("T")
PRUNE_EVERY_EVENTS = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    model      TEXT,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_user ON traces (user_id, seq);
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    model    TEXT,
    status   TEXT NOT NULL,
    body     TEXT NOT NULL,
    created  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
CREATE TABLE IF NOT EXISTS spent_tickets (
    id         TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""


class SQLiteTraceStore:
    """A TraceStore on a local SQLite file (``sqlite:///path``)."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, replay_events: int = 10_000, replay_seconds: float = 600.0) -> None:
        self.path = Path(path)
        self.replay_events = replay_events
        self.replay_seconds = replay_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._written = asyncio.Event()
        self._last_written = 0
        self._last_pruned = 0

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        await self._run(self._open_db)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close_db)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"the database failed: {exc}") from exc

    # Everything below ``_`` runs on the store's thread.

    def _open_db(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._db = db
        self._last_written = self._head()
        self._last_pruned = self._last_written

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is closed")
        return self._db

    def _head(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def _append_event(self, kind: str, record: dict[str, Any], body: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO events (kind, user_id, trace_id, model, status, body, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, record["user_id"], record["id"], record["model"], record["status"], body, time.time()),
        )
        return int(cursor.lastrowid)

    def _insert(self, records: list[dict[str, Any]]) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            last = 0
            for record in records:
                body = encode(record)
                try:
                    db.execute(
                        "INSERT INTO traces (id, user_id, model, status, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                        (record["id"], record["user_id"], record["model"], record["status"], record["created_at"], body),
                    )
                except sqlite3.IntegrityError:
                    raise DuplicateTraceError(record["id"]) from None
                last = self._append_event("trace", record, body)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._maybe_prune(last)
        return last

    def _update(self, user_id: str, trace_id: str, patch: Patcher) -> tuple[dict[str, Any] | None, int]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT body FROM traces WHERE id = ? AND user_id = ?", (trace_id, user_id)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None, 0
            record = patch(json.loads(row[0]))
            body = encode(record)
            db.execute(
                "UPDATE traces SET model = ?, status = ?, body = ? WHERE id = ?",
                (record["model"], record["status"], body, trace_id),
            )
            last = self._append_event("trace_update", record, body)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._maybe_prune(last)
        return record, last

    def _maybe_prune(self, head: int) -> None:
        """Drop events outside the replay window: older than both the last N events and the last T seconds."""
        if head - self._last_pruned < min(PRUNE_EVERY_EVENTS, self.replay_events):
            return
        self._last_pruned = head
        self.db.execute(
            "DELETE FROM events WHERE seq <= ? AND created < ?",
            (head - self.replay_events, time.time() - self.replay_seconds),
        )
        self.db.execute("DELETE FROM spent_tickets WHERE expires_at < ?", (time.time(),))

    def _list(self, user_id: str, query: TraceQuery) -> TracePageData:
        clauses, params = ["user_id = ?"], [user_id]
        for column, value in (("model", query.model), ("status", query.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("created_at >= ?")
            params.append(query.since)
        if query.cursor is not None:
            clauses.append("seq < ?")
            params.append(query.cursor)
        sql = f"SELECT seq, body FROM traces WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?"
        db = self.db
        db.execute("BEGIN")  # one read snapshot for the page and the position it reflects
        try:
            rows = db.execute(sql, (*params, query.limit + 1)).fetchall()
            head = self._head()
        finally:
            db.execute("COMMIT")
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return TracePageData(
            traces=[json.loads(body) for _, body in rows],
            next_cursor=rows[-1][0] if more else None,
            last_event_id=head,
        )

    def _get(self, user_id: str, trace_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM traces WHERE id = ? AND user_id = ?", (trace_id, user_id)).fetchone()
        return json.loads(row[0]) if row else None

    def _events(self, after: int, limit: int, user_id: str | None, model: str | None, status: str | None) -> list[StoredEvent]:
        clauses, params = ["seq > ?"], [after]
        for column, value in (("user_id", user_id), ("model", model), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self.db.execute(
            f"SELECT seq, kind, user_id, model, status, body FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def _bounds(self) -> EventBounds:
        head = self._head()
        oldest = self.db.execute("SELECT min(seq) FROM events").fetchone()[0]
        return EventBounds(floor=head if oldest is None else oldest - 1, head=head)

    def _spend(self, ticket_id: str, expires_at: float) -> bool:
        try:
            self.db.execute("INSERT INTO spent_tickets (id, expires_at) VALUES (?, ?)", (ticket_id, expires_at))
        except sqlite3.IntegrityError:
            return False
        return True

    # The TraceStore protocol.

    async def insert_traces(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        last = await self._run(self._insert, records)
        self._note_written(last)
        return records

    async def update_trace(self, user_id: str, trace_id: str, patch: Patcher) -> dict[str, Any] | None:
        record, last = await self._run(self._update, user_id, trace_id, patch)
        self._note_written(last)
        return record

    async def get_trace(self, user_id: str, trace_id: str) -> dict[str, Any] | None:
        return await self._run(self._get, user_id, trace_id)

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePageData:
        return await self._run(self._list, user_id, query)

    async def events_after(
        self, after: int, limit: int, *, user_id: str | None = None, model: str | None = None, status: str | None = None
    ) -> list[StoredEvent]:
        return await self._run(self._events, after, limit, user_id, model, status)

    async def event_bounds(self) -> EventBounds:
        return await self._run(self._bounds)

    async def wait_for_events(self, after: int, timeout: float) -> None:
        # Writes through this process wake us at once; the timeout notices writers in other processes.
        if self._last_written > after:
            return
        self._written.clear()
        try:
            await asyncio.wait_for(self._written.wait(), timeout)
        except TimeoutError:
            pass

    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        return await self._run(self._spend, ticket_id, expires_at)

    def _note_written(self, last: int) -> None:
        if last > self._last_written:
            self._last_written = last
            self._written.set()
