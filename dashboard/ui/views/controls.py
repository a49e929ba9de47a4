"""The strip above the table: live toggle with its "N new" badge, the status light and words, Refresh
with its time, filters, the error banner with Retry, and the token prompt (the health gauge is health.py)."""

from __future__ import annotations

import html
import time

import panel as pn
import param
from panel.viewable import Viewer

from ...client import ConnectionStatus
from ..feed import TraceFeed
from ..feed_params import STATUS_CHOICES
from ..wording import refreshed_template
from .style import CONNECTION_COLOURS
from .ticking import TickingHTML

TOGGLE_TYPES = {ConnectionStatus.connected: "success", ConnectionStatus.error: "danger"}


class LiveControls(Viewer):
    """Live toggle + badge, status light in words, how many calls are stuck, Refresh and when it last happened."""

    feed = param.ClassSelector(class_=TraceFeed)
    on_badge = param.Callable(default=None, doc="What clicking the badge does (default: feed.view_new).")
    banner = param.Parameter(default=None, doc="Shown in the row, after the status (the error banner).")

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.toggle = pn.widgets.Toggle.from_param(feed.param.live, name="Live", button_type="success",
                                                   width=90, margin=(5, 0, 5, 5))
        self.badge = pn.widgets.Button(name="0 new", button_type="primary", visible=False, width=80,
                                       margin=(5, 5, 5, 0), description="Show the new traces and reset the count")
        self.badge.on_click(lambda _: (self.on_badge or feed.view_new)())
        self.connection = pn.pane.HTML(margin=(5, 10), min_width=260)
        self.refresh = pn.widgets.Button(name="↻ Refresh", button_type="default", width=100,
                                         description="Reload the traces, then keep streaming")
        self.refresh.on_click(lambda _: feed.refresh())
        self.refreshed = TickingHTML(margin=(5, 10), styles={"color": "#4b5563"})  # its seconds count in the page
        self.holding = pn.pane.HTML(margin=(5, 10), styles={"color": "#92400e"})
        self.reset = pn.pane.HTML(margin=(5, 10), styles={"color": "#92400e"}, visible=False, max_width=520)
        self.stuck = pn.pane.HTML(margin=(5, 10), styles={"color": "#b45309", "font-weight": "600"}, visible=False)
        feed.param.watch(self._render, ["new_count", "live", "connection", "connection_text", "holding_reason",
                                        "reset_text", "stuck_count"])
        feed.param.watch(self._render_refreshed, "last_refresh_at")
        self._render()
        self._render_refreshed()

    def _render(self, *_: object) -> None:
        feed = self.feed
        self.toggle.name = "● Live" if feed.live else "❚❚ Paused"
        # One state, said once: the toggle is green only while live data really flows.
        self.toggle.button_type = TOGGLE_TYPES.get(feed.connection, "warning") if feed.live else "light"
        self.badge.name = f"{feed.new_count} new"
        self.badge.visible = feed.new_count > 0
        colour = CONNECTION_COLOURS[feed.connection]
        state = ConnectionStatus(feed.connection).value
        self.connection.object = (
            f'<span class="trace-status" data-status="{state}" style="display:inline-flex;align-items:center;'
            f'gap:6px;font-size:14px"><span style="width:11px;height:11px;border-radius:50%;background:{colour};'
            f'display:inline-block"></span>{html.escape(feed.connection_text)}</span>'
        )
        self.reset.visible = bool(feed.reset_text)
        self.reset.object = f'<span class="trace-reset">{html.escape(feed.reset_text)}</span>'
        calls = "call has" if feed.stuck_count == 1 else "calls have"
        self.stuck.visible = feed.stuck_count > 0
        self.stuck.object = (f'<span class="trace-stuck">⚠ {feed.stuck_count} {calls} run over {feed.stuck_seconds:g} s'
                             '</span>' if feed.stuck_count else "")
        self.holding.visible = bool(feed.holding_reason)
        self.holding.object = (f'<span class="trace-holding">new rows wait while {html.escape(feed.holding_reason)}'
                               '</span>' if feed.holding_reason else "")

    def _render_refreshed(self, *_: object) -> None:
        """Sent when a snapshot loads; the page counts the seconds since."""
        at = self.feed.last_refresh_at
        words, age = (self.feed.refresh_text, None) if at is None else (refreshed_template(at), time.time() - at.timestamp())
        self.refreshed.show(f'<span class="trace-refreshed">{html.escape(words)}</span>', age)

    def __panel__(self):
        middle = [self.banner] if self.banner is not None else []
        return pn.Row(self.toggle, self.badge, self.connection, self.holding, self.stuck, *middle, pn.layout.HSpacer(),
                      self.reset, self.refreshed, self.refresh, sizing_mode="stretch_width", styles={"align-items": "center"})


