"""What a person sees in Chromium: rows arriving, the badge, a lost and restored connection, the health
gauge, and a plain EventSource with a ticket. Screenshots land in tests/browser/screenshots/."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from .chromium import open_event_source
from .conftest import shot

TIMEOUT = 20_000  # ms: first render of a Panel page on a busy 2-core machine


def post(api, user: str, **trace) -> dict:
    response = httpx.post(f"{api.url}/api/traces", json=trace, headers={"Authorization": f"Bearer {api.token(user)}"})
    assert response.status_code == 201, response.text
    return response.json()


def row(page: Page, text: str):
    return page.locator(".tabulator-row", has_text=text)


def scroll_table(page: Page, pixels: int) -> None:
    """Scroll the table's own scroll area, as a wheel would; retried while Tabulator is still laying out."""
    page.wait_for_function("""(pixels) => {
        const find = (root) => root.querySelector('.tabulator-tableholder') ||
            [...root.querySelectorAll('*')].filter((e) => e.shadowRoot).map((e) => find(e.shadowRoot)).find(Boolean);
        const holder = find(document);
        if (!holder) return false;
        holder.scrollTop = pixels;
        return holder.scrollTop >= pixels;
    }""", arg=pixels, timeout=TIMEOUT)


def open_dashboard(page: Page, panel) -> None:
    page.goto(panel.app_url)
    expect(page.locator(".trace-status[data-status='connected']")).to_be_visible(timeout=TIMEOUT)


def test_a_posted_trace_appears_highlighted_at_the_top_with_no_badge(stack, page):
    api, panel = stack()
    post(api, "alice", id="first", name="warm-up", model="gpt-4o", status="success", latency_ms=120)
    open_dashboard(page, panel)
    expect(row(page, "warm-up")).to_be_visible()
    expect(page.locator(".trace-showing")).to_have_text("showing 1 of 1")
    post(api, "alice", id="call-1", name="summarize-report", model="gpt-4o", status="running")
    post(api, "bob", id="bobs", name="bobs-secret", model="gpt-4o")
    new_row = row(page, "summarize-report")
    expect(new_row).to_be_visible(timeout=TIMEOUT)
    expect(new_row.locator("[data-flag='new']")).to_have_count(1)
    expect(page.locator(".trace-showing")).to_have_text("showing 2 of 2")
    expect(page.get_by_role("button", name="1 new")).to_have_count(0)  # nothing is held back: no badge
    shot(page, "live")
    httpx.patch(f"{api.url}/api/traces/call-1", json={"status": "success", "latency_ms": 812},
                headers={"Authorization": f"Bearer {api.token('alice')}"})
    expect(new_row.locator(".status-success")).to_be_visible(timeout=TIMEOUT)
    expect(new_row.locator("[data-flag='new']")).to_have_count(0, timeout=TIMEOUT)  # the highlight ends by itself
    expect(row(page, "bobs-secret")).to_have_count(0)


