"""The API server's memory under two hostile clients, for two builds of the server side by side.

    .venv/bin/python bench/memory_bench.py                       # 50 x 8 MB and 10 replays of 100 MB, a few minutes
    .venv/bin/python bench/memory_bench.py --traces 5 --size-mb 2 --replay-mb 10   # a quick run

Builds: "before" is ``--before-ref`` (default d8eea19) checked out in a temporary ``git worktree`` (removed
at the end), "after" is ``--after-path`` (default: this working tree, uncommitted changes included). Each
runs as ``python -m dashboard api`` of this venv with ``PYTHONPATH=<build>``, checked first to import that
build's ``dashboard`` (the venv's editable install comes after PYTHONPATH).

Cases, each in a fresh server process with a fresh SQLite file:

1. stalled reader: one stream over a raw socket with SO_RCVBUF 4096 that never reads, one healthy stream
   read to the end with httpx-sse; the same user POSTs ``--traces`` traces of ``--size-mb`` MB each.
2. replay: ``--replay-mb`` traces of 1 MB written, then 10 raw-socket streams (SO_RCVBUF 4096) send
   ``Last-Event-ID: 0`` and never read; closed once the server's memory stops growing.

Memory is the server's own, from ``/proc/<pid>/status``: VmHWM (peak) and VmRSS. Loopback only; every wait
has a timeout; every subprocess is killed on the way out. Results go to ``bench/memory_results.json`` and to
their own section of ``bench/RESULTS.md`` (replaced on a re-run; the rest of the file is left as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from common import (
    BENCH,
    HOST,
    ROOT,
    Server,
    api_metrics,
    fmt,
    free_port,
    kill_children,
    machine_info,
    proc_status_kb,
    server_env,
    write_section,
)
from httpx_sse import aconnect_sse

SECRET = "memory-bench-secret-0123456789abcdef0123456789abcdef"
STREAM_PATH = "/api/analytics/traces/stream"
WRITE_PATH = "/api/traces"
MIB = 1024 * 1024
RCVBUF = 4096  # the stalled readers' receive buffer: the kernel holds next to nothing for them
REPLAY_STREAMS = 10
HEADING = "## Memory under hostile readers: a stalled stream, and replays nobody reads"
SERVER_TIMINGS: dict[str, Any] = {"poll_s": 0.05, "stop_grace_s": 5.0, "rss_every_s": 0.2, "rss_required": True}

sys.path.insert(0, str(ROOT))
from dashboard.server.auth import Authenticator  # noqa: E402  (HS256 tokens: any build verifies them)

AUTH = Authenticator(SECRET)


def step(began: float, text: str) -> None:
    print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)


async def poll_until(what: str, check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2) -> float:
    """Wait until ``check()`` is true, at most ``timeout`` seconds; the seconds it took, or RuntimeError."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)
    return round(time.monotonic() - began, 2)


def trace_body(size_mb: float, tag: str) -> bytes:
    """One trace whose ``input`` makes the body about ``size_mb`` MB (MiB); the server picks the id."""
    return json.dumps({"name": f"memory-bench-{tag}", "model": "gpt-4o", "status": "success",
                       "input": "x" * (int(size_mb * MIB) - 1024), "metadata": {"bench": tag}}).encode()


async def post_all(api: Server, token: str, body: bytes, count: int) -> float:
    """``count`` POSTs of ``body``, one after another; the seconds they took."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=120) as client:
        began = time.perf_counter()
        for _ in range(count):
            response = await client.post(api.url + WRITE_PATH, content=body, headers=headers)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"POST: {response.status_code} {response.text[:300]}")
        return time.perf_counter() - began


def raw_stream(port: int, token: str, last_event_id: int | None = None) -> socket.socket:
    """A stream request over a socket with a tiny receive buffer, which this process never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # before connect: the window is set at the handshake
    sock.settimeout(10)
    sock.connect((HOST, port))
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    sock.sendall((f"GET {STREAM_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
                  f"Authorization: Bearer {token}\r\n{resume}\r\n").encode())
    return sock


