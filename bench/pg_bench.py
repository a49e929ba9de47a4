"""PostgreSQL beside SQLite, measured from outside in one run on this machine:

1. inserts per second through ``POST /api/traces`` (one realistic trace per request, 8 writers, each on
   a keep-alive connection of its own) on one API process per store, without streams and with 50 open
   streams of the writing user (read by httpx-sse in a separate process; every event counted);
2. POST-to-receipt latency at a steady 50 writes/s: two API processes on one PostgreSQL database, the
   writes through node A, streams on node B and on A at once; SQLite, one node, for reference;
3. what a long open transaction and a rolled-back one do to the streams on PostgreSQL: (a) an INSERT
   left uncommitted by psycopg while writes flow through the API, then committed; (b) INSERTs rolled
   back every 0.2 s while writes flow;
4. where the time goes: the SQL alone, timed with psycopg (the store's INSERT, with and without the
   sequencer call ``traces_sequence_events()`` the API makes after each commit, on 1 and on 8
   connections); and the product's store alone, in this process without HTTP, as it is and with the
   per-write sequencer call or the pool's per-checkout check skipped (monkeypatched here only).

    .venv/bin/python bench/pg_bench.py            # the full run, under 5 minutes
    .venv/bin/python bench/pg_bench.py --quick    # smaller counts, under a minute
    .venv/bin/python bench/pg_bench.py --wait-quiet 30   # on a shared machine: wait for quiet before each timing

PostgreSQL is the tests' own (``tests/postgres.py``: initdb in a temporary folder, a free loopback port,
fsync and synchronous_commit off, as the ``postgres`` user when run as root), with pg_stat_statements
loaded (``ALTER SYSTEM``, then a restart) so the run can say where the database's time went. SQLite is
the API's own (WAL, synchronous=NORMAL): neither waits for a disk flush per commit.

Results overwrite ``bench/pg_results.json`` and ``bench/POSTGRES.md``; the table is printed at the end.
Every subprocess is killed on exit, Ctrl-C included, and the PostgreSQL cluster is stopped and removed.
Clocks: ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import jwt
import psycopg
import psycopg_pool
from common import (
    BENCH,
    HOST,
    NOISY_PERCENT,
    ROOT,
    UNITS,
    Load,
    Server,
    api_metrics,
    fmt,
    free_port,
    kill_children,
    machine_info,
    pct,
    r,
    realistic_trace,
    run_and_write,
    server_env,
    spawn,
    tree_cpu_s,
    wait_line,
    wait_quiet,
)
from httpx_sse import aconnect_sse
from psycopg.types.json import Jsonb

sys.path.insert(0, str(ROOT))  # for tests.postgres, the tests' PostgreSQL server
from dashboard.schema import TraceCreate, now_iso  # noqa: E402
from dashboard.server.records import new_record  # noqa: E402
from dashboard.server.stores import open_backend  # noqa: E402
from dashboard.server.stores.pg_schema import migration_sql  # noqa: E402
from dashboard.server.stores.postgres import COLUMNS, INSERT, JSON_COLUMNS  # noqa: E402
from dashboard.server.stores.sequencer import EventSequencer  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

SECRET = "pg-bench-secret-not-for-production-0123456789abcdef"
STREAM_PATH = "/api/analytics/traces/stream"
WRITE_PATH = "/api/traces"
SEQUENCER = "SELECT traces_sequence_events()"


@dataclass(frozen=True)
class Config:
    mode: str
    writers: int = 8
    inserts: int = 3000
    insert_rounds: int = 2  # each case again after the others: on a shared machine, one round can catch a burst
    streams: int = 50
    rate_per_s: float = 50.0
    latency_s: float = 20.0
    held_trials: int = 5
    held_s: float = 4.0
    rollback_s: float = 10.0
    rollback_every_s: float = 0.2
    rollback_hold_s: float = 0.05
    sql_inserts: int = 2000
    drain_timeout_s: float = 60.0


FULL = Config(mode="full")
QUICK = Config(mode="quick", inserts=600, insert_rounds=1, latency_s=4.0, held_trials=2, held_s=2.0, rollback_s=3.0, sql_inserts=300,
               drain_timeout_s=20.0)


# ---------------------------------------------------------------------------------------------------
# Small helpers


def token_for(user: str, ttl: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + ttl},
                      SECRET, algorithm="HS256")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def trace(i: int, metadata: dict[str, Any]) -> dict[str, Any]:
    return realistic_trace(f"chat-completion-{i % 7}", "gpt-4o-mini", 812.5, metadata)


def api_server(name: str, workdir: Path, db_url: str) -> Server:
    port = free_port()
    env = server_env({"TRACES_JWT_SECRET": SECRET, "TRACES_DB_URL": db_url, "TRACES_PING_INTERVAL": "300",
                      "TRACES_MAX_STREAMS_PER_USER": "200"})
    return Server(name, [sys.executable, "-m", "dashboard", "api", "--host", HOST, "--port", str(port), "--no-access-log"],
                  env, workdir, port, poll_s=0.05, stop_grace_s=5.0)


async def start_all(*servers: Server) -> None:
    for server in servers:
        server.launch()
    await asyncio.gather(*(server.wait_ready() for server in servers))


async def read_line(proc: subprocess.Popen, timeout: float) -> str:
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    return line.decode().strip()


def latency_stats(values: list[float]) -> dict[str, float | None]:
    return {"p50_ms": r(pct(values, 50), 2), "p95_ms": r(pct(values, 95), 2), "p99_ms": r(pct(values, 99), 2),
            "max_ms": r(max(values), 2) if values else None}


# ---------------------------------------------------------------------------------------------------
# PostgreSQL: the tests' server, its CPU read from /proc, and where its time went (pg_stat_statements)


def start_postgres(pg: PostgresServer) -> None:
    """Start the server, then restart it with pg_stat_statements loaded, tracking statements in functions too."""
    pg.start()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    pg.restart()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        conn.execute("SELECT pg_reload_conf()")


def postgres_cpu_s(pg: PostgresServer) -> float:
    """CPU seconds of the postmaster and every backend, those already gone included (the postmaster reaps them)."""
    return tree_cpu_s(int((pg.data / "postmaster.pid").read_text().split()[0]))


def reset_statements(pg: PostgresServer) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statements(pg: PostgresServer, db_url: str, per: int, top: int = 8) -> list[dict[str, Any]]:
    """The statements of ``db_url``'s database that took the most time since the last reset, per ``per`` items."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), toplevel, calls, total_exec_time FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY total_exec_time DESC LIMIT %s",
            (db_url.rsplit("/", 1)[1], top)).fetchall()
    return [{"query": query[:110], "top_level": toplevel, "calls_per_item": r(calls / per, 2),
             "mean_ms": r(total / calls, 3), "ms_per_item": r(total / per, 3)} for query, toplevel, calls, total in rows]