def test_a_lost_connection_is_shown_and_missed_traces_come_back(stack, page, tmp_path):
    from ..support import ApiProcess

    api, panel = stack()
    open_dashboard(page, panel)
    api.kill()
    expect(page.locator(".trace-status[data-status='reconnecting']")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("connection lost:").first).to_be_visible()
    expect(page.locator(".notyf__toast", has_text="connection lost")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    expect(page.locator(".trace-health", has_text="reconnecting: last sign of life")).to_be_visible()  # not "healthy"
    shot(page, "disconnected")
    restarted = ApiProcess(tmp_path, port=api.port).start()
    try:
        post(restarted, "alice", id="missed", name="while-you-were-away", model="claude-3-haiku", status="success")
        page.get_by_role("button", name="Retry now").click()
        expect(page.locator(".trace-status[data-status='connected']")).to_be_visible(timeout=TIMEOUT)
        expect(row(page, "while-you-were-away")).to_be_visible(timeout=TIMEOUT)
        expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
        toast = page.locator(".notyf__toast", has_text="connection restored")
        expect(toast).to_be_visible(timeout=TIMEOUT)
        font = toast.evaluate("element => getComputedStyle(element).fontFamily")
        assert "Segoe UI" in font, font  # the page's own sans-serif, not the browser's serif default
    finally:
        restarted.stop()


def seconds_in(text: str | None) -> int:
    return int(re.search(r"(\d+) s\b", text or "").group(1))


def test_the_health_gauge_warns_when_pings_stop_and_recovers_on_traffic(stack, page):
    api, panel = stack(api_env={"TRACES_PING_INTERVAL": "3600"}, panel_env={"TRACES_HEALTH_WARN_SECONDS": "2"})
    patches: list[str] = []  # the changes the server sends the page
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: patches.append(frame) if isinstance(
        frame, str) and '"msgtype": "PATCH-DOC"' in frame else None))
    open_dashboard(page, panel)
    expect(page.locator(".trace-health[data-warning='true']")).to_be_visible(timeout=TIMEOUT)
    # The dial says the same seconds, past two thirds of its span (the warning is at 2 s of 3).
    expect(page.locator("svg.trace-gauge")).to_have_attribute("aria-label", re.compile(r"since last ping: [2-9]\d* s"))
    expect(page.locator(".trace-health", has_text=re.compile(r"no ping or event for [2-9]\d* s"))).to_be_visible()
    shot(page, "health-warning")
    # The page counts the seconds itself: three more go by with at most one message from the server
    # (rendered there, every second of every open tab was a message).
    dial = page.locator("svg.trace-gauge")
    sent, start = len(patches), seconds_in(dial.get_attribute("aria-label"))
    expect(dial).to_have_attribute("aria-label", f"since last ping: {start + 3} s", timeout=TIMEOUT)
    assert len(patches) - sent <= 1, patches[sent:]
    assert seconds_in(page.locator(".trace-health").text_content()) >= start + 3  # the words count too
    post(api, "alice", name="sign-of-life", status="running")
    expect(page.locator(".trace-health[data-warning='false']")).to_be_visible(timeout=TIMEOUT)


def test_a_plain_eventsource_with_a_ticket_receives_events(stack, page):
    api, _panel = stack()
    page.goto(f"{api.url}/healthz")  # same origin as the API
    token = api.token("alice")
    open_event_source(page, token)
    page.wait_for_function("window.subscribed === true", timeout=TIMEOUT)
    post(api, "alice", name="seen-by-eventsource")
    page.wait_for_function("window.received.some((data) => JSON.parse(data).name === 'seen-by-eventsource')",
                           timeout=TIMEOUT)


def test_arrivals_wait_behind_the_badge_while_the_user_has_scrolled(stack, page):
    api, panel = stack()
    httpx.post(f"{api.url}/api/traces", headers={"Authorization": f"Bearer {api.token('alice')}"},
               json={"traces": [{"name": f"older-{i}", "status": "success"} for i in range(40)]})
    open_dashboard(page, panel)
    expect(row(page, "older-39")).to_be_visible(timeout=TIMEOUT)
    holder = page.locator(".tabulator-tableholder")
    scroll_table(page, 400)
    expect(page.locator(".trace-holding")).to_contain_text("you browse the table", timeout=TIMEOUT)
    top_row = page.locator(".tabulator-row").first.inner_text()
    post(api, "alice", name="arrived-while-scrolled", status="running")
    expect(page.get_by_role("button", name="1 new")).to_be_visible(timeout=TIMEOUT)
    assert page.locator(".tabulator-row").first.inner_text() == top_row  # nothing moved under the user
    expect(row(page, "arrived-while-scrolled")).to_have_count(0)
    page.get_by_role("button", name="1 new").click()
    expect(row(page, "arrived-while-scrolled")).to_be_visible(timeout=TIMEOUT)
    assert holder.evaluate("element => element.scrollTop") == 0
    expect(page.get_by_role("button", name="1 new")).to_be_hidden()


def test_selecting_a_row_shows_the_whole_trace(stack, page):
    api, panel = stack()
    post(api, "alice", id="detailed", name="rag-answer", model="gpt-4o", status="error",
         input="What is our refund policy?", output=None, error="RateLimitError: 429 Too Many Requests",
         metadata={"route": "/support"}, latency_ms=42)
    open_dashboard(page, panel)
    row(page, "rag-answer").locator(".tabulator-cell[tabulator-field='name']").click()
    detail = page.locator(".trace-detail[data-trace-id='detailed']")
    expect(detail).to_be_visible(timeout=TIMEOUT)
    expect(detail).to_contain_text("What is our refund policy?")
    expect(detail).to_contain_text("RateLimitError: 429 Too Many Requests")
    expect(detail).to_contain_text("/support")
    expect(page.locator(".trace-holding")).to_contain_text("a row is selected")
    shot(page, "detail")


