"""Memory on a long connection: one stream held for ``--minutes`` under demo traffic loses nothing, and the
server's memory stays flat.

    .venv/bin/python bench/long_connection_bench.py                 # 30 minutes
    .venv/bin/python bench/long_connection_bench.py --minutes 2     # a quick check

What runs, all on 127.0.0.1, each in a session of its own and killed on the way out:

1. ``python -m dashboard api`` on a fresh SQLite file in a temporary directory, with ``TRACES_JWT_SECRET`` set
   and ``TRACES_PING_INTERVAL=30``;
2. one stream for the user ``demo`` with the product's resumable client (``dashboard.client.TraceStream``),
   its token from ``python -m dashboard token --user demo --ttl 604800`` as ``./serve.sh`` makes the
   dashboard's; every trace event id is recorded as it comes off the wire (before the client's own dedupe),
   with its kind and trace id;
3. once the stream is subscribed, ``python -m dashboard demo --api-url URL --rate N --users 3`` with the API's
   secret in its environment, as ``./serve.sh`` starts it (it mints its own tokens; ``demo`` is always one of
   its users); the server's VmRSS is sampled every 10 s.

After ``--minutes`` the demo is stopped (SIGTERM: it finishes its open calls as errors), the user's whole
history is read through ``GET /api/analytics/traces`` following ``next_cursor`` (``dashboard.client.fetch_history``),
and the stream is given up to 30 s to show the last version of every stored trace. Checks: every stored trace
seen on the stream, its last version seen equal to the stored one (status, updated_at), ids strictly increasing
with no duplicates, no reconnect, pings arriving, memory flat (growth from 1 min to the max at most
``--max-growth-mb``; the least-squares slope after the first 2 minutes at most ``--max-slope`` MB/hour, judged
when that window is at least 10 minutes). Results: ``bench/long_connection_results.json`` and their own section
of ``bench/RESULTS.md`` (replaced on a re-run; the rest of the file is left as it is). Exit status 1 on a failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH,
    HOST,
    ROOT,
    Server,
    fmt,
    free_port,
    kill_children,
    machine_info,
    proc_status_kb,
    server_env,
    spawn,
    write_section,
)
from memory_bench import SERVER_TIMINGS, poll_until, step

sys.path.insert(0, str(ROOT))
from dashboard.client import Connected, Ping, StreamError, Subscribed, TraceEvent, TraceStream, fetch_history  # noqa: E402

SECRET = "long-connection-bench-secret-0123456789abcdef0123456789ab"
HEADING = "## Memory on a long connection: one stream held under demo traffic"
SAMPLE_EVERY_S = 10.0
SLOPE_AFTER_S = 120.0
SLOPE_JUDGED_MIN_S = 600.0  # a slope over less than 10 minutes of samples is reported, not judged
CATCH_UP_S = 30.0


class RecordingStream(TraceStream):
    """The product's client, also recording every trace event id as it arrives, before it drops ids it has seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire_ids: list[int] = []

    async def _handle(self, event: Any) -> None:
        if isinstance(event, TraceEvent):
            self.wire_ids.append(event.id)
        await super()._handle(event)


async def read_stream(stream: RecordingStream, seen: dict[str, Any], subscribed: asyncio.Event) -> None:
    """Consume the stream: the last version of each trace seen, counts of each kind of event."""
    try:
        async for event in stream:
            if isinstance(event, TraceEvent):
                seen["events"][event.kind.value] = seen["events"].get(event.kind.value, 0) + 1
                seen["last"][event.trace["id"]] = (event.trace["status"], event.trace["updated_at"])
            elif isinstance(event, Ping):
                seen["pings"] += 1
            elif isinstance(event, Connected):
                seen["connected"] += 1
            elif isinstance(event, Subscribed):
                subscribed.set()
            elif isinstance(event, StreamError):
                seen["errors"].append(f"{event.code}: {event.message}"[:200])
    except Exception as exc:  # a fatal stream error: the checks will show it
        seen["errors"].append(f"{type(exc).__name__}: {exc}"[:200])


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float | None:
    """Least squares slope of RSS (KB) over time (s), in MB/hour; None for fewer than 3 samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return round(cov / var * 3600 / 1024, 2) if var else None


def stop_demo(demo: subprocess.Popen) -> int | None:
    """SIGTERM (the demo finishes its open calls), SIGKILL after 20 s; its exit status."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(timeout=10)
    return demo.returncode


