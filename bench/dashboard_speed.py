"""The dashboard's speed across builds (git revisions), side by side, in one run on one machine.

Run from the repository root:

    .venv/bin/python bench/dashboard_speed.py                                  # fefe6ed, 52315a8 and the work tree
    .venv/bin/python bench/dashboard_speed.py --builds 52315a8,worktree --seconds 10 --wait-quiet 60

Why one run: numbers from different days do not compare; builds measured one after another, same browser, do.

A build is a git revision checked out with ``git worktree add --detach`` into a temporary directory (removed
at the end), or ``worktree``: the files in this repository as they are now, uncommitted changes included.
Each build runs its own ``python -m dashboard api`` (fresh SQLite) and two ``panel serve`` servers (one per
user: tabs, 200 traces; lag, 5000) from its own tree (cwd and PYTHONPATH), and is measured on:

1. one tab to connected: seconds from ``page.goto`` to "connected", 5 pages one after another (after a warm-up
   one), each in a new browser context (nothing cached), and the panel server's and Chromium's CPU seconds per
   page; then 5 more in one context whose cache holds the scripts (a user's second visit);
2. five tabs at once: 5 pages opened together, each one's seconds to connected, the CPU the round took; then
   the CPU the five cost per tab, left open with nothing arriving;
3. lag at 100 events/s, as ``dashboard_bench.py`` measures it, on the user with 5000 traces;
4. the same with ``latency_ms > 100 and model != "none"`` in the query box: it keeps every trace, so what
   differs is the cost of the filter.

Raw numbers go to ``bench/speed_results.json``, the table to ``bench/SPEED.md`` (and printed).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import common
import dashboard_bench as dash
from common import ROOT, Server, fmt, r

LABELS = {"fefe6ed": "before issue 19", "52315a8": "issue 19 features, before the speed work", "worktree": "now"}
DEFAULT_BUILDS = "fefe6ed,52315a8,worktree"
QUERY = 'latency_ms > 100 and model != "none"'
HEADING = "# Dashboard speed, build by build (issue 19)"
TAB_PAGES = 5
USERS = {"tabs": ("bench-speed-tabs", 200), "lag": ("bench-speed-lag", 5000)}
LAG_KEYS = ("lag_p50_ms", "lag_p95_ms", "lag_max_ms")
KEPT_FROM_LAG_RUN = (*LAG_KEYS, "seen_fraction", "posted_count", "post_errors_count", "panel_cpu_percent_of_one_core",
                     "api_cpu_percent_of_one_core", "machine_during_run", "waited_for_quiet_s")
IDLE_S = 10.0
PANEL_FLAGS = ("--unused-session-lifetime", "3000", "--check-unused-sessions", "1000")  # closed tabs let go soon


# Builds: a tree each, its own servers
def checkout(rev: str, scratch: Path) -> Path:
    """The tree of a build: this repository for ``worktree``, else a detached git worktree of ``rev``."""
    if rev == "worktree":
        return ROOT
    tree = scratch / f"tree-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=120)
    return tree


async def start_build(rev: str, tree: Path, workdir: Path) -> dict[str, Any]:
    """The build's API, its users' traces and a panel server per user, all from ``tree``; logs in ``workdir``."""
    env = common.server_env({"TRACES_JWT_SECRET": dash.SECRET, "TRACES_DB_URL": f"sqlite:///{workdir / rev}.db",
                      "TRACES_MAX_STREAMS_PER_USER": "500", "TRACES_WRITE_RATE": "0", "PYTHONPATH": str(tree)})
    port = common.free_port()
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--host", common.HOST, "--port", str(port),
                                "--no-access-log"], env, tree, port, "/healthz")
    api.log_path = workdir / f"api-{rev}.log"  # not in the tree: the work tree is the repository
    servers = {"api": api}
    api.launch()
    await api.wait_ready()
    tokens = {key: dash.cli_token(env, user, cwd=tree) for key, (user, _count) in USERS.items()}
    for key, (_user, count) in USERS.items():
        await dash.prefill(api, tokens[key], count, key)
        panel = common.panel_server("panel", tree / "dashboard" / "app.py",  # the panel server for this user
                                    {**env, "TRACES_API_URL": api.url, "TRACES_TOKEN": tokens[key]}, tree, *PANEL_FLAGS)
        panel.log_path = workdir / f"panel-{key}-{rev}.log"
        servers[key] = panel
        panel.launch()
    for key in USERS:
        await servers[key].wait_ready()
    return {"servers": servers, "tokens": tokens}


# Steps
def keep_lag(run: dict[str, Any]) -> dict[str, Any]:
    return {key: run[key] for key in KEPT_FROM_LAG_RUN}


def spread(connect: list[float]) -> dict[str, Any]:
    """Each page's seconds to connected, their median and max."""
    return {"connect_s": [r(x, 2) for x in connect], "connect_median_s": r(statistics.median(connect), 2),
            "connect_max_s": r(max(connect), 2)}