async def healthy_reader(url: str, token: str, expect: int, stats: dict[str, Any], subscribed: asyncio.Event) -> None:
    """Read one stream until ``expect`` trace events arrived, resuming with Last-Event-ID if the server cuts it."""
    last_id: int | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=120.0)) as client:
        while stats["received"] < expect and stats["reconnects"] < 20:
            headers = {"Authorization": f"Bearer {token}"} | ({"Last-Event-ID": str(last_id)} if last_id is not None else {})
            try:
                async with aconnect_sse(client, "GET", url, headers=headers) as source:
                    async for event in source.aiter_sse():
                        if event.event == "subscribed":
                            subscribed.set()
                        elif event.event == "trace" and (last_id is None or int(event.id) > last_id):
                            last_id = int(event.id)
                            stats["received"] += 1
                            if stats["received"] >= expect:
                                return
                        elif event.event == "connected" and last_id is None:
                            last_id = json.loads(event.data).get("last_event_id")
                        elif event.event == "error":
                            stats["errors"].append(event.data[:200])
                            break
            except httpx.HTTPError as exc:
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
            stats["reconnects"] += 1
            await asyncio.sleep(0.2)


def metric(values: dict[str, float], name: str) -> int:
    return int(values.get(name, 0))


async def start_api(build: Path, workdir: Path, name: str) -> Server:
    workdir.mkdir()
    port = free_port()
    env = server_env({
        "PYTHONPATH": str(build),
        "TRACES_JWT_SECRET": SECRET,
        "TRACES_DB_URL": f"sqlite:///{workdir / 'traces.db'}",
        "TRACES_MAX_BODY_BYTES": str(9 * MIB),
        "TRACES_WRITE_RATE": "0",  # no write rate limit (a build that does not know it ignores it)
        "TRACES_MAX_STREAMS_PER_USER": "20",
        "TRACES_PING_INTERVAL": "300",
    })
    api = Server(name, [sys.executable, "-m", "dashboard", "api", "--host", HOST, "--port", str(port), "--no-access-log"],
                 env, workdir, port, **SERVER_TIMINGS)
    return await api.start(timeout=60.0)


async def stalled_case(api: Server, traces: int, size_mb: float, began: float) -> dict[str, Any]:
    token, metrics_token = AUTH.issue_token("stalled", 3600), AUTH.issue_token("bench-metrics", 3600)
    stats: dict[str, Any] = {"received": 0, "reconnects": 0, "errors": []}
    subscribed = asyncio.Event()
    reader = asyncio.create_task(healthy_reader(api.url + STREAM_PATH, token, traces, stats, subscribed))
    stalled = None
    try:
        await asyncio.wait_for(subscribed.wait(), 30)
        stalled = await asyncio.to_thread(raw_stream, api.port, token)

        async def open_streams(*wanted: int) -> bool:
            return metric(await api_metrics(api, metrics_token), "traces_open_streams") in wanted

        await poll_until("2 open streams", lambda: open_streams(2), 30)
        body = trace_body(size_mb, "stalled")
        rss_before = await api.rss_median_kb(5)
        step(began, f"  {traces} POSTs of {len(body) / MIB:.1f} MB")
        posts_s = await post_all(api, token, body, traces)
        await asyncio.wait({reader}, timeout=120)  # the table says how many it received, all or not
        reader.cancel()
        # The healthy reader hung up once it had everything: what is still open is the stalled stream, if anything.
        await poll_until("the healthy stream to close", lambda: open_streams(0, 1), 30)
        await asyncio.sleep(1.0)
        rss_after = await api.rss_median_kb(5)
        hwm = proc_status_kb(api.pid, "VmHWM", required=True)
        values = await api_metrics(api, metrics_token)
        dropped = metric(values, "traces_slow_clients_dropped_total")
        open_after = metric(values, "traces_open_streams")
        stalled.close()
        stalled = None
        await poll_until("0 open streams", lambda: open_streams(0), 60)
        await asyncio.sleep(1.0)
        rss_closed = await api.rss_median_kb(5)
        hwm_end = proc_status_kb(api.pid, "VmHWM", required=True)  # closing the stalled socket may cost memory too
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        if stalled is not None:
            stalled.close()
    return {
        "traces_count": traces, "body_mb": round(len(body) / MIB, 2), "posts_s": round(posts_s, 2),
        "rss_before_kb": rss_before, "vm_hwm_after_posts_kb": hwm, "vm_hwm_kb": hwm_end,
        "peak_growth_kb": hwm_end - rss_before, "rss_after_kb": rss_after, "rss_after_stalled_closed_kb": rss_closed,
        "slow_clients_dropped_count": dropped, "open_streams_after_posts_count": open_after,
        "stalled_dropped": open_after == 0 and dropped >= 1,
        "healthy_received_count": stats["received"], "healthy_reconnects_count": stats["reconnects"],
        "healthy_errors": stats["errors"][:3],
    }


