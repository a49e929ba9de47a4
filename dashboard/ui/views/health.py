"""The connection-health gauge: seconds since the last ping or event, green while fresh, amber near and
red past the warning, with the same number in words beside it.

Drawn here as a small SVG in an HTML pane rather than with ECharts: the ECharts bundle (and echarts-gl,
which Panel loads with it) was a third of the script a browser evaluates to open the page, for one dial.
"""

from __future__ import annotations

import html
import math

import panel as pn
import param
from panel.viewable import Viewer

from ...client import ConnectionStatus
from ..feed import TraceFeed

GAUGE_COLOURS = ((0.5, "#16a34a"), (2 / 3, "#d97706"), (1.0, "#dc2626"))  # (up to this share of the dial, colour)
QUIET_GAUGE_COLOURS = ((1.0, "#d1d5db"),)  # no connection: no colour that says fresh or stale
SIZE = 190
SWEEP = 240  # degrees of dial, open at the bottom
START = 90 + SWEEP / 2  # the dial's zero, in degrees counter-clockwise from 3 o'clock
RADIUS = 80
CENTRE = (SIZE / 2, 100)
SPLITS = 3  # numbers at 0, a third, two thirds and the end


def _point(share: float, radius: float) -> tuple[float, float]:
    angle = math.radians(START - SWEEP * share)
    return CENTRE[0] + radius * math.cos(angle), CENTRE[1] - radius * math.sin(angle)


def _arc(start: float, end: float, colour: str) -> str:
    (x1, y1), (x2, y2) = _point(start, RADIUS), _point(end, RADIUS)
    large = 1 if SWEEP * (end - start) > 180 else 0
    return (f'<path d="M {x1:.1f} {y1:.1f} A {RADIUS} {RADIUS} 0 {large} 1 {x2:.1f} {y2:.1f}" fill="none" '
            f'stroke="{colour}" stroke-width="10"/>')


def gauge_svg(value: float | None, top: float, title: str, colours=GAUGE_COLOURS) -> str:
    """The dial as SVG: coloured bands, numbers, a needle at ``value`` (None: no needle, a dash)."""
    parts, start = [], 0.0
    for end, colour in colours:
        parts.append(_arc(start, end, colour))
        start = end
    for k in range(SPLITS + 1):
        x, y = _point(k / SPLITS, RADIUS - 22)
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" font-size="11" fill="#6b7280">'
                     f'{top * k / SPLITS:g}</text>')
    if value is not None:
        x, y = _point(min(max(value / top, 0.0), 1.0), RADIUS * 0.58)
        parts.append(f'<line x1="{CENTRE[0]}" y1="{CENTRE[1]}" x2="{x:.1f}" y2="{y:.1f}" stroke="#374151" '
                     f'stroke-width="4" stroke-linecap="round"/>')
    parts.append(f'<circle cx="{CENTRE[0]}" cy="{CENTRE[1]}" r="7" fill="#ffffff" stroke="#374151" stroke-width="3"/>')
    words = "—" if value is None else f"{value:g} s"
    parts.append(f'<text x="{CENTRE[0]}" y="{CENTRE[1] + 0.58 * RADIUS:.1f}" text-anchor="middle" font-size="22" '
                 f'fill="#111827">{words}</text>')
    parts.append(f'<text x="{CENTRE[0]}" y="{CENTRE[1] + 0.88 * RADIUS:.1f}" text-anchor="middle" font-size="11" '
                 f'fill="#4b5563">{html.escape(title)}</text>')
    return (f'<svg class="trace-gauge" role="img" aria-label="{html.escape(title)}: {words}" width="{SIZE}" '
            f'height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}" font-family="sans-serif">{"".join(parts)}</svg>')


class HealthGauge(Viewer):
    """Seconds since the last ping or event, on a dial and in words."""

    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.top = int(self.feed.warn_after * 1.5)  # the warning sits at two thirds of the dial
        self.gauge = pn.pane.HTML(width=SIZE, height=SIZE, margin=0)
        self.caption = pn.pane.HTML(margin=(0, 10), styles={"font-size": "14px"}, width=210)
        self.feed.param.watch(self._render, ["heartbeat_age", "health_warning", "connection"])
        self._render()

    def _render(self, *_: object) -> None:
        feed = self.feed
        age = None if feed.heartbeat_age is None else round(feed.heartbeat_age)  # one number, dial and words
        self.gauge.object = gauge_svg(None if age is None else min(age, self.top), self.top, "since last ping",
                                      GAUGE_COLOURS if age is not None else QUIET_GAUGE_COLOURS)
        if age is None:
            quiet = feed.connection in (ConnectionStatus.off, ConnectionStatus.error)
            words = "no connection" if quiet else "waiting for the first ping"
            line = f'<span class="trace-health" data-warning="false">{words}</span>'
        elif feed.health_warning:
            line = (f'<span class="trace-health" data-warning="true" style="color:#dc2626;font-weight:600">'
                    f'⚠ no ping or event for {age} s</span>')
        elif feed.connection != ConnectionStatus.connected:  # reconnecting: not healthy, though not yet a minute of silence
            line = (f'<span class="trace-health" data-warning="false" style="color:#b45309;font-weight:600">'
                    f'{feed.connection.value}: last sign of life {age} s ago</span>')
        else:
            line = f'<span class="trace-health" data-warning="false">healthy: last sign of life {age} s ago</span>'
        self.caption.object = (f'<div style="font-weight:600;color:#374151;margin-bottom:4px">Connection health</div>{line}'
                               f'<div style="color:#6b7280;font-size:12px;margin-top:4px">'
                               f'warns after {feed.warn_after:g} s without a ping or event</div>')

    def __panel__(self):
        return pn.Column(self.gauge, self.caption, width=230)
