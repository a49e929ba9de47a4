"""Dashboard benchmark: the Panel dashboard (``panel serve dashboard/app.py``) in a real Chromium.

Run from the repository root:

    .venv/bin/python bench/dashboard_bench.py                  # the full run, 12-17 minutes on 2 cores
    .venv/bin/python bench/dashboard_bench.py --quick          # shorter runs, about 3.5 minutes
    .venv/bin/python bench/dashboard_bench.py --wait-quiet 60  # on a shared machine: wait for quiet before each timing
    .venv/bin/python bench/dashboard_bench.py --sessions 20    # fewer pages per session round (default 50)
    .venv/bin/python bench/dashboard_bench.py --speed  # the builds side by side: one tab, five tabs, lag with and without a query

Why so long: the measured steps alone take 60 + 3 x 20 + 240 s, and on a 2-core box each dashboard page
costs about 1.5 CPU-seconds in the panel server and 4-5 in Chromium, so the 2 x 50 pages of step 4
take about 8 minutes; the quick run's 60 s memory step and 2 x 5 pages likewise keep it above 90 s.

It starts ``python -m dashboard api`` (a fresh SQLite file in a temporary directory, a bench-only
secret, a per-user stream limit high enough for the session test) and ``panel serve dashboard/app.py``
servers on 127.0.0.1 ports picked at run time, drives Debian's Chromium with Playwright, talks only to
loopback, and measures:

1. lag at 100 events/s: one writer posts single traces on a fixed monotonic schedule, each with a unique
   name; in one page a MutationObserver on the table's shadow root records when each name first
   appears in the DOM (``performance.timeOrigin + performance.now()``, compared with the writer's
   ``time.time()`` taken just before its POST: one wall clock, same machine, offset checked). p50/p95/max
   lag, the share of names ever seen, lag in the first vs the last third, websocket bytes/s to the page;
2. sustained rate: the same, shorter, at 200, 400 and 800 events/s (200 and 400 with --quick; batches of
   10 traces per POST), and the
   highest rate the dashboard kept up with (lag did not grow: last-third p50 ≤ 2× first-third p50, and
   the seen share did not drop below what the page can show);
3. memory: panel server RSS every 5 s while ``python -m dashboard demo --rate 10 --users 1`` sends
   demo-like traffic (~20 events/s: each call is a POST then a PATCH) with one page open; the slope of a
   linear fit after the first minute, in MB/hour;
4. sessions: 50 browser contexts opened and closed, 5 at a time, each waiting for "connected"; the time
   until the API's ``traces_open_streams`` is back to 0, and the panel server RSS before, after 50 and
   after another 50.

The users of steps 1–3 start with as many traces as the row cap (5000 by default; for step 3 finished
calls drawn by the demo's own traffic model), so the dashboard's frame is full from the start: lag and
memory are measured in the steady state, not while the frame fills.

Every timed step records the CPU used by the panel server and the API (``/proc/<pid>/stat``) and how
much CPU processes outside this benchmark's process tree used meanwhile (``/proc/stat``), flagged
"noisy" above 25% of a core, as in ``bench/stream_bench.py``.

Results overwrite ``bench/dashboard_results.json`` and ``bench/DASHBOARD.md``; the table is printed at
the end. Every subprocess is killed on exit, Ctrl-C included. Nothing is written to ``data/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

# bench/ is first on sys.path when this file is run as a script
from common import (
    HOST,
    NOISY_PERCENT,
    ROOT,
    UNITS,
    Load,
    Server,
    api_metrics,
    fmt,
    free_port,
    machine_info,
    noise_text,
    panel_server,
    pct,
    proc_cpu_s,
    r,
    realistic_trace,
    run_and_write,
    server_env,
    spawn,
    tree_cpu_s,
    wait_line,
    wait_quiet,
)

SECRET = "dashboard-bench-secret-not-for-production-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 60_000
NAME_RE = r"bench-r\d+-\d{6}"


# ---------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Config:
    mode: str
    lag_rate: int = 100
    lag_seconds: float = 60.0
    sustained_rates: tuple[int, ...] = (200, 400, 800)
    sustained_seconds: float = 20.0
    batch_above_100: int = 10
    warmup_rate: int = 50  # before the lag runs: the page has just rendered 5000 rows; warm the path first
    warmup_seconds: float = 5.0
    drain_max_s: float = 8.0  # after the writer stops, wait this long at most for the last names
    drain_quiet_s: float = 2.0  # ... or until no new name appeared for this long
    memory_seconds: float = 240.0
    memory_idle_seconds: float = 30.0  # before the demo starts: the same page, no traffic (a control)
    memory_fit_after_s: float = 60.0
    memory_sample_every_s: float = 5.0
    demo_rate: float = 10.0
    sessions_per_round: int = 50
    session_rounds: int = 2
    session_parallel: int = 5
    release_deadline_s: float = 60.0
    session_user_traces: int = 200
    max_streams_per_user: int = 500
    rss_samples: int = 5
    settle_s: float = 2.0


FULL = Config(mode="full")
QUICK = Config(mode="quick", sustained_rates=(200, 400), lag_seconds=15.0, sustained_seconds=8.0, memory_seconds=60.0, memory_fit_after_s=20.0,
               sessions_per_round=5, warmup_seconds=3.0, memory_idle_seconds=15.0, drain_max_s=5.0, settle_s=1.0, rss_samples=3)


# ---------------------------------------------------------------------------------------------------
# Small helpers


def slope_per_s(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def trace_body(name: str, i: int) -> dict[str, Any]:
    """A trace of a realistic size, with a unique name the page can look for."""
    return realistic_trace(name, ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet")[i % 3], 400.0 + (i * 37) % 900,
                           {"bench": "dashboard"})


# ---------------------------------------------------------------------------------------------------
# CPU: the servers', and the rest of this benchmark's process tree (the noise meter is common.Load)


async def wait_idle(server: Server, max_s: float, below_percent: float = 15.0) -> float:
    """Wait (at most ``max_s``) until ``server`` used under ``below_percent`` of a core for a second; seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < max_s:
        cpu0 = server.cpu_s()
        await asyncio.sleep(1.0)
        if 100 * (server.cpu_s() - cpu0) < below_percent:
            break
    return round(time.monotonic() - began, 1)


