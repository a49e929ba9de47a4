"""The whole dashboard for one session (a browser tab, or a notebook cell): a TraceFeed, its views, and
the lifetime of its background tasks.

``app.py`` only calls ``serve()``: callbacks defined in a served script die with NameError when Bokeh
wipes its globals at session end, so everything that must outlive the script lives here.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import panel as pn
import param
from panel.viewable import Viewer

from ..config import Settings
from .feed import TraceFeed
from .views import ErrorBanner, FilterBar, HealthGauge, LiveControls, ModelCharts, Toaster, TokenPrompt, TraceDetail, TraceTable
from .views.table import TABLE_HEIGHT

log = logging.getLogger(__name__)

EXTENSIONS = ("tabulator", "echarts")
# Toasts in the page's own font, at the right, below the controls' row (its Refresh and Retry buttons
# stay clickable): over the gauge, which only shows, clear of the table's rows and the charts.
PAGE_CSS = """
.notyf, .notyf__toast { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif !important; font-size: 14px; }
.notyf { padding-top: 120px !important; }
"""
TOAST_POSITION = "top-right"


# Panel's own copy of Notyf (the toasts' library), shipped in its wheel.
NOTYF_JS = Path(pn.__file__).parent / "dist" / "bundled" / "notificationarea" / "notyf@3" / "notyf.min.js"
# Panel 1.9's notebook CommManager sends back to the kernel every change the kernel made (BokehJS marks
# those sync=false; Bokeh's own client skips them, Panel's does not): each batch of rows came back as a
# stale "edit" of the table, and the messages never stopped. Drop them in the browser.
NO_ECHO_JS = """
(function fix(tries) {
  let manager = null;
  try { manager = window.Bokeh && window.Bokeh.Models.get("panel.models.comm_manager.CommManager"); } catch (e) {}
  if (manager == null) { if (tries > 0) setTimeout(() => fix(tries - 1), 100); return; }
  const proto = manager.prototype;
  if (proto._traces_no_echo) return;
  const original = proto._document_changed;
  proto._document_changed = function (event) {
    if (event.sync === false) return;
    return original.call(this, event);
  };
  proto._traces_no_echo = true;
})(100);
"""


def _panel_comms_on_main_shell() -> None:
    """Handle Panel's comm messages (clicks, page changes, selections) on the kernel's main thread.

    JupyterLab 4.4+ sends comm messages to kernel subshells by default ("Kernel Comms over subshells"),
    and ipykernel 7 runs each subshell in a thread of its own, with its own event loop. Panel's
    callbacks then ran beside the feed's tasks on the main thread: "Stop the live feed" failed about
    one time in two ("got Future attached to a different loop"), and the views were changed from two
    threads at once. ipykernel 7.4 asks each comm where its messages go; Panel's go to the main shell
    (as in ipykernel 6, or with that JupyterLab setting on "Disabled"). Other comms are left alone.
    """
    try:
        from ipykernel.comm.comm import BaseComm
        from pyviz_comms import CommManager
    except ImportError:
        return
    route = getattr(BaseComm, "_reply_subshell_for", None)
    if route is None or getattr(route, "_panel_on_main_shell", False):
        return  # an ipykernel without subshell routing, or done already

    def main_shell_for_panel(comm, data, default):
        if comm.target_name == "hv-extension-comm" or comm.target_name in CommManager._comms:
            return None  # the main shell
        return route(comm, data, default)

    main_shell_for_panel._panel_on_main_shell = True
    BaseComm._reply_subshell_for = main_shell_for_panel


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return hasattr(get_ipython(), "kernel")


def extension() -> None:
    """Load what the dashboard needs into Panel (``panel serve`` or a notebook): call once, first.

    In a notebook nothing may come from the internet: Bokeh's and Panel's JavaScript is put in the
    notebook (``inline``) instead of loaded from a CDN. Inlined, Notyf (the toasts) would stay a local
    variable of Bokeh's loader (its file declares ``var Notyf``) and every toast fail with "Notyf is not
    defined", so it goes first as a plain script, which defines it globally (Panel's loader then skips
    its own copy). Last, the browser stops echoing the kernel's own changes (``NO_ECHO_JS``).
    """
    notebook = _in_notebook()
    if notebook:
        from IPython.display import publish_display_data
        from panel.io.notebook import LOAD_MIME

        _panel_comms_on_main_shell()
        if NOTYF_JS.exists():
            script = NOTYF_JS.read_text(encoding="utf-8") + "\nwindow.Notyf = Notyf;\n"
            publish_display_data({LOAD_MIME: script, "application/javascript": script})
        else:
            log.warning("Panel's Notyf is not at %s: toasts will not show offline", NOTYF_JS)
    pn.extension(*EXTENSIONS, notifications=True, raw_css=[PAGE_CSS], inline=notebook)
    if notebook:
        publish_display_data({LOAD_MIME: NO_ECHO_JS, "application/javascript": NO_ECHO_JS})


class TraceDashboard(Viewer):
    """Everything a user sees, over one feed."""

    feed = param.ClassSelector(class_=TraceFeed)
    narrow = param.Boolean(default=False, doc="For a notebook's width: the gauge and the detail under the table.")

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.table = TraceTable(feed=feed)
        self.banner = ErrorBanner(feed=feed)
        self.controls = LiveControls(feed=feed, on_badge=self.table.show_newest, banner=self.banner)
        self.filters = FilterBar(feed=feed)
        self.token = TokenPrompt(feed=feed)
        self.detail = TraceDetail(feed=feed)
        self.health = HealthGauge(feed=feed)
        self.charts = ModelCharts(feed=feed, stacked=self.narrow)

    def __panel__(self):
        header = pn.pane.HTML('<div style="font-size:20px;font-weight:700">Live LLM traces</div>', margin=(5, 10))
        if self.narrow:  # every column of the table visible; what sat beside it comes under it
            body = [self.table, pn.Row(self.health, pn.Column(self.detail, height=300, sizing_mode="stretch_width"),
                                       sizing_mode="stretch_width")]
        else:
            side = pn.Column(self.health, self.detail, width=460, height=TABLE_HEIGHT)
            body = [pn.Row(pn.Column(self.table, sizing_mode="stretch_width"), side, sizing_mode="stretch_width")]
        return pn.Column(
            pn.Row(header, pn.layout.HSpacer(), self.token, sizing_mode="stretch_width"),
            self.controls, self.filters, *body, self.charts,
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
        try:  # after Panel's own clean-up callbacks, which run in the same pass in no fixed order
            asyncio.get_running_loop().call_soon(forget_views_of, doc)
        except RuntimeError:  # not on an event loop
            forget_views_of(doc)

    pn.state.onload(start)
    pn.state.on_session_destroyed(stop)
    return dashboard