class Meter(Load):
    """The noise meter, with PostgreSQL's processes counted as ours (pg_ctl detaches them from our tree)."""

    pg: PostgresServer | None = None

    def __init__(self) -> None:
        pg = Meter.pg
        super().__init__(ours=lambda: tree_cpu_s() + (postgres_cpu_s(pg) if pg else 0.0),
                         ours_key="bench_servers_and_postgres_percent_of_one_core")


def row_values(user: str, i: int, tag: str) -> tuple[str, list[Any]]:
    """A trace as the store's INSERT takes it (created_at and updated_at left to the trigger); and its id."""
    record = {**trace(i, {"bench": tag, "i": i}), "id": str(uuid.uuid4()), "user_id": user}
    return record["id"], [Jsonb(record[c]) if c in JSON_COLUMNS and record.get(c) is not None else record.get(c)
                          for c in COLUMNS]


# ---------------------------------------------------------------------------------------------------
# Streams, read with httpx-sse


@dataclass
class StreamStats:
    count: int = 0
    last: float | None = None
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


async def follow(client: httpx.AsyncClient, url: str, token: str, stats: StreamStats, *, expect: int | None = None,
                 on_subscribed: Callable[[], None] = lambda: None,
                 keep: Callable[[int, float, str], None] | None = None) -> None:
    """Read one stream's ``trace`` events (until ``expect`` arrived, or for ever), resuming with Last-Event-ID."""
    last_id: int | None = None
    announced = False
    while expect is None or stats.count < expect:
        headers = {"Authorization": f"Bearer {token}"} | ({"Last-Event-ID": str(last_id)} if last_id is not None else {})
        try:
            async with aconnect_sse(client, "GET", url, headers=headers) as source:
                if source.response.status_code != 200:
                    stats.errors.append(f"HTTP {source.response.status_code}")
                    return
                async for event in source.aiter_sse():
                    if event.event == "trace":
                        seq = int(event.id)
                        if last_id is not None and seq <= last_id:
                            continue  # replayed twice across a reconnect
                        last_id, stats.last = seq, time.monotonic()
                        stats.count += 1
                        if keep is not None:
                            keep(seq, stats.last, event.data)
                        if expect is not None and stats.count >= expect:
                            return
                    elif event.event == "connected" and last_id is None:
                        last_id = json.loads(event.data)["last_event_id"]
                    elif event.event == "subscribed" and not announced:
                        announced = True
                        on_subscribed()
                    elif event.event == "error":
                        stats.errors.append(event.data[:200])
                        break
        except httpx.HTTPError as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")
        stats.reconnects += 1
        await asyncio.sleep(0.1)


def stream_client(connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=300.0),
                             limits=httpx.Limits(max_connections=connections + 5, max_keepalive_connections=connections + 5))


async def child_readers(args: dict[str, Any]) -> None:
    """``pg_bench.py _readers '<json>'``: ``streams`` readers; READY once all are subscribed, then RESULT."""
    n = args["streams"]
    stats = [StreamStats() for _ in range(n)]
    subscribed = asyncio.Event()
    count = itertools.count(1)

    def one() -> None:
        if next(count) == n:
            subscribed.set()

    async with stream_client(n) as client:
        tasks = [asyncio.create_task(follow(client, args["url"], args["token"], s, expect=args["expect"], on_subscribed=one))
                 for s in stats]
        await asyncio.wait_for(subscribed.wait(), 60)
        cpu0 = self_cpu_s()
        print("READY", flush=True)
        _, pending = await asyncio.wait(tasks, timeout=args["timeout"])
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print("RESULT " + json.dumps({"cpu_s": self_cpu_s() - cpu0, "streams": [asdict(s) for s in stats]}), flush=True)


class Stream:
    """One stream read in this process, each trace event kept as (seq, receipt time, body)."""

    def __init__(self, client: httpx.AsyncClient, server: Server, token: str) -> None:
        self.events: list[tuple[int, float, dict[str, Any]]] = []
        self.stats = StreamStats()
        self.subscribed = asyncio.Event()
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(follow(client, server.url + STREAM_PATH, token, self.stats,
                                               on_subscribed=self.subscribed.set, keep=self._keep))

    def _keep(self, seq: int, at: float, data: str) -> None:
        self.events.append((seq, at, json.loads(data)))
        self.arrived.set()

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait for events until ``done()`` (True) or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return done()
        return True

    def tagged(self, tag: str) -> list[tuple[int, float, dict[str, Any]]]:
        return [e for e in self.events if e[2]["metadata"].get("bench") == tag]

    def with_id(self, trace_id: str) -> tuple[int, float] | None:
        return next(((seq, at) for seq, at, body in self.events if body["id"] == trace_id), None)


async def open_streams(servers: dict[str, Server], token: str) -> tuple[httpx.AsyncClient, dict[str, Stream]]:
    client = stream_client(len(servers))
    streams = {name: Stream(client, server, token) for name, server in servers.items()}
    await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in streams.values())), 30)
    return client, streams


async def close_streams(client: httpx.AsyncClient, streams: dict[str, Stream]) -> None:
    for stream in streams.values():
        stream.task.cancel()
    await asyncio.gather(*(s.task for s in streams.values()), return_exceptions=True)
    await client.aclose()


