"""The alert thresholds in the page, beside the charts, and the alerts in force shown on the charts:
a dashed line at each threshold, and each alerting model marked (``ModelCharts.mark``). Empty is off."""

from __future__ import annotations

import panel as pn
import param
from bokeh.models import Span
from panel.viewable import Viewer

from ..alerts import ERROR_RATE, LABELS, P95, amount
from ..feed import TraceFeed
from .charts import ModelCharts

LINE = {"dimension": "width", "line_color": "#dc2626", "line_dash": "dashed", "line_width": 1.5}


class AlertSettings(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)
    charts = param.ClassSelector(class_=ModelCharts)

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.p95 = pn.widgets.FloatInput(label="Alert when p95 latency > (ms)", value=feed.alert_p95_ms, start=0,
                                         step=100, placeholder="off", width=200, css_classes=["trace-alert-p95"])
        self.error_rate = pn.widgets.FloatInput(label="… or error rate > (%)", value=feed.alert_error_rate, start=0,
                                                end=100, step=1, placeholder="off", width=170,
                                                css_classes=["trace-alert-error-rate"])
        self.p95.link(feed, value="alert_p95_ms")
        self.error_rate.link(feed, value="alert_error_rate")
        feed.param.watch(self._thresholds_changed, ["alert_p95_ms", "alert_error_rate"])
        self.lines = {P95: Span(location=1.0, visible=False, name="alert-threshold-p95", **LINE),
                      ERROR_RATE: Span(location=0.0, visible=False, name="alert-threshold-error-rate", **LINE)}
        self.charts.latency.add_layout(self.lines[P95])
        self.charts.errors.add_layout(self.lines[ERROR_RATE])
        feed.param.watch(self._show_alerts, "alerts")
        self._thresholds_changed()
        self._show_alerts()

    def _thresholds_changed(self, *_: object) -> None:
        """The widgets and the lines follow the thresholds, however they were set (the page or code)."""
        feed = self.feed
        self.p95.value, self.error_rate.value = feed.alert_p95_ms, feed.alert_error_rate
        for kind, threshold in ((P95, feed.alert_p95_ms), (ERROR_RATE, feed.alert_error_rate)):
            line = self.lines[kind]
            line.visible = threshold is not None and (kind != P95 or threshold > 0)  # a log axis has no 0
            if threshold is not None:
                line.location = threshold
        pn.io.push_notebook(*self.charts.panes)

    def _show_alerts(self, *_: object) -> None:
        """Each alerting model marked on the charts with why; the others unmarked."""
        reasons: dict[str, list[str]] = {}
        for alert in self.feed.alerts:
            reasons.setdefault(alert.model, []).append(
                f"{LABELS[alert.kind]} {amount(alert.kind, alert.value)} > {amount(alert.kind, alert.threshold)}")
        for model in set(self.charts.marks) - set(reasons):
            self.charts.unmark(model)
        for model, why in reasons.items():
            if self.charts.marks.get(model) != "; ".join(why):
                self.charts.mark(model, "; ".join(why))

    def __panel__(self):
        return pn.Row(self.p95, self.error_rate, sizing_mode="stretch_width")
