"""Per-model latency (p50, p95), calls, errors, cost and tokens per minute over time, from the traces shown.

Each model has one ColumnDataSource; a new point is streamed into it (with rollover) whenever the
feed recomputes its stats, which it does only while connected. After a reload or a change of filters
the sources start over from the feed's ``stats_history`` (the loaded traces' past), so a chart never
mixes what two filters showed, and never ramps up from nothing. The figures are built once; only a
new model adds lines to them. Latency is on a log scale: one 10 s call must not flatten every other line.

The figures join the page a moment after the batch that brings their first points, with those points
and lines already in them: drawing five figures is most of what a browser does to open the page, so the
table and the connection state come first, and lines added to figures already drawn (Bokeh lays a
figure out again for each) are avoided.
"""

from __future__ import annotations

import asyncio
import html
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

import panel as pn
import param
from bokeh.core.properties import value as literal
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    DatetimeTickFormatter,
    HoverTool,
    Legend,
    LegendItem,
    Line,
    LogTicker,
    NumeralTickFormatter,
    Range1d,
    Scatter,
    Span,
)
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from panel.viewable import Viewer

from ..feed import TraceFeed

MAX_POINTS = 720  # an hour at one point every 5 s
CHART_HEIGHT = 220
CHART_MIN_WIDTH = 360  # the plot and its legend side by side, still readable
LATENCY_RANGE = (100.0, 2000.0)  # ms, until there is data
COLUMNS = ("time", "model", "p50", "p95", "calls_per_min", "error_pct", "cost_per_min", "tokens_per_min")
MARK = "⚠ "  # before a marked model's name in every legend
SHOW_AFTER_S = 0.3  # served: the figures join the page this long after their first points (a batch or so later)


def _empty() -> dict[str, list]:
    return {column: [] for column in COLUMNS}  # new lists each time: Bokeh streams into them in place


def _figure(title: str, y_label: str, x_range: DataRange1d, y_axis_type: str = "linear"):
    # A log axis gets a range of its own, set from the data: Bokeh draws no axis at all when every
    # value is NaN (a model whose calls all failed), and a log axis cannot start at 0.
    y_range = Range1d(*LATENCY_RANGE) if y_axis_type == "log" else DataRange1d()
    # No tools but the hover added later: with the toolbar hidden a drag would pan a chart with no way back.
    plot = figure(title=title, x_axis_type="datetime", x_range=x_range, height=CHART_HEIGHT,
                  sizing_mode="stretch_width", min_width=CHART_MIN_WIDTH, styles={"flex": f"1 1 {CHART_MIN_WIDTH}px"},
                  tools="", toolbar_location=None, y_axis_label=y_label, min_border_left=50,
                  y_axis_type=y_axis_type, y_range=y_range)
    plot.title.text_font_size = "13px"
    if y_axis_type == "log":  # 100, 200, 500, 1,000, 2,000 ms: round numbers a person reads at a glance
        plot.yaxis.ticker = LogTicker(mantissas=[1, 2, 5], desired_num_ticks=4)
        plot.yaxis.formatter = NumeralTickFormatter(format="0,0")
    plot.xaxis.axis_label = "time (UTC)"
    plot.xaxis.ticker.desired_num_ticks = 4
    plot.xaxis.formatter = DatetimeTickFormatter(seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M",
                                                 hourmin="%H:%M", hours="%H:%M", context=None)
    # An empty line until the first model arrives: a figure with no renderer makes Bokeh log a
    # MISSING_RENDERERS warning for every page opened.
    plot.add_glyph(ColumnDataSource({"x": [], "y": []}), Line(x="x", y="y"))
    return plot


def _lines(plot, source: ColumnDataSource, field: str, colour: str, width: float = 2, dash: str = "solid",
           dots: bool = True) -> list:
    """A model's line (and its points) in one chart. Glyphs added directly: ``figure.line`` builds
    several more models per line (selection, hover and muted copies), a cost paid for every page opened."""
    renderers = [plot.add_glyph(source, Line(x="time", y=field, line_color=colour, line_width=width, line_dash=dash))]
    if dots:
        renderers.append(plot.add_glyph(source, Scatter(x="time", y=field, fill_color=colour, line_color=colour, size=5)))
    return renderers


def _point(at: datetime, stats) -> dict[str, list]:
    return {
        "time": [at], "model": [stats.model],
        # NaN (no successful call in the window) leaves a gap; None would be drawn at 0.
        "p50": [stats.p50_ms], "p95": [stats.p95_ms],
        "calls_per_min": [stats.calls_per_min], "error_pct": [stats.error_rate * 100],
        "cost_per_min": [stats.cost_per_min], "tokens_per_min": [stats.tokens_per_min],
    }


