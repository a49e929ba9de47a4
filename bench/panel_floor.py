"""How close the dashboard opens to Panel's own floor, in one run, one Chromium: a bare Panel page
(``panel_floor_app.py``: a status word and a 200-row Tabulator shaped like ours, nothing else) beside the
dashboard on a user with 200 traces.

    .venv/bin/python bench/panel_floor.py      # about 2 minutes; bench/FLOOR.md and bench/floor_results.json

Pages alternate (bare, dashboard, bare, ...) so drift on a shared machine hits both alike. Each page opens in
a new browser context (nothing cached) and is timed from ``goto`` until its status says "connected" and a row
of its table is visible; then the CPU seconds Chromium and the page's panel server used until that server is
idle again. Then five of each at once, with the machine's CPU until the last one was ready, over its cores.
Why: the issue's 1.5 s for one tab and 5 s for five were set before anyone knew what Panel itself costs here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common
import dashboard_bench as dash
from common import BENCH, ROOT, Server, fmt, r
from dashboard_speed import PANEL_FLAGS

PAGES = 6
TRACES = 200
PAGES_NAMES = {"bare": "bare Panel page (status + 200-row Tabulator)", "dashboard": "the dashboard (200 traces)"}
URL_PATHS = {"bare": "/panel_floor_app", "dashboard": "/app"}


def panel_server(app: Path, env: dict[str, str], workdir: Path, name: str) -> Server:
    server = common.panel_server("panel", app, env, ROOT, *PANEL_FLAGS)
    server.log_path = workdir / f"panel-{name}.log"
    return server


async def open_ready(browser: Any, url: str) -> tuple[Any, float]:
    """A new context on the page, waited for until connected with a row shown; the context and the seconds."""
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    page = await context.new_page()
    began = time.monotonic()
    await page.goto(url, timeout=dash.PAGE_TIMEOUT_MS)
    await page.locator(".trace-status[data-status='connected']").wait_for(timeout=dash.PAGE_TIMEOUT_MS)
    await page.locator(".tabulator-row").first.wait_for(timeout=dash.PAGE_TIMEOUT_MS)
    return context, time.monotonic() - began


async def one_page(browser: Any, server: Server, url: str) -> dict[str, float]:
    chromium0, panel0 = common.browser_cpu_s(), server.cpu_s()
    context, took = await open_ready(browser, url)
    await dash.wait_idle(server, 15.0)  # the page's work after it is ready counts too
    cost = {"ready_s": took, "chromium_cpu_s": common.browser_cpu_s() - chromium0, "panel_cpu_s": server.cpu_s() - panel0}
    await context.close()
    await dash.wait_idle(server, 15.0)
    return cost


async def five_at_once(browser: Any, server: Server, url: str) -> dict[str, Any]:
    load = common.Load()
    opened = await asyncio.gather(*(open_ready(browser, url) for _ in range(5)))
    busy = load.end()
    for context, _took in opened:
        await context.close()
    await dash.wait_idle(server, 20.0)
    ready = [took for _context, took in opened]
    return {"ready_s": [r(x, 2) for x in ready], "ready_median_s": r(statistics.median(ready), 2),
            "ready_max_s": r(max(ready), 2), "machine_until_ready": busy,
            "cpu_until_ready_per_core_s": r(common.cpu_per_core_s(busy), 2)}


async def run(workdir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    env = common.server_env({"TRACES_JWT_SECRET": dash.SECRET, "TRACES_DB_URL": f"sqlite:///{workdir / 'floor.db'}",
                             "TRACES_WRITE_RATE": "0"})
    port = common.free_port()
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--host", common.HOST, "--port", str(port),
                         "--no-access-log"], env, workdir, port, "/healthz")
    api.launch()
    await api.wait_ready()
    token = dash.cli_token(env, "bench-floor")
    await dash.prefill(api, token, TRACES, "floor")
    servers = {"bare": panel_server(BENCH / "panel_floor_app.py", env, workdir, "bare"),
               "dashboard": panel_server(ROOT / "dashboard" / "app.py", {**env, "TRACES_API_URL": api.url,
                                                                          "TRACES_TOKEN": token}, workdir, "dashboard")}
    for server in servers.values():
        server.launch()
    for server in servers.values():
        await server.wait_ready()
    results: dict[str, Any] = {"command": ".venv/bin/python bench/panel_floor.py", "pages": {}}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=dash.CHROMIUM, args=dash.CHROMIUM_ARGS)
        results["machine"] = common.machine_info(("panel", "bokeh", "tornado"), {"chromium": browser.version})
        load = common.Load()
        costs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for name, server in servers.items():  # warm-up, not counted
            await (await open_ready(browser, server.url + URL_PATHS[name]))[0].close()
        for _ in range(PAGES):
            for name, server in servers.items():
                costs[name].append(await one_page(browser, server, server.url + URL_PATHS[name]))
        results["machine_during_pages"] = load.end()
        for name, server in servers.items():
            median = {key: r(statistics.median(c[key] for c in costs[name]), 2) for key in costs[name][0]}
            results["pages"][name] = {"label": PAGES_NAMES[name], "each": costs[name], "median": median,
                                      "ready_max_s": r(max(c["ready_s"] for c in costs[name]), 2),
                                      "five_at_once": await five_at_once(browser, server, server.url + URL_PATHS[name])}
        await browser.close()
    for server in (*servers.values(), api):
        server.stop()
    return results


def markdown(results: dict[str, Any]) -> str:
    pages, m = results["pages"], results["machine"]
    cols = list(pages)

    def row(title: str, cell: Any) -> str:
        return f"| {title} | " + " | ".join(cell(pages[name]) for name in cols) + " |"

    return "\n".join([
        "# The dashboard beside Panel's own floor", "",
        f"`{results['command']}`, {m['cores_count']} cores, Python {m['python']}, Panel {m['packages']['panel']}, "
        f"Bokeh {m['packages']['bokeh']}, Chromium {m['chromium']}, commit {m['git_commit']}; others' CPU during the "
        f"pages: {fmt(results['machine_during_pages']['other_processes_percent_of_one_core'])}% of a core.", "",
        "| | " + " | ".join(pages[name]["label"] for name in cols) + " |", "|---|" + "---|" * len(cols),
        row("one tab, `goto` to connected with rows: median / max",
            lambda p: f"{fmt(p['median']['ready_s'])} / {fmt(p['ready_max_s'])} s"),
        row("Chromium CPU per page (median)", lambda p: fmt(p["median"]["chromium_cpu_s"], "s")),
        row("panel server CPU per page (median)", lambda p: fmt(p["median"]["panel_cpu_s"], "s")),
        row("five tabs at once: median / max",
            lambda p: f"{fmt(p['five_at_once']['ready_median_s'])} / {fmt(p['five_at_once']['ready_max_s'])} s"),
        row("five tabs: the machine's CPU until the last was ready ÷ cores",
            lambda p: fmt(p["five_at_once"]["cpu_until_ready_per_core_s"], "s")), "",
        f"{PAGES} pages of each, alternating, each in a new browser context; the bare page is "
        "`bench/panel_floor_app.py`. CPU per page: from `goto` until the page's panel server is idle again "
        "(Chromium: Playwright's driver and the browser, reaped renderers included).", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description="The dashboard beside a bare Panel page, side by side.")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (database, logs)")
    args = parser.parse_args()
    if not Path(dash.CHROMIUM).exists():
        return print(f"{dash.CHROMIUM} not found", file=sys.stderr) or 2
    return common.run_and_write(run, tmp_prefix="panel-floor-", keep_tmp=args.keep_tmp, json_name="floor_results.json",
                                markdown_name="FLOOR.md", markdown=markdown)


if __name__ == "__main__":
    sys.exit(main())
