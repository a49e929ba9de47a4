"""Live-stream benchmark: the real API's SSE stream next to a deliberately naive baseline.

Run from the repository root:

    .venv/bin/python bench/stream_bench.py           # the full run, about 3 minutes
    .venv/bin/python bench/stream_bench.py --quick   # smaller counts, about 40 s
    .venv/bin/python bench/stream_bench.py --wait-quiet 60   # on a shared machine: wait for quiet before each timing

It starts ``python -m dashboard api`` (a fresh SQLite file in a temporary directory, a fixed bench-only
secret, pings every 300 s, a per-user stream limit high enough) and ``bench/naive_server.py`` (one
SQLite poll per connection every 0.5 s, reading the same file) on 127.0.0.1 ports picked at run time,
talks only to them, and measures:

1. fan-out throughput: 100 streams of one user while one writer posts N traces in batches of 1000 as
   fast as the API accepts them; readers parse with httpx-sse, first inside this process (competing
   with the writer), then spread over 2 reader processes;
2. end-to-end latency from just before the POST to receipt on the stream, at a steady 100 writes/s,
   with 1 and with 10 readers, for both servers;
3. server memory per idle open stream (500 raw-socket streams held by a separate process), the CPU
   the server burns while they are idle, and the memory after they are closed, for both servers.

Each timed measurement also records how much CPU other processes on the machine used meanwhile (from
/proc/stat) and is flagged "noisy" above 25% of a core: on a small shared box that noise, not the code,
can dominate the latency numbers.

Results overwrite ``bench/results.json`` and ``bench/RESULTS.md``; the table is printed at the end.
Every subprocess is killed on exit, Ctrl-C included. Nothing is written to the repository's ``data/``.

Clocks: every time is ``time.monotonic()``, which on Linux is CLOCK_MONOTONIC, one clock for every
process on the machine, so reader processes and the writer compare their readings directly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

# bench/ is first on sys.path when this file is run as a script
from common import (
    BENCH,
    HOST,
    NOISY_PERCENT,
    UNITS,
    Load,
    Server,
    api_metrics,
    fmt,
    free_port,
    kill_children,
    machine_info,
    noise_text,
    pct,
    r,
    realistic_trace,
    run_and_write,
    server_env,
    spawn,
    wait_line,
    wait_quiet,
)
from httpx_sse import aconnect_sse

SECRET = "stream-bench-secret-not-for-production-0123456789abcdef"
STREAM_PATH = "/api/analytics/traces/stream"
NAIVE_STREAM_PATH = "/stream"
# The timings this benchmark's servers were measured with (see common.Server).
SERVER_TIMINGS: dict[str, Any] = {"poll_s": 0.05, "stop_grace_s": 5.0, "rss_every_s": 0.1, "rss_required": True}


# ---------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Config:
    mode: str
    fanout_streams: int = 100
    fanout_traces: int = 10_000
    fanout_batch: int = 1000
    fanout_reader_procs: int = 2
    fanout_timeout_s: float = 60.0
    latency_rate: float = 100.0
    latency_seconds: float = 20.0
    latency_readers: tuple[int, ...] = (1, 10)
    idle_streams: int = 500
    idle_hold_s: float = 3.0
    settle_s: float = 1.0
    rss_samples: int = 5
    memory_rounds: int = 2
    ping_interval_s: float = 300.0
    max_streams_per_user: int = 2000


FULL = Config(mode="full")
QUICK = Config(mode="quick", fanout_traces=1000, fanout_timeout_s=20.0, latency_seconds=5.0,
               idle_hold_s=0.5, settle_s=0.3, rss_samples=3, memory_rounds=1)


# ---------------------------------------------------------------------------------------------------
# Small helpers


def token_for(user: str, ttl: int = 3600) -> str:
    """A token as the contract describes it (HS256, sub, aud=authenticated, exp), signed with the bench secret."""
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + ttl}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sample_trace(i: int, metadata: dict[str, Any]) -> dict[str, Any]:
    """A trace of a realistic size (about 0.7 KB stored), the same for every measurement."""
    return realistic_trace(f"chat-completion-{i % 7}", "gpt-4o-mini", 812.5, metadata)


# ---------------------------------------------------------------------------------------------------
# Child processes (killed on the way out by common.kill_children), and the noise meter with our servers


async def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The child's next stdout line, or TimeoutError; the child is killed on timeout so nothing hangs."""
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    except TimeoutError:
        proc.kill()
        raise TimeoutError(f"child {proc.pid} said nothing for {timeout:.0f} s") from None
    if not line:
        raise RuntimeError(f"child {proc.pid} exited (code {proc.wait(timeout=5)}) before answering")
    return line.decode().strip()


def runqueue_waits_ns(pid: int) -> dict[str, int]:
    """Per thread, nanoseconds spent runnable but waiting for a CPU (``/proc/<pid>/task/<tid>/schedstat``)."""
    waits = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waits[task.name] = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return waits


def runqueue_wait_delta_s(before: dict[str, int], after: dict[str, int]) -> float:
    """Wait accrued between two snapshots by the threads alive at the second (a thread that ended in between is lost)."""
    return sum(wait - before.get(tid, 0) for tid, wait in after.items()) / 1e9