async def replay_case(api: Server, replay_mb: int, began: float) -> dict[str, Any]:
    token, metrics_token = AUTH.issue_token("replay", 3600), AUTH.issue_token("bench-metrics", 3600)
    step(began, f"  writing {replay_mb} traces of 1 MB")
    await post_all(api, token, trace_body(1, "replay"), replay_mb)
    await asyncio.sleep(1.0)
    rss_before = await api.rss_median_kb(5)
    socks: list[socket.socket] = []
    try:
        for _ in range(REPLAY_STREAMS):
            socks.append(await asyncio.to_thread(raw_stream, api.port, token, 0))

        async def replays_started() -> bool:
            return metric(await api_metrics(api, metrics_token), "traces_replays_total") >= REPLAY_STREAMS

        waited = await poll_until(f"{REPLAY_STREAMS} replays", replays_started, 60)
        # Pages load after the replay is counted: sample until the peak has not grown for 2 s (at most 10 s).
        hwm = proc_status_kb(api.pid, "VmHWM", required=True)
        grew, start, samples = time.monotonic(), time.monotonic(), []
        while time.monotonic() - start < 10.0 and time.monotonic() - grew < 2.0:
            await asyncio.sleep(0.2)
            samples.append(proc_status_kb(api.pid, "VmRSS", required=True))
            now_hwm = proc_status_kb(api.pid, "VmHWM", required=True)
            if now_hwm > hwm:
                hwm, grew = now_hwm, time.monotonic()
        rss_held = samples[-1]
        sampled_s, still_growing = round(time.monotonic() - start, 1), time.monotonic() - grew < 2.0
        values = await api_metrics(api, metrics_token)
    finally:
        for sock in socks:
            sock.close()

    async def all_closed() -> bool:
        return metric(await api_metrics(api, metrics_token), "traces_open_streams") == 0

    close_s = await poll_until("0 open streams", all_closed, 60)
    await asyncio.sleep(1.0)
    rss_after = await api.rss_median_kb(5)
    hwm_end = proc_status_kb(api.pid, "VmHWM", required=True)
    return {
        "history_mb": replay_mb, "streams_count": REPLAY_STREAMS, "replays_counted_after_s": waited,
        "sampled_s": sampled_s, "still_growing_at_10_s": still_growing, "rss_before_kb": rss_before,
        "vm_hwm_while_open_kb": hwm, "vm_hwm_kb": hwm_end, "peak_growth_kb": hwm_end - rss_before,
        "rss_while_open_kb": rss_held, "rss_after_kb": rss_after, "streams_closed_after_s": close_s,
        "events_sent_count": metric(values, "traces_events_sent_total"),
        "slow_clients_dropped_count": metric(values, "traces_slow_clients_dropped_total"),
    }


