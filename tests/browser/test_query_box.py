"""The query box as a person uses it in Chromium: a pandas query filters the rows shown and every
arrival with live staying on, and a query that cannot be used is said in words beside the box."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import shot
from .test_dashboard import TIMEOUT, open_dashboard, post, row


def test_a_query_filters_the_table_live_and_a_bad_one_is_said_beside_the_box(stack, page):
    api, panel = stack()
    post(api, "alice", name="slow-gpt", model="gpt-4o", status="success", latency_ms=2400)
    post(api, "alice", name="fast-gpt", model="gpt-4o", status="success", latency_ms=90)
    post(api, "alice", name="slow-claude", model="claude", status="success", latency_ms=3100)
    open_dashboard(page, panel)
    expect(row(page, "fast-gpt")).to_be_visible(timeout=TIMEOUT)
    box = page.get_by_placeholder("query:", exact=False)
    box.fill('latency_ms > 1000 and model == "gpt-4o"')
    box.press("Enter")
    expect(page.locator(".trace-showing")).to_contain_text("showing 1 of 3 · query latency_ms > 1000", timeout=TIMEOUT)
    expect(row(page, "slow-gpt")).to_be_visible()
    expect(row(page, "fast-gpt")).to_have_count(0)
    expect(row(page, "slow-claude")).to_have_count(0)
    post(api, "alice", name="another-slow-gpt", model="gpt-4o", status="success", latency_ms=1500)
    post(api, "alice", name="another-fast-gpt", model="gpt-4o", status="success", latency_ms=50)
    expect(row(page, "another-slow-gpt")).to_be_visible(timeout=TIMEOUT)  # live, under the query
    expect(page.locator(".trace-status[data-status='connected']")).to_be_visible()
    expect(row(page, "another-fast-gpt")).to_have_count(0)
    box.fill("latency_ms >")
    box.press("Enter")
    expect(page.locator(".trace-query-error")).to_contain_text("does not parse", timeout=TIMEOUT)
    expect(row(page, "another-slow-gpt")).to_be_visible()  # the last good query still applies
    shot(page, "query-box")
    box.fill('__import__("os").system("id")')
    box.press("Enter")
    expect(page.locator(".trace-query-error")).to_contain_text("only a column's own methods", timeout=TIMEOUT)
    box.fill("")
    box.press("Enter")
    expect(page.locator(".trace-showing")).to_have_text("showing 5 of 5", timeout=TIMEOUT)
    expect(page.locator(".trace-query-error")).to_be_hidden()
