"""Closed tabs leave nothing behind: no stream open on the API, and in the dashboard server no feed
(with its frame), no view.

The dashboard is served in this process (``pn.serve`` on a thread) so the test can see what the
server still holds after the tabs close; the pages are real Chromium tabs against a real API.
"""

from __future__ import annotations

import gc
import weakref

import httpx
import panel as pn
import pytest
from playwright.sync_api import expect

from ..support import ApiProcess, free_port, poll_until
from .test_dashboard import TIMEOUT


# Served in this process, the app runs under the suite's "warnings are errors" filter, which the other
# browser tests' ``panel serve`` processes do not: Bokeh 3.9 calls pandas' deprecated
# reset_index(inplace=True), and Panel 1.9's own from_param passes the deprecated Widget.name.
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning", "ignore::PendingDeprecationWarning")
def open_streams(api) -> float:
    """The API's own count of open streams, from its metrics."""
    metrics = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {api.token('ops')}"}).text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("traces_open_streams ")))


def test_closed_tabs_leave_no_stream_feed_or_view_behind(tmp_path, browser, monkeypatch):
    from dashboard.ui.session import EXTENSIONS, serve

    api = ApiProcess(tmp_path).start()
    monkeypatch.setenv("TRACES_API_URL", api.url)
    monkeypatch.setenv("TRACES_TOKEN", api.token("alice"))
    feeds: weakref.WeakSet = weakref.WeakSet()
    docs: weakref.WeakSet = weakref.WeakSet()

    def app():
        pn.extension(*EXTENSIONS, notifications=True)
        dashboard = serve()
        feeds.add(dashboard.feed)
        docs.add(pn.state.curdoc)
        return dashboard

    port = free_port()
    server = pn.serve({"app": app}, port=port, address="127.0.0.1", websocket_origin=f"127.0.0.1:{port}",
                      show=False, threaded=True, verbose=False,
                      unused_session_lifetime_milliseconds=3000, check_unused_sessions_milliseconds=500)
    try:
        contexts = [browser.new_context() for _ in range(3)]
        pages = [context.new_page() for context in contexts]
        for page in pages:  # the three tabs load side by side
            page.goto(f"http://127.0.0.1:{port}/app", wait_until="commit")
        for page in pages:
            expect(page.locator(".trace-status[data-status='connected']")).to_be_visible(timeout=TIMEOUT)
        assert len(feeds) == 3
        assert open_streams(api) == 3  # one stream per tab, not per widget
        for context in contexts:
            context.close()

        def forgotten() -> bool:
            gc.collect()
            return len(feeds) == 0

        # The emptied documents themselves may linger a little longer, in the context of a timer
        # still on the event loop; what they held (widgets, frame, feed) is gone.
        poll_until(forgotten, timeout=40, what="the closed tabs' feeds to be freed")
        poll_until(lambda: open_streams(api) == 0, timeout=10, what="the closed tabs' streams to end")
        assert not [ref for ref, view in pn.state._views.items() if view[2] in docs]
    finally:
        server.stop()
        api.stop()
