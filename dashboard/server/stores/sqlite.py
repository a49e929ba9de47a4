"""The embedded backend: one SQLite file in WAL mode, traces and their events in one transaction.

All database work runs on one dedicated thread with one connection, so the event loop never blocks
on disk and SQLite's single writer never contends with itself. SQLite commits one transaction at a
time, so event ids become visible in order: the watermark is simply the newest id.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ...schema import EventKind, Trace, TracePage
from ...waits import wait_for_event
from ..records import encode
from .protocol import (
    EVERY_EVENT,
    Backend,
    DuplicateTraceError,
    EventBounds,
    EventFilter,
    InvalidCursor,
    Record,
    StoredEvent,
    StoreError,
    StoreOptions,
    TraceQuery,
    parse_seq,
)

T = TypeVar("T")
PRUNE_EVERY_EVENTS = 1000
URL_PREFIX = "sqlite:///"
SCHEMA_VERSION = 1  # 1: trace ids unique per user, not across users

SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    model      TEXT,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body       TEXT NOT NULL,
    UNIQUE (user_id, id)  -- each user's ids are their own: nobody learns of, or is blocked by, another's
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


def open_sqlite(db_url: str, options: StoreOptions) -> Backend:
    """``sqlite:///path/to/traces.db``: one store that is also the event log and the ticket ledger."""
    if not db_url.startswith(URL_PREFIX) or len(db_url) == len(URL_PREFIX):
        raise StoreError(f"a SQLite URL is {URL_PREFIX}path/to/traces.db, got {db_url!r}")
    store = SQLiteStore(db_url[len(URL_PREFIX):], replay_events=options.replay_events,
                        replay_seconds=options.replay_seconds)
    return Backend(name="sqlite", traces=store, events=store, tickets=store, resources=(store,))


class SQLiteStore:
    """TraceStore, EventLog and TicketLedger on a local SQLite file."""

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

    # TraceStore

    async def insert_traces(self, records: list[Record]) -> None:
        self._note_written(await self._run(self._insert, records))

    async def replace_trace(self, record: Record, *, expected_updated_at: str) -> bool:
        last = await self._run(self._replace, record, expected_updated_at)
        self._note_written(last)
        return last > 0

    async def get_trace(self, user_id: str, trace_id: str) -> Record | None:
        return await self._run(self._get, user_id, trace_id)

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePage:
        return await self._run(self._list, user_id, query)

    # EventLog

    async def bounds(self) -> EventBounds:
        return await self._run(self._bounds)

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        return await self._run(self._events, after, upto, limit, which, max_bytes)

    async def wait_for_events(self, after: int, timeout: float) -> None:
        # Writes through this process wake us at once; the timeout notices writers in other processes.
        if self._last_written > after:
            return
        self._written.clear()
        await wait_for_event(self._written, timeout)

    # TicketLedger

    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        return await self._run(self._spend, ticket_id, expires_at)

    def _note_written(self, last: int) -> None:
        if last > self._last_written:
            self._last_written = last
            self._written.set()

    # Everything below runs on the store's thread.

    def _open_db(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        _upgrade(db)
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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

    def _transaction(self, work: Callable[[], T]) -> T:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def _append_event(self, kind: EventKind, record: Record, body: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO events (kind, user_id, trace_id, model, status, body, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind.value, record["user_id"], record["id"], record["model"], record["status"], body, time.time()),
        )
        return int(cursor.lastrowid)

    def _insert(self, records: list[Record]) -> int:
        def work() -> int:
            last = 0
            for record in records:
                body = encode(record)
                try:
                    self.db.execute(
                        "INSERT INTO traces (id, user_id, model, status, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                        (record["id"], record["user_id"], record["model"], record["status"], record["created_at"], body),
                    )
                except sqlite3.IntegrityError:
                    raise DuplicateTraceError(record["id"]) from None
                last = self._append_event(EventKind.trace, record, body)
            return last

        last = self._transaction(work)
        self._maybe_prune(last)
        return last

    def _replace(self, record: Record, expected_updated_at: str) -> int:
        """The new event's id, or 0 when the trace is not there as expected."""
        def work() -> int:
            row = self.db.execute("SELECT body FROM traces WHERE id = ? AND user_id = ?",
                                  (record["id"], record["user_id"])).fetchone()
            if row is None or json.loads(row[0]).get("updated_at") != expected_updated_at:
                return 0
            body = encode(record)
            self.db.execute("UPDATE traces SET model = ?, status = ?, body = ? WHERE id = ? AND user_id = ?",
                            (record["model"], record["status"], body, record["id"], record["user_id"]))
            return self._append_event(EventKind.trace_update, record, body)

        last = self._transaction(work)
        self._maybe_prune(last)
        return last

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

    def _list(self, user_id: str, query: TraceQuery) -> TracePage:
        clauses, params = ["user_id = ?"], [user_id]
        for column, value in (("model", query.model), ("status", query.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("created_at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("created_at < ?")
            params.append(query.until)
        if query.cursor is not None:
            clauses.append("seq < ?")
            params.append(read_cursor(query.cursor))
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
        return TracePage(
            traces=[Trace.model_validate_json(body) for _, body in rows],
            next_cursor=str(rows[-1][0]) if more else None,
            last_event_id=head,
        )

    def _get(self, user_id: str, trace_id: str) -> Record | None:
        row = self.db.execute("SELECT body FROM traces WHERE id = ? AND user_id = ?", (trace_id, user_id)).fetchone()
        return json.loads(row[0]) if row else None

    def _events(self, after: int, upto: int, limit: int, which: EventFilter, max_bytes: int | None) -> list[StoredEvent]:
        clauses, params = ["seq > ?", "seq <= ?"], [after, upto]
        for column, value in (("user_id", which.user_id), ("model", which.model), ("status", which.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self.db.execute(
            f"SELECT seq, kind, user_id, model, status, body, length(body) FROM events "
            f"WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        page, size = [], 0
        for seq, kind, user, model, status, body, length in rows:  # read lazily: stop at the byte budget
            page.append(StoredEvent(seq, EventKind(kind), user, model, status, body))
            size += length
            if max_bytes is not None and size >= max_bytes:
                break
        rows.close()
        return page

    def _bounds(self) -> EventBounds:
        head = self._head()
        oldest = self.db.execute("SELECT min(seq) FROM events").fetchone()[0]
        return EventBounds(floor=head if oldest is None else oldest - 1, watermark=head)

    def _spend(self, ticket_id: str, expires_at: float) -> bool:
        try:
            self.db.execute("INSERT INTO spent_tickets (id, expires_at) VALUES (?, ?)", (ticket_id, expires_at))
        except sqlite3.IntegrityError:
            return False
        return True


def read_cursor(cursor: str) -> int:
    """A next_cursor here is a row's seq."""
    seq = parse_seq(cursor)
    if seq is None:
        raise InvalidCursor("cursor must be a next_cursor value from a previous page")
    return seq


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to ``SCHEMA_VERSION``, keeping every row. Version 0
    had one id namespace across users (a UNIQUE column SQLite cannot drop): the table is rebuilt."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'traces'").fetchone()
    if version >= 1 or not exists:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE traces RENAME TO traces_v0")
        db.execute("DROP INDEX IF EXISTS traces_by_user")
        for statement in SCHEMA.split(";")[:2]:  # the traces table and its index, as they are now
            db.execute(statement)
        db.execute("INSERT INTO traces (seq, id, user_id, model, status, created_at, body) "
                   "SELECT seq, id, user_id, model, status, created_at, body FROM traces_v0")
        db.execute("DROP TABLE traces_v0")
        db.execute("PRAGMA user_version = 1")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
