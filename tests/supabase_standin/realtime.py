"""A stand-in for Supabase's Realtime server, for tests only: the real one (Elixir, reading the WAL) cannot
run here. It speaks the Phoenix channel protocol (vsn 1.0.0, JSON objects) as the ``realtime`` 2.34
client expects it, limited to what the adapter uses: heartbeats, ``phx_join`` with ``postgres_changes``
bindings (no filters), ``access_token``, ``phx_leave``, and INSERT changes of ``traces_outbox``.

The changes come from the real PostgreSQL: the schema's statement trigger notifies ``traces_outbox`` at
each commit that wrote traces, and each new outbox row (without ``body``, which can be MBs: the adapter
takes the message as a wake-up) goes to every joined channel whose binding matches. Rows are read in id
order; an id skipped by a transaction still open is read when it commits, as the WAL would give it.

Tests can lose messages, crash channels, drop sockets and refuse joins, and wait on the counters.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard.waits import being_cancelled, cancel_and_wait

OUTBOX = "traces_outbox"
SENT_COLUMNS = ("id", "seq", "kind", "user_id", "trace_id", "model", "status", "created_at")
# One statement, one snapshot: the rows past the cursor or in a gap, and which transactions could still add some.
READ = """
SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,
       (SELECT coalesce(json_agg(row_to_json(r) ORDER BY r.id), '[]')::text
          FROM (SELECT id, seq, kind, user_id, trace_id, model, status, created_at FROM traces_outbox
                 WHERE id > %s OR id = ANY(%s::bigint[])) r)
  FROM pg_current_snapshot() AS s
"""
COLUMN_TYPES = """
SELECT attname::text, (SELECT typname FROM pg_type WHERE oid = atttypid)::text
  FROM pg_attribute WHERE attrelid = 'public.traces_outbox'::regclass AND attnum > 0 AND NOT attisdropped
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Channel:
    topic: str
    join_ref: str | None
    bindings: list[dict[str, Any]]


@dataclass(eq=False)  # hashed by identity: kept in a set
class Socket:
    ws: WebSocket
    channels: dict[str, Channel] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.send_locked(message)

    async def send_locked(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message))


def reply(topic: str, ref: Any, status: str, response: dict[str, Any], join_ref: Any = None) -> dict[str, Any]:
    return {"event": "phx_reply", "topic": topic, "payload": {"status": status, "response": response},
            "ref": ref, "join_ref": join_ref}