async def quiet_then_load(wait_quiet_s: float) -> tuple[float, common.Load]:
    """Wait for quiet when asked (--wait-quiet), then start the noise meter: other processes' CPU in the step."""
    return (await common.wait_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0), common.Load()


async def one_tab(browser: Any, panel: Server, wait_quiet_s: float) -> dict[str, Any]:
    """A warm-up page, then TAB_PAGES pages one after another; each: seconds to connected, panel CPU seconds."""
    url = panel.url + "/app"
    context, _page, warm = await dash.open_dashboard(browser, url)
    await context.close()
    await dash.wait_idle(panel, 15.0)
    waited, load = await quiet_then_load(wait_quiet_s)
    connect, cpu, chromium = [], [], []
    for _ in range(TAB_PAGES):
        cpu0, chromium0 = common.proc_cpu_s(panel.pid), common.browser_cpu_s()
        context, _page, took = await dash.open_dashboard(browser, url)
        await dash.wait_idle(panel, 15.0)  # the page's work after connected (first render, charts) is its cost too
        cpu.append(common.proc_cpu_s(panel.pid) - cpu0)
        chromium.append(common.browser_cpu_s() - chromium0)
        connect.append(took)
        await context.close()
        await dash.wait_idle(panel, 15.0)
    return {"warm_up_connect_s": r(warm, 2), **spread(connect), "panel_cpu_per_page_s": [r(x, 2) for x in cpu], "panel_cpu_per_page_median_s": r(statistics.median(cpu), 2),
            "panel_cpu_per_page_max_s": r(max(cpu), 2), "chromium_cpu_per_page_median_s": r(statistics.median(chromium), 2),
            "machine_during_run": load.end(), "waited_for_quiet_s": waited}


async def cached_tab(browser: Any, panel: Server) -> dict[str, Any]:
    """A user's second visit: TAB_PAGES pages one after another in one browser context whose cache holds the scripts."""
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    connect = []
    try:
        for k in range(TAB_PAGES + 1):  # the first visit fills the cache and is not counted
            page = await context.new_page()
            began = time.monotonic()
            await page.goto(panel.url + "/app", timeout=dash.PAGE_TIMEOUT_MS)
            await page.locator(".trace-status[data-status='connected']").wait_for(timeout=dash.PAGE_TIMEOUT_MS)
            connect += [time.monotonic() - began] if k else []
            await page.close()
            await dash.wait_idle(panel, 15.0)
    finally:
        await context.close()
    return spread(connect)