class ServersLoad(Load):
    """The noise meter with our servers and this process as "ours" (reader processes add theirs at ``end``),
    plus how long each server's threads waited for a CPU. On a shared 2-core box this is the noise indicator."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        super().__init__(lambda: sum(server.cpu_s() for server in servers) + self_cpu_s(),
                         "bench_processes_percent_of_one_core")
        self.waits = {server.name: runqueue_waits_ns(server.pid) for server in servers}

    def extra(self, wall: float) -> dict[str, Any]:
        return {
            "runqueue_wait_ms_per_s": {
                server.name: r(1000 * runqueue_wait_delta_s(self.waits[server.name], runqueue_waits_ns(server.pid)) / wall, 1)
                for server in self.servers
            },
        }


# ---------------------------------------------------------------------------------------------------
# Stream readers (httpx-sse)


@dataclass
class ReaderStats:
    count: int = 0
    first: float | None = None
    last: float | None = None
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


async def follow(client: httpx.AsyncClient, url: str, headers: dict[str, str], stats: ReaderStats, *,
                 expect: int, ready_event: str, on_ready: Callable[[], None],
                 measure_latency: bool = False) -> None:
    """Read one stream until ``expect`` trace events arrived, resuming with Last-Event-ID if it is cut."""
    last_id: int | None = None
    announced = False
    while stats.count < expect:
        request_headers = dict(headers)
        if last_id is not None:
            request_headers["Last-Event-ID"] = str(last_id)
        try:
            async with aconnect_sse(client, "GET", url, headers=request_headers) as source:
                if source.response.status_code != 200:
                    body = (await source.response.aread())[:200]
                    stats.errors.append(f"HTTP {source.response.status_code}: {body!r}")
                    if source.response.status_code not in (429, 503):
                        return  # refused for good: retrying would only hide the problem
                else:
                    async for event in source.aiter_sse():
                        if event.event == "trace":
                            seq = int(event.id)
                            if last_id is not None and seq <= last_id:
                                continue  # a replayed duplicate
                            now = time.monotonic()
                            last_id = seq
                            stats.count += 1
                            stats.first = stats.first or now
                            stats.last = now
                            if measure_latency:
                                sent = json.loads(event.data)["metadata"]["sent"]
                                stats.latencies_ms.append((now - sent) * 1000)
                            if stats.count >= expect:
                                return
                            continue
                        if event.event == "connected" and last_id is None:
                            data = json.loads(event.data)
                            last_id = data.get("last_event_id", data.get("last_seq"))
                        if event.event == ready_event and not announced:
                            announced = True
                            on_ready()
                        elif event.event == "error":
                            stats.errors.append(f"error event: {event.data[:200]}")
                            break
        except httpx.HTTPError as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")
        if stats.count < expect:
            stats.reconnects += 1
            await asyncio.sleep(0.1)


def stream_client(connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, read=120.0),
        limits=httpx.Limits(max_connections=connections + 5, max_keepalive_connections=connections + 5),
    )


class Readers:
    """``n`` httpx-sse readers of one stream URL in this process; ``ready`` once every one is subscribed."""

    def __init__(self, url: str, headers: dict[str, str], n: int, expect: int, ready_event: str,
                 measure_latency: bool = False) -> None:
        self.stats = [ReaderStats() for _ in range(n)]
        self.client = stream_client(n)
        self.ready = asyncio.Event()
        self._waiting = n
        self.tasks = [
            asyncio.create_task(follow(self.client, url, headers, stats, expect=expect, ready_event=ready_event,
                                       on_ready=self._one_ready, measure_latency=measure_latency))
            for stats in self.stats
        ]

    def _one_ready(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.ready.set()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait([ready, *self.tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.client.aclose()
            errors = sorted({e for s in self.stats for e in s.errors})[:3]
            raise RuntimeError(f"{self._waiting} readers not subscribed (waited up to {timeout:.0f} s): {errors}")

    async def finish(self, timeout: float) -> bool:
        """Wait for every reader to have all its events; False (and the rest cancelled) on timeout."""
        done, pending = await asyncio.wait(self.tasks, timeout=max(timeout, 0.1))
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()
        return not pending


# ---------------------------------------------------------------------------------------------------
# Child process roles (the same file, run as ``stream_bench.py _readers|_idle '<json>'``)


async def child_readers(args: dict[str, Any]) -> None:
    """Fan-out readers in a process of their own: READY once subscribed, then RESULT with per-stream numbers."""
    readers = Readers(args["url"], {"Authorization": f"Bearer {args['token']}"}, args["streams"], args["expect"],
                      "subscribed")
    await readers.wait_ready()
    cpu0 = self_cpu_s()
    print("READY", flush=True)
    complete = await readers.finish(args["timeout"])
    result = {
        "complete": complete,
        "cpu_s": self_cpu_s() - cpu0,
        "streams": [
            {"count": s.count, "first": s.first, "last": s.last, "reconnects": s.reconnects, "errors": s.errors[:3]}
            for s in readers.stats
        ],
    }
    print("RESULT " + json.dumps(result), flush=True)


async def child_idle(args: dict[str, Any]) -> None:
    """Open ``count`` streams with raw sockets (nearly free for this process), hold them, close on a line from stdin."""
    request = (f"GET {args['path']} HTTP/1.1\r\nHost: {HOST}:{args['port']}\r\nAccept: text/event-stream\r\n"
               f"Authorization: Bearer {args['token']}\r\n\r\n").encode()
    marker = args["marker"].encode()
    conns: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(100)

    async def open_one() -> None:
        async with gate:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, args["port"]), 10)
            try:
                writer.write(request)
                await writer.drain()
                buffer = b""
                while marker not in buffer:
                    chunk = await asyncio.wait_for(reader.read(4096), 30)
                    if not chunk:
                        raise ConnectionError(f"closed before {args['marker']!r}: {buffer[:120]!r}")
                    buffer += chunk
                if not buffer.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(f"not 200: {buffer[:120]!r}")
            except BaseException:
                writer.close()
                raise
            conns.append(writer)

    results = await asyncio.gather(*(open_one() for _ in range(args["count"])), return_exceptions=True)
    failures = [repr(x) for x in results if isinstance(x, BaseException)]
    print("READY " + json.dumps({"open": len(conns), "failed": len(failures), "errors": failures[:3]}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # a line, or EOF when the parent goes away
    for writer in conns:
        writer.close()
    await asyncio.wait_for(asyncio.gather(*(w.wait_closed() for w in conns), return_exceptions=True), 10)
    print("CLOSED", flush=True)


def start_child(role: str, args: dict[str, Any]) -> subprocess.Popen:
    return spawn([sys.executable, str(Path(__file__).resolve()), role, json.dumps(args)],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH)


# ---------------------------------------------------------------------------------------------------
# 1. Fan-out throughput


def fanout_payloads(n: int, batch: int) -> list[bytes]:
    """Every batch serialised before the clock starts, so the writer costs little while it is measured."""
    return [
        json.dumps({"traces": [sample_trace(i, {"bench": "fanout", "i": i}) for i in range(start, min(n, start + batch))]}).encode()
        for start in range(0, n, batch)
    ]


async def write_batches(api: Server, user: str, payloads: list[bytes]) -> float:
    """POST each batch as soon as the previous one is answered; the monotonic time of the last answer."""
    headers = {**bearer(user), "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as client:
        for body in payloads:
            response = await client.post(api.url + "/api/traces", content=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"POST /api/traces answered {response.status_code}: {response.text[:200]}")
    return time.monotonic()


def fanout_summary(cfg: Config, t0: float, posted: float, streams: list[dict[str, Any]], complete: bool,
                   cpu: dict[str, float], wall: float, before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    n = cfg.fanout_traces
    delivered = sum(s["count"] for s in streams)
    lasts = [s["last"] for s in streams if s["last"] is not None]
    elapsed = (max(lasts) - t0) if lasts else None
    per_stream = [s["count"] / (s["last"] - t0) for s in streams if s["last"] is not None and s["last"] > t0]

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "complete": complete,
        "streams_count": len(streams),
        "streams_with_every_event_count": sum(1 for s in streams if s["count"] >= n),
        "traces_posted_count": n,
        "deliveries_expected_count": len(streams) * n,
        "deliveries_received_count": delivered,
        "first_post_to_last_receipt_s": r(elapsed, 3),
        "deliveries_per_s": r(delivered / elapsed, 0) if elapsed else None,
        "per_stream_events_per_s_median": r(statistics.median(per_stream), 0) if per_stream else None,
        "per_stream_events_per_s_min": r(min(per_stream), 0) if per_stream else None,
        "per_stream_events_per_s_max": r(max(per_stream), 0) if per_stream else None,
        "writer_all_posts_answered_s": r(posted - t0, 3),
        "writer_ingest_traces_per_s": r(n / (posted - t0), 0),
        "reconnects_count": sum(s["reconnects"] for s in streams),
        "slow_clients_dropped_count": int(delta("traces_slow_clients_dropped_total")),
        "replays_count": int(delta("traces_replays_total")),
        "server_events_sent_count": int(delta("traces_events_sent_total")),
        "wall_s": r(wall, 3),
        "server_cpu_us_per_delivery": r(1e6 * cpu["server"] / delivered, 2) if delivered else None,
        "reader_cpu_us_per_event": r(1e6 * sum(v for k, v in cpu.items() if "reader" in k) / delivered, 2)
        if delivered else None,
        "cpu_s": {k: r(v, 2) for k, v in cpu.items()},
        "cpu_percent_of_one_core": {k: r(100 * v / wall, 0) for k, v in cpu.items()},
        "errors_sample": sorted({e for s in streams for e in s.get("errors", [])})[:3],
    }


async def fanout_in_process(cfg: Config, api: Server, user: str, servers: list[Server]) -> dict[str, Any]:
    payloads = fanout_payloads(cfg.fanout_traces, cfg.fanout_batch)
    readers = Readers(api.url + STREAM_PATH, bearer(user), cfg.fanout_streams, cfg.fanout_traces, "subscribed")
    await readers.wait_ready()
    before = await api_metrics(api, token_for("bench-metrics"))
    server0, self0 = api.cpu_s(), self_cpu_s()
    load = ServersLoad(servers)
    t0 = time.monotonic()
    posted = await write_batches(api, user, payloads)
    complete = await readers.finish(cfg.fanout_timeout_s - (time.monotonic() - t0))
    machine = load.end()
    wall = time.monotonic() - t0
    cpu = {"server": api.cpu_s() - server0, "bench_process_writer_and_readers": self_cpu_s() - self0}
    after = await api_metrics(api, token_for("bench-metrics"))
    streams = [{"count": s.count, "first": s.first, "last": s.last, "reconnects": s.reconnects, "errors": s.errors[:3]}
               for s in readers.stats]
    return {"readers": f"{cfg.fanout_streams} httpx-sse readers in the bench process (with the writer)",
            **fanout_summary(cfg, t0, posted, streams, complete, cpu, wall, before, after),
            "machine_during_run": machine}


async def fanout_separate(cfg: Config, api: Server, user: str, servers: list[Server]) -> dict[str, Any]:
    payloads = fanout_payloads(cfg.fanout_traces, cfg.fanout_batch)
    procs = cfg.fanout_reader_procs
    shares = [cfg.fanout_streams // procs + (1 if i < cfg.fanout_streams % procs else 0) for i in range(procs)]
    token = token_for(user)
    children = [start_child("_readers", {"url": api.url + STREAM_PATH, "token": token, "streams": share,
                                         "expect": cfg.fanout_traces, "timeout": cfg.fanout_timeout_s})
                for share in shares]
    for child in children:
        line = await read_line(child, 60)
        if line != "READY":
            raise RuntimeError(f"reader process said {line!r}")
    before = await api_metrics(api, token_for("bench-metrics"))
    server0, self0 = api.cpu_s(), self_cpu_s()
    load = ServersLoad(servers)
    t0 = time.monotonic()
    posted = await write_batches(api, user, payloads)
    results = []
    for child in children:
        line = await read_line(child, cfg.fanout_timeout_s + 30)
        if not line.startswith("RESULT "):
            raise RuntimeError(f"reader process said {line!r}")
        results.append(json.loads(line[len("RESULT "):]))
        child.wait(timeout=10)
    wall = time.monotonic() - t0
    machine = load.end(children_cpu_s=sum(res["cpu_s"] for res in results))
    cpu = {"server": api.cpu_s() - server0, "bench_process_writer": self_cpu_s() - self0}
    for i, res in enumerate(results):
        cpu[f"reader_process_{i + 1}"] = res["cpu_s"]
    after = await api_metrics(api, token_for("bench-metrics"))
    streams = [s for res in results for s in res["streams"]]
    complete = all(res["complete"] for res in results)
    return {"readers": f"{cfg.fanout_streams} httpx-sse readers in {procs} separate processes ({'+'.join(map(str, shares))})",
            **fanout_summary(cfg, t0, posted, streams, complete, cpu, wall, before, after),
            "machine_during_run": machine}


# ---------------------------------------------------------------------------------------------------
# 2. End-to-end latency at a steady write rate


async def latency_run(cfg: Config, api: Server, stream_server: Server, stream_path: str, ready_event: str,
                      n_readers: int, user: str, servers: list[Server]) -> dict[str, Any]:
    n = int(cfg.latency_rate * cfg.latency_seconds)
    readers = Readers(stream_server.url + stream_path, bearer(user), n_readers, n, ready_event, measure_latency=True)
    await readers.wait_ready()
    headers = {**bearer(user), "Content-Type": "application/json"}
    post_ms: list[float] = []
    failures: list[str] = []
    lateness: list[float] = []
    cpu0 = {server.name: server.cpu_s() for server in servers}
    load = ServersLoad(servers)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as writer:
        async def post_one(i: int) -> None:
            body = sample_trace(i, {"bench": "latency", "i": i, "sent": time.monotonic()})
            began = time.monotonic()
            try:
                response = await writer.post(api.url + "/api/traces", content=json.dumps(body), headers=headers)
                if response.status_code != 201:
                    failures.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            post_ms.append((time.monotonic() - began) * 1000)

        posts = []
        start = time.monotonic() + 0.05
        for i in range(n):
            target = start + i / cfg.latency_rate  # a schedule, not a sleep per write: no drift
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(max(0.0, time.monotonic() - target) * 1000)
            posts.append(asyncio.create_task(post_one(i)))
        writing_s = time.monotonic() - start
        _, late = await asyncio.wait(posts, timeout=10)
        for task in late:  # a POST still unanswered 10 s after the last was sent: count it, do not wait for ever
            task.cancel()
            failures.append("unanswered 10 s after the last write was sent")
        await asyncio.gather(*posts, return_exceptions=True)
        cpu = {server.name: server.cpu_s() - cpu0[server.name] for server in servers}
        machine = load.end()
    complete = await readers.finish(5.0)
    samples = [ms for s in readers.stats for ms in s.latencies_ms]
    return {
        "readers_count": n_readers,
        "writes_count": n,
        "write_rate_target_per_s": cfg.latency_rate,
        "write_rate_achieved_per_s": r(n / writing_s, 1),
        "writer_schedule_lateness_p99_ms": r(pct(lateness, 99), 2),
        "post_failures_count": len(failures),
        "receipts_count": len(samples),
        "receipts_missing_count": n * n_readers - len(samples),
        "complete": complete,
        "p50_ms": r(pct(samples, 50), 2),
        "p95_ms": r(pct(samples, 95), 2),
        "p99_ms": r(pct(samples, 99), 2),
        "max_ms": r(max(samples), 2) if samples else None,
        "mean_ms": r(statistics.fmean(samples), 2) if samples else None,
        "post_response_p50_ms": r(pct(post_ms, 50), 2),
        "post_response_p99_ms": r(pct(post_ms, 99), 2),
        "servers_cpu_percent_of_one_core": {
            **{name: r(100 * value / writing_s, 0) for name, value in cpu.items()},
            "total": r(100 * sum(cpu.values()) / writing_s, 0),
        },
        "machine_during_run": machine,
        "errors_sample": sorted({e for s in readers.stats for e in s.errors})[:3],
    }


# ---------------------------------------------------------------------------------------------------
# 3. Memory per idle open stream


async def warm_up(api: Server, stream_server: Server, stream_path: str, ready_event: str, user: str) -> None:
    """Exercise the stream path once (connect, deliver, disconnect) so lazy imports and caches are loaded."""
    readers = Readers(stream_server.url + stream_path, bearer(user), 5, 50, ready_event)
    await readers.wait_ready()
    body = json.dumps({"traces": [sample_trace(i, {"bench": "warm-up"}) for i in range(50)]})
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(api.url + "/api/traces", content=body,
                                     headers={**bearer(user), "Content-Type": "application/json"})
        response.raise_for_status()
    if not await readers.finish(15):
        raise RuntimeError("warm-up streams did not receive their events")


async def memory_run(cfg: Config, api: Server, stream_server: Server, stream_path: str, ready_event: str,
                     user: str, has_metrics: bool) -> dict[str, Any]:
    await warm_up(api, stream_server, stream_path, ready_event, user + "-warm")
    await asyncio.sleep(cfg.settle_s)
    rss0 = await stream_server.rss_median_kb(cfg.rss_samples)
    fds0 = stream_server.fds()
    cpu0 = stream_server.cpu_s()
    hold0 = min(cfg.idle_hold_s, 2.0)
    await asyncio.sleep(hold0)
    idle_cpu_0 = (stream_server.cpu_s() - cpu0) / hold0
    n = cfg.idle_streams
    rounds = []
    for round_no in range(1, cfg.memory_rounds + 1):
        child = start_child("_idle", {"port": stream_server.port, "path": stream_path, "token": token_for(user),
                                      "count": n, "marker": f"event: {ready_event}"})
        opened_at = time.monotonic()
        line = await read_line(child, 90)
        if not line.startswith("READY "):
            raise RuntimeError(f"idle opener said {line!r}")
        opened = json.loads(line[len("READY "):])
        open_s = time.monotonic() - opened_at
        await asyncio.sleep(cfg.settle_s)
        gauge = (await api_metrics(api, token_for("bench-metrics"))).get("traces_open_streams") if has_metrics else None
        rss_open = await stream_server.rss_median_kb(cfg.rss_samples)
        fds_open = stream_server.fds()
        threads_open = stream_server.threads()
        cpu0 = stream_server.cpu_s()
        await asyncio.sleep(cfg.idle_hold_s)
        idle_cpu = (stream_server.cpu_s() - cpu0) / cfg.idle_hold_s
        closed_at = time.monotonic()
        child.stdin.write(b"close\n")
        child.stdin.flush()
        line = await read_line(child, 30)
        child.wait(timeout=10)
        # The server has let go of them when its open-stream gauge (ours) or its descriptors (both) are back.
        deadline = time.monotonic() + 30
        released_s = None
        while time.monotonic() < deadline:
            gone = stream_server.fds() <= fds0
            if has_metrics:
                gone = gone and (await api_metrics(api, token_for("bench-metrics"))).get("traces_open_streams") == 0
            if gone:
                released_s = time.monotonic() - closed_at
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(cfg.settle_s)
        rss_closed = await stream_server.rss_median_kb(cfg.rss_samples)
        rounds.append({
            "round": round_no,
            "streams_opened_count": opened["open"],
            "streams_failed_count": opened["failed"],
            "open_errors_sample": opened["errors"],
            "seconds_to_open_all_s": r(open_s, 2),
            "metrics_open_streams_count": gauge,
            "metrics_open_streams_matches": (gauge == opened["open"]) if has_metrics else None,
            "rss_open_kb": rss_open,
            "fds_open_count": fds_open,
            "threads_open_count": threads_open,
            "idle_cpu_percent_of_one_core": r(100 * idle_cpu, 1),
            "all_released_after_close_s": r(released_s, 2),
            "rss_after_close_kb": rss_closed,
        })
    first = rounds[0]
    last = rounds[-1]
    return {
        "idle_streams_count": n,
        "rss_0_streams_kb": rss0,
        "fds_0_streams_count": fds0,
        "idle_cpu_0_streams_percent_of_one_core": r(100 * idle_cpu_0, 1),
        "rss_open_kb": first["rss_open_kb"],
        "per_stream_kb": r((first["rss_open_kb"] - rss0) / n, 1),
        "per_stream_fds": r((first["fds_open_count"] - fds0) / n, 2),
        "idle_cpu_percent_of_one_core": first["idle_cpu_percent_of_one_core"],
        "rss_after_close_kb": first["rss_after_close_kb"],
        "rss_after_last_close_kb": last["rss_after_close_kb"],
        "rss_growth_between_closes_kb": (last["rss_after_close_kb"] - first["rss_after_close_kb"])
        if len(rounds) > 1 else None,
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------------------------------
# Report


def cpu_text(run: dict[str, Any]) -> str:
    cpu = run["servers_cpu_percent_of_one_core"]
    return f"{fmt(cpu['total'], '% of a core')} (API {fmt(cpu['api'])}%, naive {fmt(cpu['naive'])}%)"


def noisy_note(results: dict[str, Any]) -> str:
    noisy = [f"latency {kind} {k.split('_')[0]} reader(s)" for kind in ("ours", "naive")
             for k, run in results["latency"][kind].items() if run["machine_during_run"]["noisy"]]
    noisy += [f"fan-out {k.replace('_', ' ')}" for k, run in results["fanout"].items() if run["machine_during_run"]["noisy"]]
    if not noisy:
        return (f"No measurement was noisy: other processes on the machine used at most {NOISY_PERCENT:.0f}% of a core "
                "during each timed run.")
    return (f"**Noisy** (other processes on the machine used more than {NOISY_PERCENT:.0f}% of a core during the run, "
            f"so these numbers are worse than the code alone would give): {', '.join(noisy)}.")


def quiet_waits(results: dict[str, Any]) -> list[float]:
    """The seconds waited for a quiet machine before each timed measurement, in the order they ran."""
    waits = [run["waited_for_quiet_s"] for kind in ("ours", "naive") for run in results["latency"][kind].values()]
    return waits + [run["waited_for_quiet_s"] for run in results["fanout"].values()]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lat = results["latency"]
    mem = results["memory"]
    fan = results["fanout"]
    out = [
        "# Live stream benchmark: ours vs a naive per-connection baseline",
        "",
        f"`{results['command']}` ({results['mode']} run), {results['date']}, "
        f"{m['cores_count']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_total_mb']} MB RAM, "
        f"Python {m['python']}, commit {m['git_commit']}. Wall time of the run: {fmt(results['run_wall_s'], 's')}.",
        "",
        "*Ours*: `python -m dashboard api` (SQLite outbox, one hub follower per process, each event framed once "
        "and offered to every matching stream's bounded queue). *Naive*: `bench/naive_server.py`, a deliberately "
        "naive baseline (FastAPI `EventSourceResponse` generator, one SQLite connection polling every 0.5 s per "
        "open stream, reading the same file). Both on uvicorn, on 127.0.0.1, the writer is always the real "
        "`POST /api/traces`.",
        "",
        "## Side by side",
        "",
        noisy_note(results),
        "",
        "| measure | ours | naive |",
        "|---|---|---|",
    ]
    for k in (1, 10):
        ours, naive = lat["ours"][f"{k}_readers"], lat["naive"][f"{k}_readers"]
        for q in ("p50", "p95", "p99", "max"):
            out.append(f"| latency POST → receipt, {k} reader{'s' if k > 1 else ''}, 100 writes/s, {q} "
                       f"| {fmt(ours[q + '_ms'], 'ms')} | {fmt(naive[q + '_ms'], 'ms')} |")
        out.append(f"| receipts (missing), {k} reader{'s' if k > 1 else ''} | {ours['receipts_count']} "
                   f"({ours['receipts_missing_count']}) | {naive['receipts_count']} ({naive['receipts_missing_count']}) |")
        out.append(f"| POST answered, p50 / p99, {k} reader{'s' if k > 1 else ''} "
                   f"| {fmt(ours['post_response_p50_ms'])} / {fmt(ours['post_response_p99_ms'], 'ms')} "
                   f"| {fmt(naive['post_response_p50_ms'])} / {fmt(naive['post_response_p99_ms'], 'ms')} |")
        out.append(f"| server CPU during it (API incl. the POSTs + naive), {k} reader{'s' if k > 1 else ''} "
                   f"| {cpu_text(ours)} | {cpu_text(naive)} |")
        out.append(f"| noise: CPU used by other processes on the machine, {k} reader{'s' if k > 1 else ''} "
                   f"| {noise_text(ours)} | {noise_text(naive)} |")
    o, n = mem["ours"], mem["naive"]
    rows = [
        ("server RSS, 0 streams (after warm-up)", "rss_0_streams_kb", "KB"),
        (f"server RSS, {o['idle_streams_count']} idle streams open", "rss_open_kb", "KB"),
        ("**memory per idle stream** (RSS_open − RSS_0) / N, first round", "per_stream_kb", "KB"),
        ("file descriptors per idle stream", "per_stream_fds", ""),
        ("server CPU with 0 streams", "idle_cpu_0_streams_percent_of_one_core", "% of a core"),
        (f"server CPU with {o['idle_streams_count']} idle streams", "idle_cpu_percent_of_one_core", "% of a core"),
        ("server RSS after closing them", "rss_after_close_kb", "KB"),
        ("server RSS after the last of the open/close rounds", "rss_after_last_close_kb", "KB"),
        ("RSS growth from first to last close (leak check)", "rss_growth_between_closes_kb", "KB"),
    ]
    for label, key, unit in rows:
        out.append(f"| {label} | {fmt(o[key], unit)} | {fmt(n[key], unit)} |")
    out.append(f"| seconds until the server released all {o['idle_streams_count']} after the client closed "
               f"| {fmt(o['rounds'][0]['all_released_after_close_s'], 's')} "
               f"| {fmt(n['rounds'][0]['all_released_after_close_s'], 's')} |")
    out.append(f"| `/metrics` traces_open_streams while open | {fmt(o['rounds'][0]['metrics_open_streams_count'])} "
               f"(matches the {o['rounds'][0]['streams_opened_count']} opened: {o['rounds'][0]['metrics_open_streams_matches']}) | n/a (no metrics) |")
    best = max((fan[k]["deliveries_per_s"] or 0) for k in fan)
    out.append(f"| fan-out, deliveries/s to {results['config']['fanout_streams']} streams (best of the two set-ups below) "
               f"| {fmt(float(best), '/s')} | not measured |")
    out += [
        "",
        f"## Fan-out: {results['config']['fanout_streams']} streams of one user, "
        f"{results['config']['fanout_traces']} traces posted in batches of {results['config']['fanout_batch']}",
        "",
        "| | " + " | ".join(fan[k]["readers"] for k in fan) + " |",
        "|---|" + "---|" * len(fan),
    ]
    fan_rows = [
        ("deliveries received / expected", lambda f: f"{f['deliveries_received_count']:,} / {f['deliveries_expected_count']:,}"),
        ("**total deliveries/s** (100 × N / first POST → last receipt)", lambda f: fmt(f["deliveries_per_s"], "/s")),
        ("first POST → last stream's last event", lambda f: fmt(f["first_post_to_last_receipt_s"], "s")),
        ("per-stream events/s, median (min–max)", lambda f: f"{fmt(f['per_stream_events_per_s_median'])} "
                                                          f"({fmt(f['per_stream_events_per_s_min'])}–{fmt(f['per_stream_events_per_s_max'])}) /s"),
        ("writer: all batches accepted after", lambda f: f"{fmt(f['writer_all_posts_answered_s'], 's')} "
                                                       f"({fmt(f['writer_ingest_traces_per_s'], 'traces/s')})"),
        ("slow streams dropped by the server / reader reconnects", lambda f: f"{f['slow_clients_dropped_count']} / {f['reconnects_count']}"),
        ("CPU seconds (share of one core over the run)", lambda f: "; ".join(
            f"{k.replace('_', ' ')} {v} s ({fmt(f['cpu_percent_of_one_core'][k])}%)" for k, v in f["cpu_s"].items())),
        ("**server CPU per delivery** / reader CPU per received event", lambda f: (
            f"{fmt(f['server_cpu_us_per_delivery'], 'µs')} / {fmt(f['reader_cpu_us_per_event'], 'µs')}")),
        ("machine busy (all cores); noise: CPU used by other processes", lambda f: (
            f"{fmt(f['machine_during_run']['machine_busy_percent_of_one_core'])}% of a core; "
            + noise_text(f))),
    ]
    for label, get in fan_rows:
        out.append(f"| {label} | " + " | ".join(get(fan[k]) for k in fan) + " |")
    out += [
        "",
        "## How it was measured",
        "",
        f"- Machine: {m['cores_count']} cores, shared by the server, the readers and the writer: on a box this small "
        "the readers (Python, httpx-sse) compete with the server for CPU, so the fan-out is also run with the readers "
        "in separate processes. The CPU rows say where the time went (per process, from `/proc/<pid>/stat` and "
        "`getrusage`). The box may also be shared with other work: the noise rows give the CPU used by processes that "
        "are not the bench's (from `/proc/stat`); results.json also has how long the API's threads waited for a CPU "
        "(`/proc/<pid>/task/*/schedstat`: about 150–200 ms per s even on a quiet run here, thread wake-ups on this VM). "
        "Before the run, other processes used "
        f"{fmt(results['machine_before_run']['other_processes_percent_of_one_core'])}% of a core.",
        "- Fan-out: readers connect and wait for `subscribed`; the clock starts before the first POST and stops at the "
        "last stream's last `trace` event. A stream the server drops for falling too far behind resumes with "
        "`Last-Event-ID` (counted above); duplicates are ignored.",
        f"- Latency: one writer posts single traces on a fixed monotonic schedule ({results['config']['latency_rate']:.0f}/s for "
        f"{results['config']['latency_seconds']:.0f} s); each trace carries `time.monotonic()` taken just before its POST, and "
        "each reader subtracts it from its own `time.monotonic()` at receipt (same process, same clock). The naive server "
        "polls every 0.5 s, so its latency is dominated by the poll.",
        f"- Memory: server RSS (`VmRSS` from `/proc/<pid>/status`, median of {results['config']['rss_samples']} samples 0.1 s apart) after a warm-up, with "
        f"{o['idle_streams_count']} streams held open by a separate process over raw sockets (its cost is not the server's), "
        f"then after closing them; {results['config']['memory_rounds']} open/close round(s). Pings every "
        f"{results['config']['ping_interval_s']:.0f} s, so idle is idle for ours; the naive server keeps polling "
        "for every idle stream.",
        wait_line(results["config"]["wait_quiet_s"], quiet_waits(results), "measurement"),
        "- Raw numbers, with units in their names: `bench/results.json`.",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Main


async def run(cfg: Config, workdir: Path, command: str, wait_quiet_s: float = 0.0) -> dict[str, Any]:
    began = time.monotonic()
    db_path = workdir / "traces.db"
    env = server_env({
        "TRACES_JWT_SECRET": SECRET,
        "TRACES_DB_URL": f"sqlite:///{db_path}",
        "TRACES_PING_INTERVAL": str(cfg.ping_interval_s),
        "TRACES_MAX_STREAMS_PER_USER": str(cfg.max_streams_per_user),
    })
    api_port, naive_port = free_port(), free_port()
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--host", HOST, "--port", str(api_port),
                         "--db", f"sqlite:///{db_path}"], env, workdir, api_port, **SERVER_TIMINGS)
    naive = Server("naive", [sys.executable, str(BENCH / "naive_server.py"), "--host", HOST, "--port", str(naive_port),
                             "--db", str(db_path)], env, workdir, naive_port, **SERVER_TIMINGS)
    results: dict[str, Any] = {
        "command": command,
        "mode": cfg.mode,
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": machine_info(("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "httpx-sse", "pydantic")),
        "config": {
            "fanout_streams": cfg.fanout_streams, "fanout_traces": cfg.fanout_traces, "fanout_batch": cfg.fanout_batch,
            "fanout_reader_procs": cfg.fanout_reader_procs, "latency_rate": cfg.latency_rate,
            "latency_seconds": cfg.latency_seconds, "idle_streams": cfg.idle_streams, "idle_hold_s": cfg.idle_hold_s,
            "wait_quiet_s": wait_quiet_s, "noisy_above_percent_of_one_core": NOISY_PERCENT,
            "memory_rounds": cfg.memory_rounds, "rss_samples": cfg.rss_samples, "settle_s": cfg.settle_s,
            "ping_interval_s": cfg.ping_interval_s,
            "naive_poll_interval_s": 0.5, "max_streams_per_user": cfg.max_streams_per_user,
        },
        "units": UNITS,
    }

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    try:
        step("starting the API and the naive baseline")
        await api.start(timeout=30.0)  # first: it creates the database the naive server reads
        await naive.start(timeout=30.0)
        results["server_pids"] = {"api": api.pid, "naive": naive.pid}
        quiet = ServersLoad([api, naive])
        await asyncio.sleep(cfg.settle_s)
        results["machine_before_run"] = quiet.end()
        others = results["machine_before_run"]["other_processes_percent_of_one_core"]
        if others > 20:
            step(f"warning: other processes use {others:.0f}% of a core right now; results will be noisy")

        step(f"memory: {cfg.idle_streams} idle streams on the API")
        memory = {"ours": await memory_run(cfg, api, api, STREAM_PATH, "subscribed", "mem-ours", True)}
        step(f"memory: {cfg.idle_streams} idle streams on the naive baseline")
        memory["naive"] = await memory_run(cfg, api, naive, NAIVE_STREAM_PATH, "connected", "mem-naive", False)
        results["memory"] = memory

        async def timed(text: str, measure: Callable[[], Any]) -> dict[str, Any]:
            """One timed measurement, after waiting (with --wait-quiet) for the machine to be quiet."""
            waited = await wait_quiet(wait_quiet_s, lambda: ServersLoad([api, naive])) if wait_quiet_s > 0 else 0.0
            step(text + (f" (waited {waited:.0f} s for a quiet machine)" if waited >= 2.5 else ""))
            return {**await measure(), "waited_for_quiet_s": waited}

        servers = [api, naive]
        latency: dict[str, dict[str, Any]] = {"ours": {}, "naive": {}}
        for k in cfg.latency_readers:
            latency["ours"][f"{k}_readers"] = await timed(
                f"latency: ours, {k} reader(s), {cfg.latency_rate:.0f} writes/s for {cfg.latency_seconds:.0f} s",
                lambda k=k: latency_run(cfg, api, api, STREAM_PATH, "subscribed", k, f"lat-ours-{k}", servers))
            latency["naive"][f"{k}_readers"] = await timed(
                f"latency: naive, {k} reader(s)",
                lambda k=k: latency_run(cfg, api, naive, NAIVE_STREAM_PATH, "connected", k, f"lat-naive-{k}", servers))
        results["latency"] = latency

        fanout = {"in_process": await timed(
            f"fan-out: {cfg.fanout_streams} streams, {cfg.fanout_traces} traces, readers in this process",
            lambda: fanout_in_process(cfg, api, "fan-in", servers))}
        fanout["separate_processes"] = await timed(
            f"fan-out: readers in {cfg.fanout_reader_procs} separate processes",
            lambda: fanout_separate(cfg, api, "fan-sep", servers))
        results["fanout"] = fanout
    except Exception:
        print("--- API log tail ---\n" + api.log_tail(), file=sys.stderr)
        print("--- naive log tail ---\n" + naive.log_tail(), file=sys.stderr)
        raise
    finally:
        kill_children(keep=(api.proc, naive.proc))  # readers and stream holders first, so the servers can stop at once
        api.stop()
        naive.stop()
    results["run_wall_s"] = round(time.monotonic() - began, 1)
    step("done")
    return results


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] in ("_readers", "_idle"):
        role = child_readers if sys.argv[1] == "_readers" else child_idle
        try:
            asyncio.run(role(json.loads(sys.argv[2])))
        except KeyboardInterrupt:
            return 130
        return 0

    parser = argparse.ArgumentParser(description="Benchmark the live trace stream against a naive baseline.")
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs (about 40 s)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (database, server logs)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: before each timed measurement, wait up to this long for other "
                             "processes to go quiet (default 0: do not wait; the run stays within its time bound)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    command = ".venv/bin/python bench/stream_bench.py" + (" --quick" if args.quick else "") + (
        f" --wait-quiet {args.wait_quiet:g}" if args.wait_quiet > 0 else "")
    return run_and_write(lambda workdir: run(cfg, workdir, command, args.wait_quiet), tmp_prefix="stream-bench-",
                         keep_tmp=args.keep_tmp, json_name="results.json", markdown_name="RESULTS.md", markdown=markdown)


if __name__ == "__main__":
    sys.exit(main())
