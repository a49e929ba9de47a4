"""``notebooks/live_traces.ipynb`` in a real JupyterLab, in Chromium with no internet, as a person runs it:
Run > Run All Cells, then look. Every request that leaves loopback is refused (and recorded); every wait
is for a condition on the page, with a deadline.

The scenario runs once per module (JupyterLab and a kernel take a while); its steps are the tests below,
in order: the table fills, the charts are drawn, live rows and a toast arrive, a clicked row's detail
shows, the stop button stops the feed, and nothing went wrong on the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from ..support import ROOT, ApiProcess
from .conftest import SHOTS, shot
from .jupyterlab import JupyterLabProcess

pytest.importorskip("jupyterlab", reason="the notebook's browser test needs jupyterlab (pip install -e '.[test]')")

NOTEBOOK = ROOT / "notebooks" / "live_traces.ipynb"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MODELS = ("gpt-4o", "claude-3", "llama-3")
LIVE = 8  # traces posted once the view is live; the first and the fifth fail

# Panel renders every component in its own shadow root: look through all of them.
DEEP = """
const deepAll = (sel) => {
  const acc = [];
  const walk = (root) => root.querySelectorAll('*').forEach(n => {
    if (n.matches(sel)) acc.push(n);
    if (n.shadowRoot) walk(n.shadowRoot);
  });
  walk(document);
  return acc;
};
"""


def probe(body: str) -> str:
    return "(arg) => { " + DEEP + body + " }"


# Each model's chart source has points in the browser, and all three charts show coloured glyphs (Category10
# colours, not the grey axes and text) on their canvases.
CHARTS_DRAWN = probe("""
  const sources = [];
  for (const doc of ((window.Bokeh && window.Bokeh.documents) || []))
    for (const m of doc.all_models)
      if (m.type === 'ColumnDataSource' && (m.data instanceof Map ? m.data.has('p50') : 'p50' in m.data))
        sources.push(m.get_length());
  const drawn = deepAll('canvas').filter(c => c.width > 300 && c.height > 150).filter(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 0 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
    return n > 10;
  }).length;
  return sources.length > 0 && sources.every(n => n > 0) && drawn >= 3;
""")
TRACEBACKS = """() => [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText)
    .filter(t => t.includes('Traceback (most recent call last)')).map(t => t.slice(0, 1500))"""
ALL_CELLS_RAN = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.innerText.trim());
  return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:?$/.test(t));
}"""


@dataclass
class Lab:
    api: ApiProcess
    page: object
    token: str
    left_loopback: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # trace name -> id

    def post(self, name: str, model: str, status: str, latency_ms: float) -> None:
        response = httpx.post(self.api.url + "/api/traces", headers={"Authorization": f"Bearer {self.token}"},
                              json={"name": name, "model": model, "status": status, "latency_ms": latency_ms,
                                    "total_tokens": 42, "cost_usd": 0.001, "input": f"the question of {name}",
                                    "error": "RateLimitError: 429 Too Many Requests" if status == "error" else None})
        response.raise_for_status()
        self.ids[name] = response.json()["id"]

    def wait(self, script: str, arg=None, timeout_s: float = 30):
        return self.page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000).json_value()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """The API with a few of alice's traces, JupyterLab, and the notebook after Run All."""
    work: Path = tmp_path_factory.mktemp("jupyterlab")
    api = ApiProcess(work).launch()  # starts while JupyterLab does
    token = api.token("alice")
    jupyter = JupyterLabProcess(work, NOTEBOOK, {"TRACES_API_URL": api.url, "TRACES_TOKEN": token}).start()
    api.wait_ready()
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    lab = Lab(api, page, token)
    try:
        for i in range(6):
            lab.post(f"before-{i}", MODELS[i % 3], "error" if i == 5 else "success", 100.0 * (i + 1))

        def offline(route):
            url = route.request.url
            if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOOPBACK:
                return route.continue_()
            lab.left_loopback.append(url)
            return route.abort("internetdisconnected")

        context.route("**/*", offline)
        page.on("pageerror", lambda exc: lab.page_errors.append(str(exc)[:300]))
        page.on("console", lambda msg: lab.console_errors.append(msg.text[:300]) if msg.type == "error" else None)
        page.goto(jupyter.notebook_url())
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
        page.wait_for_function("() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
                               timeout=60_000)
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        page.wait_for_function(ALL_CELLS_RAN, timeout=120_000)
        yield lab
    finally:
        shot(page, "notebook-final")
        context.close()
        jupyter.stop()
        api.stop()


def test_run_all_shows_the_users_traces_live(lab):
    assert lab.wait(probe("return deepAll('.trace-status[data-status=\"connected\"]').length > 0;"))
    rows = lab.wait(probe("const r = deepAll('.tabulator-row').map(r => r.innerText); return r.length >= 6 ? r : null;"))
    assert any("before-0" in row for row in rows) and any("before-5" in row for row in rows)


def test_the_three_charts_are_drawn(lab):
    assert lab.wait(CHARTS_DRAWN)


def test_traces_posted_now_appear_and_a_failed_call_is_toasted(lab):
    for i in range(LIVE):
        # The first one fails: it is in the first batch, so its toast is not coalesced into a later one.
        lab.post(f"live-{i}", MODELS[i % 3], "error" if i % 4 == 0 else "success", 120.0 + 35 * i)
    lab.wait(probe("return deepAll('.tabulator-row').some(r => r.innerText.includes(arg));"), arg=f"live-{LIVE - 1}")
    toasts = lab.wait(probe("const t = deepAll('.notyf__toast').map(e => e.innerText.trim());"
                            " return t.some(s => /fail/.test(s)) ? t : null;"))
    assert any(re.search(r"failed: .*live-|calls failed", toast) for toast in toasts), toasts
    shot(lab.page, "notebook-live")


def test_a_clicked_row_shows_that_trace_in_the_detail(lab):
    lab.page.locator(".tabulator-row", has_text="live-4").first.click()
    assert lab.wait(probe("const d = deepAll('.trace-detail')[0]; return d && d.dataset.traceId === arg;"),
                    arg=lab.ids["live-4"])
    detail = lab.wait(probe("const d = deepAll('.trace-detail')[0]; return d ? d.innerText : null;"))
    assert "live-4" in detail and "RateLimitError" in detail and "the question of live-4" in detail
    SHOTS.mkdir(parents=True, exist_ok=True)
    view = lab.page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="live_view(").locator(".jp-OutputArea")
    view.screenshot(path=str(SHOTS / "notebook-view.png"))


def test_the_stop_button_stops_the_feed(lab):
    lab.page.get_by_role("button", name="Stop the live feed").click()
    lab.wait(probe("return deepAll('button').some(b => b.innerText.includes('Stopped'));"))
    assert lab.wait(probe("return deepAll('.trace-status[data-status=\"off\"]').length > 0;"), timeout_s=10)


def test_nothing_went_wrong_on_the_way(lab):
    assert lab.page.evaluate(TRACEBACKS) == []
    assert lab.page_errors == []
    assert [e for e in lab.console_errors if "isn't known" in e] == []  # BokehJS could decode every patch
    assert sorted(set(lab.left_loopback)) == []  # no script, stylesheet or font from the internet