async def five_tabs(browser: Any, panel: Server, wait_quiet_s: float) -> dict[str, Any]:
    """TAB_PAGES new contexts opened at once: each one's seconds to connected, the CPU the round took; then
    what they cost left open, IDLE_S seconds with nothing arriving (the page's clocks, the charts' points)."""
    waited, load = await quiet_then_load(wait_quiet_s)
    cpu0, chromium0 = common.proc_cpu_s(panel.pid), common.browser_cpu_s()
    opened = await asyncio.gather(*(dash.open_dashboard(browser, panel.url + "/app") for _ in range(TAB_PAGES)))
    busy = load.end()  # until the last tab said connected: the machine's CPU seconds over its cores bound that wait
    await dash.wait_idle(panel, 20.0)
    cpu, chromium = common.proc_cpu_s(panel.pid) - cpu0, common.browser_cpu_s() - chromium0
    machine = load.end()
    await asyncio.sleep(IDLE_S)  # Chromium draws on after the server is quiet (the charts joining): let it finish
    idle0 = common.proc_cpu_s(panel.pid)
    await asyncio.sleep(IDLE_S)  # the measuring window: the tabs sit open
    idle = 100 * (common.proc_cpu_s(panel.pid) - idle0) / IDLE_S / TAB_PAGES
    for context, _page, _took in opened:
        await context.close()
    return {**spread([took for _c, _p, took in opened]), "panel_cpu_round_s": r(cpu, 2), "chromium_cpu_round_s": r(chromium, 2),
            "idle_panel_percent_per_tab": r(idle, 2),
            "cpu_until_connected_per_core_s": r(common.cpu_per_core_s(busy), 2), "machine_during_run": machine,
            "waited_for_quiet_s": waited}


async def push_out_and_observe(api: Server, token: str, page: Any) -> int:
    """Post 150 warm-up names (bench-r50-…) so the last run's bench-r100 names leave the table, then observe
    it afresh; the next run posts the same names again, so none may be left. How many were left (0)."""
    left = -1
    for _ in range(3):
        await dash.write_steady(api, token, 50, 3.0, 1)
        await asyncio.sleep(1.0)
        await page.evaluate("() => { if (window.__benchObserver) window.__benchObserver.disconnect(); }")
        await page.wait_for_function(dash.INSTALL_OBSERVER_JS, arg=dash.NAME_RE, timeout=dash.PAGE_TIMEOUT_MS)
        left = await page.evaluate("() => [...window.__benchSeen.keys()].filter(k => k.startsWith('bench-r100-')).length")
        if left == 0:
            break
    return left


async def lag_steps(browser: Any, api: Server, panel: Server, token: str, seconds: float, wait_quiet_s: float,
                    step: Any) -> dict[str, Any]:
    """Steps 3 and 4 in one page: 100/s without, then with the query; dashboard_bench's warm-up and dash.lag_run."""
    cfg = replace(dash.FULL, lag_seconds=seconds)
    ws = dash.WsCounter()
    context, page, took = await dash.open_dashboard(browser, panel.url + "/app", ws)
    try:
        await page.wait_for_function(dash.INSTALL_OBSERVER_JS, arg=dash.NAME_RE, timeout=dash.PAGE_TIMEOUT_MS)
        out: dict[str, Any] = {"page_connect_s": r(took, 2), "clock": await dash.clock_offset(page)}
        await dash.write_steady(api, token, cfg.warmup_rate, cfg.warmup_seconds, 1)
        await dash.wait_idle(panel, 20.0)
        step(f"  lag at 100/s for {seconds:g} s, no query")
        out["no_query"] = keep_lag(await dash.lag_run(cfg, 100, seconds, api, panel, token, page, ws, wait_quiet_s))
        box = page.get_by_placeholder("query", exact=False)
        if await box.count() == 0:
            out["query"] = None
            out["query_note"] = "no query box in this build"
            return out
        step(f"  the query {QUERY!r}, then lag at 100/s for {seconds:g} s")
        await box.first.fill(QUERY)
        await box.first.press("Enter")
        await page.locator(".trace-showing", has_text=f"query {QUERY}").wait_for(timeout=dash.PAGE_TIMEOUT_MS)
        errors = await page.locator(".trace-query-error").all_text_contents()
        if any(e.strip() for e in errors):
            raise RuntimeError(f"the query box refused {QUERY!r}: {errors}")
        out["stale_names_left_count"] = await push_out_and_observe(api, token, page)
        await dash.wait_idle(panel, 20.0)
        out["query"] = keep_lag(await dash.lag_run(cfg, 100, seconds, api, panel, token, page, ws, wait_quiet_s))
        out["showing_after_text"] = await page.locator(".trace-showing").first.text_content()
        a, b = out["no_query"]["panel_cpu_percent_of_one_core"], out["query"]["panel_cpu_percent_of_one_core"]
        out["panel_cpu_query_over_no_query"] = r(b / a, 2) if a and b is not None else None
        return out
    finally:
        await context.close()


