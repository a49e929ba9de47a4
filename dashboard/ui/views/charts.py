"""Per-model latency (p50, p95), calls per minute and error rate over time, from the arriving traces.

Each model has one ColumnDataSource; a new point is streamed into it (with rollover) whenever the
feed recomputes its stats. The figures are built once; only a new model adds lines to them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import panel as pn
import param
from bokeh.models import ColumnDataSource, DataRange1d, DatetimeTickFormatter, HoverTool, Legend, LegendItem
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from panel.viewable import Viewer

from ..feed import TraceFeed

MAX_POINTS = 720  # an hour at one point every 5 s


def _figure(title: str, y_label: str):
    # At least two minutes across: with one or two points the axis would otherwise zoom to microseconds.
    plot = figure(title=title, x_axis_type="datetime", x_range=DataRange1d(min_interval=120_000), height=240,
                  sizing_mode="stretch_width", toolbar_location=None, y_axis_label=y_label, min_border_left=50)
    plot.title.text_font_size = "13px"
    plot.xaxis.axis_label = "time (UTC)"
    plot.xaxis.ticker.desired_num_ticks = 4
    plot.xaxis.formatter = DatetimeTickFormatter(seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M",
                                                 hourmin="%H:%M", hours="%H:%M", context=None)
    # An empty line until the first model arrives: a figure with no renderer makes Bokeh log a
    # MISSING_RENDERERS warning for every page opened.
    plot.line(x=[], y=[])
    return plot


class ModelCharts(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.latency = _figure("Latency per model: p50 (solid) and p95 (dashed)", "ms")
        self.calls = _figure("Calls per minute", "calls / min")
        self.errors = _figure("Error rate", "% of calls")
        self.sources: dict[str, ColumnDataSource] = {}
        self.legend = Legend(items=[], location="top_left", click_policy="hide", label_text_font_size="11px")
        self.latency.add_layout(self.legend, "right")  # one legend: the colours mean the same in every chart
        for plot, fields in ((self.latency, "@p50{0,0} ms p50, @p95{0,0} ms p95"), (self.calls, "@calls_per_min{0.0}/min"),
                             (self.errors, "@error_pct{0.0}%")):
            plot.add_tools(HoverTool(tooltips=[("model", "@model"), ("", fields)], formatters={"@time": "datetime"}))
        self.panes = [pn.pane.Bokeh(plot, sizing_mode="stretch_width") for plot in (self.latency, self.calls, self.errors)]
        self.empty = pn.pane.HTML('<div style="color:#6b7280;padding:8px">Charts fill in as calls complete.</div>')
        self.feed.param.watch(self._add_point, "stats_at")

    def _source(self, model: str) -> ColumnDataSource:
        """The model's source; a new model gets its colour, lines and markers in all three charts."""
        source = self.sources.get(model)
        if source is None:
            source = ColumnDataSource({"time": [], "model": [], "p50": [], "p95": [], "calls_per_min": [], "error_pct": []})
            colour = Category10_10[len(self.sources) % len(Category10_10)]
            p50 = self.latency.line("time", "p50", source=source, color=colour, line_width=2)
            p50_dots = self.latency.scatter("time", "p50", source=source, color=colour, size=5)
            p95 = self.latency.line("time", "p95", source=source, color=colour, line_width=1.5, line_dash="dashed")
            self.legend.items.append(LegendItem(label=model, renderers=[p50, p50_dots, p95]))
            for plot, field in ((self.calls, "calls_per_min"), (self.errors, "error_pct")):
                plot.line("time", field, source=source, color=colour, line_width=2)
                plot.scatter("time", field, source=source, color=colour, size=5)
            self.sources[model] = source
        return source

    def _add_point(self, *_: object) -> None:
        if self.feed.stats_at is None or not self.feed.model_stats:
            return
        self.empty.visible = False
        at = datetime.fromtimestamp(self.feed.stats_at, UTC).replace(tzinfo=None)
        for stats in self.feed.model_stats:
            self._source(stats.model).stream({
                "time": [at], "model": [stats.model],
                # NaN (no successful call in the window) leaves a gap; None would be drawn at 0.
                "p50": [stats.p50_ms], "p95": [stats.p95_ms],
                "calls_per_min": [stats.calls_per_min], "error_pct": [stats.error_rate * 100],
            }, rollover=MAX_POINTS)

    def __panel__(self):
        return pn.Column(self.empty, pn.Row(*self.panes, sizing_mode="stretch_width"), sizing_mode="stretch_width")
