"""Cost and tokens per minute beside the latency charts, and the totals since the page opened, as a
person sees them in Chromium at 1440×900 and in a 900-wide window. Screenshots: cost-1440x900.png,
cost-900-wide.png."""

from __future__ import annotations

from playwright.sync_api import expect

from dashboard.ui.views.charts import CHART_HEIGHT

from .conftest import shot
from .test_dashboard import CANVAS_BOTTOMS, TIMEOUT, open_dashboard, post, row

# Every drawn canvas with its box, inside shadow roots too: [left, top, width, height].
CANVAS_BOXES = CANVAS_BOTTOMS.replace("found.push(e.getBoundingClientRect().bottom)",
                                      "found.push((({x, y, width, height}) => [x, y, width, height])"
                                      "(e.getBoundingClientRect()))")

# Resolves once two more frames are painted: whatever changed before it is on screen.
NEXT_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def plots(page) -> list[list[float]]:
    """The five charts' boxes (Bokeh draws each on more than one canvas)."""
    return sorted({tuple(box) for box in page.evaluate(CANVAS_BOXES) if box[3] == CHART_HEIGHT})


def test_cost_and_token_charts_and_the_totals_since_the_page_opened(stack, browser):
    api, panel = stack()
    post(api, "alice", id="before", name="before-opening", model="gpt-4o", status="success", latency_ms=300,
         total_tokens=99_000, cost_usd=9.0)  # ended before the page opened: not in the totals
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        open_dashboard(page, panel)
        totals = page.locator(".trace-totals")
        expect(totals).to_contain_text("0 calls · 0 tokens · $0.00 · 0 errors", timeout=TIMEOUT)
        post(api, "alice", id="a", name="summarize", model="gpt-4o", status="success", latency_ms=800,
             total_tokens=12_000, cost_usd=0.5)
        post(api, "alice", id="b", name="classify", model="claude-3-haiku", status="success", latency_ms=400,
             total_tokens=3_000, cost_usd=0.25)
        post(api, "alice", id="c", name="broken", model="claude-3-haiku", status="error", latency_ms=50,
             error="Timeout", total_tokens=500)
        expect(row(page, "broken")).to_be_visible(timeout=TIMEOUT)
        expect(totals).to_contain_text("3 calls · 15.5 k tokens · $0.75 · 1 error", timeout=TIMEOUT)
        expect(totals).to_contain_text("since ")
        for title in ("Cost per minute", "Tokens per minute"):  # Bokeh draws titles on the canvas: check the model
            assert page.evaluate("(t) => Bokeh.documents.some((d) => [...d.all_models].some((m) => m.text === t))",
                                 title), title
        page.wait_for_function(CANVAS_BOXES + ".length >= 6", timeout=TIMEOUT)  # the five charts
        page.evaluate(NEXT_FRAMES)  # Bokeh paints new points on the next animation frame: the picture has them
        shot(page, "cost-1440x900")
        charts = plots(page)
        assert len(charts) == 5 and all(width >= 360 for _x, _y, width, _h in charts), charts  # none squeezed
        first = min(y for _x, y, _w, _h in charts)
        assert [y + h <= 900 for _x, y, _w, h in charts if y == first] == [True] * 3, charts  # latency's row whole
        page.set_viewport_size({"width": 900, "height": 900})
        page.wait_for_function(CANVAS_BOXES + ".every(([x, y, w]) => x + w <= 900)", timeout=TIMEOUT)
        charts = plots(page)
        assert len(charts) == 5 and all(width >= 360 for _x, _y, width, _h in charts), charts
        expect(totals).to_be_visible()
        shot(page, "cost-900-wide")
    finally:
        context.close()