# ---------------------------------------------------------------------------------------------------
# Writers: raw HTTP/1.1 keep-alive for throughput (so the writer costs the shared CPU little), httpx on a schedule


def post_request(port: int, token: str, body: bytes) -> bytes:
    return (f"POST {WRITE_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head[9:12])


async def post_all(port: int, requests: list[bytes], writers: int) -> dict[str, Any]:
    """Every request once, by ``writers`` tasks on a connection each, each sending its next as soon as answered."""
    connections = [await asyncio.open_connection(HOST, port) for _ in range(writers)]
    todo = iter(requests)
    latencies_ms: list[float] = []
    failures: list[int] = []

    async def writer(reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        for request in todo:  # shared: each task takes the next request not taken yet
            sent = time.monotonic()
            stream.write(request)
            status = await read_status(reader)
            latencies_ms.append((time.monotonic() - sent) * 1000)
            if status != 201:
                failures.append(status)

    began = time.monotonic()
    try:
        await asyncio.gather(*(writer(rd, wr) for rd, wr in connections))
    finally:
        for _, wr in connections:
            wr.close()
    ended = time.monotonic()
    return {"began": began, "ended": ended, "latencies_ms": latencies_ms, "failures": failures}


async def steady_writes(client: httpx.AsyncClient, api: Server, token: str, tag: str, rate: float,
                        seconds: float) -> dict[str, Any]:
    """Single-trace POSTs on a fixed schedule; each carries ``time.monotonic()`` taken just before its send."""
    n = int(rate * seconds)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent: dict[int, float] = {}
    failures: list[str] = []

    async def post_one(i: int) -> None:
        sent[i] = time.monotonic()
        body = json.dumps(trace(i, {"bench": tag, "i": i, "sent": sent[i]}))
        try:
            response = await client.post(api.url + WRITE_PATH, content=body, headers=headers)
            if response.status_code != 201:
                failures.append(f"HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            failures.append(type(exc).__name__)

    tasks = []
    start = time.monotonic() + 0.02
    for i in range(n):
        delay = start + i / rate - time.monotonic()  # a schedule, not a sleep per write: no drift
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post_one(i)))
    await asyncio.gather(*tasks)
    return {"count": n, "sent": sent, "failures": failures, "achieved_per_s": r(n / (time.monotonic() - start), 1)}


def receipts(stream: Stream, tag: str, expected: int) -> dict[str, Any]:
    """POST → receipt for the events of ``tag`` on one stream, and whether their ids came without a gap."""
    events = stream.tagged(tag)
    seqs = sorted(seq for seq, _, _ in events)
    return {"received_count": len(events), "expected_count": expected,
            **latency_stats([(at - body["metadata"]["sent"]) * 1000 for _, at, body in events]),
            "id_gaps_count": sum(b - a - 1 for a, b in itertools.pairwise(seqs))}


# ---------------------------------------------------------------------------------------------------
# 1. Inserts per second, with and without 50 streams of the writing user


async def start_readers(api: Server, user: str, cfg: Config) -> subprocess.Popen:
    child = spawn([sys.executable, str(Path(__file__).resolve()), "_readers", json.dumps({
        "url": api.url + STREAM_PATH, "token": token_for(user), "streams": cfg.streams, "expect": cfg.inserts,
        "timeout": cfg.drain_timeout_s + cfg.inserts / 50})], stdout=subprocess.PIPE, cwd=BENCH)
    line = await read_line(child, 90)
    if line != "READY":
        raise RuntimeError(f"reader process said {line!r}")
    return child


async def insert_run(cfg: Config, api: Server, store: str, user: str, streams: int, pg: PostgresServer,
                     db_url: str | None) -> dict[str, Any]:
    token = token_for(user)
    requests = [post_request(api.port, token, json.dumps(trace(i, {"bench": "inserts", "i": i})).encode())
                for i in range(cfg.inserts)]
    child = await start_readers(api, user, cfg) if streams else None
    if db_url:
        reset_statements(pg)
    before = await api_metrics(api, token_for("bench-metrics"))
    api0, pg0, self0 = api.cpu_s(), postgres_cpu_s(pg), self_cpu_s()
    load = Meter()
    timing = await post_all(api.port, requests, cfg.writers)
    writer_cpu = self_cpu_s() - self0
    readers: dict[str, Any] = {}
    if child is not None:
        line = await read_line(child, cfg.drain_timeout_s + cfg.inserts / 50 + 30)
        if not line.startswith("RESULT "):
            raise RuntimeError(f"reader process said {line!r}")
        result = json.loads(line[len("RESULT "):])
        child.wait(timeout=10)
        lasts = [s["last"] for s in result["streams"] if s["last"] is not None]
        readers = {
            "events_expected_count": streams * cfg.inserts,
            "events_received_count": sum(s["count"] for s in result["streams"]),
            "streams_with_every_event_count": sum(1 for s in result["streams"] if s["count"] >= cfg.inserts),
            "last_post_answered_to_last_receipt_ms": r((max(lasts) - timing["ended"]) * 1000, 0) if lasts else None,
            "reader_reconnects_count": sum(s["reconnects"] for s in result["streams"]),
            "reader_process_cpu_s": r(result["cpu_s"], 2),
            "reader_errors_sample": sorted({e for s in result["streams"] for e in s["errors"]})[:3],
        }
    machine = load.end()
    after = await api_metrics(api, token_for("bench-metrics"))
    seconds = timing["ended"] - timing["began"]
    per_k = 1000 / cfg.inserts
    return {
        "store": store, "open_streams_count": streams, "writers_count": cfg.writers, "posts_count": cfg.inserts,
        "post_failures_count": len(timing["failures"]), "inserts_per_s": r(cfg.inserts / seconds, 0),
        "post_p50_ms": r(pct(timing["latencies_ms"], 50), 2), "post_p95_ms": r(pct(timing["latencies_ms"], 95), 2),
        **readers,
        "slow_streams_dropped_count": int(after.get("traces_slow_clients_dropped_total", 0)
                                          - before.get("traces_slow_clients_dropped_total", 0)),
        "api_cpu_s_per_1000_inserts": r((api.cpu_s() - api0) * per_k, 2),
        "postgres_cpu_s_per_1000_inserts": r((postgres_cpu_s(pg) - pg0) * per_k, 2) if db_url else None,
        "writer_cpu_s_per_1000_inserts": r(writer_cpu * per_k, 2),
        "postgres_statements_by_time": statements(pg, db_url, cfg.inserts) if db_url else None,
        "machine_during_run": machine,
    }


# ---------------------------------------------------------------------------------------------------
# 2. POST → receipt at a steady rate, across nodes


async def latency_run(cfg: Config, writer: Server, readers: dict[str, Server], user: str, tag: str) -> dict[str, Any]:
    token = token_for(user)
    client, streams = await open_streams(readers, token)
    try:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32)) as http:
            await steady_writes(http, writer, token, tag + "-warm", cfg.rate_per_s, 0.4)
            load = Meter()
            writes = await steady_writes(http, writer, token, tag, cfg.rate_per_s, cfg.latency_s)
        await asyncio.gather(*(s.until(lambda s=s: len(s.tagged(tag)) >= writes["count"], 10) for s in streams.values()))
        machine = load.end()
    finally:
        await close_streams(client, streams)
    return {"writes_count": writes["count"], "write_rate_achieved_per_s": writes["achieved_per_s"],
            "post_failures_count": len(writes["failures"]),
            "streams": {name: receipts(stream, tag, writes["count"]) for name, stream in streams.items()},
            "machine_during_run": machine}


