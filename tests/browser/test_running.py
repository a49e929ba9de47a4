"""A running call as a person sees it in Chromium: its latency cell ticks "N s so far" up until the call
ends, then shows the real latency; a call running past TRACES_STUCK_SECONDS wears an amber "stuck" pill."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import expect

from .conftest import shot
from .test_dashboard import TIMEOUT, open_dashboard, post, row


def seconds(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+) m )?(\d+) s so far", text.strip())
    assert match, f"not an elapsed time: {text!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2))


def test_a_running_call_ticks_until_it_ends_and_a_long_one_is_marked_stuck(stack, page):
    api, panel = stack(panel_env={"TRACES_STUCK_SECONDS": "60"})
    now = datetime.now(UTC)
    post(api, "alice", id="done", name="finished-call", model="gpt-4o", status="success", latency_ms=420)
    post(api, "alice", id="slow", name="hung-call", model="gpt-4o", status="running",
         started_at=(now - timedelta(seconds=95)).isoformat())
    post(api, "alice", id="live", name="live-call", model="gpt-4o", status="running", started_at=now.isoformat())
    open_dashboard(page, panel)
    live = row(page, "live-call").locator(".running-elapsed")
    expect(live).to_have_text(re.compile(r"^\d+ s so far$"), timeout=TIMEOUT)
    first = seconds(live.inner_text())
    expect(live).not_to_have_text(live.inner_text(), timeout=5_000)  # it moves by itself, once a second
    second = seconds(live.inner_text())
    assert second > first
    hung = row(page, "hung-call")
    expect(hung.locator(".status-stuck")).to_have_text("⚠ stuck")
    expect(hung.locator(".running-elapsed.stuck")).to_have_text(re.compile(r"^1 m \d\d s so far$"))
    expect(page.locator(".trace-stuck")).to_have_text("⚠ 1 call has run over 60 s")  # said above the table too
    expect(row(page, "finished-call")).to_contain_text("420")
    expect(row(page, "finished-call").locator(".running-elapsed")).to_have_count(0)
    shot(page, "running")
    httpx.patch(f"{api.url}/api/traces/live", json={"status": "success", "latency_ms": 2345},
                headers={"Authorization": f"Bearer {api.token('alice')}"})
    done = row(page, "live-call")
    expect(done.locator(".status-success")).to_be_visible(timeout=TIMEOUT)
    expect(done).to_contain_text("2,345")
    expect(done.locator(".running-elapsed")).to_have_count(0)  # the real latency, no clock
    expect(hung.locator(".status-stuck")).to_be_visible()  # the other call still runs