class FilterBar(Viewer):
    """Model, status and text filters (live mode stays on), and what the table shows under them."""

    feed = param.ClassSelector(class_=TraceFeed)
    extra = param.Parameter(default=None, doc="Shown after 'showing N of M' (the export buttons).")

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.model = pn.widgets.Select(name="Model", options=self._model_options(), value=feed.model, width=200)
        self.trace_status = pn.widgets.Select(name="Status", options={"all": "", **{s: s for s in STATUS_CHOICES if s}},
                                              value=feed.status_filter, width=140)
        # Filters as you type (value_input), not only on Enter; clearing it brings every row back.
        self.text = pn.widgets.TextInput(name="Search (as you type)", placeholder="name, model, error, input, output…",
                                         value=feed.text, width=300)
        # A pandas query, applied on Enter: a half-typed expression is not worth an error on every key.
        self.query = pn.widgets.TextInput(name="Query (pandas, on Enter)", value=feed.query, width=380,
                                          placeholder='query: latency_ms > 1000 and model == "gpt-4o"')
        self.query_error = pn.pane.HTML(margin=(0, 10), styles={"color": "#b91c1c", "font-size": "13px"},
                                        max_width=380, visible=False)
        self.showing = pn.pane.HTML(margin=(28, 10, 5, 10), styles={"color": "#4b5563"})
        self.query.param.watch(lambda e: setattr(feed, "query", (e.new or "").strip()), "value")
        feed.param.watch(self._render_query_error, "query_error")
        self.model.param.watch(lambda e: setattr(feed, "model", e.new), "value")
        self.trace_status.param.watch(lambda e: setattr(feed, "status_filter", e.new), "value")
        self.text.param.watch(lambda e: setattr(feed, "text", (e.new or "").strip()), "value_input")
        feed.param.watch(lambda _: setattr(self.model, "options", self._model_options()), "models")
        feed.param.watch(self._render_showing, "showing_text")
        self._render_showing()

    def _model_options(self) -> dict[str, str]:
        models = sorted(set(self.feed.models) | ({self.feed.model} - {""}))
        return {"all models": "", **{model: model for model in models}}

    def _render_showing(self, *_: object) -> None:
        self.showing.object = f'<span class="trace-showing">{html.escape(self.feed.showing_text)}</span>'

    def _render_query_error(self, *_: object) -> None:
        self.query_error.visible = bool(self.feed.query_error)
        self.query_error.object = f'<span class="trace-query-error">{html.escape(self.feed.query_error)}</span>'

    def __panel__(self):
        extra = [self.extra] if self.extra is not None else []
        query = pn.Column(self.query, self.query_error, margin=0)
        return pn.FlexBox(self.model, self.trace_status, self.text, query, self.showing, *extra,
                          flex_wrap="wrap", align_items="flex-start", sizing_mode="stretch_width")


class ErrorBanner(Viewer):
    """What went wrong, in words, with a Retry button that reconnects now instead of after the backoff.

    It sits in the controls' row, so showing it never pushes the page down; the state itself
    ("reconnecting (attempt 3, next in 8 s)") is said once, by the status beside it.
    """

    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.message = pn.pane.HTML(margin=(5, 5), max_width=620, sizing_mode="stretch_width")
        self.retry = pn.widgets.Button(name="Retry now", button_type="danger", width=110, margin=(5, 5))
        self.retry.on_click(lambda _: self.feed.retry_now())
        self.layout = pn.Row(self.message, self.retry, visible=False, sizing_mode="stretch_width",
                             styles={"align-items": "center"})
        self.feed.param.watch(self._render, ["error"])
        self._render()

    def _render(self, *_: object) -> None:
        error = self.feed.error
        self.layout.visible = bool(error)
        self.message.object = (f'<div class="trace-error" title="{html.escape(error)}" style="color:#991b1b;'
                               'background:#fef2f2;border:1px solid #fecaca;border-radius:6px;padding:6px 10px;'
                               'white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-weight:600">'
                               f'{html.escape(error)}</div>') if error else ""

    def __panel__(self):
        return self.layout


class TokenPrompt(Viewer):
    """Asks for a token when TRACES_TOKEN is not set; it stays in this session only."""

    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.token = pn.widgets.PasswordInput(name="API token", placeholder="paste a JWT (python -m dashboard token --user ID)",
                                              width=420)
        self.connect = pn.widgets.Button(name="Connect", button_type="primary", width=100, margin=(24, 5, 5, 5))
        self.connect.on_click(self._use)
        self.layout = pn.Row(self.token, self.connect, visible=not self.feed.token)

    def _use(self, *_: object) -> None:
        if self.token.value.strip():
            self.feed.set_token(self.token.value)
            self.token.value = ""
            self.layout.visible = False

    def __panel__(self):
        return self.layout
