"""Debian's Chromium as every browser test launches it (never a browser downloaded at test time)."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


def open_event_source(page, token: str) -> None:
    """In ``page`` (on the API's own origin), fetch a ticket with ``token`` and open a browser
    ``EventSource`` on the stream: ``window.subscribed`` once live, each ``trace`` event's raw data in
    ``window.received``."""
    page.evaluate("""async (token) => {
        const response = await fetch('/api/analytics/traces/stream/ticket',
                                     {method: 'POST', headers: {Authorization: 'Bearer ' + token}});
        const {ticket} = await response.json();
        window.received = [];
        const source = new EventSource('/api/analytics/traces/stream?ticket=' + encodeURIComponent(ticket));
        source.addEventListener('subscribed', () => { window.subscribed = true; });
        source.addEventListener('trace', (event) => window.received.push(event.data));
    }""", token)