# ---------------------------------------------------------------------------------------------------
# 3. A long open transaction, and rolled-back ones, while writes flow through the API


async def held_trial(cfg: Config, db_url: str, a: Server, streams: dict[str, Stream], http: httpx.AsyncClient,
                     token: str, user: str, trial: int) -> dict[str, Any]:
    """An INSERT left uncommitted while the API writes for ``held_s``; then COMMIT, and when its event arrives."""
    tag = f"held-{trial}"
    trace_id, values = row_values(user, trial, tag + "-direct")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:  # not autocommit: the INSERT opens a transaction
        await conn.execute(INSERT, values)
        writes = await steady_writes(http, a, token, tag, cfg.rate_per_s, cfg.held_s)
        await asyncio.gather(*(s.until(lambda s=s: len(s.tagged(tag)) >= writes["count"], 10) for s in streams.values()))
        commit_sent = time.monotonic()
        await conn.commit()
        committed = time.monotonic()
    await asyncio.gather(*(s.until(lambda s=s: s.with_id(trace_id) is not None, 10) for s in streams.values()))
    out: dict[str, Any] = {"writes_count": writes["count"], "commit_call_ms": r((committed - commit_sent) * 1000, 2)}
    for name, stream in streams.items():
        got = stream.with_id(trace_id)
        flowing = receipts(stream, tag, writes["count"])
        out[name] = {
            "while_open": flowing,
            "own_event_after_commit_ms": r((got[1] - committed) * 1000, 2) if got else None,
            "events_numbered_before_it_count": sum(1 for seq, _, _ in stream.tagged(tag) if got and seq < got[0]),
        }
    return out


async def rollback_run(cfg: Config, db_url: str, a: Server, streams: dict[str, Stream], http: httpx.AsyncClient,
                       token: str, user: str) -> dict[str, Any]:
    """INSERT then ROLLBACK every ``rollback_every_s`` while the API writes: the first event posted after each
    ROLLBACK beside all the others."""
    tag = "rollback"
    rolled_back: list[float] = []
    stop = asyncio.Event()

    async def roll_back() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            for i in itertools.count():
                await conn.execute(INSERT, row_values(user, i, tag + "-direct")[1])
                await asyncio.sleep(cfg.rollback_hold_s)  # held, so API commits land while it is open
                await conn.rollback()
                rolled_back.append(time.monotonic())
                if stop.is_set():
                    return
                await asyncio.sleep(cfg.rollback_every_s - cfg.rollback_hold_s)

    roller = asyncio.create_task(roll_back())
    writes = await steady_writes(http, a, token, tag, cfg.rate_per_s, cfg.rollback_s)
    stop.set()
    await roller
    await asyncio.gather(*(s.until(lambda s=s: len(s.tagged(tag)) >= writes["count"], 10) for s in streams.values()))
    by_send = sorted(writes["sent"].items(), key=lambda item: item[1])
    nexts = {next(i for i, at in by_send if at >= t) for t in rolled_back if by_send[-1][1] >= t}
    out: dict[str, Any] = {"writes_count": writes["count"], "rollbacks_count": len(rolled_back)}
    for name, stream in streams.items():
        latency = {body["metadata"]["i"]: (at - body["metadata"]["sent"]) * 1000 for _, at, body in stream.tagged(tag)}
        after = [ms for i, ms in latency.items() if i in nexts]
        others = [ms for i, ms in latency.items() if i not in nexts]
        out[name] = {"all": receipts(stream, tag, writes["count"]),
                     "next_after_rollback": latency_stats(after), "others": latency_stats(others),
                     "added_p50_ms": r(pct(after, 50) - pct(others, 50), 2) if after and others else None}
    return out


