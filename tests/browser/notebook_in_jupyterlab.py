#!/usr/bin/env python
"""notebooks/live_traces.ipynb in a real JupyterLab, in Chromium with no internet: run by hand for now
(it needs ``pip install jupyterlab``, not yet in the test extras); the next step makes it a test.

Starts the trace API (``python -m dashboard api``) and JupyterLab on loopback, opens the notebook in
Debian's Chromium through Playwright with every non-loopback request aborted (and recorded), clicks
Run > Run All Cells, and checks what a person would see:

* the live view's table has rows, and rows posted afterwards appear in it (live updates over the comm);
* the three Bokeh charts have points in the browser's own documents and coloured pixels on their canvases;
* the notification area is up (Notyf loaded), and a toast appears (trace news is coalesced over 30 s);
* no output anywhere contains a Python traceback, the page throws no error, BokehJS never reports a patch
  it could not decode ("reference ... isn't known"), and no script had to come from the internet;
* the last cell's "Stop the live feed" button stops the feed (the status says off).

Every wait is on a condition with a deadline, never a fixed sleep; all runs in a temporary directory, torn
down at the end. Also reported: blocked requests, events sent to the kernel, cell outputs, phase times.

    .venv/bin/python tests/browser/notebook_in_jupyterlab.py [--notebook PATH] [--pythonpath DIR] [--shots DIR] [--keep]

``--pythonpath`` puts a (patched) copy of the ``dashboard`` package first for the API and the kernel.
Exit status 0 when every check passed; a JSON summary is printed either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx
from playwright.sync_api import sync_playwright

PYTHON = sys.executable
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
SECRET = "harness-secret-0123456789abcdef0123456789abcdef"
JUPYTER_TOKEN = "harness-token"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MODELS = ("gpt-4o", "claude-3", "llama-3")

# Looks through open shadow roots: Panel renders every component in one.
DEEP = """
window.__deepAll = (sel) => {
  const acc = [];
  const walk = (root) => root.querySelectorAll('*').forEach(n => {
    if (n.matches(sel)) acc.push(n);
    if (n.shadowRoot) walk(n.shadowRoot);
  });
  walk(document);
  return acc;
};
"""
TABLE_ROWS = "() => { " + DEEP + " return window.__deepAll('.tabulator-row').length; }"
TABLE_NAMES = ("() => { " + DEEP + " return window.__deepAll('.tabulator-row').map(r => r.innerText); }")
CHARTS_BODY = """
  const sources = [];
  for (const doc of ((window.Bokeh && window.Bokeh.documents) || [])) {
    for (const m of doc.all_models) {
      if (m.type !== 'ColumnDataSource') continue;
      const keys = m.data instanceof Map ? [...m.data.keys()] : Object.keys(m.data || {});
      if (keys.includes('p50')) sources.push(m.get_length());
    }
  }
  // Bokeh draws each figure on a few stacked canvases; count strongly coloured pixels (glyphs in
  // Category10 colours, not the grey axes and text) on the large ones.
  const colored = window.__deepAll('canvas').filter(c => c.width > 300 && c.height > 150).map(c => {
    try {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
      for (let i = 0; i < d.length; i += 4) {
        const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
        if (d[i + 3] > 0 && mx - mn > 60) n++;
      }
      return n;
    } catch (e) { return -1; }
  });
  const c = {sources, drawn: colored.filter(n => n > 10).length, colored};
"""
CHARTS = "() => { " + DEEP + CHARTS_BODY + " return c; }"
# Every per-model source has a point in the browser, and all three charts show coloured glyphs.
CHARTS_READY = ("() => { " + DEEP + CHARTS_BODY
                + " return c.sources.length >= 1 && c.sources.every(n => n >= 1) && c.drawn >= 3 ? c : null; }")
NOTIFICATION_AREA = ("() => { " + DEEP + " return typeof window.Notyf === 'function' && window.__deepAll('.notyf').length > 0; }")
TOAST = ("() => { " + DEEP + " const t = window.__deepAll('.notyf__toast').map(e => e.innerText.trim()).filter(Boolean);"
         " return t.length ? t : null; }")
TRACEBACKS = """() => [...document.querySelectorAll('.jp-OutputArea-output')]
    .map(o => o.innerText).filter(t => t.includes('Traceback (most recent call last)')).map(t => t.slice(0, 1500))"""
CELL_OUTPUTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]
    .map(c => [c.querySelector('.jp-InputPrompt').innerText.trim(),
               [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText.slice(0, 160))])"""
