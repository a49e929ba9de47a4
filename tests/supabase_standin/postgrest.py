"""A stand-in for Supabase's PostgREST server, for tests only: Supabase's real PostgREST (Haskell) cannot
run here, and the adapter (``TRACES_DB_URL=supabase``) must be tested through the real ``supabase``
client over HTTP. It translates only the request shapes postgrest-py 2.34 sends for our adapter, as
PostgREST would, into SQL on a real PostgreSQL database (psycopg, ``psycopg.sql`` identifiers, values as
parameters), and answers with PostgREST's bodies, statuses and error shapes. Anything else gets a 501.

It connects as the database owner (a superuser): requests carry the service key, whose role
(service_role) bypasses row level security on a real project too, so the policies change nothing here.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .postgrest_syntax import (
    ALIAS,
    QueryError,
    Table,
    Unsupported,
    order_by,
    paging,
    select_list,
    split_top,
    unquote,
    where,
)

JSON_TYPE = "application/json; charset=utf-8"
SINGLE = "application/vnd.pgrst.object+json"
TABLE_INFO = """
SELECT array(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       array(SELECT p.proname::text FROM pg_proc p
              WHERE p.pronamespace = c.relnamespace AND p.pronargs = 1 AND p.proargtypes[0] = c.reltype
                AND NOT p.proretset)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
"""
FUNCTION_INFO = """
SELECT p.pronargdefaults, p.proretset, p.prorettype = 'void'::regtype,
       coalesce(p.proargnames, '{}'::text[]), coalesce(p.proargmodes::text[], '{}'::text[]),
       array(SELECT format_type(u.t, NULL)
               FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS u(t, n) ORDER BY u.n)
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname = %s AND p.prokind = 'f'
"""
# The Prefer preferences this stand-in does not carry out (real PostgREST does): refused, not ignored.
UNSUPPORTED_PREFER = {"count", "resolution", "tx", "max-affected", "params", "timezone"}


def pg_status(sqlstate: str) -> int:
    """The HTTP status PostgREST gives a PostgreSQL error (PostgREST's Error.hs, pgErrorStatus)."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503, "P0001": 400,
             "42883": 404, "42P01": 404, "42P17": 500, "42501": 403, "21000": 500}
    prefixes = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
                "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
                "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return exact.get(sqlstate) or prefixes.get(sqlstate[:2], 400)


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def error_response(status: int, body: dict[str, Any]) -> Response:
    return JSONResponse(body, status_code=status, media_type=JSON_TYPE)


class PostgrestStandIn:
    """The PostgREST part of the Supabase stand-in: routes under ``/rest/v1``, counters, injected failures.

    ``requests`` counts requests by shape (``"GET llm_traces"``, ``"POST llm_traces"``,
    ``"PATCH llm_traces"``, ``"RPC traces_sequence_events"``), failed or not; ``fail_next`` makes the
    next requests fail. Counters are plain ints read from any thread.
    """

    def __init__(self, db_url: str, service_key: str) -> None:
        self.db_url = db_url
        self.service_key = service_key
        self.requests: Counter[str] = Counter()
        self.failed = 0  # requests failed on purpose by fail_next
        self._fail: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        self.pool: AsyncConnectionPool | None = None

    def routes(self) -> list[Route]:
        return [Route("/rest/v1/rpc/{function}", self._rpc, methods=["GET", "POST", "HEAD"]),
                Route("/rest/v1/{table}", self._table, methods=["GET", "POST", "PATCH", "DELETE", "HEAD", "PUT"])]

    def fail_next(self, n: int = 1, status: int = 503, code: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` and an error body (code: ``str(status)`` unless given).

        postgrest-py retries a GET that got 503 or 520 (three times, after 1, 2 and 4 s): each retry is a request.
        """
        with self._lock:
            self._fail.extend([(status, code)] * n)

    async def open(self) -> None:
        self.pool = AsyncConnectionPool(self.db_url, min_size=1, max_size=10, open=False,
                                        kwargs={"options": "-c TimeZone=UTC"},
                                        check=AsyncConnectionPool.check_connection)
        await self.pool.open(wait=True, timeout=10)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    # --- the request pipeline: count, fail on purpose, check the key, translate, map errors ----------

    async def _handle(self, request: Request, shape: str, work: Callable[[], Awaitable[Response]]) -> Response:
        self.requests[shape] += 1
        with self._lock:
            failure = self._fail.pop(0) if self._fail else None
        if failure is not None:
            self.failed += 1
            status, code = failure
            return error_response(status, {"code": code or str(status), "details": None, "hint": None,
                                           "message": "the Supabase stand-in failed this request on purpose"})
        if not same(request.headers.get("apikey", ""), self.service_key):
            return error_response(401, {"message": "Invalid API key",
                                        "hint": "Double check your Supabase `anon` or `service_role` API key."})
        if not same(request.headers.get("authorization", ""), f"Bearer {self.service_key}"):
            return error_response(401, {"code": "PGRST301", "details": None, "hint": None,
                                        "message": "JWSError JWSInvalidSignature (the stand-in takes the service key only)"})
        try:
            profile = request.headers.get("content-profile" if request.method in ("POST", "PATCH") else "accept-profile")
            if profile not in (None, "public"):
                raise QueryError(406, "PGRST106", f"Invalid schema: {profile}",
                                 hint="Only the following schemas are exposed: public")
            return await work()
        except QueryError as error:
            return error_response(error.status, error.body())
        except psycopg.Error as error:
            if error.sqlstate is None:  # no answer from PostgreSQL: as PostgREST when it loses the database
                return error_response(503, {"code": "PGRST001", "details": str(error), "hint": None,
                                            "message": "Database client error. Retrying the connection."})
            diag = error.diag
            return error_response(pg_status(error.sqlstate), {
                "code": error.sqlstate, "details": diag.message_detail, "hint": diag.message_hint,
                "message": diag.message_primary or str(error)})

    @staticmethod
    def _prefer(request: Request) -> dict[str, str]:
        preferences: dict[str, str] = {}
        for header in request.headers.getlist("prefer"):
            for token in header.split(","):
                key, _, value = token.strip().partition("=")
                if key:
                    preferences[key] = value
        for key, value in preferences.items():
            if key in UNSUPPORTED_PREFER or (key == "handling" and value != "lenient"):
                raise Unsupported(f"Prefer: {key}={value}")
        return preferences

    @staticmethod
    def _wants_single(request: Request) -> bool:
        accept = request.headers.get("accept", "application/json")
        if "nulls=stripped" in accept or "text/csv" in accept or "vnd.pgrst.plan" in accept:
            raise Unsupported(f"Accept: {accept}")
        return SINGLE in accept

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError as error:
            raise QueryError(400, "PGRST102", "Empty or invalid json", str(error)) from None

    async def _table_info(self, conn: psycopg.AsyncConnection, name: str) -> Table:
        row = await (await conn.execute(TABLE_INFO, (name,))).fetchone()
        if row is None:
            raise QueryError(404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache",
                             hint=None)
        return Table(name, list(row[0]), set(row[1]))

    @staticmethod
    async def _json_rows(conn: psycopg.AsyncConnection, statement: sql.Composable, params: list[Any]) -> list[Any]:
        row = await (await conn.execute(statement, params)).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else []

    @staticmethod
    def _rows_response(rows: list[Any], single: bool, status: int) -> Response:
        """An array, or one object when asked for one (406 otherwise, in the transaction, which rolls back)."""
        if single:
            if len(rows) != 1:
                raise QueryError(406, "PGRST116", "Cannot coerce the result to a single JSON object",
                                 f"The result contains {len(rows)} rows")
            return Response(json.dumps(rows[0]), status_code=status, media_type=JSON_TYPE)
        return Response(json.dumps(rows), status_code=status, media_type=JSON_TYPE)

    # --- tables: GET (read), POST (insert), PATCH (update) ----------------------------------------

    async def _table(self, request: Request) -> Response:
        name = request.path_params["table"]
        method = request.method
        if method not in ("GET", "POST", "PATCH"):
            return await self._handle(request, f"{method} {name}", self._refuse(f"{method} on a table"))
        handler = {"GET": self._select, "POST": self._insert, "PATCH": self._update}[method]
        return await self._handle(request, f"{method} {name}", lambda: handler(request, name))

    @staticmethod
    def _refuse(what: str) -> Callable[[], Awaitable[Response]]:
        async def refuse() -> Response:
            raise Unsupported(what)
        return refuse

    async def _select(self, request: Request, name: str) -> Response:
        query = request.query_params
        single = self._wants_single(request)
        self._prefer(request)
        assert self.pool is not None
        async with self.pool.connection() as conn:
            table = await self._table_info(conn, name)
            params: list[Any] = []
            statement = sql.SQL(
                "SELECT coalesce(json_agg(pgrst_r), '[]')::text FROM "
                "(SELECT {select} FROM {table} AS {alias} WHERE {where}{order}{paging}) AS pgrst_r").format(
                select=select_list(table, query.get("select")), table=table.ident(), alias=sql.Identifier(ALIAS),
                where=where(table, query.multi_items(), params), order=order_by(table, query.get("order")),
                paging=paging(dict(query), params))
            rows = await self._json_rows(conn, statement, params)
            return self._rows_response(rows, single, 200)

    def _returning(self, table: Table, request: Request, statement: sql.Composable) -> sql.Composable:
        """The write wrapped to give the rows' selected columns as one JSON array, as PostgREST does."""
        return sql.SQL("WITH pgrst_source AS ({statement} RETURNING {select}) "
                       "SELECT coalesce(json_agg(pgrst_source), '[]')::text FROM pgrst_source").format(
            statement=statement, select=select_list(table, request.query_params.get("select")))

    async def _insert(self, request: Request, name: str) -> Response:
        prefer = self._prefer(request)
        single = self._wants_single(request)
        representation = prefer.get("return") == "representation"
        body = await self._body(request)
        rows = body if isinstance(body, list) else [body]
        if not all(isinstance(row, dict) for row in rows):
            raise QueryError(400, "PGRST102", "All object keys must match")
        if "columns" in request.query_params:
            columns = [unquote(column) for column in split_top(request.query_params["columns"])]
        else:
            columns = list(dict.fromkeys(key for row in rows for key in row))
        groups: dict[tuple[str, ...], list[dict]] = {}
        for row in rows:  # with missing=default, rows are inserted by the keys they have: the others take DEFAULT
            key = tuple(c for c in columns if c in row) if prefer.get("missing") == "default" else tuple(columns)
            groups.setdefault(key, []).append(row)
        assert self.pool is not None
        async with self.pool.connection() as conn:
            table = await self._table_info(conn, name)
            for column in columns:
                if column not in table.columns:
                    raise QueryError(400, "PGRST204", f"Could not find the '{column}' column of '{name}' in the schema cache")
            written: list[Any] = []
            for group_columns, group_rows in groups.items():
                statements = self._insert_statements(table, group_columns, group_rows)
                for statement, params in statements:
                    if representation:
                        written.extend(await self._json_rows(conn, self._returning(table, request, statement), params))
                    else:
                        await conn.execute(statement, params)
            if representation:
                return self._rows_response(written, single, 201)
            return Response(status_code=201)

    @staticmethod
    def _insert_statements(table: Table, columns: tuple[str, ...], rows: list[dict]) -> list[tuple[sql.Composable, list]]:
        target = sql.SQL("INSERT INTO {} AS {}").format(table.ident(), sql.Identifier(ALIAS))
        if not columns:  # rows with no keys: every column takes its DEFAULT
            return [(sql.SQL("{} DEFAULT VALUES").format(target), []) for _ in rows]
        statement = sql.SQL("{target} ({columns}) SELECT {values} FROM json_populate_recordset(NULL::{table}, %s::json) "
                            "AS pgrst_body").format(
            target=target, table=table.ident(), columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(sql.Identifier("pgrst_body", c) for c in columns))
        return [(statement, [json.dumps(rows)])]

    async def _update(self, request: Request, name: str) -> Response:
        prefer = self._prefer(request)
        single = self._wants_single(request)
        representation = prefer.get("return") == "representation"
        body = await self._body(request)
        if not isinstance(body, dict):
            raise QueryError(400, "PGRST102", "Empty or invalid json", "PATCH takes one JSON object")
        assert self.pool is not None
        async with self.pool.connection() as conn:
            table = await self._table_info(conn, name)
            for column in body:
                if column not in table.columns:
                    raise QueryError(400, "PGRST204", f"Could not find the '{column}' column of '{name}' in the schema cache")
            if not body:  # nothing to set: PostgREST updates nothing
                return self._rows_response([], single, 200) if representation else Response(status_code=204)
            params: list[Any] = [json.dumps(body)]
            statement = sql.SQL("UPDATE {table} AS {alias} SET {sets} FROM json_populate_record(NULL::{table}, %s::json) "
                                "AS pgrst_body WHERE {where}").format(
                table=table.ident(), alias=sql.Identifier(ALIAS),
                sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("pgrst_body", c))
                                        for c in body),
                where=where(table, request.query_params.multi_items(), params))
            if representation:
                rows = await self._json_rows(conn, self._returning(table, request, statement), params)
                return self._rows_response(rows, single, 200)
            await conn.execute(statement, params)
            return Response(status_code=204)

    # --- functions: POST /rpc/{function} ------------------------------------------------------

    async def _rpc(self, request: Request) -> Response:
        name = request.path_params["function"]
        if request.method != "POST":
            return await self._handle(request, f"RPC {name}", self._refuse(f"{request.method} /rpc (get=True, head=True)"))
        return await self._handle(request, f"RPC {name}", lambda: self._call(request, name))

    async def _call(self, request: Request, name: str) -> Response:
        self._prefer(request)
        if self._wants_single(request) or set(request.query_params) - {"select"} or \
                request.query_params.get("select", "*") != "*":
            raise Unsupported("filters, select or a single object on /rpc")
        args = await self._body(request)
        if not isinstance(args, dict):
            raise QueryError(400, "PGRST102", "Empty or invalid json", "/rpc takes one JSON object of named arguments")
        assert self.pool is not None
        async with self.pool.connection() as conn:
            candidates = []
            for defaults, returns_set, returns_void, names, modes, types in \
                    await (await conn.execute(FUNCTION_INFO, (name,))).fetchall():
                names = list(names) or [""] * len(types)
                inputs = [(n, t) for i, (n, t) in enumerate(zip(names, types)) if not modes or modes[i] in ("i", "b", "v")]
                required = {n for n, _ in inputs[: len(inputs) - defaults]}
                if set(args) <= {n for n, _ in inputs} and required <= set(args):
                    candidates.append((returns_set, returns_void, [(n, t) for n, t in inputs if n in args]))
            listed = ", ".join(sorted(args))
            if not candidates:
                raise QueryError(404, "PGRST202", f"Could not find the function public.{name}({listed}) in the schema cache",
                                 f"Searched for the function public.{name} with parameters {listed} or with a single "
                                 "unnamed json/jsonb parameter, but no matches were found in the schema cache.")
            if len(candidates) > 1:
                raise QueryError(300, "PGRST203", f"Could not choose the best candidate function between: public.{name}")
            returns_set, returns_void, used = candidates[0]
            params: list[Any] = []
            if used:  # the arguments read from the JSON object as the function's own types, as PostgREST does
                params.append(json.dumps(args))
                source = sql.SQL("json_to_record(%s::json) AS pgrst_args({})").format(
                    sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in used))
            else:
                source = sql.SQL("(SELECT) AS pgrst_args")
            call = sql.SQL("{}({})").format(sql.Identifier("public", name), sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(n), sql.Identifier("pgrst_args", n)) for n, _ in used))
            if returns_void:
                await conn.execute(sql.SQL("SELECT {} FROM {}").format(call, source), params)
                return Response(status_code=204)
            if returns_set:
                statement = sql.SQL("SELECT coalesce(json_agg(pgrst_r), '[]')::text FROM {}, LATERAL {} AS pgrst_r")
            else:
                statement = sql.SQL("SELECT to_json({1})::text FROM {0}")
            row = await (await conn.execute(statement.format(source, call), params)).fetchone()
            text = row[0] if row and row[0] is not None else "null"
            return Response(text, status_code=200, media_type=JSON_TYPE)