class CpuMeter:
    """Share of one core used by each server between construction and ``end``, and by the rest of this
    benchmark's process tree: this process (writer, Playwright client) and everything else it started
    (Chromium and Playwright's driver, the demo)."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.began = time.monotonic()
        self.cpu = {s.name: s.cpu_s() for s in servers}
        self.tree = tree_cpu_s()
        self.own = proc_cpu_s(os.getpid())

    def end(self) -> dict[str, float | None]:
        wall = max(time.monotonic() - self.began, 1e-9)
        used = {s.name: s.cpu_s() - self.cpu[s.name] for s in self.servers}
        own = proc_cpu_s(os.getpid()) - self.own
        rest = tree_cpu_s() - self.tree - own - sum(used.values())
        return {**{name: r(100 * v / wall, 1) for name, v in used.items()},
                "bench_process": r(100 * own / wall, 1), "browser_and_other_children": r(100 * max(rest, 0.0) / wall, 1)}


# ---------------------------------------------------------------------------------------------------
# API helpers


def cli_token(env: dict[str, str], user: str, ttl: int = 7200, cwd: Path = ROOT) -> str:
    """A token from ``python -m dashboard token``, as a person would make one (run in ``cwd``: a build's tree)."""
    done = subprocess.run([sys.executable, "-m", "dashboard", "token", "--user", user, "--ttl", str(ttl)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"token command failed: {done.stderr[-500:]}")
    return done.stdout.strip()


async def open_streams(api: Server, token: str) -> int:
    return int((await api_metrics(api, token)).get("traces_open_streams", -1))


async def prefill(api: Server, token: str, count: int, label: str) -> None:
    """``count`` traces for the token's user, posted in batches of 1000 (names the page does not look for)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as client:
        for start in range(0, count, 1000):
            traces = [trace_body(f"prefill-{label}-{i}", i) for i in range(start, min(count, start + 1000))]
            response = await client.post(api.url + "/api/traces", content=json.dumps({"traces": traces}), headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"prefill: POST answered {response.status_code}: {response.text[:200]}")


async def prefill_demo_like(api: Server, token: str, count: int) -> None:
    """``count`` finished calls drawn by the demo's own traffic model (same fields and text sizes as
    ``python -m dashboard demo`` sends), so the memory step's frame is full of demo-like traces from the start
    and new arrivals replace rows of the same kind."""
    from dashboard.demo import TrafficModel

    traffic = TrafficModel(["demo"], seed=7)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as client:
        for start in range(0, count, 1000):
            traces = []
            for i in range(start, min(count, start + 1000)):
                plan = traffic.next_call()
                started = now + dt.timedelta(seconds=i * 0.1)
                traces.append({**plan.start_body(started), **plan.final_body(started, plan.latency_s)})
            response = await client.post(api.url + "/api/traces", content=json.dumps({"traces": traces}), headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"prefill: POST answered {response.status_code}: {response.text[:200]}")


async def write_steady(api: Server, token: str, rate: int, seconds: float, batch: int) -> dict[str, Any]:
    """POST ``rate`` traces/s for ``seconds`` (``batch`` per POST) on a fixed monotonic schedule; each POST is
    its own task, so a slow answer does not delay the next one. Returns each name's wall time (ms) just
    before its POST, the schedule slip and the answers."""
    posts = int(round(rate * seconds / batch))
    interval = batch / rate
    bodies = []
    for k in range(posts):
        names = [f"bench-r{rate}-{k * batch + j:06d}" for j in range(batch)]
        payload = trace_body(names[0], k) if batch == 1 else {"traces": [trace_body(n, k * batch + j) for j, n in enumerate(names)]}
        bodies.append((names, json.dumps(payload).encode()))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    posted_ms: dict[str, float] = {}
    answered_ms: dict[str, float] = {}
    slips_ms: list[float] = []
    answer_ms: list[float] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(64)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:

        async def one(names: list[str], body: bytes) -> None:
            try:
                stamp = time.time() * 1000
                began = time.monotonic()
                response = await client.post(api.url + "/api/traces", content=body, headers=headers)
                answer_ms.append((time.monotonic() - began) * 1000)
                if response.status_code == 201:
                    answered = time.time() * 1000
                    for name in names:
                        posted_ms[name] = stamp
                        answered_ms[name] = answered
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                gate.release()

        tasks = []
        t0 = time.monotonic() + 0.1
        for k, (names, body) in enumerate(bodies):
            target = t0 + k * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            slips_ms.append(max(0.0, (time.monotonic() - target) * 1000))
            await gate.acquire()
            tasks.append(asyncio.create_task(one(names, body)))
        await asyncio.gather(*tasks)
        ended = time.monotonic()
    return {"posted_ms": posted_ms, "answered_ms": answered_ms, "posts": posts, "errors": errors, "slips_ms": slips_ms, "answer_ms": answer_ms,
            "wall_s": ended - t0}


# ---------------------------------------------------------------------------------------------------
# The page: find the table in its shadow roots, observe it, count websocket bytes


FIND_TABLE_ROOT_JS = """
() => {
    const find = (root) => {
        if (root.querySelector('.tabulator-table')) return root;
        for (const e of root.querySelectorAll('*')) {
            if (e.shadowRoot) { const found = find(e.shadowRoot); if (found) return found; }
        }
        return null;
    };
    return find(document);
}
"""

INSTALL_OBSERVER_JS = """
(pattern) => {
    const root = (%s)();
    if (!root) return false;
    const re = new RegExp(pattern, 'g');
    window.__benchSeen = new Map();     // name -> first time in the DOM (ms since the epoch)
    window.__benchUpdates = [];         // [time, names new in this mutation batch]
    window.__benchRoot = root;
    const scan = () => {
        const now = performance.timeOrigin + performance.now();
        const table = root.querySelector('.tabulator-table');
        if (!table) return;
        let fresh = 0;
        for (const m of table.textContent.matchAll(re)) {
            if (!window.__benchSeen.has(m[0])) { window.__benchSeen.set(m[0], now); fresh++; }
        }
        if (fresh) window.__benchUpdates.push([now, fresh]);
    };
    window.__benchObserver = new MutationObserver(scan);
    window.__benchObserver.observe(root, {subtree: true, childList: true, characterData: true});
    scan();
    return true;
}
""".replace("%s", FIND_TABLE_ROOT_JS.strip())

COLLECT_JS = """
(prefix) => {
    const seen = [];
    for (const [name, at] of window.__benchSeen) if (name.startsWith(prefix)) seen.push([name, at]);
    const root = window.__benchRoot;
    return {seen, updates: window.__benchUpdates,
            rows: root ? root.querySelectorAll('.tabulator-row').length : null};
}
"""


class WsCounter:
    """Websocket frames and bytes the page receives (Bokeh's protocol: text and binary frames)."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, int]] = []
        self.sockets = 0

    def attach(self, page: Any) -> None:
        def on_socket(ws: Any) -> None:
            self.sockets += 1
            ws.on("framereceived", lambda payload: self.frames.append(
                (time.monotonic(), len(payload) if isinstance(payload, (bytes, bytearray)) else len(payload.encode()))))
        page.on("websocket", on_socket)

    def summary(self, began: float, ended: float) -> dict[str, Any]:
        inside = [(t, n) for t, n in self.frames if began <= t < ended]
        wall = max(ended - began, 1e-9)
        buckets: dict[int, int] = {}
        for t, n in inside:
            buckets[int(t - began)] = buckets.get(int(t - began), 0) + n
        full_seconds = [buckets.get(s, 0) for s in range(int(wall))]
        return {
            "ws_bytes_per_s": r(sum(n for _, n in inside) / wall, 0),
            "ws_bytes_per_s_max_1s": max(full_seconds) if full_seconds else None,
            "ws_frames_per_s": r(len(inside) / wall, 1),
            "ws_bytes_total": sum(n for _, n in inside),
        }


async def open_dashboard(browser: Any, url: str, ws: WsCounter | None = None) -> tuple[Any, Any, float]:
    """A new context and page on the dashboard, waiting until its status says connected; the seconds it took."""
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    page = await context.new_page()
    if ws is not None:
        ws.attach(page)
    began = time.monotonic()
    await page.goto(url, timeout=PAGE_TIMEOUT_MS)
    await page.locator(".trace-status[data-status='connected']").wait_for(timeout=PAGE_TIMEOUT_MS)
    return context, page, time.monotonic() - began


async def clock_offset(page: Any) -> dict[str, float]:
    """The page's clock (timeOrigin + now) minus Python's time.time(), from the round trip with the smallest RTT."""
    best: tuple[float, float] | None = None
    for _ in range(9):
        before = time.time() * 1000
        browser_ms = await page.evaluate("() => performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        if best is None or after - before < best[1]:
            best = (browser_ms - (before + after) / 2, after - before)
    return {"browser_minus_python_ms": r(best[0], 2), "round_trip_ms": r(best[1], 2)}


# ---------------------------------------------------------------------------------------------------
# 1 and 2. Lag from POST to the DOM at a steady rate


async def lag_run(cfg: Config, rate: int, seconds: float, api: Server, panel: Server, token: str, page: Any,
                  ws: WsCounter, wait_quiet_s: float) -> dict[str, Any]:
    batch = 1 if rate <= 100 else cfg.batch_above_100
    prefix = f"bench-r{rate}-"
    waited = await wait_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0
    rss0 = panel.rss_kb()
    metrics0 = await api_metrics(api, token)
    load = Load()
    cpu = CpuMeter([panel, api])
    began = time.monotonic()
    written = await write_steady(api, token, rate, seconds, batch)
    ended = time.monotonic()
    machine = load.end()
    cpu_pct = cpu.end()
    rss1 = panel.rss_kb()
    # Drain: the last names still travel; stop when none arrived for a while.
    deadline = ended + cfg.drain_max_s
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = await page.evaluate("(p) => { let n = 0; for (const k of window.__benchSeen.keys()) if (k.startsWith(p)) n++; return n; }", prefix)
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= cfg.drain_quiet_s:
            break
        await asyncio.sleep(0.25)
    collected = await page.evaluate(COLLECT_JS, prefix)
    metrics1 = await api_metrics(api, token)

    def delta(name: str) -> int:
        return int(metrics1.get(name, 0.0) - metrics0.get(name, 0.0))

    posted = written["posted_ms"]
    seen = {name: at for name, at in collected["seen"] if name in posted}
    lags = [(posted[name], at - posted[name]) for name, at in seen.items()]
    start_ms = min(posted.values()) if posted else 0
    span = (max(posted.values()) - start_ms) if posted else 0

    def third(k: int) -> list[float]:
        lo, hi = start_ms + span * k / 3, start_ms + span * (k + 1) / 3
        return [lag for at, lag in lags if lo <= at <= hi]

    def seen_share(k: int) -> float | None:
        lo, hi = start_ms + span * k / 3, start_ms + span * (k + 1) / 3
        names = [n for n, at in posted.items() if lo <= at <= hi]
        return r(sum(1 for n in names if n in seen) / len(names), 3) if names else None

    all_lags = [lag for _, lag in lags]
    answered = written["answered_ms"]
    from_answer = [at - answered[name] for name, at in seen.items()]
    first, last = third(0), third(2)
    first_p50, last_p50 = pct(first, 50), pct(last, 50)
    # DOM updates that brought names of this run: how often the table changed, how many names each time.
    posted_lo, posted_hi = (min(posted.values()), max(posted.values())) if posted else (0, 0)
    update_times = sorted(at for at, _ in collected["updates"] if posted_lo <= at <= posted_hi + 10_000)
    gaps = [b - a for a, b in zip(update_times, update_times[1:])]
    rendered = collected["rows"]
    per_update = rate * (statistics.median(gaps) / 1000) if gaps else None
    # The page shows the newest 50 on page 1, and Tabulator renders only some of them (its virtual DOM):
    # when more names arrive between two table updates than rows are rendered, the older ones are never in
    # the DOM. The most the page can show: each interval's arrivals (rate x gap), capped at the rendered rows.
    arriving = [rate * g / 1000 for g in gaps]
    bound = (sum(min(rendered, a) for a in arriving) / sum(arriving)) if rendered and arriving and sum(arriving) else 1.0
    seen_fraction = len(seen) / len(posted) if posted else 0.0
    growth = (last_p50 / first_p50) if first_p50 and last_p50 is not None else None
    lag_grew = growth is not None and growth > 2.0
    seen_dropped = seen_fraction < 0.9 * bound
    return {
        "rate_per_s": rate,
        "seconds_s": seconds,
        "traces_per_post_count": batch,
        "posted_count": len(posted),
        "post_errors_count": len(written["errors"]),
        "post_errors_sample": written["errors"][:3],
        "writer_wall_s": r(written["wall_s"], 2),
        "writer_rate_per_s": r(len(posted) / written["wall_s"], 1) if written["wall_s"] else None,
        "writer_schedule_slip_p99_ms": r(pct(written["slips_ms"], 99), 2),
        "writer_schedule_slip_max_ms": r(max(written["slips_ms"]) if written["slips_ms"] else None, 2),
        "post_answer_p50_ms": r(pct(written["answer_ms"], 50), 2),
        "post_answer_p99_ms": r(pct(written["answer_ms"], 99), 2),
        "seen_count": len(seen),
        "seen_fraction": r(seen_fraction, 4),
        "seen_fraction_by_third": [seen_share(k) for k in range(3)],
        "rendered_rows_count": rendered,
        "api_events_sent_count": delta("traces_events_sent_total"),
        "api_slow_clients_dropped_count": delta("traces_slow_clients_dropped_total"),
        "api_replays_count": delta("traces_replays_total"),
        "api_resets_count": delta("traces_resets_total"),
        "dom_updates_count": len(update_times),
        "dom_update_interval_p50_ms": r(pct(gaps, 50), 0),
        "dom_update_interval_p95_ms": r(pct(gaps, 95), 0),
        "dom_update_interval_max_ms": r(max(gaps) if gaps else None, 0),
        "names_posted_per_update_interval_count": r(per_update, 1),
        "seen_fraction_bound": r(bound, 3),
        "lag_p50_ms": r(pct(all_lags, 50)),
        "lag_p95_ms": r(pct(all_lags, 95)),
        "lag_p99_ms": r(pct(all_lags, 99)),
        "lag_max_ms": r(max(all_lags) if all_lags else None),
        "lag_min_ms": r(min(all_lags) if all_lags else None),
        "lag_from_answer_p50_ms": r(pct(from_answer, 50)),
        "lag_from_answer_p95_ms": r(pct(from_answer, 95)),
        "lag_from_answer_max_ms": r(max(from_answer) if from_answer else None),
        "lag_first_third_p50_ms": r(first_p50),
        "lag_first_third_p95_ms": r(pct(first, 95)),
        "lag_middle_third_p50_ms": r(pct(third(1), 50)),
        "lag_last_third_p50_ms": r(last_p50),
        "lag_last_third_p95_ms": r(pct(last, 95)),
        "lag_growth_last_over_first_p50": r(growth, 2),
        "lag_grew": lag_grew,
        "seen_dropped": seen_dropped,
        "kept_up": bool(posted) and not lag_grew and not seen_dropped and not written["errors"],
        **ws.summary(began, ended),
        "panel_cpu_percent_of_one_core": cpu_pct["panel"],
        "api_cpu_percent_of_one_core": cpu_pct["api"],
        "bench_process_cpu_percent_of_one_core": cpu_pct["bench_process"],
        "browser_cpu_percent_of_one_core": cpu_pct["browser_and_other_children"],
        "panel_rss_start_kb": rss0,
        "panel_rss_end_kb": rss1,
        "machine_during_run": machine,
        "waited_for_quiet_s": waited,
    }


# ---------------------------------------------------------------------------------------------------
# 3. Memory under demo traffic


async def memory_run(cfg: Config, api: Server, panel: Server, env: dict[str, str], metrics_token: str, page: Any,
                     ws: WsCounter, wait_quiet_s: float, workdir: Path, step: Any) -> dict[str, Any]:
    waited = await wait_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0
    idle_samples: list[tuple[float, float]] = []
    idle_cpu = CpuMeter([panel])
    idle_began = time.monotonic()
    while time.monotonic() - idle_began < cfg.memory_idle_seconds:
        idle_samples.append((time.monotonic() - idle_began, panel.rss_kb()))
        await asyncio.sleep(2.5)
    idle_samples.append((time.monotonic() - idle_began, panel.rss_kb()))
    idle_cpu_pct = idle_cpu.end()["panel"]
    idle_slope = slope_per_s(idle_samples)
    before = await api_metrics(api, metrics_token)
    with open(workdir / "demo.log", "ab") as log:
        demo = spawn([sys.executable, "-m", "dashboard", "demo", "--api-url", api.url, "--rate", f"{cfg.demo_rate:g}",
                      "--users", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    load = Load()
    cpu = CpuMeter([panel, api])
    began = time.monotonic()
    samples: list[dict[str, Any]] = []
    next_at = began
    next_print = began + 60
    while True:
        now = time.monotonic()
        samples.append({"t_s": r(now - began, 1), "panel_rss_kb": panel.rss_kb(), "api_rss_kb": api.rss_kb(),
                        "panel_threads_count": panel.threads(), "panel_fds_count": panel.fds()})
        if now - began >= cfg.memory_seconds:
            break
        next_at += cfg.memory_sample_every_s
        if now >= next_print:
            next_print += 60
            step(f"  memory: {now - began:.0f} s, panel RSS {samples[-1]['panel_rss_kb'] / 1024:.1f} MB")
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    ended = time.monotonic()
    machine = load.end()
    cpu_pct = cpu.end()
    after = await api_metrics(api, metrics_token)
    demo.send_signal(signal.SIGTERM)
    try:
        demo.wait(timeout=20)
    except subprocess.TimeoutExpired:
        demo.kill()
    wall = ended - began
    written = {kind: after.get(f'traces_written_total{{kind="{kind}"}}', 0) - before.get(f'traces_written_total{{kind="{kind}"}}', 0)
               for kind in ("insert", "update")}
    events = sum(written.values())
    fit = [(s["t_s"], s["panel_rss_kb"]) for s in samples if s["t_s"] >= cfg.memory_fit_after_s]
    api_fit = [(s["t_s"], s["api_rss_kb"]) for s in samples if s["t_s"] >= cfg.memory_fit_after_s]
    slope = slope_per_s(fit)
    late_slope = slope_per_s(fit[len(fit) // 2:])  # does the growth level off?
    api_slope = slope_per_s(api_fit)
    quarters = [min(samples, key=lambda s: abs(s["t_s"] - cfg.memory_seconds * q / 4)) for q in (1, 2, 3, 4)]
    per_event = (slope / (events / wall)) if slope is not None and events else None
    return {
        "idle_control_seconds_s": cfg.memory_idle_seconds,
        "idle_panel_rss_first_last_kb": [int(idle_samples[0][1]), int(idle_samples[-1][1])],
        "idle_panel_rss_slope_mb_per_hour": r(idle_slope * 3600 / 1024, 1) if idle_slope is not None else None,
        "idle_panel_cpu_percent_of_one_core": idle_cpu_pct,
        "seconds_s": cfg.memory_seconds,
        "demo_command": f"python -m dashboard demo --api-url URL --rate {cfg.demo_rate:g} --users 1",
        "events_written_count": int(events),
        "events_written_by_kind_count": {k: int(v) for k, v in written.items()},
        "events_per_s": r(events / wall, 1),
        "samples_count": len(samples),
        "fit_after_s": cfg.memory_fit_after_s,
        "panel_rss_first_kb": samples[0]["panel_rss_kb"],
        "panel_rss_at_fit_start_kb": fit[0][1] if fit else None,
        "panel_rss_last_kb": samples[-1]["panel_rss_kb"],
        "panel_rss_max_kb": max(s["panel_rss_kb"] for s in samples),
        "panel_rss_slope_mb_per_hour": r(slope * 3600 / 1024, 1) if slope is not None else None,
        "panel_rss_slope_second_half_mb_per_hour": r(late_slope * 3600 / 1024, 1) if late_slope is not None else None,
        "panel_rss_by_quarter_kb": [[q["t_s"], q["panel_rss_kb"]] for q in quarters],
        "api_rss_slope_mb_per_hour": r(api_slope * 3600 / 1024, 1) if api_slope is not None else None,
        "panel_rss_growth_per_1000_events_kb": r(per_event * 1000, 0) if per_event is not None else None,
        "panel_threads_first_last_count": [samples[0]["panel_threads_count"], samples[-1]["panel_threads_count"]],
        "panel_fds_first_last_count": [samples[0]["panel_fds_count"], samples[-1]["panel_fds_count"]],
        **ws.summary(began, ended),
        "panel_cpu_percent_of_one_core": cpu_pct["panel"],
        "api_cpu_percent_of_one_core": cpu_pct["api"],
        "browser_and_demo_cpu_percent_of_one_core": cpu_pct["browser_and_other_children"],
        "machine_during_run": machine,
        "waited_for_quiet_s": waited,
        "samples": samples,
    }


# ---------------------------------------------------------------------------------------------------
# 4. Sessions opened and closed


async def session_round(cfg: Config, browser: Any, panel: Server, api: Server, metrics_token: str, n: int) -> dict[str, Any]:
    url = panel.url + "/app"
    gate = asyncio.Semaphore(cfg.session_parallel)
    connect_s: list[float] = []
    failures: list[str] = []
    closed_at: list[float] = []
    peak = 0
    stop_polling = asyncio.Event()

    async def poll_peak() -> None:
        nonlocal peak
        while not stop_polling.is_set():
            try:
                peak = max(peak, await open_streams(api, metrics_token))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)

    async def one() -> None:
        async with gate:
            context = None
            try:
                context, _page, took = await open_dashboard(browser, url)
                connect_s.append(took)
            except Exception as exc:  # a page that never connects is a result, not a crash
                failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            finally:
                if context is not None:
                    await context.close()
                    closed_at.append(time.monotonic())

    poller = asyncio.create_task(poll_peak())
    cpu0 = panel.cpu_s()
    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    opened_all_s = time.monotonic() - began
    panel_cpu_open_s = panel.cpu_s() - cpu0
    last_close = max(closed_at) if closed_at else time.monotonic()
    # Released: the API's open-stream gauge back at 0 (no other dashboard is connected to this API now).
    released_s = None
    series: list[tuple[float, int]] = []
    deadline = last_close + cfg.release_deadline_s
    while time.monotonic() < deadline:
        count = await open_streams(api, metrics_token)
        series.append((r(time.monotonic() - last_close, 2), count))
        peak = max(peak, count)
        if count == 0:
            released_s = time.monotonic() - last_close
            break
        await asyncio.sleep(0.25)
    stop_polling.set()
    await poller
    return {
        "sessions_count": n,
        "connected_count": len(connect_s),
        "failed_count": len(failures),
        "failures_sample": failures[:3],
        "connect_p50_s": r(pct(connect_s, 50), 2),
        "connect_p95_s": r(pct(connect_s, 95), 2),
        "connect_max_s": r(max(connect_s) if connect_s else None, 2),
        "all_opened_and_closed_s": r(opened_all_s, 1),
        "panel_cpu_s_per_session": r(panel_cpu_open_s / n, 2),
        "open_streams_peak_count": peak,
        "open_streams_at_last_close_count": series[0][1] if series else None,
        "streams_released_after_last_close_s": r(released_s, 2),
        "streams_left_at_deadline_count": None if released_s is not None else (series[-1][1] if series else None),
        "open_streams_after_last_close_series": series[::4][:40],
    }


async def sessions_run(cfg: Config, browser: Any, api: Server, panel: Server, metrics_token: str,
                       wait_quiet_s: float, step: Any) -> dict[str, Any]:
    rss_cold = await panel.rss_median_kb(cfg.rss_samples)
    step("sessions: one warm-up session")
    warm = await session_round(cfg, browser, panel, api, metrics_token, 1)
    await asyncio.sleep(cfg.settle_s)
    waited = await wait_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0
    rss_before = await panel.rss_median_kb(cfg.rss_samples)
    fds_before, threads_before = panel.fds(), panel.threads()
    load = Load()
    cpu = CpuMeter([panel, api])
    rounds = []
    for k in range(cfg.session_rounds):
        step(f"sessions: round {k + 1}: {cfg.sessions_per_round} pages, {cfg.session_parallel} at a time")
        result = await session_round(cfg, browser, panel, api, metrics_token, cfg.sessions_per_round)
        await asyncio.sleep(cfg.settle_s)
        result["panel_rss_after_kb"] = await panel.rss_median_kb(cfg.rss_samples)
        result["panel_fds_after_count"] = panel.fds()
        result["panel_threads_after_count"] = panel.threads()
        step(f"  round {k + 1}: {result['connected_count']} connected, streams released after "
             f"{result['streams_released_after_last_close_s']} s, panel RSS {result['panel_rss_after_kb'] / 1024:.1f} MB")
        rounds.append(result)
    machine = load.end()
    cpu_pct = cpu.end()
    afters = [rss_before] + [x["panel_rss_after_kb"] for x in rounds]
    return {
        "sessions_per_round_count": cfg.sessions_per_round,
        "parallel_count": cfg.session_parallel,
        "panel_rss_cold_kb": rss_cold,
        "warm_up": warm,
        "panel_rss_before_kb": rss_before,
        "panel_fds_before_count": fds_before,
        "panel_threads_before_count": threads_before,
        "rounds": rounds,
        "panel_rss_growth_per_round_kb": [b - a for a, b in zip(afters, afters[1:])],
        "panel_rss_growth_per_session_kb": [r((b - a) / cfg.sessions_per_round, 1) for a, b in zip(afters, afters[1:])],
        "panel_cpu_percent_of_one_core": cpu_pct["panel"],
        "api_cpu_percent_of_one_core": cpu_pct["api"],
        "browser_cpu_percent_of_one_core": cpu_pct["browser_and_other_children"],
        "machine_during_run": machine,
        "waited_for_quiet_s": waited,
    }


# ---------------------------------------------------------------------------------------------------
# Report


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    runs = results["lag"]
    keys = list(runs)
    mem = results["memory"]
    ses = results["sessions"]
    sus = results["sustained"]
    out = [
        "# Dashboard benchmark: lag, sustained rate, memory and sessions in Chromium",
        "",
        f"`{results['command']}` ({results['mode']} run), {results['date']}, {m['cores_count']} cores "
        f"({m['cpu_model'] or 'unknown CPU'}), {m['memory_total_mb']} MB RAM, Python {m['python']}, "
        f"Panel {m['packages']['panel']}, Bokeh {m['packages']['bokeh']}, Chromium {m['chromium']}, commit "
        f"{m['git_commit']}. Wall time of the run: {fmt(results['run_wall_s'], 's')}.",
        "",
        "`panel serve dashboard/app.py` against `python -m dashboard api` (SQLite), all on 127.0.0.1; one "
        "headless Chromium driven by Playwright; the writer is the real `POST /api/traces`. Row cap "
        f"(TRACES_DASHBOARD_ROWS) {cfg['row_cap']}; the dashboard applies arrivals every 250 ms and shows the "
        "newest 50 rows on page 1.",
        "",
        "## Lag from POST to the DOM, and the sustained rate",
        "",
        "| | " + " | ".join(f"{runs[k]['rate_per_s']}/s for {fmt(runs[k]['seconds_s'])} s "
                            f"({runs[k]['traces_per_post_count']} per POST)" for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    rows = [
        ("traces posted (POST errors)", lambda x: f"{x['posted_count']} ({x['post_errors_count']})"),
        ("writer: achieved rate; schedule slip p99", lambda x: f"{fmt(x['writer_rate_per_s'], '/s')}; {fmt(x['writer_schedule_slip_p99_ms'], 'ms')}"),
        ("**lag POST → DOM, p50**", lambda x: f"**{fmt(x['lag_p50_ms'], 'ms')}**"),
        ("lag p95", lambda x: fmt(x["lag_p95_ms"], "ms")),
        ("lag max", lambda x: fmt(x["lag_max_ms"], "ms")),
        ("POST answered: p50 / p99", lambda x: f"{fmt(x['post_answer_p50_ms'])} / {fmt(x['post_answer_p99_ms'], 'ms')}"),
        ("lag from the POST's answer → DOM: p50 / p95 / max", lambda x: f"{fmt(x['lag_from_answer_p50_ms'])} / {fmt(x['lag_from_answer_p95_ms'])} / {fmt(x['lag_from_answer_max_ms'], 'ms')}"),
        ("lag p50: first / middle / last third", lambda x: f"{fmt(x['lag_first_third_p50_ms'])} / {fmt(x['lag_middle_third_p50_ms'])} / {fmt(x['lag_last_third_p50_ms'], 'ms')}"),
        ("lag p95: first / last third", lambda x: f"{fmt(x['lag_first_third_p95_ms'])} / {fmt(x['lag_last_third_p95_ms'], 'ms')}"),
        ("last-third p50 ÷ first-third p50", lambda x: fmt(x["lag_growth_last_over_first_p50"])),
        ("**names ever seen in the DOM**", lambda x: f"**{x['seen_count']} ({100 * x['seen_fraction']:.1f}%)**"),
        ("seen, by third", lambda x: " / ".join("n/a" if v is None else f"{100 * v:.1f}%" for v in x["seen_fraction_by_third"])),
        ("table updates bringing names: interval p50 / p95 / max", lambda x: f"{fmt(x['dom_update_interval_p50_ms'])} / {fmt(x['dom_update_interval_p95_ms'])} / {fmt(x['dom_update_interval_max_ms'], 'ms')}"),
        ("names posted per update interval; rows rendered in the DOM", lambda x: f"{fmt(x['names_posted_per_update_interval_count'])}; {fmt(x['rendered_rows_count'])}"),
        ("seen share the page can show at most (rendered ÷ per update)", lambda x: f"{100 * x['seen_fraction_bound']:.0f}%"),
        ("websocket to the page: bytes/s (max in 1 s); frames/s", lambda x: f"{fmt(x['ws_bytes_per_s'])} ({fmt(x['ws_bytes_per_s_max_1s'])}); {fmt(x['ws_frames_per_s'])}"),
        ("**panel server CPU**", lambda x: f"**{fmt(x['panel_cpu_percent_of_one_core'], '% of a core')}**"),
        ("API CPU; Chromium (+ Playwright driver); this process (writer)", lambda x: (
            f"{fmt(x['api_cpu_percent_of_one_core'])}%; {fmt(x['browser_cpu_percent_of_one_core'])}%; "
            f"{fmt(x['bench_process_cpu_percent_of_one_core'], '% of a core')}")),
        ("panel server RSS start → end", lambda x: f"{x['panel_rss_start_kb'] / 1024:.1f} → {x['panel_rss_end_kb'] / 1024:.1f} MB"),
        ("API: stream dropped as too slow / resumed / reset", lambda x: f"{x['api_slow_clients_dropped_count']} / {x['api_replays_count']} / {x['api_resets_count']}"),
        ("noise: CPU used by other processes", noise_text),
        ("kept up", lambda x: ("yes" if x["kept_up"] else "**no**" + (" (lag grew)" if x["lag_grew"] else "")
                                + (" (seen share dropped)" if x["seen_dropped"] else ""))),
    ]
    for label, get in rows:
        out.append(f"| {label} | " + " | ".join(get(runs[k]) for k in keys) + " |")
    out += [
        "",
        f"**Highest rate kept up with: {sus['highest_rate_kept_up_text']}.** {sus['criterion']}",
        "",
        f"Clock check: the page's `performance.timeOrigin + performance.now()` minus Python's `time.time()` was "
        f"{fmt(results['clock']['browser_minus_python_ms'], 'ms')} (round trip {fmt(results['clock']['round_trip_ms'], 'ms')}); "
        "lags are not corrected for it.",
        "",
        f"## Memory under demo traffic ({fmt(mem['seconds_s'])} s, one page open)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| traffic | `{mem['demo_command']}`: {mem['events_written_count']} events ({mem['events_written_by_kind_count']['insert']} inserts, "
        f"{mem['events_written_by_kind_count']['update']} updates), {fmt(mem['events_per_s'], '/s')} |",
        f"| row cap in effect | {cfg['row_cap']} (the user starts with {cfg['row_cap']} finished calls drawn by the demo's own traffic "
        "model, so the frame is full of demo-like rows from the start) |",
        f"| panel server RSS: first sample / at {fmt(mem['fit_after_s'])} s / last / max | "
        f"{mem['panel_rss_first_kb'] / 1024:.1f} / {fmt(mem['panel_rss_at_fit_start_kb'] and round(mem['panel_rss_at_fit_start_kb'] / 1024, 1))} / "
        f"{mem['panel_rss_last_kb'] / 1024:.1f} / {mem['panel_rss_max_kb'] / 1024:.1f} MB |",
        f"| **panel server RSS slope after {fmt(mem['fit_after_s'])} s** (least squares, {mem['samples_count']} samples every "
        f"{fmt(cfg['memory_sample_every_s'])} s) | **{fmt(mem['panel_rss_slope_mb_per_hour'], 'MB/hour')}** |",
        f"| the same as growth per 1000 events | {fmt(mem['panel_rss_growth_per_1000_events_kb'], 'KB')} |",
        f"| slope over the second half of the fit only (does it level off?) | "
        f"{fmt(mem.get('panel_rss_slope_second_half_mb_per_hour'), 'MB/hour')} |",
        "| panel server RSS at each quarter of the run | " + ", ".join(
            f"{t / 60:.0f} min: {kb / 1024:.1f} MB" for t, kb in mem.get("panel_rss_by_quarter_kb", [])) + " |",
        f"| control: the same page with no traffic for {fmt(mem['idle_control_seconds_s'])} s just before: RSS, slope, panel CPU | "
        f"{mem['idle_panel_rss_first_last_kb'][0] / 1024:.1f} → {mem['idle_panel_rss_first_last_kb'][1] / 1024:.1f} MB, "
        f"{fmt(mem['idle_panel_rss_slope_mb_per_hour'], 'MB/hour')}, {fmt(mem['idle_panel_cpu_percent_of_one_core'], '% of a core')} |",
        f"| API RSS slope over the same samples | {fmt(mem['api_rss_slope_mb_per_hour'], 'MB/hour')} |",
        f"| panel server threads, fds: first → last | {mem['panel_threads_first_last_count'][0]} → {mem['panel_threads_first_last_count'][1]}, "
        f"{mem['panel_fds_first_last_count'][0]} → {mem['panel_fds_first_last_count'][1]} |",
        f"| websocket to the page | {fmt(mem['ws_bytes_per_s'], 'bytes/s')} ({fmt(mem['ws_frames_per_s'])} frames/s) |",
        f"| **panel server CPU** / API CPU / Chromium and the demo | **{fmt(mem['panel_cpu_percent_of_one_core'], '% of a core')}** / "
        f"{fmt(mem['api_cpu_percent_of_one_core'], '% of a core')} / {fmt(mem['browser_and_demo_cpu_percent_of_one_core'], '% of a core')} |",
        f"| noise: CPU used by other processes | {noise_text(mem)} |",
        "",
        f"## Sessions: {ses['sessions_per_round_count']} pages opened and closed, {ses['parallel_count']} at a time, "
        f"{len(ses['rounds'])} rounds",
        "",
        "| | " + " | ".join(f"round {i + 1}" for i in range(len(ses["rounds"]))) + " |",
        "|---|" + "---|" * len(ses["rounds"]),
    ]
    srows = [
        ("pages connected (failed)", lambda x: f"{x['connected_count']} ({x['failed_count']})"),
        ("goto → 'connected', p50 / p95 / max", lambda x: f"{fmt(x['connect_p50_s'])} / {fmt(x['connect_p95_s'])} / {fmt(x['connect_max_s'], 's')}"),
        ("whole round", lambda x: fmt(x["all_opened_and_closed_s"], "s")),
        ("panel server CPU per session opened", lambda x: fmt(x["panel_cpu_s_per_session"], "s")),
        ("API `traces_open_streams`: peak; at the last close", lambda x: f"{x['open_streams_peak_count']}; {fmt(x['open_streams_at_last_close_count'])}"),
        ("**streams released (gauge back to 0) after the last close**", lambda x: (
            f"**{fmt(x['streams_released_after_last_close_s'], 's')}**" if x["streams_released_after_last_close_s"] is not None
            else f"**not within {results['config']['release_deadline_s']:g} s: {x['streams_left_at_deadline_count']} left**")),
        ("panel server RSS after the round", lambda x: f"{x['panel_rss_after_kb'] / 1024:.1f} MB"),
        ("panel server fds / threads after", lambda x: f"{x['panel_fds_after_count']} / {x['panel_threads_after_count']}"),
    ]
    for label, get in srows:
        out.append(f"| {label} | " + " | ".join(get(x) for x in ses["rounds"]) + " |")
    growth = ", ".join(f"{g / 1024:+.1f} MB ({per:+g} KB/session)" for g, per in
                       zip(ses["panel_rss_growth_per_round_kb"], ses["panel_rss_growth_per_session_kb"]))
    out += [
        "",
        f"Panel server RSS: cold {ses['panel_rss_cold_kb'] / 1024:.1f} MB, after one warm-up session "
        f"{ses['panel_rss_before_kb'] / 1024:.1f} MB (fds {ses['panel_fds_before_count']}, threads {ses['panel_threads_before_count']}); "
        f"**growth per round of {ses['sessions_per_round_count']}: {growth}**. Panel server CPU over both rounds "
        f"{fmt(ses['panel_cpu_percent_of_one_core'], '% of a core')}, API {fmt(ses['api_cpu_percent_of_one_core'], '% of a core')}, "
        f"Chromium {fmt(ses['browser_cpu_percent_of_one_core'], '% of a core')}; "
        f"noise {noise_text(ses)}.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in results["findings"]],
        "",
        "## How it was measured",
        "",
        "- Servers: `python -m dashboard api --no-access-log` (TRACES_DB_URL a fresh SQLite file, "
        f"TRACES_MAX_STREAMS_PER_USER={cfg['max_streams_per_user']} so the session test is not refused); "
        "`panel serve dashboard/app.py --address 127.0.0.1 --port P --allow-websocket-origin 127.0.0.1:P --liveness` "
        "with TRACES_API_URL and TRACES_TOKEN (from `python -m dashboard token --user …`), one per step and user; the "
        "session step's server also has `--unused-session-lifetime 8000 --check-unused-sessions 1000`, the others "
        "Bokeh's defaults.",
        "- Lag: the writer posts on a fixed monotonic schedule, each POST in its own task (at most 64 in flight), "
        "and stamps each name with `time.time()` just before its POST. In the page, a MutationObserver on the shadow root "
        "holding `.tabulator-table` (subtree, childList, characterData) scans the table's text for the bench's names "
        "on every mutation batch and keeps the first `performance.timeOrigin + performance.now()` of each. The step-1 "
        f"and step-2 user starts with {cfg['row_cap']} traces so the frame is at the cap throughout. After the writer "
        f"stops the page gets up to {cfg['drain_max_s']:g} s for the last names. Thirds are by POST time.",
        "- Seen share: page 1 shows the newest 50 rows, and Tabulator's virtual DOM renders only the rows near the "
        "viewport (the 'rows rendered' line), so when more names arrive per table update than that, the older ones of "
        "the batch are never in the DOM: the seen share can then not reach 100% even with no lag. The bound is "
        "rendered rows ÷ names posted per update interval. Lag is over the names seen, which at high rates are the "
        "newest of each batch (a lower bound for the others).",
        "- Kept up: lag did not grow (last-third p50 ≤ 2 × first-third p50), the seen share stayed above 90% of "
        "its bound, and no POST failed.",
        "- Memory: panel server `VmRSS` (`/proc/<pid>/status`) every "
        f"{cfg['memory_sample_every_s']:g} s; slope by least squares over the samples after {cfg['memory_fit_after_s']:g} s; events "
        "counted from the API's `traces_written_total`.",
        "- Sessions: each page is its own browser context, waits for `.trace-status[data-status='connected']`, then its "
        "context is closed; the release time runs from the last close until the API's `/metrics` `traces_open_streams` "
        f"reads 0 (polled every 0.25 s, deadline {cfg['release_deadline_s']:g} s). RSS is the median of "
        f"{cfg['rss_samples']} samples, {cfg['settle_s']:g} s after the release.",
        "- CPU: per process from `/proc/<pid>/stat` over each timed step. Noise: machine-wide busy CPU from `/proc/stat` "
        "minus the CPU of this benchmark's whole process tree (servers, demo, Playwright's driver, Chromium), flagged "
        f"noisy above {NOISY_PERCENT:.0f}% of a core. Before the run, other processes used "
        f"{fmt(results['machine_before_run']['other_processes_percent_of_one_core'])}% of a core.",
        wait_line(results["config"]["wait_quiet_s"], quiet_waits(results), "step"),
        "- Raw numbers, with units in their names (and the memory samples): `bench/dashboard_results.json`.",
        "",
    ]
    return "\n".join(out)


def quiet_waits(results: dict[str, Any]) -> list[float]:
    """The seconds waited for a quiet machine before each timed step, in the order they ran."""
    waits = [run["waited_for_quiet_s"] for run in results["lag"].values()]
    return waits + [results["memory"]["waited_for_quiet_s"], results["sessions"]["waited_for_quiet_s"]]


def sustained_summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs.values(), key=lambda x: x["rate_per_s"])
    highest = None
    first_failed = None
    for run in ordered:
        if run["kept_up"] and first_failed is None:
            highest = run["rate_per_s"]
        elif not run["kept_up"] and first_failed is None:
            first_failed = run["rate_per_s"]
    if highest is None:
        text = f"none of the rates tried (lowest {ordered[0]['rate_per_s']}/s)"
    elif first_failed is None:
        text = f"{highest} events/s, the highest rate tried (at least that)"
    else:
        text = f"{highest} events/s (not at {first_failed}/s)"
    failed_run = next((x for x in ordered if x["rate_per_s"] == first_failed), None)
    if failed_run is not None and failed_run["machine_during_run"]["noisy"]:
        text += (f"; but the {first_failed}/s run was noisy (other processes used "
                 f"{failed_run['machine_during_run']['other_processes_percent_of_one_core']:.0f}% of a core), so the "
                 "limit may be higher on a quiet machine")
    return {
        "highest_rate_kept_up_per_s": highest,
        "first_rate_not_kept_up_per_s": first_failed,
        "highest_rate_kept_up_text": text,
        "criterion": "Kept up: the last third's median lag at most twice the first third's, the seen share at least "
                     "90% of what the page can show, and no failed POST.",
    }


def findings(results: dict[str, Any]) -> list[str]:
    """Plain statements about what looked wrong (or fine), each with its evidence."""
    out = []
    for run in results["lag"].values():
        rate = run["rate_per_s"]
        if run["lag_grew"]:
            out.append(f"At {rate}/s the lag grew during the run: median {fmt(run['lag_first_third_p50_ms'], 'ms')} in the "
                       f"first third, {fmt(run['lag_last_third_p50_ms'], 'ms')} in the last (×{run['lag_growth_last_over_first_p50']}); "
                       f"panel server at {fmt(run['panel_cpu_percent_of_one_core'], '% of a core')}, table updates every "
                       f"{fmt(run['dom_update_interval_p50_ms'], 'ms')} (p50) instead of 250 ms.")
        if run["seen_fraction"] < 1.0:
            out.append(f"At {rate}/s {100 * (1 - run['seen_fraction']):.1f}% of the names never appeared in the DOM "
                       f"({run['posted_count'] - run['seen_count']} of {run['posted_count']}); about "
                       f"{fmt(run['names_posted_per_update_interval_count'])} names arrived per table update and "
                       f"{fmt(run['rendered_rows_count'])} rows are rendered"
                       + (", so this is the page showing the newest rows only, not a loss." if not run["seen_dropped"]
                          else ", and fewer were seen than that allows."))
        if run["post_errors_count"]:
            out.append(f"At {rate}/s {run['post_errors_count']} POSTs failed: {run['post_errors_sample']}.")
    mem = results["memory"]
    slope = mem["panel_rss_slope_mb_per_hour"]
    if slope is not None:
        if slope > 5:
            out.append(f"Panel server memory grew under demo traffic: {slope} MB/hour after the first "
                       f"{fmt(mem['fit_after_s'])} s with the frame already at its cap "
                       f"({mem['panel_rss_at_fit_start_kb'] / 1024:.1f} → {mem['panel_rss_last_kb'] / 1024:.1f} MB), about "
                       f"{fmt(mem['panel_rss_growth_per_1000_events_kb'], 'KB')} per 1000 events; with no traffic just before, "
                       f"{fmt(mem['idle_panel_rss_slope_mb_per_hour'], 'MB/hour')}. Lag steps, frame also at its cap: "
                       + ", ".join(f"{x['rate_per_s']}/s {(x['panel_rss_end_kb'] - x['panel_rss_start_kb']) / 1024:+.1f} MB over "
                                   f"{x['posted_count']} traces" for x in results["lag"].values()) + ".")
        else:
            out.append(f"No clear panel server memory growth under demo traffic: {slope} MB/hour after the first "
                       f"{fmt(mem['fit_after_s'])} s.")
    ses = results["sessions"]
    for i, x in enumerate(ses["rounds"], 1):
        if x["failed_count"]:
            out.append(f"Sessions round {i}: {x['failed_count']} pages never showed 'connected': {x['failures_sample']}.")
        if x["streams_released_after_last_close_s"] is None:
            out.append(f"Sessions round {i}: the API still had {x['streams_left_at_deadline_count']} open streams "
                       f"{results['config']['release_deadline_s']:g} s after the last page closed: streams not released.")
        else:
            out.append(f"Sessions round {i}: all streams released {x['streams_released_after_last_close_s']} s after the "
                       f"last page closed (unused-session lifetime 8 s, checked every 1 s).")
    growth = ses["panel_rss_growth_per_session_kb"]
    if growth:
        out.append(f"Panel server RSS per session opened and closed: {', '.join(f'{g:+g} KB' for g in growth)} "
                   f"(rounds of {ses['sessions_per_round_count']}).")
    for name, problems in results["server_logs"].items():
        if problems["tracebacks_count"] or problems["error_lines_count"] or problems["failed_sending_closed_count"]:
            out.append(f"{name} log: {problems['task_exception_never_retrieved_count']} 'Task exception was never retrieved' "
                       f"({problems['websocket_closed_errors_count']} of them WebSocketClosedError from Panel/Tornado writing "
                       f"to a page that had closed; {problems['tracebacks_count']} traceback headers in all), "
                       f"{problems['failed_sending_closed_count']} 'Failed sending message as connection was closed' (the "
                       f"session keeps sending its 250 ms updates until Bokeh discards it), {problems['error_lines_count']} "
                       f"other error lines"
                       + (f"; first: {problems['sample'][:2]}" if problems["sample"] else "") + ".")
    return out


# ---------------------------------------------------------------------------------------------------
# Main


async def run(cfg: Config, workdir: Path, command: str, wait_quiet_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from dashboard.config import Settings

    began = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    env = server_env({
        "TRACES_JWT_SECRET": SECRET,
        "TRACES_DB_URL": f"sqlite:///{workdir / 'traces.db'}",
        "TRACES_MAX_STREAMS_PER_USER": str(cfg.max_streams_per_user),
        "TRACES_WRITE_RATE": "0",  # no write rate limit: the prefill posts 5000 traces at once
    })
    row_cap = Settings.from_env(env).dashboard_rows
    api_port = free_port()
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--host", HOST, "--port", str(api_port),
                         "--no-access-log"], env, ROOT, api_port, "/healthz")
    api.log_path = workdir / "api.log"
    users = {"lag": "bench-lag", "memory": "demo", "sessions": "bench-sessions"}

    def user_panel(name: str, user: str, token: str, session_flags: bool) -> Server:
        flags = ("--unused-session-lifetime", "8000", "--check-unused-sessions", "1000") if session_flags else ()
        return panel_server(name, ROOT / "dashboard" / "app.py", {**env, "TRACES_API_URL": api.url,
                                                               "TRACES_TOKEN": token}, workdir, *flags)

    results: dict[str, Any] = {
        "command": command,
        "mode": cfg.mode,
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "config": {**{k: v for k, v in asdict(cfg).items()}, "row_cap": row_cap, "wait_quiet_s": wait_quiet_s,
                   "noisy_above_percent_of_one_core": NOISY_PERCENT, "users": users},
        "units": UNITS,
    }
    panels: dict[str, Server] = {}
    try:
        step("starting the API")
        api.launch()
        await api.wait_ready()
        tokens = {key: cli_token(env, user) for key, user in users.items()}
        metrics_token = tokens["sessions"]
        panels = {"lag": user_panel("panel-lag", users["lag"], tokens["lag"], False),
                  "memory": user_panel("panel-memory", users["memory"], tokens["memory"], False),
                  "sessions": user_panel("panel-sessions", users["sessions"], tokens["sessions"], True)}
        step(f"prefilling ({row_cap} traces for {users['lag']} and {users['memory']}, "
             f"{cfg.session_user_traces} for {users['sessions']}) and starting 3 panel servers")
        await prefill(api, tokens["lag"], row_cap, "lag")
        await prefill_demo_like(api, tokens["memory"], row_cap)
        await prefill(api, tokens["sessions"], cfg.session_user_traces, "sessions")
        for server in panels.values():
            server.launch()
        for server in panels.values():
            await server.wait_ready()
        panels["lag"].name = "panel"  # CpuMeter keys
        panels["memory"].name = "panel"
        panels["sessions"].name = "panel"
        quiet = Load()
        await asyncio.sleep(1.0)
        results["machine_before_run"] = quiet.end()
        others = results["machine_before_run"]["other_processes_percent_of_one_core"]
        if others > 20:
            step(f"warning: other processes use {others:.0f}% of a core right now; results will be noisy")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results["machine"] = machine_info(("panel", "bokeh", "tornado", "pandas", "httpx", "httpx-sse", "fastapi",
                                                "uvicorn", "playwright"), {"chromium": browser.version})

            # 1 and 2: one page on the lag user's dashboard, observed.
            step("lag: opening the page")
            ws = WsCounter()
            context, page, took = await open_dashboard(browser, panels["lag"].url + "/app", ws)
            await page.wait_for_function(INSTALL_OBSERVER_JS, arg=NAME_RE, timeout=PAGE_TIMEOUT_MS)
            results["lag_page_connect_s"] = r(took, 2)
            results["clock"] = await clock_offset(page)
            step(f"lag: warm-up, {cfg.warmup_rate:g} events/s for {cfg.warmup_seconds:g} s, then until the panel server is idle")
            await write_steady(api, tokens["lag"], cfg.warmup_rate, cfg.warmup_seconds, 1)
            results["lag_warmup_idle_wait_s"] = await wait_idle(panels["lag"], 20.0)
            lag: dict[str, Any] = {}
            for rate, seconds in [(cfg.lag_rate, cfg.lag_seconds)] + [(x, cfg.sustained_seconds) for x in cfg.sustained_rates]:
                step(f"lag: {rate} events/s for {seconds:g} s")
                lag[f"{rate}_per_s"] = res = await lag_run(cfg, rate, seconds, api, panels["lag"], tokens["lag"], page, ws,
                                                          wait_quiet_s)
                step(f"  p50 {res['lag_p50_ms']} ms, p95 {res['lag_p95_ms']} ms, max {res['lag_max_ms']} ms, seen "
                     f"{100 * res['seen_fraction']:.1f}%, thirds p50 {res['lag_first_third_p50_ms']} → "
                     f"{res['lag_last_third_p50_ms']} ms, panel CPU {res['panel_cpu_percent_of_one_core']}%")
            results["lag"] = lag
            results["sustained"] = sustained_summary(lag)
            await context.close()
            panels["lag"].stop()

            # 3: one page on the demo user's dashboard while the demo sends traffic.
            step(f"memory: opening the page, then {cfg.memory_seconds:g} s of demo traffic")
            ws = WsCounter()
            context, page, _took = await open_dashboard(browser, panels["memory"].url + "/app", ws)
            await asyncio.sleep(cfg.settle_s)
            results["memory"] = await memory_run(cfg, api, panels["memory"], env, metrics_token, page, ws, wait_quiet_s,
                                                 workdir, step)
            step(f"  panel RSS slope {results['memory']['panel_rss_slope_mb_per_hour']} MB/hour, "
                 f"{results['memory']['events_per_s']} events/s")
            await context.close()
            panels["memory"].stop()

            # 4: sessions, with no other dashboard connected to the API.
            deadline = time.monotonic() + 30
            while await open_streams(api, metrics_token) != 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            results["open_streams_before_sessions_count"] = await open_streams(api, metrics_token)
            results["sessions"] = await sessions_run(cfg, browser, api, panels["sessions"], metrics_token, wait_quiet_s, step)
            await browser.close()
    except Exception:
        print("--- API log tail ---\n" + api.log_tail(), file=sys.stderr)
        for server in panels.values():
            print(f"--- {server.log_path.name} tail ---\n" + server.log_tail(), file=sys.stderr)
        raise
    finally:
        for server in panels.values():
            server.stop()
        api.stop()
    results["server_logs"] = {"api": api.log_problems(),
                              **{key: server.log_problems() for key, server in
                                 (("panel (lag)", panels["lag"]), ("panel (memory)", panels["memory"]),
                                  ("panel (sessions)", panels["sessions"]))}}
    results["run_wall_s"] = round(time.monotonic() - began, 1)
    results["findings"] = findings(results)
    step("done")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the Panel dashboard in Chromium.")
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 3.5 minutes)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (database, server logs)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: before each timed step, wait up to this long for other processes "
                             "to go quiet (default 0: do not wait)")
    parser.add_argument("--sessions", type=int, default=None, metavar="N",
                        help="pages per session round (default 50, 5 with --quick)")
    parser.add_argument("--memory-minutes", type=float, default=None, metavar="M",
                        help="minutes of demo traffic for the memory measurement (default 4, 1 with --quick); "
                             "60 gives memory after an hour")
    parser.add_argument("--speed", action="store_true",
                        help="instead: the builds side by side (bench/dashboard_speed.py; the other arguments go to it)")
    if "--speed" in sys.argv[1:]:  # before parsing: its options (and --help) are dashboard_speed's
        import dashboard_speed  # here, not at the top: it imports this module

        return dashboard_speed.main([a for a in sys.argv[1:] if a != "--speed"])
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.sessions:
        cfg = replace(cfg, sessions_per_round=args.sessions)
    if args.memory_minutes:
        cfg = replace(cfg, memory_seconds=args.memory_minutes * 60)
    command = ".venv/bin/python bench/dashboard_bench.py" + (" --quick" if args.quick else "") + (
        f" --wait-quiet {args.wait_quiet:g}" if args.wait_quiet > 0 else "") + (
        f" --sessions {args.sessions}" if args.sessions else "") + (
        f" --memory-minutes {args.memory_minutes:g}" if args.memory_minutes else "")
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found", file=sys.stderr)
        return 2
    return run_and_write(lambda workdir: run(cfg, workdir, command, args.wait_quiet), tmp_prefix="dashboard-bench-",
                         keep_tmp=args.keep_tmp, json_name="dashboard_results.json", markdown_name="DASHBOARD.md",
                         markdown=markdown)


if __name__ == "__main__":
    sys.exit(main())