async def holes_run(cfg: Config, db_url: str, a: Server, b: Server, user: str) -> dict[str, Any]:
    token = token_for(user)
    client, streams = await open_streams({"node_b": b, "node_a": a}, token)
    try:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32)) as http:
            await steady_writes(http, a, token, "holes-warm", cfg.rate_per_s, 0.4)
            load = Meter()
            held = [await held_trial(cfg, db_url, a, streams, http, token, user, k) for k in range(cfg.held_trials)]
            held_machine = load.end()
            load = Meter()
            rollback = await rollback_run(cfg, db_url, a, streams, http, token, user)
            rollback_machine = load.end()
    finally:
        await close_streams(client, streams)
    summary = {}
    for name in streams:
        summary[name] = {
            "while_open_p50_ms_per_trial": [trial[name]["while_open"]["p50_ms"] for trial in held],
            "while_open_p95_ms_per_trial": [trial[name]["while_open"]["p95_ms"] for trial in held],
            "while_open_received_count": sum(trial[name]["while_open"]["received_count"] for trial in held),
            "while_open_expected_count": sum(trial["writes_count"] for trial in held),
            "while_open_id_gaps_count": sum(trial[name]["while_open"]["id_gaps_count"] for trial in held),
            "own_event_after_commit_ms_per_trial": [trial[name]["own_event_after_commit_ms"] for trial in held],
            "events_numbered_before_it_per_trial": [trial[name]["events_numbered_before_it_count"] for trial in held],
        }
    return {"held": {"trials": held, "summary": summary, "machine_during_run": held_machine},
            "rollback": {**rollback, "machine_during_run": rollback_machine}}


# ---------------------------------------------------------------------------------------------------
# 4. The SQL alone: the store's INSERT, with and without the sequencer call after each commit


async def sql_variant(pg: PostgresServer, db_url: str, n: int, connections: int, sequence: bool) -> dict[str, Any]:
    rows = [row_values("sql-alone", i, "sql")[1] for i in range(n)]
    conns = [await psycopg.AsyncConnection.connect(db_url, autocommit=True) for _ in range(2 * connections)]
    insert_ms: list[float] = []
    sequence_ms: list[float] = []
    todo = iter(rows)

    async def worker(ins: psycopg.AsyncConnection, seq: psycopg.AsyncConnection) -> None:
        for values in todo:
            began = time.monotonic()
            async with ins.transaction(), ins.cursor() as cur:  # as PostgresStore.insert_traces does
                await cur.executemany(INSERT, [values])
            committed = time.monotonic()
            insert_ms.append((committed - began) * 1000)
            if sequence:  # as EventSequencer.number_now does, on another connection of the pool
                await (await seq.execute(SEQUENCER)).fetchone()
                sequence_ms.append((time.monotonic() - committed) * 1000)

    reset_statements(pg)
    pg0, self0 = postgres_cpu_s(pg), self_cpu_s()
    load = Meter()
    began = time.monotonic()
    try:
        await asyncio.gather(*(worker(conns[2 * k], conns[2 * k + 1]) for k in range(connections)))
    finally:
        for conn in conns:
            await conn.close()
    seconds = time.monotonic() - began
    machine = load.end()
    return {"connections_count": connections, "sequencer_after_each": sequence, "inserts_count": n,
            "inserts_per_s": r(n / seconds, 0),
            "insert_p50_ms": r(pct(insert_ms, 50), 3), "insert_p95_ms": r(pct(insert_ms, 95), 3),
            "sequencer_p50_ms": r(pct(sequence_ms, 50), 3), "sequencer_p95_ms": r(pct(sequence_ms, 95), 3),
            "postgres_cpu_s_per_1000_inserts": r((postgres_cpu_s(pg) - pg0) * 1000 / n, 2),
            "client_cpu_s_per_1000_inserts": r((self_cpu_s() - self0) * 1000 / n, 2),
            "postgres_statements_by_time": statements(pg, db_url, n, top=5),
            "machine_during_run": machine}


async def skip(*args: Any) -> None:
    return None


STORE_CHANGES = {  # monkeypatched in this process only, to see what a piece costs; the product is not changed
    "as is": (),
    "number_now skipped (the loop numbers, woken by the INSERT's NOTIFY)": ((EventSequencer, "number_now"),),
    "pool check on checkout skipped": ((psycopg_pool.AsyncConnectionPool, "check_connection"),),
}


async def store_variant(pg: PostgresServer, store: str, db_url: str, n: int, connections: int,
                        change: str = "as is") -> dict[str, Any]:
    """The product's own store (no HTTP, no FastAPI): ``insert_traces([record])`` from ``connections`` tasks, as the
    API's write route calls it; for PostgreSQL its follower runs here too (LISTEN, the sequencer loop)."""
    with contextlib.ExitStack() as patches:
        for owner, name in STORE_CHANGES[change]:
            patches.enter_context(mock.patch.object(owner, name, skip))
        return await store_inserts(pg, store, db_url, n, connections, change)


async def store_inserts(pg: PostgresServer, store: str, db_url: str, n: int, connections: int, change: str) -> dict[str, Any]:
    backend = open_backend(db_url)
    await backend.open()
    records = [new_record(f"store-{store}", TraceCreate.model_validate(trace(i, {"bench": "store", "i": i})), now_iso())
               for i in range(n)]
    insert_ms: list[float] = []
    todo = iter(records)

    async def worker() -> None:
        for record in todo:
            began = time.monotonic()
            await backend.traces.insert_traces([record])
            insert_ms.append((time.monotonic() - began) * 1000)

    reset_statements(pg)
    pg0, self0 = postgres_cpu_s(pg), self_cpu_s()
    load = Meter()
    began = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.monotonic() - began
        cpu = self_cpu_s() - self0
    finally:
        await backend.close()
    machine = load.end()
    return {"store": store, "change": change, "tasks_count": connections, "inserts_count": n, "inserts_per_s": r(n / seconds, 0),
            "insert_call_p50_ms": r(pct(insert_ms, 50), 3), "insert_call_p95_ms": r(pct(insert_ms, 95), 3),
            "store_process_cpu_s_per_1000_inserts": r(cpu * 1000 / n, 2),
            "postgres_cpu_s_per_1000_inserts": r((postgres_cpu_s(pg) - pg0) * 1000 / n, 2) if store == "postgres" else None,
            "postgres_statements_by_time": statements(pg, db_url, n, top=5) if store == "postgres" else None,
            "machine_during_run": machine}


