"""The PostgreSQL backend: traces in ``llm_traces``, their events in a trigger-filled outbox numbered by
the sequencer (``pg_schema`` says why that makes resume gap-free with concurrent writers on any number
of nodes), spent tickets in a table; psycopg 3 (async) over a psycopg_pool pool. ``pg_follower`` keeps
this process's view of the newest event id current.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from ...schema import EventKind, Trace, TracePage, utc_iso
from ...waits import being_cancelled
from .pg_follower import outbox_follower
from .pg_schema import LOCK_NAMESPACE, MIGRATION_LOCK, MIGRATIONS, MIGRATIONS_TABLE
from .protocol import (
    EVERY_EVENT,
    Backend,
    DuplicateTraceError,
    EventBounds,
    EventFilter,
    InvalidCursor,
    InvalidValue,
    Record,
    StoredEvent,
    StoreError,
    StoreOptions,
    TraceQuery,
)

T = TypeVar("T")
IDLE_CHECK_SECONDS = 2.0
MAX_PAGE_CHARS = 2**62  # no byte budget: the page is bounded by count alone
TROUBLE_CHECK_SECONDS = 30.0
COLUMNS = ("id", "user_id", "name", "model", "provider", "status", "started_at", "ended_at", "latency_ms", "input_tokens",
           "output_tokens", "total_tokens", "cost_usd", "input", "output", "error", "metadata", "created_at", "updated_at")
JSON_COLUMNS = {"input", "output", "metadata"}
INSERT = sql.SQL("INSERT INTO llm_traces ({}) VALUES ({})").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
REPLACE = sql.SQL("UPDATE llm_traces SET ({}) = ({}) WHERE id = %s AND user_id = %s AND updated_at = %s::timestamptz").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS[2:])), sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS[2:])))


def open_postgres(db_url: str, options: StoreOptions) -> Backend:
    """``postgresql://user:password@host:port/database`` (``postgres://`` too)."""
    store = PostgresStore(db_url, replay_events=options.replay_events, replay_seconds=options.replay_seconds)
    return Backend(name="postgres", traces=store, events=store, tickets=store, resources=(store,))