def imported_from(build: Path, workdir: Path) -> str:
    """Where ``python -m dashboard`` run as the servers are (same PYTHONPATH and cwd) finds ``dashboard``."""
    out = subprocess.run([sys.executable, "-c", "import dashboard; print(dashboard.__file__)"], cwd=workdir,
                         env=server_env({"PYTHONPATH": str(build)}), capture_output=True, text=True, timeout=60, check=True)
    found = Path(out.stdout.strip()).resolve()
    if not found.is_relative_to(build.resolve()):
        raise RuntimeError(f"PYTHONPATH={build} imports {found}, not that build's dashboard")
    return str(found)


async def run(args: argparse.Namespace, workdir: Path, builds: dict[str, Path], command: str) -> dict[str, Any]:
    began = time.monotonic()
    results: dict[str, Any] = {
        "command": command, "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": machine_info(("fastapi", "starlette", "uvicorn", "httpx", "httpx-sse")),
        "builds": {name: {"path": str(path), "dashboard_imported_from": imported_from(path, workdir)} for name, path in builds.items()},
        "config": {"before_ref": args.before_ref, "traces": args.traces, "size_mb": args.size_mb, "replay_mb": args.replay_mb,
                   "replay_streams": REPLAY_STREAMS, "rcvbuf_bytes": RCVBUF, "max_body_bytes": 9 * MIB},
        "stalled": {}, "replay": {},
    }
    results["builds"]["before"]["commit"] = subprocess.run(
        ["git", "-C", str(builds["before"]), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(builds["after"]), "status", "--porcelain", "--", "dashboard"],
                           capture_output=True, text=True, timeout=10).stdout
    results["builds"]["after"]["uncommitted_files_in_dashboard_count"] = len(dirty.splitlines())
    for case in ("stalled", "replay"):
        for name, build in builds.items():
            step(began, f"{case}: {name} ({build})")
            api = await start_api(build, workdir / f"{case}-{name}", f"api-{case}-{name}")
            try:
                if case == "stalled":
                    results[case][name] = await stalled_case(api, args.traces, args.size_mb, began)
                else:
                    results[case][name] = await replay_case(api, args.replay_mb, began)
                results[case][name]["server_log_problems"] = api.log_problems()
                print("  " + json.dumps({k: v for k, v in results[case][name].items() if k != "server_log_problems"}), flush=True)
            except Exception:
                print(f"--- {api.name} log tail ---\n{api.log_tail()}", file=sys.stderr)
                raise
            finally:
                api.stop()
    results["run_wall_s"] = round(time.monotonic() - began, 1)
    return results


def mb(kb: int) -> str:
    return fmt(round(kb / 1024, 1), "MB")