async def settle(db_url: str) -> None:
    """Number what an insert-only variant left unnumbered, and vacuum, so every variant starts alike."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while (await (await conn.execute("SELECT count(*) FROM traces_outbox WHERE seq IS NULL")).fetchone())[0]:
            await conn.execute(SEQUENCER)
        await conn.execute("VACUUM ANALYZE llm_traces, traces_outbox")


async def sql_alone(cfg: Config, pg: PostgresServer, timed: Callable[..., Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    db_url = pg.new_database()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(migration_sql())
    variants = []
    for connections, sequence in ((1, False), (1, True), (cfg.writers, False), (cfg.writers, True)):
        await settle(db_url)
        variants.append(await timed(
            f"SQL alone: {cfg.sql_inserts} inserts on {connections} connection(s), sequencer {'after each' if sequence else 'off'}",
            lambda c=connections, s=sequence: sql_variant(pg, db_url, cfg.sql_inserts, c, s)))
    return variants


async def store_alone(cfg: Config, pg: PostgresServer, workdir: Path,
                      timed: Callable[..., Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    runs = [await timed(f"store alone: sqlite, {cfg.sql_inserts} inserts from {cfg.writers} tasks",
                        lambda: store_variant(pg, "sqlite", f"sqlite:///{workdir / 'store.db'}", cfg.sql_inserts, cfg.writers))]
    for change in STORE_CHANGES:
        runs.append(await timed(f"store alone: postgres, {change}",
                                lambda c=change: store_variant(pg, "postgres", pg.new_database(), cfg.sql_inserts, cfg.writers, c)))
    return runs


# ---------------------------------------------------------------------------------------------------
# Main


async def run(cfg: Config, workdir: Path, command: str, wait_quiet_s: float) -> dict[str, Any]:
    began = time.monotonic()
    results: dict[str, Any] = {
        "command": command, "mode": cfg.mode, "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": machine_info(("fastapi", "uvicorn", "httpx", "httpx-sse", "psycopg", "psycopg-pool")),
        "config": {**asdict(cfg), "wait_quiet_s": wait_quiet_s, "noisy_above_percent_of_one_core": NOISY_PERCENT},
        "units": UNITS,
    }

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    async def timed(text: str, measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        waited = await wait_quiet(wait_quiet_s, Meter) if wait_quiet_s > 0 else 0.0
        step(text + (f" (waited {waited:.0f} s for a quiet machine)" if waited >= 2.5 else ""))
        result = {**await measure(), "waited_for_quiet_s": waited}
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}), flush=True)
        return result

    step("starting PostgreSQL (initdb, then a restart with pg_stat_statements)")
    pg = Meter.pg = PostgresServer()
    servers: list[Server] = []
    try:
        start_postgres(pg)
        with psycopg.connect(pg.url()) as conn:
            version = conn.info.server_version
            results["postgres"] = {"version": f"{version // 10000}.{version % 10000}",
                                   "settings": "fsync=off synchronous_commit=off full_page_writes=off (tests/postgres.py)"}
        step("inserts: one API process on SQLite, one on PostgreSQL")
        pg_url = pg.new_database()
        sqlite = api_server("api-sqlite", workdir, f"sqlite:///{workdir / 'traces.db'}")
        pgapi = api_server("api-postgres", workdir, pg_url)
        servers += [sqlite, pgapi]
        await start_all(sqlite, pgapi)
        quiet = Meter()
        await asyncio.sleep(1.0)
        results["machine_before_run"] = quiet.end()
        for api in (sqlite, pgapi):  # warm: imports, the pool, the first queries
            await post_all(api.port, [post_request(api.port, token_for("warm"), json.dumps(trace(i, {})).encode())
                                      for i in range(100)], cfg.writers)
        inserts = []
        for round_no, streams in itertools.product(range(1, cfg.insert_rounds + 1), (0, cfg.streams)):
            for api, store, url in ((sqlite, "sqlite", None), (pgapi, "postgres", pg_url)):
                inserts.append({"round": round_no, **await timed(
                    f"inserts, round {round_no}: {store}, {cfg.inserts} POSTs by {cfg.writers} writers, {streams} streams",
                    lambda a=api, s=store, u=url, n=streams, k=round_no: insert_run(cfg, a, s, f"ins-{s}-{n}-{k}", n, pg, u))})
        results["inserts"] = inserts

        latency = {"sqlite_one_node": await timed(
            f"latency: SQLite, one node, {cfg.rate_per_s:.0f} writes/s for {cfg.latency_s:.0f} s",
            lambda: latency_run(cfg, sqlite, {"same_node": sqlite}, "lat-sqlite", "lat-sqlite"))}
        sqlite.stop()
        pgapi.stop()

        step("two API processes, A and B, on one PostgreSQL database")
        cluster_url = pg.new_database()
        a, b = api_server("api-node-a", workdir, cluster_url), api_server("api-node-b", workdir, cluster_url)
        servers += [a, b]
        await start_all(a, b)
        latency["postgres_two_nodes"] = await timed(
            f"latency: PostgreSQL, writes through A, streams on B and on A, {cfg.rate_per_s:.0f} writes/s",
            lambda: latency_run(cfg, a, {"node_b": b, "node_a": a}, "lat-pg", "lat-pg"))
        results["latency"] = latency
        results["holes"] = await timed(
            f"holes: {cfg.held_trials} long open transactions, then {cfg.rollback_s:.0f} s of rollbacks",
            lambda: holes_run(cfg, cluster_url, a, b, "holes"))
        a.stop()
        b.stop()

        results["sql_alone"] = await sql_alone(cfg, pg, timed)
        results["store_alone"] = await store_alone(cfg, pg, workdir, timed)
    except Exception:
        for server in servers:
            print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        kill_children(keep=tuple(server.proc for server in servers))
        for server in servers:
            server.stop()
        pg.remove()
    results["server_log_problems"] = {server.name: server.log_problems() for server in servers}
    results["run_wall_s"] = round(time.monotonic() - began, 1)
    step("done")
    return results


# ---------------------------------------------------------------------------------------------------
# Report


def noise(run: dict[str, Any]) -> str:
    machine = run["machine_during_run"]
    return f"{machine['other_processes_percent_of_one_core']:.0f}%" + (" **(noisy)**" if machine["noisy"] else "")


def lat_text(s: dict[str, Any]) -> str:
    return f"{fmt(s['p50_ms'])} / {fmt(s['p95_ms'])} / {fmt(s['p99_ms'])} ms"


def sequencer_share(run: dict[str, Any]) -> str:
    rows = [s for s in run.get("postgres_statements_by_time") or [] if s["query"].startswith(SEQUENCER)]
    return f"{rows[0]['calls_per_item']} × {rows[0]['mean_ms']} ms" if rows else "n/a"


def quiet_waits(results: dict[str, Any]) -> list[float]:
    runs = [*results["inserts"], *results["latency"].values(), results["holes"], *results["sql_alone"],
            *results["store_alone"]]
    return [run["waited_for_quiet_s"] for run in runs]


def markdown(results: dict[str, Any]) -> str:
    m, cfg = results["machine"], results["config"]
    out = [
        "# PostgreSQL beside SQLite: inserts, latency across nodes, open and rolled-back transactions", "",
        f"`{results['command']}` ({results['mode']} run), {results['date']}, {m['cores_count']} cores "
        f"({m['cpu_model'] or 'unknown CPU'}), Python {m['python']}, PostgreSQL {results['postgres']['version']} "
        f"({results['postgres']['settings']}, pg_stat_statements loaded), commit {m['git_commit']}; "
        f"wall time {fmt(results['run_wall_s'], 's')}. Noise: CPU used by processes not the bench's, servers' or "
        f"PostgreSQL's, in % of one core (noisy above {NOISY_PERCENT:.0f}%); other processes used "
        f"{results['machine_before_run']['other_processes_percent_of_one_core']:.0f}% just before the run.", "",
        f"## Inserts through `POST /api/traces`: one trace per request, {cfg['writers']} writers on keep-alive "
        f"connections, {cfg['inserts']:,} POSTs, one API process", "",
        "| round | store | open streams of the writer | inserts/s | POST p50 / p95 | events received / expected | last POST → last receipt "
        "| API CPU per 1,000 | PostgreSQL CPU per 1,000 | sequencer calls per insert × mean | noise |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["inserts"]:
        got = (f"{run['events_received_count']:,} / {run['events_expected_count']:,}" if run["open_streams_count"] else "—")
        drain = fmt(run.get("last_post_answered_to_last_receipt_ms"), "ms") if run["open_streams_count"] else "—"
        out.append(f"| {run['round']} | {run['store']} | {run['open_streams_count']} | **{fmt(run['inserts_per_s'])}** | "
                   f"{fmt(run['post_p50_ms'])} / {fmt(run['post_p95_ms'], 'ms')} | {got} | {drain} | "
                   f"{fmt(run['api_cpu_s_per_1000_inserts'], 's')} | {fmt(run['postgres_cpu_s_per_1000_inserts'], 's')} | "
                   f"{sequencer_share(run)} | {noise(run)} |")
    lat = results["latency"]
    out += ["", f"## POST → receipt on a stream, {cfg['rate_per_s']:.0f} writes/s for {cfg['latency_s']:.0f} s "
            "(one trace per POST; the streams on A and B read the same writes at the same time)", "",
            "| path | received / expected | p50 / p95 / p99 | max | noise |", "|---|---|---|---|---|"]
    paths = [("PostgreSQL, write on A → stream on B", lat["postgres_two_nodes"], "node_b"),
             ("PostgreSQL, write on A → stream on A", lat["postgres_two_nodes"], "node_a"),
             ("SQLite, one node (reference)", lat["sqlite_one_node"], "same_node")]
    for label, run, name in paths:
        s = run["streams"][name]
        out.append(f"| {label} | {s['received_count']} / {s['expected_count']} | {lat_text(s)} | {fmt(s['max_ms'], 'ms')} | {noise(run)} |")
    held, rb = results["holes"]["held"], results["holes"]["rollback"]
    out += ["", "## PostgreSQL: what an open and a rolled-back transaction hold back (writes through A, 50/s)", "",
            "| | stream on B | stream on A | noise |", "|---|---|---|---|"]

    def both(get: Callable[[dict[str, Any]], str], source: dict[str, Any]) -> str:
        return f"{get(source['node_b'])} | {get(source['node_a'])}"

    def ms_list(values: list[float | None]) -> str:
        return ", ".join(fmt(v) for v in values) + " ms"

    out += [
        f"| POST → receipt while a psycopg INSERT stays uncommitted ({cfg['held_s']:g} s per trial), p50 per trial | "
        f"{both(lambda s: ms_list(s['while_open_p50_ms_per_trial']), held['summary'])} | {noise(held)} |",
        "| … p95 per trial | " + both(lambda s: ms_list(s['while_open_p95_ms_per_trial']), held["summary"]) + " | |",
        "| … received / expected, id gaps | " + both(lambda s: f"{s['while_open_received_count']} / "
                                                 f"{s['while_open_expected_count']}, {s['while_open_id_gaps_count']} gaps",
                                                 held["summary"]) + " | |",
        "| **that transaction's own event: COMMIT answered → receipt**, per trial | "
        + both(lambda s: ms_list(s['own_event_after_commit_ms_per_trial']), held["summary"]) + " | |",
        "| … API events numbered ahead of it while it was open, per trial | "
        + both(lambda s: ", ".join(map(str, s['events_numbered_before_it_per_trial'])), held["summary"]) + " | |",
        f"| INSERT + {cfg['rollback_hold_s'] * 1000:.0f} ms + ROLLBACK every {cfg['rollback_every_s']:g} s "
        f"({rb['rollbacks_count']} rollbacks, {rb['writes_count']} writes): **next event after a rollback**, p50 / p95 | "
        + both(lambda s: f"{fmt(s['next_after_rollback']['p50_ms'])} / {fmt(s['next_after_rollback']['p95_ms'], 'ms')}", rb)
        + f" | {noise(rb)} |",
        "| … every other event, p50 / p95 | "
        + both(lambda s: f"{fmt(s['others']['p50_ms'])} / {fmt(s['others']['p95_ms'], 'ms')}", rb) + " | |",
        "| … delay added to the next event (p50 difference) | " + both(lambda s: fmt(s["added_p50_ms"], "ms"), rb) + " | |",
        "| … received / expected, id gaps | " + both(lambda s: f"{s['all']['received_count']} / "
                                                 f"{s['all']['expected_count']}, {s['all']['id_gaps_count']} gaps", rb) + " | |",
    ]
    out += ["", f"## The SQL alone (psycopg, autocommit connections as the store's pool; {cfg['sql_inserts']:,} inserts)", "",
            "| connections | sequencer after each commit | inserts/s | INSERT txn p50 / p95 | sequencer call p50 / p95 "
            "| PostgreSQL CPU per 1,000 | noise |", "|---|---|---|---|---|---|---|"]
    for v in results["sql_alone"]:
        out.append(f"| {v['connections_count']} | {'yes' if v['sequencer_after_each'] else 'no'} | **{fmt(v['inserts_per_s'])}** | "
                   f"{fmt(v['insert_p50_ms'])} / {fmt(v['insert_p95_ms'], 'ms')} | "
                   + (f"{fmt(v['sequencer_p50_ms'])} / {fmt(v['sequencer_p95_ms'], 'ms')}" if v["sequencer_after_each"] else "—")
                   + f" | {fmt(v['postgres_cpu_s_per_1000_inserts'], 's')} | {noise(v)} |")
    out += ["", f"## The store alone (the product's `insert_traces`, in the bench process, no HTTP; {cfg['sql_inserts']:,} "
            f"inserts from {cfg['writers']} tasks)", "",
            "| store | inserts/s | call p50 / p95 | store process CPU per 1,000 | PostgreSQL CPU per 1,000 | noise |",
            "|---|---|---|---|---|---|"]
    for v in results["store_alone"]:
        label = v["store"] if v["store"] == "sqlite" else f"postgres, {v['change']}"
        out.append(f"| {label} | **{fmt(v['inserts_per_s'])}** | {fmt(v['insert_call_p50_ms'])} / "
                   f"{fmt(v['insert_call_p95_ms'], 'ms')} | {fmt(v['store_process_cpu_s_per_1000_inserts'], 's')} | "
                   f"{fmt(v['postgres_cpu_s_per_1000_inserts'], 's')} | {noise(v)} |")
    pg_runs = [run for run in results["inserts"] if run["store"] == "postgres" and run["round"] == 1]  # the rest: JSON
    out += ["", "## Where PostgreSQL's time went during the API inserts (pg_stat_statements, nested statements included)", ""]
    for run in pg_runs:
        out += [f"Round {run['round']}, {run['open_streams_count']} streams:", "", "| statement | top level | calls per insert | mean | ms per insert |",
                "|---|---|---|---|---|"]
        out += [f"| `{s['query']}` | {'yes' if s['top_level'] else 'no'} | {s['calls_per_item']} | {fmt(s['mean_ms'], 'ms')} | "
                f"{fmt(s['ms_per_item'], 'ms')} |" for s in run["postgres_statements_by_time"]]
        out.append("")
    out += [
        "## How it was measured", "",
        "- Inserts: the writers send pre-built HTTP/1.1 requests over raw keep-alive sockets (little CPU of their own on "
        "a 2-core box); the clock runs from the first send to the last answer. The 50 readers run httpx-sse in a separate "
        "process, resume with `Last-Event-ID` if cut, ignore duplicates, and count every `trace` event. CPU per 1,000 "
        "inserts is read from `/proc` over the writes and the readers' drain.",
        "- Latency: `time.monotonic()` just before each POST travels in the trace's metadata; the stream reader in this "
        "process subtracts it from its own `time.monotonic()` at receipt. Nodes A and B are two `python -m dashboard api` "
        "processes on one database; the streams on A and on B read the same writes at the same time.",
        "- Open transaction: psycopg INSERTs a trace of the streaming user and leaves the transaction open while the API "
        "writes; then COMMIT. Rollbacks: psycopg INSERTs, waits, and ROLLBACKs in a loop while the API writes; "
        "\"next event\" is the first POST sent after each ROLLBACK returned. Id gaps: missing ids between the events of a "
        "run on one stream (only that run writes, so any gap would be a hole).",
        "- SQL alone: the store's own INSERT statement in a transaction, then (or not) `SELECT traces_sequence_events()` on a "
        "second connection, as the API does after each commit; the outbox numbered and vacuumed between variants.",
        "- Store alone: `open_backend(url)` and `insert_traces([record])` from the writers' number of tasks in the bench "
        "process; the variants replace `EventSequencer.number_now` or `AsyncConnectionPool.check_connection` by a no-op "
        "with `unittest.mock.patch.object`, in the bench process only.",
        "- pg_stat_statements (`track = all`) stays loaded for the whole run, so PostgreSQL's numbers include its small "
        "cost; the SQLite runs do not pay it.",
        wait_line(cfg["wait_quiet_s"], quiet_waits(results), "measurement"),
        "- Raw numbers, with units in their names: `bench/pg_results.json`.", "",
    ]
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "_readers":
        try:
            asyncio.run(child_readers(json.loads(sys.argv[2])))
        except KeyboardInterrupt:
            return 130
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs (under a minute)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (server logs, SQLite file)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each timed measurement, wait up to this long for other processes to go quiet")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    command = ".venv/bin/python bench/pg_bench.py" + (" --quick" if args.quick else "") + (
        f" --wait-quiet {args.wait_quiet:g}" if args.wait_quiet > 0 else "")
    return run_and_write(lambda workdir: run(cfg, workdir, command, args.wait_quiet), tmp_prefix="pg-bench-",
                         keep_tmp=args.keep_tmp, json_name="pg_results.json", markdown_name="POSTGRES.md", markdown=markdown)


if __name__ == "__main__":
    sys.exit(main())