PROMPTS_DONE = """(upto) => {
  let ps = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.innerText.trim());
  if (upto >= 0) ps = ps.slice(0, upto);
  return ps.length > 0 && ps.every(t => /^\\[\\d+\\]:?$/.test(t));
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, what: str, process: subprocess.Popen, log: Path, headers=None) -> None:
    """Wait until ``url`` answers 200 (another process's readiness has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} in {timeout:g} s:\n{log.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the process we started and its children
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class Stack:
    """The API and JupyterLab, in one temporary directory."""

    def __init__(self, work: Path, notebook: Path, pythonpath: str | None) -> None:
        self.work = work
        self.notebook = notebook
        self.pythonpath = pythonpath
        self.api: subprocess.Popen | None = None
        self.lab: subprocess.Popen | None = None
        self.api_port = free_port()
        self.lab_port = free_port()
        self.token = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def lab_url(self) -> str:
        return f"http://127.0.0.1:{self.lab_port}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACES_", "JUPYTER", "PYTHONPATH"))}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        env.update(extra)
        return env

    def start_api(self) -> None:
        (self.work / "api").mkdir()
        env = self._env(TRACES_JWT_SECRET=SECRET, TRACES_DB_URL=f"sqlite:///{self.work / 'api' / 'traces.db'}")
        log = self.work / "api.log"
        with open(log, "wb") as out:
            self.api = subprocess.Popen([PYTHON, "-m", "dashboard", "api", "--port", str(self.api_port), "--no-access-log"],
                                        cwd=self.work / "api", env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_http(self.api_url + "/healthz", 30, "the API", self.api, log)
        self.token = subprocess.run([PYTHON, "-m", "dashboard", "token", "--user", "alice"], env=env, cwd=self.work / "api",
                                    check=True, capture_output=True, text=True).stdout.strip()

    def post(self, client: httpx.Client, name: str, model: str, status: str, latency_ms: float, tokens: int) -> None:
        response = client.post(self.api_url + "/api/traces", headers={"Authorization": f"Bearer {self.token}"},
                               json={"name": name, "model": model, "status": status, "latency_ms": latency_ms,
                                     "total_tokens": tokens, "cost_usd": 0.001})
        response.raise_for_status()

    def start_lab(self) -> None:
        root = self.work / "notebooks"
        root.mkdir()
        shutil.copy(self.notebook, root / "live_traces.ipynb")
        settings = self.work / "lab-settings"
        # No news or update checks (they would fetch, and their prompt covers part of the page), and every
        # cell rendered even off screen.
        (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
        (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
        (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"}))
        env = self._env(
            TRACES_API_URL=self.api_url, TRACES_TOKEN=self.token,
            JUPYTER_CONFIG_DIR=str(self.work / "jupyter-config"), JUPYTER_DATA_DIR=str(self.work / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(self.work / "jupyter-runtime"), IPYTHONDIR=str(self.work / "ipython"),
            JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(self.work / "lab-workspaces"),
        )
        args = [PYTHON, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.lab_port}",
                f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={JUPYTER_TOKEN}", "--ServerApp.port_retries=0",
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        log = self.work / "jupyterlab.log"
        with open(log, "wb") as out:
            self.lab = subprocess.Popen(args, cwd=self.work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_http(self.lab_url + "/api/status", 60, "JupyterLab", self.lab, log,
                  headers={"Authorization": f"token {JUPYTER_TOKEN}"})

    def stop(self) -> None:
        if self.lab is not None and self.lab.poll() is None:
            try:  # shuts its kernels down too
                httpx.post(self.lab_url + "/api/shutdown", headers={"Authorization": f"token {JUPYTER_TOKEN}"}, timeout=5)
                self.lab.wait(timeout=15)
            except (httpx.HTTPError, subprocess.TimeoutExpired):
                pass
        stop_process(self.lab)
        stop_process(self.api)


def run(args: argparse.Namespace) -> dict:
    began = time.monotonic()
    phases: dict[str, float] = {}
    mark = lambda name: phases.__setitem__(name, round(time.monotonic() - began, 1))  # noqa: E731
    summary: dict = {"notebook": str(args.notebook), "pythonpath": args.pythonpath, "checks": {},
                     "failures": []}
    checks, failures = summary["checks"], summary["failures"]
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nb-offline-"))
    summary["work"] = str(work)
    blocked: list[str] = []
    page_errors: list[str] = []
    console_errors: list[str] = []
    stack = Stack(work, Path(args.notebook), args.pythonpath)
    page = None

    def check(name: str, fn, *, timeout_ms: float, arg=None):
        """Wait for ``fn`` (a page function) to return something truthy; record the result or the failure."""
        try:
            handle = page.wait_for_function(fn, arg=arg, timeout=timeout_ms)
            value = handle.json_value()
            checks[name] = {"ok": True, "at_s": round(time.monotonic() - began, 1), "value": value}
            return value
        except Exception as exc:  # noqa: BLE001 - a failed wait is a failed check, reported with the rest
            checks[name] = {"ok": False, "error": str(exc).splitlines()[0][:300]}
            failures.append(name)
            return None

    try:
        with httpx.Client(timeout=10) as client:
            stack.start_api()
            for i in range(6):
                stack.post(client, f"before-{i}", MODELS[i % 3], "error" if i == 5 else "success", 100.0 * (i + 1), 10 * i)
            mark("api_ready")
            stack.start_lab()
            mark("jupyterlab_ready")

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1600, "height": 2600})

                def route(request_route):
                    url = request_route.request.url
                    if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOOPBACK:
                        return request_route.continue_()
                    blocked.append(url)
                    return request_route.abort("internetdisconnected")

                context.route("**/*", route)
                page = context.new_page()
                page.on("pageerror", lambda exc: page_errors.append(str(exc)[:300]))
                page.on("console", lambda msg: console_errors.append(msg.text[:300]) if msg.type == "error" else None)
                sent_by_browser: Counter = Counter()  # Bokeh patch events the page sent to the kernel

                def on_frame(payload) -> None:
                    text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                    if "PATCH-DOC" in text:
                        for m in re.finditer(r'"kind":"(\w+)"(?:,"model":\{"id":"[^"]+"\},"attr":"(\w+)")?', text):
                            sent_by_browser[f"{m.group(1)}:{m.group(2) or ''}"] += 1

                page.on("websocket", lambda ws: ws.on("framesent", on_frame))
                summary["sent_by_browser"] = sent_by_browser

                page.goto(f"{stack.lab_url}/lab/tree/live_traces.ipynb?token={JUPYTER_TOKEN}")
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
                page.wait_for_function("() => /Idle/.test((document.querySelector('#jp-main-statusbar') || {}).innerText || '')",
                                       timeout=60_000)
                mark("notebook_open")

                page.locator(".lm-MenuBar-item", has_text="Run").first.click()
                page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
                page.wait_for_function(PROMPTS_DONE, arg=-1, timeout=120_000)
                mark("cells_ran")

                check("table_has_rows", TABLE_ROWS, timeout_ms=30_000)
                check("charts_drawn", CHARTS_READY, timeout_ms=30_000)
                check("notification_area_ready", NOTIFICATION_AREA, timeout_ms=10_000)
                connected = "window.__deepAll('.trace-status[data-status=\"connected\"]').length > 0"
                check("connected", "() => { " + DEEP + " return " + connected + "; }", timeout_ms=30_000)
                page.screenshot(path=str(shots / "after-run-all.png"))

                # Rows posted now must reach the browser (updates over the comm), and a toast follows
                # (the feed coalesces trace news over 30 s).
                for i in range(args.live_traces):
                    stack.post(client, f"live-{i}", MODELS[i % 3], "error" if i % 4 == 3 else "success",
                               120.0 + 35 * i, 20 + i)
                check("live_rows_arrive", "(name) => { " + DEEP
                      + " return window.__deepAll('.tabulator-row').some(r => r.innerText.includes(name)); }",
                      arg=f"live-{args.live_traces - 1}", timeout_ms=20_000)
                mark("live_rows")
                toast = check("toast_shown", TOAST, timeout_ms=args.toast_timeout * 1000)
                if toast:
                    page.screenshot(path=str(shots / "toast.png"))
                mark("toast")
                check("charts_still_drawn", CHARTS_READY, timeout_ms=15_000)
                page.screenshot(path=str(shots / "live.png"))
                view = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="live_view(").locator(".jp-OutputArea")
                view.screenshot(path=str(shots / "view.png"))
                checks["table_rows_text"] = {"ok": True, "value": page.evaluate(TABLE_NAMES)[:3]}

                # What the notebook's last cell offers: a button that stops the feed.
                stop = page.get_by_role("button", name="Stop the live feed")
                if stop.count():
                    stop.click()
                    check("stop_button_says_stopped", "() => { " + DEEP
                          + " return window.__deepAll('button').some(b => b.innerText.includes('Stopped')); }", timeout_ms=30_000)
                    check("status_says_off", "() => { " + DEEP
                          + " return window.__deepAll('.trace-status[data-status=\"off\"]').length > 0; }", timeout_ms=5_000)
                else:
                    checks["stop_button_says_stopped"] = {"ok": False, "error": "no 'Stop the live feed' button"}
                    failures.append("stop_button_says_stopped")
                mark("done")
                page.screenshot(path=str(shots / "final.png"))
                checks["charts_final"] = {"ok": True, "value": page.evaluate(CHARTS)}

                summary["cell_outputs"] = page.evaluate(CELL_OUTPUTS)
                tracebacks = page.evaluate(TRACEBACKS)
                checks["no_traceback_in_outputs"] = {"ok": not tracebacks, "value": tracebacks[:3]}
                decode = [e for e in console_errors if "isn't known" in e]
                checks["no_page_errors"] = {"ok": not page_errors, "value": page_errors[:5]}
                checks["no_bokeh_decode_errors"] = {"ok": not decode, "value": decode[:3]}
                scripts = [u for u in blocked if urlparse(u).path.endswith(".js")]
                checks["no_script_needed_from_internet"] = {"ok": not scripts, "value": sorted(set(scripts))[:10]}
                for name in ("no_traceback_in_outputs", "no_page_errors", "no_bokeh_decode_errors",
                             "no_script_needed_from_internet"):
                    if not checks[name]["ok"]:
                        failures.append(name)
                browser.close()
    except Exception as exc:  # noqa: BLE001
        failures.append(f"harness: {type(exc).__name__}: {str(exc)[:500]}")
        try:
            if page is None:
                raise RuntimeError("no page")
            page.screenshot(path=str(shots / "failure.png"))
            summary["cell_outputs"] = page.evaluate(CELL_OUTPUTS)
        except Exception:  # noqa: BLE001 - no page yet, or it is gone
            pass
    finally:
        stack.stop()
        mark("torn_down")
        summary["blocked_requests"] = sorted(set(blocked))
        summary["console_errors"] = sorted(set(console_errors))[:15]
        summary["phases_s"] = phases
        summary["seconds"] = round(time.monotonic() - began, 1)
        summary["shots"] = str(shots)
        summary["ok"] = not failures
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return summary


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", default="/work/main/notebooks/live_traces.ipynb")
    parser.add_argument("--pythonpath", default=None, help="put this directory first (a patched dashboard package)")
    parser.add_argument("--toast-timeout", type=float, default=60, help="seconds to wait for a toast")
    parser.add_argument("--live-traces", type=int, default=12)
    parser.add_argument("--shots", default=str(here / "harness-shots"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    summary = run(parser.parse_args())
    print(json.dumps(summary, indent=1, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