def markdown(res: dict[str, Any]) -> str:
    m, c, b = res["machine"], res["config"], res["builds"]
    lines = [HEADING, "",
             f"`{res['command']}`, {res['date']}, {m['cores_count']} cores ({m['cpu_model']}), {fmt(m['memory_total_mb'])} MB RAM, "
             f"Python {m['python']}. Wall time of the run: {res['run_wall_s']} s.", "",
             f"*Before*: commit {b['before']['commit']} (a temporary git worktree). *After*: the working tree "
             f"({b['after']['uncommitted_files_in_dashboard_count']} files under `dashboard/` changed or added, uncommitted). "
             "Each row is a fresh `python -m dashboard api` with a fresh SQLite file, on 127.0.0.1.", "",
             "| case | build | server RSS before | **peak RSS growth** (VmHWM − before) | RSS after | stalled stream dropped? | "
             "writes took | healthy stream |", "|---|---|---|---|---|---|---|---|"]
    for name in ("before", "after"):
        s = res["stalled"][name]
        lines.append(
            f"| stalled reader, {s['traces_count']} × {s['body_mb']} MB POSTs | {name} | {mb(s['rss_before_kb'])} | "
            f"**{mb(s['peak_growth_kb'])}** | {mb(s['rss_after_kb'])} (stalled socket still open); "
            f"{mb(s['rss_after_stalled_closed_kb'])} once closed | "
            f"{'yes' if s['stalled_dropped'] else 'no'} (slow_clients_dropped {s['slow_clients_dropped_count']}, "
            f"open streams {s['open_streams_after_posts_count']}) | {s['posts_s']} s | "
            f"{s['healthy_received_count']}/{s['traces_count']} traces, {s['healthy_reconnects_count']} reconnects |")
    for name in ("before", "after"):
        p = res["replay"][name]
        lines.append(
            f"| replay, {p['streams_count']} streams × {p['history_mb']} MB from Last-Event-ID 0 | {name} | "
            f"{mb(p['rss_before_kb'])} | **{mb(p['peak_growth_kb'])}** | {mb(p['rss_after_kb'])} after closing "
            f"({mb(p['rss_while_open_kb'])} while open{', still growing when sampling stopped at 10 s' if p['still_growing_at_10_s'] else ''}) | "
            f"dropped {p['slow_clients_dropped_count']} | n/a | n/a |")
    lines += ["", "How it was measured:", "",
              f"- Stalled reader: one user holds two streams, a healthy one read to the end with httpx-sse (in the bench "
              f"process; resumes with Last-Event-ID if cut) and one over a raw socket with SO_RCVBUF {c['rcvbuf_bytes']} "
              f"that reads nothing; then POSTs {c['traces']} traces (an `input` of about {c['size_mb']} MB each) one after "
              f"another; `TRACES_MAX_BODY_BYTES={c['max_body_bytes']}`, `TRACES_WRITE_RATE=0`. \"RSS after\" is taken 1 s "
              "after the healthy stream received the last trace; dropped is from `/metrics` "
              "(`traces_slow_clients_dropped_total`, and the stalled stream no longer open).",
              f"- Replay: {c['replay_mb']} traces of 1 MB written, then {c['replay_streams']} raw-socket streams "
              f"(SO_RCVBUF {c['rcvbuf_bytes']}) send `Last-Event-ID: 0` and never read; once `traces_replays_total` reached "
              f"{c['replay_streams']}, VmRSS/VmHWM sampled every 0.2 s until the peak had not grown for 2 s (at most 10 s); "
              "then the sockets are closed and \"RSS after\" is taken 1 s after `traces_open_streams` is 0.",
              "- RSS: `VmRSS` of the server process (median of 5 samples 0.2 s apart); peak: its `VmHWM` at the end of the case "
              "(after the sockets were closed, so what closing costs counts too). Both builds run "
              "on this venv's Python and packages with `PYTHONPATH=<build>` (checked: each imports its own `dashboard`).",
              "- Raw numbers, with units in their names: `bench/memory_results.json`."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-ref", default="d8eea19", help="the commit of the 'before' build (default d8eea19)")
    parser.add_argument("--after-path", type=Path, default=ROOT, help="the 'after' build's tree (default: this one)")
    parser.add_argument("--traces", type=int, default=50, help="stalled case: traces POSTed (default 50)")
    parser.add_argument("--size-mb", type=float, default=8.0, help="stalled case: MB per trace (default 8, at most 9)")
    parser.add_argument("--replay-mb", type=int, default=100, help="replay case: MB of history, in 1 MB traces (default 100)")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave the results files alone")
    args = parser.parse_args()
    command = ".venv/bin/python bench/memory_bench.py" + "".join(
        f" --{flag} {value}" for flag, value, default in (("traces", args.traces, 50), ("size-mb", f"{args.size_mb:g}", "8"),
                                                          ("replay-mb", args.replay_mb, 100)) if value != default)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    worktree = workdir / "before"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree), args.before_ref],
                       check=True, timeout=120)
        results = asyncio.run(run(args, workdir, {"before": worktree, "after": args.after_path.resolve()}, command))
    except KeyboardInterrupt:
        print("interrupted; subprocesses stopped", file=sys.stderr)
        return 130
    finally:
        kill_children()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], timeout=60,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)
    section = markdown(results)
    if not args.no_write:
        (BENCH / "memory_results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_section(HEADING, section)
    print()
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