class PostgresStore:
    """TraceStore, EventLog and TicketLedger on one PostgreSQL database, shared by any number of processes."""

    def __init__(self, url: str, *, replay_events: int = 10_000, replay_seconds: float = 600.0, pool_size: int = 10) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.replay_events = replay_events
        self.replay_seconds = replay_seconds
        self.pool = psycopg_pool.AsyncConnectionPool(
            self.url, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": True},
            check=self._check_if_idle, name="traces")
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = weakref.WeakKeyDictionary()
        self.follower = outbox_follower(self.url, self.pool, replay_events=replay_events, replay_seconds=replay_seconds,
                                        on_trouble=self.note_trouble)
        self._check_all_until = 0.0  # after a failure (a restarted server), every pooled connection is checked
        self.uuid_columns: frozenset[str] = frozenset()

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=30)
        except psycopg_pool.PoolTimeout as exc:
            await self.pool.close()
            raise StoreError(f"PostgreSQL did not accept a connection: {exc}") from exc
        try:
            await self._migrate()
            self.uuid_columns = await self._uuid_columns()
            await self.follower.start()
        except BaseException:
            await self.pool.close()
            raise

    async def close(self) -> None:
        await self.follower.stop()
        await self.pool.close(timeout=5.0)

    async def _check_if_idle(self, conn: psycopg.AsyncConnection) -> None:
        """Check a pooled connection before use only if it sat idle (a restarted server leaves dead ones);
        checking every one cost a round trip per write, about a third of the throughput (bench/pg_bench.py)."""
        now = time.monotonic()
        if now < self._check_all_until or now - self._last_used.get(conn, 0.0) > IDLE_CHECK_SECONDS:
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    def note_trouble(self) -> None:
        """A connection failed: check every pooled one before use for a while (others may be dead too)."""
        self._check_all_until = time.monotonic() + TROUBLE_CHECK_SECONDS

    async def _run(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.pool.connection() as conn:
                try:
                    return await work(conn)
                finally:
                    self._last_used[conn] = time.monotonic()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if being_cancelled():  # taken for a store failure, a retrying loop would swallow the cancellation
                raise asyncio.CancelledError() from exc
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout):
                self.note_trouble()
                raise StoreError(f"the database failed: {exc}") from exc
            raise

    async def _migrate(self) -> None:
        """Apply what is missing, holding a lock, so processes starting together apply each migration once."""
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, MIGRATION_LOCK))
            try:
                await conn.execute(MIGRATIONS_TABLE)
                done = {row[0] for row in await (await conn.execute("SELECT version FROM traces_schema_migrations")).fetchall()}
                for version, title, script in MIGRATIONS:
                    if version not in done:
                        async with conn.transaction():
                            await conn.execute(script)
                            await conn.execute("INSERT INTO traces_schema_migrations (version, title) VALUES (%s, %s)",
                                               (version, title))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, MIGRATION_LOCK))

    async def _uuid_columns(self) -> frozenset[str]:
        """Which of id and user_id an adopted table declares uuid: such values are checked before use."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'llm_traces' AND column_name IN ('id', 'user_id') AND data_type = 'uuid'")).fetchall()
        return frozenset(row[0] for row in rows)

    def _fits(self, column: str, value: str) -> bool:
        if column not in self.uuid_columns:
            return True
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True

    def _check(self, record: Record) -> None:
        for column in ("id", "user_id"):
            if not self._fits(column, record[column]):
                raise InvalidValue(f"this database's llm_traces.{column} is a uuid: {record[column]!r} is not a UUID")

    # TraceStore

    async def insert_traces(self, records: list[Record]) -> None:
        for record in records:
            self._check(record)

        async def work(conn: psycopg.AsyncConnection) -> None:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(INSERT, [_values(record) for record in records])
            except psycopg.errors.UniqueViolation as exc:
                raise DuplicateTraceError(duplicate_id(exc.diag.message_detail or "", records)) from None

        await self._run(work)
        await self.follower.number_now()

    async def replace_trace(self, record: Record, *, expected_updated_at: str) -> bool:
        self._check(record)

        async def work(conn: psycopg.AsyncConnection) -> bool:
            values = _values(record)
            cur = await conn.execute(REPLACE, [*values[2:], record["id"], record["user_id"], expected_updated_at])
            return cur.rowcount == 1

        replaced = await self._run(work)
        if replaced:
            await self.follower.number_now()
        return replaced

    async def get_trace(self, user_id: str, trace_id: str) -> Record | None:
        if not (self._fits("id", trace_id) and self._fits("user_id", user_id)):
            return None

        async def work(conn: psycopg.AsyncConnection) -> Record | None:
            row = await (await conn.execute("SELECT traces_row_json(t) FROM llm_traces t WHERE id = %s AND user_id = %s",
                                            (trace_id, user_id))).fetchone()
            return row[0] if row else None

        return await self._run(work)

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePage:
        """Newest first by created_at (then id); the cursor is the last row's (created_at, id), opaque."""
        if not self._fits("user_id", user_id):
            return TracePage(traces=[], next_cursor=None, last_event_id=await self._newest())
        clauses, params = [sql.SQL("user_id = %s")], [user_id]
        for column, value in (("model", query.model), ("status", query.status)):
            if value is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if query.since is not None:
            clauses.append(sql.SQL("created_at >= %s::timestamptz"))
            params.append(query.since)
        if query.until is not None:
            clauses.append(sql.SQL("created_at < %s::timestamptz"))
            params.append(query.until)
        if query.cursor is not None:
            created_at, last_id = read_cursor(query.cursor)
            clauses.append(sql.SQL("(created_at, id::text) < (%s::timestamptz, %s)"))
            params += [created_at, last_id]
        statement = sql.SQL("SELECT traces_row_json(t)::text, traces_iso(t.created_at), t.id::text FROM llm_traces t "
                            "WHERE {} ORDER BY created_at DESC, id::text DESC LIMIT %s").format(sql.SQL(" AND ").join(clauses))

        async def work(conn: psycopg.AsyncConnection) -> TracePage:
            # One snapshot for the page and the stream position it reflects.
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                rows = await (await conn.execute(statement, [*params, query.limit + 1])).fetchall()
                newest = (await (await conn.execute("SELECT coalesce(max(seq), 0) FROM traces_outbox")).fetchone())[0]
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            return TracePage(traces=[Trace.model_validate_json(body) for body, _, _ in rows],
                             next_cursor=make_cursor(rows[-1][1], rows[-1][2]) if more else None, last_event_id=newest)

        return await self._run(work)

    # EventLog

    async def bounds(self) -> EventBounds:
        async def work(conn: psycopg.AsyncConnection) -> EventBounds:
            bounds = (await (await conn.execute("SELECT traces_event_bounds()")).fetchone())[0]
            return EventBounds(floor=bounds["floor"], watermark=bounds["watermark"])

        bounds = await self._run(work)
        self.follower.saw(bounds.watermark)
        return bounds

    async def _newest(self) -> int:
        return (await self.bounds()).watermark

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        async def work(conn: psycopg.AsyncConnection) -> list[StoredEvent]:
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("SELECT * FROM traces_events_after(%s, %s, %s, %s, %s, %s, %s)",
                                  (after, upto, limit, max_bytes or MAX_PAGE_CHARS, which.user_id, which.model, which.status))
                rows = await cur.fetchall()
            return [StoredEvent(seq, EventKind(kind), user, model, status, body) for seq, kind, user, model, status, body in rows]

        return await self._run(work)

    async def wait_for_events(self, after: int, timeout: float) -> None:
        await self.follower.wait_past(after, timeout)

    # TicketLedger

    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        async def work(conn: psycopg.AsyncConnection) -> bool:
            cur = await conn.execute("INSERT INTO traces_spent_tickets (id, expires_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                     (ticket_id, expires_at))
            return cur.rowcount == 1  # expired tickets are forgotten when the outbox is pruned

        return await self._run(work)


def _values(record: Record) -> list[Any]:
    return [Jsonb(record.get(column)) if column in JSON_COLUMNS and record.get(column) is not None else record.get(column)
            for column in COLUMNS]


def duplicate_id(detail: str, records: list[Record]) -> str:
    """Which of ``records`` PostgreSQL's "Key (id)=(x) already exists." (or "Key (user_id, id)=(u, x)")
    names: the key's last value is the id (ids hold no comma or parenthesis)."""
    _, _, values = detail.partition("=(")
    named = values.rsplit(")", 1)[0].split(", ")[-1]
    for record in records:
        if record["id"] == named:
            return record["id"]
    return records[0]["id"]


def make_cursor(created_at: str, trace_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, trace_id]).encode()).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[str, str]:
    """The (created_at, id) a cursor holds, as PostgreSQL reads them: the time rewritten the way
    ``make_cursor`` wrote it (any other ISO form, or a year outside 1-9999 in UTC, would fail there)
    and no NUL in the id (no text column holds one)."""
    try:
        created_at, trace_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(created_at, str) and isinstance(trace_id, str)) or "\x00" in trace_id:
            raise ValueError
        created_at = utc_iso(datetime.fromisoformat(created_at.replace("Z", "+00:00")))
    except (ValueError, TypeError, OverflowError):
        raise InvalidCursor("cursor must be a next_cursor value from a previous page") from None
    return created_at, trace_id