def test_a_second_click_or_escape_deselects_and_a_selected_row_still_changes(stack, page):
    api, panel = stack()
    post(api, "alice", id="sel", name="pick-me", model="gpt-4o", status="running")
    open_dashboard(page, panel)
    name_cell = row(page, "pick-me").locator(".tabulator-cell[tabulator-field='name']")
    name_cell.click()
    expect(page.locator(".trace-detail[data-trace-id='sel']")).to_be_visible(timeout=TIMEOUT)
    httpx.patch(f"{api.url}/api/traces/sel", json={"status": "success", "latency_ms": 5},
                headers={"Authorization": f"Bearer {api.token('alice')}"})
    expect(row(page, "pick-me").locator(".status-success")).to_be_visible(timeout=TIMEOUT)  # not frozen
    name_cell.click()  # the same row again: deselected
    expect(page.locator(".trace-detail-empty")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".tabulator-row.tabulator-selected")).to_have_count(0)
    name_cell.click()
    expect(page.locator(".trace-detail[data-trace-id='sel']")).to_be_visible(timeout=TIMEOUT)
    page.keyboard.press("Escape")
    expect(page.locator(".trace-detail-empty")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".tabulator-row.tabulator-selected")).to_have_count(0)
    expect(page.locator(".trace-holding")).not_to_contain_text("a row is selected")


def test_without_a_configured_token_the_page_asks_for_one(stack, page):
    api, panel = stack(panel_token=False)
    page.goto(panel.app_url)
    prompt = page.get_by_placeholder("paste a JWT")
    expect(prompt).to_be_visible(timeout=TIMEOUT)
    token = api.token("alice")
    prompt.fill(token)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".trace-status[data-status='connected']")).to_be_visible(timeout=TIMEOUT)
    expect(prompt).to_be_hidden()
    assert token not in page.url and token not in panel.log() and token not in api.log()


# The bottom edge of every drawn canvas (Bokeh draws each chart on more than one), inside shadow roots too.
CANVAS_BOTTOMS = """(() => {
    const found = [];
    const walk = (root) => root.querySelectorAll('*').forEach((e) => {
        if (e.tagName === 'CANVAS' && e.getBoundingClientRect().height > 50) found.push(e.getBoundingClientRect().bottom);
        if (e.shadowRoot) walk(e.shadowRoot);
    });
    walk(document);
    return found;
})()"""


def test_at_1440_by_900_the_charts_are_above_the_fold_and_a_cut_off_error_shows_whole_on_hover(stack, browser):
    api, panel = stack()
    error = "<b>RateLimitError</b>: 429 Too Many Requests; " + "retry after the window resets " * 6
    post(api, "alice", id="long", name="long-error", model="gpt-4o", status="error", error=error, latency_ms=40)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        open_dashboard(page, panel)
        cell = row(page, "long-error").locator(".tabulator-cell[tabulator-field='error'] span")
        expect(cell).to_have_attribute("title", error, timeout=TIMEOUT)  # the whole text, as written
        expect(row(page, "long-error").locator("b")).to_have_count(0)  # shown as text, never as markup
        page.wait_for_function(CANVAS_BOTTOMS + ".length >= 6", timeout=TIMEOUT)  # the five charts
        bottoms = page.evaluate(CANVAS_BOTTOMS)
        # The latency, calls and errors charts whole on the first screen; cost and tokens wrap under.
        first_row = [bottom for bottom in bottoms if bottom < min(bottoms) + 200]
        assert len(first_row) >= 4 and max(first_row) <= 900, bottoms
        shot(page, "fold-1440x900")
    finally:
        context.close()


def test_an_empty_table_says_so_instead_of_a_blank_box(stack, page):
    _api, panel = stack()
    open_dashboard(page, panel)
    expect(page.get_by_text("No traces to show: none yet, or none match the filters")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".trace-showing")).to_have_text("showing 0 of 0")
