"""The whole dashboard for one session (a browser tab, or a notebook cell): a TraceFeed, its views, and
the lifetime of its background tasks.

``app.py`` only calls ``serve()``: callbacks defined in a served script die with NameError when Bokeh
wipes its globals at session end, so everything that must outlive the script lives here.
"""

from __future__ import annotations

import asyncio
import logging

import panel as pn
import param
from panel.viewable import Viewer

from ..config import Settings
from . import notebook
from .feed import TraceFeed
from .views import (
    ErrorBanner,
    ExportButtons,
    FilterBar,
    HealthGauge,
    LiveControls,
    ModelCharts,
    Toaster,
    TokenPrompt,
    TraceDetail,
    TraceTable,
)
from .views.alerts import AlertSettings
from .views.table import TABLE_HEIGHT
from .views.totals import TotalsLine

log = logging.getLogger(__name__)

EXTENSIONS = ("tabulator",)
# Toasts in the page's own font, at the bottom left: over the gauge, which only shows, clear of the
# controls, the table's rows, the detail a user is reading and the charts (at 1440×900).
PAGE_CSS = """
.notyf, .notyf__toast { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif !important; font-size: 14px; }
"""
TOAST_POSITION = "bottom-left"
TABLE_MIN_WIDTH = 860  # every column of the table readable beside the detail
DETAIL_HEIGHT_NARROW = 420  # under the table in a notebook: at most the facts, the error and the start of input and output


def extension() -> None:
    """Load what the dashboard needs into Panel (``panel serve`` or a notebook): call once, first.
    In a notebook, nothing comes from the internet (``notebook.py`` says how)."""
    in_jupyter = notebook.in_notebook()
    if in_jupyter:
        notebook.before_extension()
    pn.extension(*EXTENSIONS, notifications=True, raw_css=[PAGE_CSS], inline=in_jupyter)
    if in_jupyter:
        notebook.after_extension()


class TraceDashboard(Viewer):
    """Everything a user sees, over one feed."""

    feed = param.ClassSelector(class_=TraceFeed)
    narrow = param.Boolean(default=False, doc="For a notebook's width: the detail under the table, the charts stacked.")

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.table = TraceTable(feed=feed)
        self.banner = ErrorBanner(feed=feed)
        self.controls = LiveControls(feed=feed, on_badge=self.table.show_newest, banner=self.banner)
        self.export = ExportButtons(feed=feed)
        self.filters = FilterBar(feed=feed, extra=self.export)
        self.token = TokenPrompt(feed=feed)
        self.detail = TraceDetail(feed=feed, max_height=DETAIL_HEIGHT_NARROW if self.narrow else None)
        self.health = HealthGauge(feed=feed)
        self.charts = ModelCharts(feed=feed, stacked=self.narrow)
        self.alert_settings = AlertSettings(feed=feed, charts=self.charts)  # thresholds, marked on the charts
        self.totals = TotalsLine(feed=feed)

    def __panel__(self):
        header = pn.pane.HTML('<div style="font-size:20px;font-weight:700">Live LLM traces</div>', margin=(5, 10))
        if self.narrow:  # every column of the table visible; the detail comes under it, the charts stacked
            body = [self.table, self.detail]
        else:  # the detail as tall as the table beside it: a selected trace reads without a cramped box
            # Side by side where the table keeps its columns; in a narrower window the detail wraps under it.
            table = pn.Column(self.table, sizing_mode="stretch_width", min_width=TABLE_MIN_WIDTH,
                              styles={"flex": f"1 1 {TABLE_MIN_WIDTH}px"})
            side = pn.Column(self.detail, width=460, height=TABLE_HEIGHT, styles={"flex": "0 0 460px"})
            body = [pn.FlexBox(table, side, flex_wrap="wrap", sizing_mode="stretch_width")]
        # The connection's health opens the charts' row: how fresh what they show is, beside them.
        # Under it, the totals since the page opened: the charts' rows keep the height of the screen.
        lower = pn.Row(pn.Column(self.health, self.totals), pn.Column(self.alert_settings, self.charts,
                                                                      sizing_mode="stretch_width"),
                       sizing_mode="stretch_width")
        return pn.Column(
            pn.Row(header, pn.layout.HSpacer(), self.token, sizing_mode="stretch_width"),
            self.controls, self.filters, *body, lower,
            sizing_mode="stretch_width",
        )

    async def stop(self) -> None:
        """Stop the feed (its stream and tasks); for notebooks, where no session ends to do it."""
        await self.feed.stop()

    @property
    def stop_button(self) -> pn.widgets.Button:
        """A button that stops the feed, for a notebook's last cell (Run All leaves the view live)."""
        button = pn.widgets.Button(name="Stop the live feed", button_type="warning", width=180)

        async def stop(_: object) -> None:
            await self.stop()
            button.name, button.disabled = "Stopped (turn Live on to restart)", True

        button.on_click(stop)
        return button


def make_feed(api_url: str | None = None, token: str | None = None, **params) -> TraceFeed:
    """A feed configured from the environment (TRACES_API_URL, TRACES_TOKEN, …), overridable here."""
    settings = Settings.from_env()
    params.setdefault("max_rows", settings.dashboard_rows)
    params.setdefault("warn_after", settings.health_warn_seconds)
    params.setdefault("alert_p95_ms", settings.alert_p95_ms)
    params.setdefault("alert_error_rate", settings.alert_error_rate)
    params.setdefault("stuck_seconds", settings.stuck_seconds)
    return TraceFeed(token or settings.token, api_url=(api_url or settings.api_url).rstrip("/"), notifier=Toaster(),
                     **params)


def live_view(api_url: str | None = None, token: str | None = None, **params) -> TraceDashboard:
    """The dashboard, inline in a notebook, already following; ``await view.stop()`` ends the feed."""
    feed = make_feed(api_url, token, **params)
    feed.start()
    return TraceDashboard(feed=feed, narrow=True)


def forget_views_of(doc: object) -> int:
    """Drop what ``pn.state`` still holds for a destroyed session's document; how many views.

    Panel 1.9 registers a session's notification area in ``pn.state._views`` twice and removes it
    once, so every closed tab kept its whole document, widgets and feed: about 2 MB a session,
    measured with 80 tabs opened and closed. A private table, so looked up defensively.
    """
    views = getattr(pn.state, "_views", None)
    if not isinstance(views, dict):
        return 0
    stale = [ref for ref, view in list(views.items()) if len(view) > 2 and view[2] is doc]
    for ref in stale:
        views.pop(ref, None)
    return len(stale)


def serve() -> TraceDashboard:
    """Build this session's dashboard, start its feed when the page loads, stop it when the session ends."""
    feed = make_feed()
    dashboard = TraceDashboard(feed=feed)
    doc = pn.state.curdoc
    if pn.state.notifications is not None:
        pn.state.notifications.position = TOAST_POSITION

    async def start() -> None:
        feed.start()

    def stop(_context: object) -> None:
        feed.cancel()
        dashboard.charts.close()
        try:  # after Panel's own clean-up callbacks, which run in the same pass in no fixed order
            asyncio.get_running_loop().call_soon(forget_views_of, doc)
        except RuntimeError:  # not on an event loop
            forget_views_of(doc)

    pn.state.onload(start)
    pn.state.on_session_destroyed(stop)
    return dashboard
