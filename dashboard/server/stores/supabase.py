"""The Supabase backend (``TRACES_DB_URL=supabase``): the Postgres store's schema in a Supabase project,
reached only through its HTTP APIs with the ``supabase`` package, for hosts with no database connection
(a serverless host, a pooler that drops LISTEN, no database password at hand).

PostgREST reads and writes ``llm_traces`` and reads the outbox; the database's own functions number
events (``traces_sequence_events``) and give the replay window (``traces_event_bounds``), so resume is as
gap-free as on Postgres, with the same handling of transactions that commit out of order. One Realtime
channel per process (``supabase_realtime``) wakes the sequencer. The schema is the SQL that
``python -m dashboard supabase-sql`` prints, pasted once; the key is the project's service-role key.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from postgrest import APIError, AsyncRequestBuilder, ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from ...schema import EventKind, Trace, TracePage
from .postgres import MAX_PAGE_CHARS, duplicate_id, make_cursor, read_cursor
from .protocol import (
    EVERY_EVENT,
    Backend,
    DuplicateTraceError,
    EventBounds,
    EventFilter,
    InvalidValue,
    Record,
    StoredEvent,
    StoreError,
    StoreOptions,
    TraceQuery,
)
from .sequencer import EventSequencer
from .supabase_realtime import RealtimeWakeUp

log = logging.getLogger(__name__)
REQUEST_SECONDS = 10.0
# What PostgreSQL calls the client's mistake (invalid text for the column's type, a bad date, a number
# out of range, a missing value): answered 422 by the API, as the Postgres store does.
CLIENT_MISTAKES = {"22P02", "22007", "22008", "22003", "23502", "22001"}
MISSING_SCHEMA = {"PGRST202", "PGRST205", "42883", "42P01"}


class UniqueViolation(StoreError):
    """A row with that key exists (PostgreSQL's 23505): a taken trace id, a spent ticket."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"already exists: {detail}")
        self.detail = detail  # Key (id)=(...) already exists.


def open_supabase(db_url: str, options: StoreOptions) -> Backend:
    """``supabase``, with the project in ``SUPABASE_URL`` and its service-role key in ``SUPABASE_KEY``."""
    if not (options.supabase_url and options.supabase_key):
        raise StoreError("TRACES_DB_URL=supabase needs SUPABASE_URL (https://<project>.supabase.co) and SUPABASE_KEY "
                         "(the project's service-role key)")
    store = SupabaseStore(options.supabase_url, options.supabase_key, replay_events=options.replay_events,
                          replay_seconds=options.replay_seconds)
    return Backend(name="supabase", traces=store, events=store, tickets=store, resources=(store,))


class SupabaseStore:
    """TraceStore, EventLog and TicketLedger over PostgREST, woken by Realtime."""

    def __init__(self, url: str, key: str, *, replay_events: int = 10_000, replay_seconds: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.replay_events = replay_events
        self.replay_seconds = replay_seconds
        self._client: AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self.realtime = RealtimeWakeUp(f"{self.url}/realtime/v1", key)
        self.sequencer = EventSequencer(sequence=self._sequence, prune=self._prune, listen=self.realtime.listen,
                                        failures=(StoreError,), replay_events=replay_events, name="traces-supabase")

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise StoreError("the Supabase store is not open")
        return self._client

    async def open(self) -> None:
        # Our own HTTP client: the package's timeout option is deprecated, and a request must not hang a
        # stream's reads for its default two minutes.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_SECONDS))
        options = AsyncClientOptions(auto_refresh_token=False, persist_session=False, postgrest_client_retry=False,
                                     httpx_client=self._http)
        try:
            self._client = await acreate_client(self.url, self.key, options=options)
        except Exception as exc:  # the package refuses a malformed URL or key with a bare exception
            await self._close_client()
            raise StoreError(f"cannot use the Supabase project {self.url}: {exc}") from exc
        try:
            await self.sequencer.start()  # its first call checks that the schema is there
        except BaseException:
            await self._close_client()
            raise

    async def close(self) -> None:
        await self.sequencer.stop()
        await self.realtime.close()
        await self._close_client()

    async def _close_client(self) -> None:
        self._client = None
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _execute(self, request: Any) -> Any:
        """Run one PostgREST request; its data, or the failure as a ``StoreError`` a user can read."""
        try:
            return (await request.execute()).data
        except APIError as exc:
            code = str(exc.code or "")
            if code == "23505":
                raise UniqueViolation(str(exc.details or "")) from None
            if code in CLIENT_MISTAKES:
                raise InvalidValue(f"the database refused a value: {exc.message}") from None
            if code in MISSING_SCHEMA:
                raise StoreError("the Supabase project lacks this API's tables or functions: run "
                                 "`python -m dashboard supabase-sql` and paste its output into the SQL editor "
                                 f"({exc.message})") from None
            raise StoreError(f"Supabase answered {code or 'an error'}: {exc.message}") from None
        except (httpx.HTTPError, ValueError) as exc:  # unreachable, timed out, or an answer that is not JSON
            raise StoreError(f"Supabase failed: {type(exc).__name__}: {exc}") from None

    def _traces(self) -> AsyncRequestBuilder:
        return self.client.table("llm_traces")

    # TraceStore

    async def insert_traces(self, records: list[Record]) -> None:
        try:
            await self._execute(self._traces().insert(records, returning=ReturnMethod.minimal))
        except UniqueViolation as exc:
            raise DuplicateTraceError(duplicate_id(exc.detail, records)) from None
        await self.sequencer.number_now()

    async def replace_trace(self, record: Record, *, expected_updated_at: str) -> bool:
        changes = {key: value for key, value in record.items() if key not in ("id", "user_id")}
        rows = await self._execute(self._traces().update(changes).eq("id", record["id"]).eq("user_id", record["user_id"])
                                   .eq("updated_at", expected_updated_at).select("id"))
        if rows:
            await self.sequencer.number_now()
        return bool(rows)

    async def get_trace(self, user_id: str, trace_id: str) -> Record | None:
        try:
            rows = await self._execute(self._traces().select("traces_row_json").eq("id", trace_id).eq("user_id", user_id))
        except InvalidValue:  # not a UUID where the table's ids are: no such trace
            return None
        return rows[0]["traces_row_json"] if rows else None

    async def list_traces(self, user_id: str, query: TraceQuery) -> TracePage:
        """Newest first by (created_at, id). PostgREST gives no snapshot across two requests, so the stream
        position is read first: what the page shows is at least that new, and a stream resumed from it
        sends anything newer again rather than leaving it out (a whole trace per event: nothing doubles)."""
        newest = (await self.bounds()).watermark
        request = self._traces().select("traces_row_json").eq("user_id", user_id)
        for column, value in (("model", query.model), ("status", query.status)):
            if value is not None:
                request = request.eq(column, value)
        if query.since is not None:
            request = request.gte("created_at", query.since)
        if query.until is not None:
            request = request.lt("created_at", query.until)
        if query.cursor is not None:
            created_at, last_id = read_cursor(query.cursor)
            at, before = _quoted(created_at), _quoted(last_id)
            request = request.or_(f"created_at.lt.{at},and(created_at.eq.{at},id.lt.{before})")
        request = request.order("created_at", desc=True).order("id", desc=True).limit(query.limit + 1)
        try:
            rows = [row["traces_row_json"] for row in await self._execute(request)]
        except InvalidValue:  # a user id that cannot be in a uuid column has no traces
            rows = []
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return TracePage(traces=[Trace.model_validate(row) for row in rows],
                         next_cursor=make_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None,
                         last_event_id=newest)

    # EventLog

    async def bounds(self) -> EventBounds:
        found = await self._execute(self.client.rpc("traces_event_bounds", {}))
        bounds = EventBounds(floor=int(found["floor"]), watermark=int(found["watermark"]))
        self.sequencer.saw(bounds.watermark)
        return bounds

    async def events_after(self, after: int, upto: int, limit: int, which: EventFilter = EVERY_EVENT,
                           max_bytes: int | None = None) -> list[StoredEvent]:
        rows = await self._execute(self.client.rpc("traces_events_after", {
            "after_seq": after, "upto_seq": upto, "max_events": limit, "max_bytes": max_bytes or MAX_PAGE_CHARS,
            "for_user": which.user_id, "for_model": which.model, "for_status": which.status}))
        return [StoredEvent(int(row["seq"]), EventKind(row["kind"]), row["user_id"], row["model"], row["status"], row["body"])
                for row in rows]

    async def wait_for_events(self, after: int, timeout: float) -> None:
        await self.sequencer.wait_past(after, timeout)

    async def _sequence(self) -> int:
        return int(await self._execute(self.client.rpc("traces_sequence_events", {})))

    async def _prune(self) -> None:
        await self._execute(self.client.rpc("traces_prune", {"keep_events": self.replay_events,
                                                             "keep_seconds": self.replay_seconds}))

    # TicketLedger

    async def spend_ticket(self, ticket_id: str, expires_at: float) -> bool:
        try:
            await self._execute(self.client.table("traces_spent_tickets")
                                .insert({"id": ticket_id, "expires_at": expires_at}, returning=ReturnMethod.minimal))
        except UniqueViolation:
            return False
        return True


def _quoted(value: str) -> str:
    """A value inside PostgREST's ``or=(...)``, where ``,``, ``.``, ``:`` and parentheses are syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