async def measure(rev: str, tree: Path, browser: Any, workdir: Path, seconds: float, wait_quiet_s: float,
                  step: Any) -> dict[str, Any]:
    """Every step on one build; its servers stopped after, whatever happens."""
    step(f"{rev} ({LABELS.get(rev, rev)}): starting its API and panel servers from {tree}")
    started = await start_build(rev, tree, workdir)
    servers, tokens = started["servers"], started["tokens"]
    try:
        result: dict[str, Any] = {"label": LABELS.get(rev, rev), "tree": str(tree)}
        step(f"  one tab to connected: a warm-up page, then {TAB_PAGES}")
        result["one_tab"] = await one_tab(browser, servers["tabs"], wait_quiet_s)
        step(f"  one tab again, {TAB_PAGES} pages in one browser context (scripts cached)")
        result["cached_tab"] = await cached_tab(browser, servers["tabs"])
        step("  five tabs at once")
        result["five_tabs"] = await five_tabs(browser, servers["tabs"], wait_quiet_s)
        servers["tabs"].stop()  # its sessions would otherwise share the CPU with the lag steps
        result["lag"] = await lag_steps(browser, servers["api"], servers["lag"], tokens["lag"], seconds, wait_quiet_s, step)
        return result
    except Exception:
        for server in servers.values():
            print(f"--- {server.log_path.name} ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        for server in servers.values():
            server.stop()


# Report
def table(results: dict[str, Any]) -> str:
    """One column per build."""
    builds = results["builds"]
    revs = list(builds)

    def row(title: str, cell: Any) -> str:
        return f"| {title} | " + " | ".join(cell(builds[rev]) for rev in revs) + " |"

    def noise(run: dict[str, Any] | None) -> str:
        if not run:
            return "n/a"
        m = run["machine_during_run"]
        return f"{fmt(m['other_processes_percent_of_one_core'])}%" + (" **(noisy)**" if m["noisy"] else "")

    def slash(*values: Any, unit: str = "") -> str:
        return " / ".join(map(fmt, values)) + f" {unit}".rstrip()

    def q(b: dict[str, Any], text: Any) -> str:  # n/a: a build without a query box
        return "n/a" if b["lag"]["query"] is None else text(b["lag"]["query"])

    lines = [
        "| | " + " | ".join(f"{rev} ({builds[rev]['label']})" for rev in revs) + " |",
        "|---|" + "---|" * len(revs),
        row("one tab to connected: median / max", lambda b: slash(b["one_tab"]["connect_median_s"], b["one_tab"]["connect_max_s"], unit="s")),
        row("one tab: each page", lambda b: ", ".join(map(str, b["one_tab"]["connect_s"])) + " s"),
        row("one tab, scripts cached (a second visit): median / max", lambda b: slash(b["cached_tab"]["connect_median_s"], b["cached_tab"]["connect_max_s"], unit="s")),
        row("panel CPU per page opened: median / max",
            lambda b: slash(b["one_tab"]["panel_cpu_per_page_median_s"], b["one_tab"]["panel_cpu_per_page_max_s"], unit="s")),
        row("five tabs at once: each tab", lambda b: ", ".join(map(str, b["five_tabs"]["connect_s"])) + " s"),
        row("five tabs at once: median / max", lambda b: slash(b["five_tabs"]["connect_median_s"], b["five_tabs"]["connect_max_s"], unit="s")),
        row("Chromium CPU per page opened (median)", lambda b: fmt(b["one_tab"].get("chromium_cpu_per_page_median_s"), "s")),
        row("five tabs: panel / Chromium CPU for the round", lambda b: slash(
            b["five_tabs"]["panel_cpu_round_s"], b["five_tabs"].get("chromium_cpu_round_s"), unit="s")),
        row(f"five tabs left open {IDLE_S:g} s: panel CPU per tab",
            lambda b: fmt(b["five_tabs"].get("idle_panel_percent_per_tab"), "% of a core")),
        row("five tabs: the machine's CPU until the last tab connected ÷ cores",
            lambda b: fmt(b["five_tabs"].get("cpu_until_connected_per_core_s"), "s")),
        row("**lag at 100/s: p50 / p95 / max**", lambda b: slash(*(b["lag"]["no_query"][k] for k in LAG_KEYS), unit="ms")),
        row("panel CPU at 100/s", lambda b: fmt(b["lag"]["no_query"]["panel_cpu_percent_of_one_core"], "% of a core")),
        row("with the query: lag p50 / p95 / max", lambda b: q(b, lambda x: slash(*(x[k] for k in LAG_KEYS), unit="ms"))),
        row("with the query: panel CPU at 100/s", lambda b: q(b, lambda x: fmt(x["panel_cpu_percent_of_one_core"], "% of a core"))),
        row("panel CPU, query ÷ no query", lambda b: q(b, lambda _x: fmt(b["lag"]["panel_cpu_query_over_no_query"]))),
        row("noise (others' CPU): one tab / five tabs / lag / lag with query", lambda b: " / ".join(
            noise(x) for x in (b["one_tab"], b["five_tabs"], b["lag"]["no_query"], b["lag"]["query"]))),
    ]
    return "\n".join(lines)


def section(results: dict[str, Any]) -> str:
    m = results["machine"]
    return "\n".join([
        HEADING, "",
        f"`{results['command']}`, {results['date']}, {m['cores_count']} cores ({m['cpu_model'] or 'unknown CPU'}), "
        f"{m['memory_total_mb']} MB RAM, Python {m['python']}, Panel {m['packages']['panel']}, Bokeh "
        f"{m['packages']['bokeh']}, Chromium {m['chromium']}, commit {m['git_commit']}. Wall time of the run: "
        f"{fmt(results['run_wall_s'], 's')}.", "",
        table(results), "", "How it was measured:", "",
        "- Builds one after another in one run, one Chromium for all; each build's API (fresh SQLite) and panel "
        "servers run from its own tree (a `git worktree add --detach` of the revision, or `worktree`: this "
        "repository's files with uncommitted changes), cwd and PYTHONPATH set to it.",
        f"- One tab: a warm-up page, then {TAB_PAGES} pages one after another, each in a new browser context: seconds "
        "from `page.goto` until `.trace-status[data-status='connected']` is visible. Panel CPU per page: the "
        "panel server's CPU seconds (/proc) from before `goto` until it is idle again (under 15% of a core for "
        "1 s) after connected, so the page's first render counts. Cached: the same, "
        "in one context whose HTTP cache holds the scripts after a first, uncounted page (a user's second visit).",
        f"- Five tabs: {TAB_PAGES} new contexts opened together (asyncio.gather), each one's seconds to connected; "
        "panel CPU from before the first `goto` until the server is idle again. Chromium CPU: Playwright's driver "
        "and the browser under it (/proc, reaped renderers included). The machine's CPU until the last tab connected "
        "÷ cores: close to that tab's wait, the cores were busy throughout; only less work per page shortens it. "
        f"Left open: then, after {IDLE_S:g} s more for Chromium to finish drawing, {IDLE_S:g} s with the five tabs "
        "open and nothing arriving: the panel server's CPU over that time, per tab.",
        f"- Lag: `dashboard_bench.py`'s step 1 (warm-up at 50/s, then one POST per trace at 100/s for "
        f"{results['seconds_s']:g} s; a MutationObserver stamps each name's first appearance in the table), on "
        "a user with 5000 traces (the row cap). p50/p95/max from `time.time()` before the POST to the DOM.",
        f"- With the query: in the same page, `{QUERY}` typed in the query box and Enter, waited for until "
        "'showing … query …' says it; it keeps every bench trace (latencies 400-1300 ms), so only the filter's "
        "cost differs. 150 more warm-up traces then push the first run's names out of the table before the "
        "same 100/s run. A build without a query box says n/a.",
        f"- Noise: CPU used by processes outside this benchmark's tree during each step, noisy above "
        f"{common.NOISY_PERCENT:.0f}% of a core" + (f"; `--wait-quiet {results['wait_quiet_s']:g}` waited for quiet before "
                                            "each timed step." if results["wait_quiet_s"] else "; no waiting for quiet."),
        "",
    ])


# Main
async def run(revs: list[str], seconds: float, wait_quiet_s: float, command: str, scratch: Path,
              trees: list[Path]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    began = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    results: dict[str, Any] = {"command": command, "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                               "seconds_s": seconds, "wait_quiet_s": wait_quiet_s, "query": QUERY, "units": common.UNITS,
                               "builds": {}, "commits": {}}
    for rev in revs:
        tree = checkout(rev, scratch)
        trees.append(tree)
        results["commits"][rev] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, text=True,
                                                 capture_output=True).stdout.strip() + (" + changes" if tree == ROOT else "")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=dash.CHROMIUM, args=dash.CHROMIUM_ARGS)
        try:
            results["machine"] = common.machine_info(("panel", "bokeh", "tornado", "pandas", "playwright"),
                                              {"chromium": browser.version})
            for rev, tree in zip(revs, trees):
                results["builds"][rev] = await measure(rev, tree, browser, scratch, seconds, wait_quiet_s, step)
        finally:
            await browser.close()
    results["run_wall_s"] = round(time.monotonic() - began, 1)
    step("done")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The dashboard's speed, build by build, side by side.")
    parser.add_argument("--builds", default=DEFAULT_BUILDS,
                        help=f"comma-separated git revisions, 'worktree' for the files as they are (default {DEFAULT_BUILDS})")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of each 100/s lag run (default 30)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each timed step, wait up to this long for other processes to go quiet")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (databases, logs)")
    args = parser.parse_args(argv)
    revs = [b.strip() for b in args.builds.split(",") if b.strip()]
    command = ".venv/bin/python bench/dashboard_speed.py" + (
        f" --builds {args.builds}" if args.builds != DEFAULT_BUILDS else "") + (
        f" --seconds {args.seconds:g}" if args.seconds != 30.0 else "") + (
        f" --wait-quiet {args.wait_quiet:g}" if args.wait_quiet else "")
    if not Path(dash.CHROMIUM).exists():
        return print(f"{dash.CHROMIUM} not found", file=sys.stderr) or 2

    async def run_in(scratch: Path) -> dict[str, Any]:
        trees: list[Path] = []
        try:
            return await run(revs, args.seconds, args.wait_quiet, command, scratch, trees)
        finally:
            for tree in set(trees) - {ROOT}:  # the git worktrees this run added
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True, timeout=60)

    return common.run_and_write(run_in, tmp_prefix="dashboard-speed-", keep_tmp=args.keep_tmp,
                                json_name="speed_results.json", markdown_name="SPEED.md", markdown=section)

if __name__ == "__main__":
    sys.exit(main())