class ModelCharts(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)
    stacked = param.Boolean(default=False, doc="One chart under another (a notebook's width), not three across.")
    marks = param.Dict(default={}, doc="Model -> why it is marked (an alert in force): '⚠' before its name in "
                                       "every legend, the reason under the charts. Set with ``mark``/``unmark``.")

    def __init__(self, **params):
        super().__init__(**params)
        # One time axis for the three: the same moment sits at the same place in each, and a chart
        # whose values are all gaps still has its axis. At least two minutes across: with one or two
        # points the axis would otherwise zoom to microseconds.
        time_range = DataRange1d(min_interval=120_000)
        self.latency = _figure("Latency per model: p50 (solid) and p95 (dashed)", "ms (log scale)", time_range, "log")
        self.calls = _figure("Calls per minute", "calls / min", time_range)
        self.errors = _figure("Error rate", "% of calls", time_range)
        self.cost = _figure("Cost per minute", "USD / min", time_range)
        self.tokens = _figure("Tokens per minute", "tokens / min", time_range)
        self.cost.yaxis.formatter = NumeralTickFormatter(format="$0.00[00]")
        self.tokens.yaxis.formatter = NumeralTickFormatter(format="0.[0]a")  # 1.5k, 2m: short beside the axis
        # From 0 up, never to -$1.00 when nothing was spent; at least a cent and 100 tokens tall.
        self.cost.y_range.update(start=0, min_interval=0.01)
        self.tokens.y_range.update(start=0, min_interval=100)
        self.figures = (self.latency, self.calls, self.errors, self.cost, self.tokens)
        self.items: dict[str, list[LegendItem]] = {}  # each model's legend entries, to mark them
        self.sources: dict[str, ColumnDataSource] = {}
        self.legends = {plot: Legend(items=[], location="top_left", click_policy="hide", label_text_font_size="11px")
                        for plot in self.figures}
        for plot, legend in self.legends.items():  # each chart says which colour is which model
            plot.add_layout(legend, "right")
        self._last_at: datetime | None = None
        for plot, fields in ((self.latency, "@p50{0,0} ms p50, @p95{0,0} ms p95"), (self.calls, "@calls_per_min{0.0}/min"),
                             (self.errors, "@error_pct{0.0}%"), (self.cost, "$@cost_per_min{0,0.0000}/min"),
                             (self.tokens, "@tokens_per_min{0,0} tokens/min")):
            plot.add_tools(HoverTool(tooltips=[("model", "@model"), ("", fields)], formatters={"@time": "datetime"}))
        self.panes = [pn.pane.Bokeh(plot, sizing_mode="stretch_width") for plot in self.figures]
        self.marked = pn.pane.HTML("", visible=False, styles={"color": "#b91c1c"}, css_classes=["trace-chart-marks"])
        self.empty = pn.pane.HTML('<div style="color:#6b7280;padding:8px">Charts fill in as calls complete.</div>')
        self.holder = pn.Column(self.empty, sizing_mode="stretch_width")  # the note, then the figures
        self._shown = False
        self._show_later: asyncio.TimerHandle | None = None
        self.feed.param.watch(self._add_point, "stats_at")
        self.feed.param.watch(self._start_over, "stats_history")
        self.feed.param.watch(self._mark_resets, "reset_times")
        self._resets: dict[float, list[Span]] = {}

    def _source(self, model: str) -> ColumnDataSource:
        """The model's source; a new model gets its colour, lines and markers in all three charts."""
        source = self.sources.get(model)
        if source is None:
            source = ColumnDataSource(_empty())
            colour = Category10_10[len(self.sources) % len(Category10_10)]
            latency = (_lines(self.latency, source, "p50", colour)
                       + _lines(self.latency, source, "p95", colour, width=1.5, dash="dashed", dots=False))
            self.legends[self.latency].items.append(LegendItem(label=model, renderers=latency))
            for plot, field in ((self.calls, "calls_per_min"), (self.errors, "error_pct"), (self.cost, "cost_per_min"),
                                (self.tokens, "tokens_per_min")):
                self.legends[plot].items.append(LegendItem(label=model, renderers=_lines(plot, source, field, colour)))
            self.items[model] = [legend.items[-1] for legend in self.legends.values()]  # this model's, just added
            self._label(model)
            self.sources[model] = source
        return source

    @contextmanager
    def _frozen(self, adding: bool):
        """Add lines without Bokeh walking the whole page's models after each one: a new renderer in a
        live document recomputes its model graph (measured: seconds per page opened, most of its CPU).
        Only when ``adding``: unfreezing walks them once, which a new point alone does not need."""
        with ExitStack() as stack:
            documents = {plot.document for plot in self.figures if plot.document is not None} if adding else set()
            for document in documents:
                stack.enter_context(document.models.freeze())
            yield

    def _start_over(self, *_: object) -> None:
        """New filters or a reload: every line starts again from the loaded traces' past, each source
        replaced whole in one assignment. (Never ``stream`` into a source created in the same held
        batch: the browser gets the new source with its data and then the streamed points again,
        drawing lines back in time, as streaming the past did here, in Chromium.)"""
        columns: dict[str, dict[str, list]] = {model: _empty() for model in self.sources}
        self._last_at = None
        for epoch, stats in self.feed.stats_history:
            at = datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
            self._last_at = at
            for model in stats:
                for name, value in _point(at, model).items():
                    columns.setdefault(model.model, _empty())[name].extend(value)
        with self._frozen(adding=not columns.keys() <= self.sources.keys()):
            for model, data in columns.items():
                self._source(model).data = {name: values[-MAX_POINTS:] for name, values in data.items()}
        if self.feed.stats_history:
            self._show_soon()
        self._fit_latency()
        self._send()

    def _add_point(self, *_: object) -> None:
        if self.feed.stats_at is None or not self.feed.model_stats:
            return
        at = datetime.fromtimestamp(self.feed.stats_at, UTC).replace(tzinfo=None)
        if self._last_at is not None and at <= self._last_at:
            return
        self._last_at = at
        self._show_soon()
        with self._frozen(adding=any(model.model not in self.sources for model in self.feed.model_stats)):
            for model in self.feed.model_stats:
                if model.model in self.sources:
                    self.sources[model.model].stream(_point(at, model), rollover=MAX_POINTS)
                else:  # a source born in this batch is sent whole with it: streaming into it too would repeat the point
                    self._source(model.model).data = _point(at, model)
        self._fit_latency()
        self._send()

    def _mark_resets(self, *_: object) -> None:
        """A dotted amber line in every chart where the stream was reset and the table reloaded: what is
        drawn before it and after it came from two loads."""
        with self._frozen(adding=not set(self.feed.reset_times) <= self._resets.keys()):
            for at in self.feed.reset_times:
                if at not in self._resets:
                    self._resets[at] = [Span(location=at * 1000, dimension="height", line_color="#b45309",
                                             line_dash="dotted", line_width=2) for _ in self.figures]
                    for plot, span in zip(self.figures, self._resets[at], strict=True):
                        plot.add_layout(span)
        self._send()

    def _send(self) -> None:
        """Send the charts' changes now. In a notebook, changes made to Bokeh models directly wait for
        the next push of some widget, and Panel drops whatever waits when any message comes from the
        browser (a click, a range update): new lines never reached the page, and later points named
        sources the page did not know. Outside a notebook this does nothing."""
        pn.io.push_notebook(*self.panes)

    def _fit_latency(self) -> None:
        """The latency axis spans the latencies drawn, with some room (a log axis needs its range set)."""
        values = [v for source in self.sources.values() for name in ("p50", "p95") for v in source.data[name]
                  if v == v and v > 0]  # not NaN
        low, high = (min(values), max(values)) if values else LATENCY_RANGE
        self.latency.y_range.update(start=low / 1.5, end=high * 1.5)

    def _show_soon(self) -> None:
        """Put the figures in the page: served, a moment from now, in a message of their own; elsewhere
        (a notebook, a test) at once."""
        if self._shown or self._show_later is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or pn.state.curdoc is None:
            self._show()
        else:  # the handle is cancelled by ``close`` if the session ends first
            self._show_later = loop.call_later(SHOW_AFTER_S, self._show_held)

    def _show_held(self) -> None:
        self._show_later = None
        with pn.io.hold():
            self._show()

    def _show(self) -> None:
        self._shown = True
        self.empty.visible = False
        if self.stacked:
            charts = pn.Column(*self.panes, sizing_mode="stretch_width")
        else:  # three across where they fit, else as many as fit per line: never squeezed unreadable
            charts = pn.FlexBox(*self.panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self.holder.objects = [charts]

    def close(self) -> None:
        """The session ended: the figures will not be shown."""
        if self._show_later is not None:
            self._show_later.cancel()
            self._show_later = None

    def __panel__(self):
        return pn.Column(self.holder, self.marked, sizing_mode="stretch_width")

    def mark(self, model: str, reason: str) -> None:
        """Mark a model's lines (its alert fired), e.g. ``mark("gpt-4o", "p95 2,400 ms, above 2,000 ms")``."""
        self.marks = {**self.marks, model: reason}

    def unmark(self, model: str) -> None:
        """The model's alert recovered: its name as before."""
        self.marks = {name: why for name, why in self.marks.items() if name != model}

    @param.depends("marks", watch=True)
    def _show_marks(self) -> None:
        for model in self.items:
            self._label(model)
        self.marked.object = " · ".join(f"{MARK}{html.escape(model)}: {html.escape(why)}"
                                        for model, why in sorted(self.marks.items()))
        self.marked.visible = bool(self.marks)
        self._send()

    def _label(self, model: str) -> None:
        for item in self.items[model]:
            # literal(): a plain string set after construction is sent as a field name, and the entry goes blank.
            item.label = literal(MARK + model if model in self.marks else model)