async def run(args: argparse.Namespace, workdir: Path, command: str) -> dict[str, Any]:
    began = time.monotonic()
    port = free_port()
    env = server_env({"TRACES_JWT_SECRET": SECRET, "TRACES_DB_URL": f"sqlite:///{workdir / 'traces.db'}",
                      "TRACES_PING_INTERVAL": "30"})
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--host", HOST, "--port", str(port), "--no-access-log"],
                 env, workdir, port, **SERVER_TIMINGS)
    demo_log = workdir / "demo.log"
    demo: subprocess.Popen | None = None
    stream: RecordingStream | None = None
    reader: asyncio.Task | None = None
    try:
        step(began, f"API on {api.url} (SQLite in {workdir})")
        await api.start(timeout=60.0)
        token = subprocess.run([sys.executable, "-m", "dashboard", "token", "--user", "demo", "--ttl", "604800"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        seen: dict[str, Any] = {"events": {}, "last": {}, "pings": 0, "connected": 0, "errors": []}
        subscribed = asyncio.Event()
        stream = RecordingStream(api.url, token)
        reader = asyncio.create_task(read_stream(stream, seen, subscribed))
        await asyncio.wait_for(subscribed.wait(), 30)
        rss_before_demo = await api.rss_median_kb(5)
        step(began, f"stream subscribed; demo at {args.rate:g} calls/s, 3 users, for {args.minutes:g} min")
        with open(demo_log, "ab") as log:
            demo = spawn([sys.executable, "-m", "dashboard", "demo", "--api-url", api.url, "--rate", str(args.rate),
                          "--users", "3"], cwd=ROOT, env=env | {"TRACES_API_URL": api.url}, stdout=log,
                         stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        hold_s = args.minutes * 60
        samples: list[tuple[float, int]] = []
        while True:
            elapsed = time.monotonic() - t0
            for name, proc in (("the API", api.proc), ("the demo", demo)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.returncode} after {elapsed:.0f} s")
            samples.append((round(elapsed, 1), proc_status_kb(api.pid, "VmRSS", required=True)))
            if len(samples) % 6 == 1:
                step(began, f"  {elapsed / 60:5.1f} min: RSS {samples[-1][1] / 1024:.1f} MB, "
                            f"{sum(seen['events'].values())} events, {seen['pings']} pings, {len(seen['errors'])} stream errors")
            if elapsed >= hold_s:
                break
            await asyncio.sleep(min(SAMPLE_EVERY_S * len(samples) - elapsed, hold_s - elapsed))
        held_s = time.monotonic() - t0
        hwm_kb = proc_status_kb(api.pid, "VmHWM", required=True)
        step(began, "stopping the demo")
        demo_status = stop_demo(demo)
        demo_summary = [line for line in demo_log.read_text(errors="replace").splitlines() if "demo: stopped" in line]

        stored: dict[str, tuple[str, str]] = {}

        async def caught_up() -> bool:
            history = await fetch_history(api.url, token, max_rows=None)
            stored.clear()
            stored.update((t["id"], (t["status"], t["updated_at"])) for t in history.traces)
            return all(seen["last"].get(i) == v for i, v in stored.items())

        try:
            catch_up_s = await poll_until("the stream to show every stored trace", caught_up, CATCH_UP_S, every=1.0)
        except RuntimeError:
            catch_up_s = None
        health = stream.health
        reconnects = health.reconnects
        log_problems = api.log_problems()
    except Exception:
        print(f"--- API log tail ---\n{api.log_tail()}\n--- demo log tail ---", file=sys.stderr)
        print("\n".join(demo_log.read_text(errors="replace").splitlines()[-20:]) if demo_log.exists() else "", file=sys.stderr)
        raise
    finally:
        if stream is not None:
            await stream.aclose()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if demo is not None:
            stop_demo(demo)
        api.stop()

    ids = stream.wire_ids
    missing = [i for i in stored if i not in seen["last"]]
    stale = [i for i in stored if i in seen["last"] and seen["last"][i] != stored[i]]
    increasing = all(b > a for a, b in zip(ids, ids[1:], strict=False))
    at_1min = next((v for t, v in samples if t >= 60), samples[-1][1])
    slope_after = min(SLOPE_AFTER_S, hold_s / 2)  # a short check run keeps its second half
    window = [(t, v) for t, v in samples if t >= slope_after]
    slope = slope_mb_per_hour(window)
    window_s = window[-1][0] - window[0][0] if window else 0.0
    growth_kb = max(v for _, v in samples) - at_1min
    checks = {
        "every_stored_trace_seen": not missing,
        "last_version_seen_is_stored": not stale,
        "ids_strictly_increasing_no_duplicates": increasing and len(set(ids)) == len(ids),
        "no_reconnects": reconnects == 0 and seen["connected"] == 1,
        "pings_arrived": seen["pings"] >= int(held_s // 30) - 1,
        "no_stream_errors": not seen["errors"],
        "rss_growth_within_limit": growth_kb <= args.max_growth_mb * 1024,
        "rss_slope_within_limit": None if window_s < SLOPE_JUDGED_MIN_S or slope is None else slope <= args.max_slope,
    }
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "dashboard"],
                           capture_output=True, text=True, timeout=10).stdout
    return {
        "uncommitted_files_in_dashboard_count": len(dirty.splitlines()),
        "command": command, "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": machine_info(("fastapi", "starlette", "uvicorn", "httpx", "httpx-sse")),
        "config": {"minutes": args.minutes, "rate_per_s": args.rate, "users_count": 3, "ping_interval_s": 30,
                   "sample_every_s": SAMPLE_EVERY_S, "slope_after_s": slope_after, "max_growth_mb": args.max_growth_mb,
                   "max_slope_mb_per_hour": args.max_slope},
        "passed": all(v is not False for v in checks.values()), "checks": checks,
        "held_s": round(held_s, 1), "stream_connections_count": seen["connected"], "reconnects_count": reconnects,
        "trace_events_count": len(ids), "events_by_kind_count": seen["events"], "pings_count": seen["pings"],
        "stream_errors": seen["errors"][:5], "ids_first_last": [ids[0], ids[-1]] if ids else None,
        "duplicate_ids_count": len(ids) - len(set(ids)),
        "stored_traces_count": len(stored), "traces_seen_count": len(seen["last"]), "missing_count": len(missing),
        "missing_sample": missing[:5], "stale_count": len(stale), "stale_sample": stale[:5], "catch_up_s": catch_up_s,
        "rss_before_demo_kb": rss_before_demo, "rss_at_1_min_kb": at_1min, "rss_end_kb": samples[-1][1],
        "rss_max_kb": max(v for _, v in samples), "vm_hwm_kb": hwm_kb, "rss_growth_from_1_min_to_max_kb": growth_kb,
        "rss_slope_mb_per_hour": slope, "rss_slope_samples_count": len(window), "rss_slope_window_s": window_s,
        "rss_samples_s_kb": samples, "demo_exit_status": demo_status, "demo_summary": demo_summary,
        "server_log_problems": log_problems, "run_wall_s": round(time.monotonic() - began, 1),
    }


def mb(kb: float) -> str:
    return fmt(round(kb / 1024, 1), "MB")


def markdown(res: dict[str, Any]) -> str:
    m, c, k = res["machine"], res["config"], res["checks"]
    yes = {True: "yes", False: "**no**", None: "not judged"}
    slope = res["rss_slope_mb_per_hour"]
    kinds = res["events_by_kind_count"]
    lines = [
        HEADING, "",
        f"`{res['command']}`, {res['date']}, {m['cores_count']} cores ({m['cpu_model']}), {fmt(m['memory_total_mb'])} MB RAM, "
        f"Python {m['python']}, commit {m['git_commit']} ({res['uncommitted_files_in_dashboard_count']} files under "
        f"`dashboard/` changed or added, uncommitted). Wall time of the run: {res['run_wall_s']} s. "
        f"**{'PASS' if res['passed'] else 'FAIL'}**.", "",
        "| measure | value |", "|---|---|",
        f"| stream held (user `demo`, demo traffic {c['rate_per_s']:g} calls/s over {c['users_count']} users) | "
        f"{res['held_s'] / 60:.1f} min, {res['stream_connections_count']} connection(s), "
        f"**{res['reconnects_count']} reconnects** |",
        f"| trace events received (`trace` / `trace_update`) | {fmt(res['trace_events_count'])} "
        f"({fmt(kinds.get('trace', 0))} / {fmt(kinds.get('trace_update', 0))}) |",
        f"| pings received (one per 30 s) | {res['pings_count']} |",
        f"| traces stored for `demo` / seen on the stream / **missing** | {fmt(res['stored_traces_count'])} / "
        f"{fmt(res['traces_seen_count'])} / **{res['missing_count']}** |",
        f"| last version seen = stored (status, updated_at) | {yes[k['last_version_seen_is_stored']]} "
        f"({res['stale_count']} differ) |",
        f"| ids strictly increasing, duplicates | {yes[k['ids_strictly_increasing_no_duplicates']]}, "
        f"{res['duplicate_ids_count']} |",
        f"| server RSS before the demo / at 1 min / at the end / max | {mb(res['rss_before_demo_kb'])} / "
        f"{mb(res['rss_at_1_min_kb'])} / {mb(res['rss_end_kb'])} / {mb(res['rss_max_kb'])} |",
        f"| **RSS growth**, 1 min → max (limit {c['max_growth_mb']:g} MB) | **{mb(res['rss_growth_from_1_min_to_max_kb'])}** |",
        f"| **RSS slope**, least squares after {c['slope_after_s'] / 60:g} min ({res['rss_slope_samples_count']} samples "
        f"over {res['rss_slope_window_s'] / 60:.1f} min; limit {c['max_slope_mb_per_hour']:g} MB/hour, judged over ≥ 10 min) | "
        f"**{'n/a' if slope is None else f'{slope:g} MB/hour'}** ({yes[k['rss_slope_within_limit']]}) |",
        f"| demo generator | {'; '.join(res['demo_summary']) or 'n/a'} |",
        f"| server log: tracebacks / ERROR lines | {res['server_log_problems']['tracebacks_count']} / "
        f"{res['server_log_problems']['error_lines_count']} |",
        "", "How it was measured:", "",
        "- `python -m dashboard api` on a fresh SQLite file, `TRACES_JWT_SECRET` set, `TRACES_PING_INTERVAL=30`; the demo "
        "generator `python -m dashboard demo --api-url URL --rate N --users 3` with the same secret (as `./serve.sh` runs it), "
        "started once the stream is subscribed; all on 127.0.0.1.",
        "- The stream: `dashboard.client.TraceStream` (the product's resumable client), token from `python -m dashboard token "
        "--user demo`; every trace event id recorded as it arrives, before the client drops ids it has seen, so a duplicate "
        "or a step back would show; reconnects from the client's health and the `connected` events.",
        f"- At the end the demo is stopped (its open calls end as errors), the user's whole history is read through "
        f"`GET /api/analytics/traces` following `next_cursor`, and the stream gets up to {CATCH_UP_S:g} s to show the "
        f"stored version of every trace (took {fmt(res['catch_up_s'], 's')}).",
        f"- RSS: the server's `VmRSS` every {c['sample_every_s']:g} s from the demo's start (VmHWM at the end "
        f"{mb(res['vm_hwm_kb'])}); the samples are in `bench/long_connection_results.json`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the stream is held (default 30)")
    parser.add_argument("--rate", type=float, default=2.0, help="demo calls per second, all users (default 2, the demo's)")
    parser.add_argument("--max-growth-mb", type=float, default=10.0, help="RSS growth allowed from 1 min to the max")
    parser.add_argument("--max-slope", type=float, default=5.0, help="RSS slope allowed, MB/hour (default 5)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs, SQLite file)")
    args = parser.parse_args()
    command = f".venv/bin/python bench/long_connection_bench.py --minutes {args.minutes:g}" + (
        f" --rate {args.rate:g}" if args.rate != 2.0 else "")

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background (nohup, &)
    workdir = Path(tempfile.mkdtemp(prefix="long-connection-bench-"))
    try:
        results = asyncio.run(run(args, workdir, command))
    except KeyboardInterrupt:
        print("interrupted; subprocesses stopped", file=sys.stderr)
        return 130
    finally:
        kill_children()
        if args.keep_tmp:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    section = markdown(results)
    (BENCH / "long_connection_results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(HEADING, section)
    print()
    print(section)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