class RealtimeStandIn:
    """The Realtime part of the Supabase stand-in: ``/realtime/v1/websocket``, fed by LISTEN on PostgreSQL.

    Counters (plain ints, read from any thread): ``joins`` (accepted), ``refused`` (joins refused),
    ``postgres_changes_sent``, ``dropped`` (lost on purpose), ``heartbeats``, ``open_sockets``, ``feed_errors``.
    Controls may be called from any thread.
    """

    def __init__(self, db_url: str, service_key: str) -> None:
        self.db_url = db_url
        self.service_key = service_key
        self.joins = self.refused = self.postgres_changes_sent = self.dropped = self.heartbeats = 0
        self._drop = False
        self._refuse: str | None = None
        self._sockets: set[Socket] = set()
        self._ids = itertools.count(1)  # binding ids (the client ignores changes for an id of 0)
        self._changed = threading.Condition()
        self._cursor = 0  # the highest outbox id read
        self._gaps: dict[int, int] = {}  # ids below the cursor not seen yet -> xmax when first missed
        self._columns: list[dict[str, str]] = []
        self.feed_errors = 0  # failures of the LISTEN/read connections (they connect again)
        self._wake = asyncio.Event()
        self._feed_task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def routes(self) -> list[WebSocketRoute]:
        return [WebSocketRoute("/realtime/v1/websocket", self._socket)]

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    # --- lifecycle: one LISTEN connection, one reader; both again after PostgreSQL was lost ----------

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._thread = threading.current_thread()
        self._wake = asyncio.Event()
        conns = await self._connect()
        try:  # a database without the schema is served too (the adapter's "paste the SQL" error is tested so)
            if await self._load_columns(conns[1]):
                self._cursor = (await (await conns[1].execute("SELECT coalesce(max(id), 0) FROM traces_outbox")).fetchone())[0]
        except BaseException:
            for conn in conns:
                await conn.close()
            raise
        self._feed_task = asyncio.create_task(self._feed(conns), name="standin-realtime-feed")

    async def close(self) -> None:
        if self._feed_task is not None:
            await cancel_and_wait(self._feed_task)
            self._feed_task = None
        await self._close_sockets(1001)

    async def _connect(self) -> tuple[psycopg.AsyncConnection, psycopg.AsyncConnection]:
        listener = await psycopg.AsyncConnection.connect(self.db_url, autocommit=True)
        reader = await psycopg.AsyncConnection.connect(self.db_url, autocommit=True, options="-c TimeZone=UTC")
        await listener.execute(f"LISTEN {OUTBOX}")  # before any read: no commit falls between
        return listener, reader

    async def _feed(self, conns: tuple[psycopg.AsyncConnection, psycopg.AsyncConnection] | None) -> None:
        while True:
            try:
                conns = conns or await self._connect()
                self._wake.set()  # read what was committed while not listening
                tasks = [asyncio.create_task(self._listen(conns[0])), asyncio.create_task(self._deliver(conns[1]))]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                finally:
                    for task in tasks:
                        await cancel_and_wait(task)
            except psycopg.Error:  # PostgreSQL lost (or a read refused): connect again, read from the cursor
                if being_cancelled():
                    raise asyncio.CancelledError() from None
                self._bump("feed_errors")
                await asyncio.sleep(0.2)
            finally:
                for conn in conns or ():
                    await conn.close()
                conns = None

    async def _load_columns(self, conn: psycopg.AsyncConnection) -> bool:
        """The sent columns' names and types, as Realtime lists them; False while the outbox does not exist."""
        if (await (await conn.execute("SELECT to_regclass('public.traces_outbox')")).fetchone())[0] is None:
            return False
        types = await (await conn.execute(COLUMN_TYPES)).fetchall()
        self._columns = [{"name": name, "type": typname} for name, typname in types if name in SENT_COLUMNS]
        return True

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for _ in conn.notifies():
            self._wake.set()

    async def _deliver(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._columns and not await self._load_columns(conn):
                continue
            xmin, xmax, rows_json = await (await conn.execute(READ, (self._cursor, list(self._gaps)))).fetchone()
            rows = json.loads(rows_json)
            seen = {row["id"] for row in rows}
            for gap in [g for g in self._gaps if g in seen or self._gaps[g] <= xmin]:
                del self._gaps[gap]  # read now, or every transaction that could have written it has ended
            newest = max(seen | {self._cursor})
            for missing in range(self._cursor + 1, newest):
                if missing not in seen:
                    self._gaps[missing] = xmax
            self._cursor = newest
            for row in rows:
                await self._send_change(row)

    async def _send_change(self, record: dict[str, Any]) -> None:
        data = {"schema": "public", "table": OUTBOX, "commit_timestamp": now_iso(), "type": "INSERT",
                "record": record, "old_record": {}, "columns": self._columns, "errors": None}
        for sock in list(self._sockets):
            for channel in list(sock.channels.values()):
                ids = [b["id"] for b in channel.bindings
                       if b.get("event") in ("*", "INSERT") and b.get("schema") in ("public", "*")
                       and b.get("table") in (None, "*", OUTBOX)]
                if not ids:
                    continue
                if self._drop:
                    self._bump("dropped")
                    continue
                message = {"event": "postgres_changes", "topic": channel.topic, "ref": None,
                           "payload": {"ids": ids, "data": data}}
                try:
                    await sock.send(message)
                except Exception:  # a socket closing under us: its handler removes it
                    continue
                self._bump("postgres_changes_sent")

    # --- one websocket -----------------------------------------------------------------------

    async def _socket(self, ws: WebSocket) -> None:
        if not hmac.compare_digest(ws.query_params.get("apikey", "").encode(), self.service_key.encode()):
            await ws.close(code=1008)  # before accept: the handshake is refused with HTTP 403
            return
        await ws.accept()
        sock = Socket(ws)
        self._sockets.add(sock)
        self._bump()
        try:
            while True:
                message = json.loads(await ws.receive_text())
                await self._on_message(sock, message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._sockets.discard(sock)
            self._bump()

    async def _on_message(self, sock: Socket, message: dict[str, Any]) -> None:
        topic, event, ref = message.get("topic"), message.get("event"), message.get("ref")
        payload = message.get("payload") or {}
        if topic == "phoenix" and event == "heartbeat":
            self._bump("heartbeats")
            await sock.send(reply("phoenix", ref, "ok", {}))
        elif event == "phx_join":
            await self._join(sock, topic, payload, ref, message.get("join_ref"))
        elif topic not in sock.channels:
            await sock.send(reply(topic, ref, "error", {"reason": "unmatched topic"}, message.get("join_ref")))
        elif event == "phx_leave":
            channel = sock.channels.pop(topic)
            async with sock.lock:  # Phoenix: the reply, then phx_close as the channel process ends
                await sock.send_locked(reply(topic, ref, "ok", {}, channel.join_ref))
                await sock.send_locked({"event": "phx_close", "topic": topic, "payload": {},
                                        "ref": channel.join_ref, "join_ref": channel.join_ref})
        elif event == "access_token":
            pass  # the real server takes the new token without a reply
        else:
            await sock.send(reply(topic, ref, "error", {"reason": f"the Supabase stand-in does not handle {event}"}))

    async def _join(self, sock: Socket, topic: Any, payload: dict[str, Any], ref: Any, join_ref: Any) -> None:
        def refuse(reason: str) -> Any:
            self._bump("refused")
            return sock.send(reply(topic, ref, "error", {"reason": reason}, join_ref))

        token = payload.get("access_token")
        if self._refuse is not None:
            return await refuse(self._refuse)
        if not isinstance(topic, str) or not topic.startswith("realtime:"):
            return await refuse("the topic must start with realtime:")
        if token is not None and not hmac.compare_digest(str(token).encode(), self.service_key.encode()):
            return await refuse("InvalidJWTToken: the stand-in takes the service key only")
        bindings = []
        for wanted in (payload.get("config") or {}).get("postgres_changes") or []:
            if wanted.get("filter"):
                return await refuse("the Supabase stand-in does not filter postgres_changes")
            binding = {"id": next(self._ids), "event": wanted.get("event"), "schema": wanted.get("schema"),
                       "table": wanted.get("table"), "filter": None}  # None, not "": "" fails the client's check
            if "select" in wanted:
                binding["select"] = wanted["select"]
            bindings.append(binding)
        async with sock.lock:  # registered and answered before any change can be sent on the channel
            sock.channels[topic] = Channel(topic, join_ref or ref, bindings)
            await sock.send_locked(reply(topic, ref, "ok", {"postgres_changes": bindings}, join_ref))
            if bindings:
                await sock.send_locked({"event": "system", "topic": topic, "ref": None, "payload": {
                    "channel": topic.removeprefix("realtime:"), "extension": "postgres_changes",
                    "message": "Subscribed to PostgreSQL", "status": "ok"}})
        self._bump("joins")

    # --- controls and waits for tests (any thread) ------------------------------------------------

    def _bump(self, counter: str | None = None) -> None:
        with self._changed:
            if counter:
                setattr(self, counter, getattr(self, counter) + 1)
            self._changed.notify_all()

    def _run(self, coro: Any) -> None:
        assert self.loop is not None, "the stand-in is not running"
        if threading.current_thread() is self._thread:
            self.loop.create_task(coro)  # called on the server's own loop: cannot block it
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def drop_messages(self, drop: bool = True) -> None:
        """Lose every postgres_changes message from now on (True) or deliver them again (False)."""
        self._drop = drop

    def refuse_joins(self, refuse: bool = True, reason: str = "the Supabase stand-in refuses joins") -> None:
        """Answer joins with ``{"status": "error", "response": {"reason": ...}}`` while set."""
        self._refuse = reason if refuse else None

    def error_channels(self) -> None:
        """Send ``phx_error`` on every joined channel, as when a channel process crashes; they are left."""
        async def send_errors() -> None:
            for sock in list(self._sockets):
                channels, sock.channels = list(sock.channels.values()), {}
                for channel in channels:
                    try:
                        await sock.send({"event": "phx_error", "topic": channel.topic, "payload": {},
                                         "ref": channel.join_ref, "join_ref": channel.join_ref})
                    except Exception:
                        pass
        self._run(send_errors())

    def close_sockets(self, code: int = 1011) -> None:
        """Close every websocket with ``code`` (1011: a server error)."""
        self._run(self._close_sockets(code))

    async def _close_sockets(self, code: int) -> None:
        for sock in list(self._sockets):
            sock.channels = {}
            try:
                async with sock.lock:
                    await sock.ws.close(code=code)
            except Exception:
                pass

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
        """Block until ``predicate()`` holds (checked at each counter change), or raise TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"the Realtime stand-in: timed out after {timeout:g} s waiting for {what}")

    def wait_for_joins(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` joins in all were accepted (from a thread that is not the client's loop)."""
        self.wait_for(lambda: self.joins >= n, timeout, f"{n} joins (seen {self.joins})")

    async def joined(self, n: int, timeout: float = 10.0) -> None:
        """``wait_for_joins`` for a coroutine on the client's loop: waits in a worker thread, not blocking the loop."""
        await asyncio.to_thread(self.wait_for_joins, n, timeout)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
        """``wait_for`` for a coroutine on the client's loop."""
        await asyncio.to_thread(self.wait_for, predicate, timeout, what)
