"""The connection-health gauge: seconds since the last ping or event, green while fresh, amber near and
red past the warning, with the same number in words beside it.

Drawn as a small SVG rather than with ECharts: the ECharts bundle (and echarts-gl, which Panel loads
with it) was a third of the script a browser evaluates to open the page, for one dial. The seconds are
counted in the browser (``ticking.py``).
"""

from __future__ import annotations

import html
import math

import param
from panel.viewable import Viewer

from ...client import ConnectionStatus
from ..feed import TraceFeed
from .ticking import TickingHTML

GAUGE_COLOURS = ((0.5, "#16a34a"), (2 / 3, "#d97706"), (1.0, "#dc2626"))  # (up to this share of the dial, colour)
QUIET_GAUGE_COLOURS = ((1.0, "#d1d5db"),)  # no connection: no colour that says fresh or stale
SIZE = 190
SWEEP = 240  # degrees of dial, open at the bottom
START = 90 + SWEEP / 2  # the dial's zero, in degrees counter-clockwise from 3 o'clock
RADIUS = 80
CENTRE = (SIZE / 2, 100)
SPLITS = 3  # numbers at 0, a third, two thirds and the end
RESEND_DRIFT_S = 1.0  # new activity this much later than the one the page counts from: send again


def _point(share: float, radius: float) -> tuple[float, float]:
    angle = math.radians(START - SWEEP * share)
    return CENTRE[0] + radius * math.cos(angle), CENTRE[1] - radius * math.sin(angle)


def _arc(start: float, end: float, colour: str) -> str:
    (x1, y1), (x2, y2) = _point(start, RADIUS), _point(end, RADIUS)
    large = 1 if SWEEP * (end - start) > 180 else 0
    return (f'<path d="M {x1:.1f} {y1:.1f} A {RADIUS} {RADIUS} 0 {large} 1 {x2:.1f} {y2:.1f}" fill="none" '
            f'stroke="{colour}" stroke-width="10"/>')


def dial_template(top: float, title: str, live: bool) -> str:
    """The dial as SVG for ``TickingHTML``: coloured bands and numbers; when ``live``, a needle turned by
    ``{deg}`` and the seconds ``{s}`` under it, else no needle and a dash."""
    parts, start = [], 0.0
    for end, colour in GAUGE_COLOURS if live else QUIET_GAUGE_COLOURS:
        parts.append(_arc(start, end, colour))
        start = end
    for k in range(SPLITS + 1):
        x, y = _point(k / SPLITS, RADIUS - 22)
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" font-size="11" fill="#6b7280">'
                     f'{top * k / SPLITS:g}</text>')
    if live:  # drawn at zero, turned clockwise about the hub as the seconds go by
        x, y = _point(0.0, RADIUS * 0.58)
        parts.append(f'<g transform="rotate({{deg}} {CENTRE[0]} {CENTRE[1]})"><line x1="{CENTRE[0]}" y1="{CENTRE[1]}" '
                     f'x2="{x:.1f}" y2="{y:.1f}" stroke="#374151" stroke-width="4" stroke-linecap="round"/></g>')
    parts.append(f'<circle cx="{CENTRE[0]}" cy="{CENTRE[1]}" r="7" fill="#ffffff" stroke="#374151" stroke-width="3"/>')
    words = "{s} s" if live else "—"
    parts.append(f'<text x="{CENTRE[0]}" y="{CENTRE[1] + 0.58 * RADIUS:.1f}" text-anchor="middle" font-size="22" '
                 f'fill="#111827">{words}</text>')
    parts.append(f'<text x="{CENTRE[0]}" y="{CENTRE[1] + 0.88 * RADIUS:.1f}" text-anchor="middle" font-size="11" '
                 f'fill="#4b5563">{html.escape(title)}</text>')
    return (f'<svg class="trace-gauge" role="img" aria-label="{html.escape(title)}: {words}" width="{SIZE}" '
            f'height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}" font-family="sans-serif">{"".join(parts)}</svg>')


class HealthGauge(Viewer):
    """Seconds since the last ping or event, on a dial and in words, counted in the browser
    (``ticking.py``): the server sends them again only when activity resets the age or the words change."""

    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        self.top = int(self.feed.warn_after * 1.5)  # the warning sits at two thirds of the dial
        self.view = TickingHTML(dial_top=self.top, dial_sweep=SWEEP, width=230, margin=0)
        self._said: tuple | None = None  # what the markup says but for the seconds, and the activity they count from
        # Not heartbeat_age: it changes at every batch, and the page counts the seconds itself.
        self.feed.param.watch(self._render, ["heartbeat_at", "health_warning", "connection"])
        self._render()

    def _render(self, *_: object) -> None:
        """Send the markup when its words change, or when new activity moves the moment the seconds count
        from by a second or more (under steady traffic: about once a second, with the batches)."""
        feed = self.feed
        age, at = feed.heartbeat_age, feed.heartbeat_at
        said = (age is None, feed.health_warning, feed.connection)
        if self._said is not None and said == self._said[0] and (
                at is None or abs(at - self._said[1]) < RESEND_DRIFT_S):
            return  # the page's count is still right
        self._said = (said, at)
        self.view.show(dial_template(self.top, "since last ping", live=age is not None) + self._caption(age), age)

    def _caption(self, age: float | None) -> str:
        feed = self.feed
        if age is None:
            quiet = feed.connection in (ConnectionStatus.off, ConnectionStatus.error)
            words = "no connection" if quiet else "waiting for the first ping"
            line = f'<span class="trace-health" data-warning="false">{words}</span>'
        elif feed.health_warning:
            line = ('<span class="trace-health" data-warning="true" style="color:#dc2626;font-weight:600">'
                    '⚠ no ping or event for {s} s</span>')
        elif feed.connection != ConnectionStatus.connected:  # reconnecting: not healthy, though not yet a minute of silence
            line = ('<span class="trace-health" data-warning="false" style="color:#b45309;font-weight:600">'
                    f'{html.escape(feed.connection.value)}: last sign of life {{s}} s ago</span>')
        else:
            line = '<span class="trace-health" data-warning="false">healthy: last sign of life {s} s ago</span>'
        return (f'<div style="margin:0 10px;font-size:14px;width:210px"><div style="font-weight:600;color:#374151;'
                f'margin-bottom:4px">Connection health</div>{line}<div style="color:#6b7280;font-size:12px;margin-top:4px">'
                f'warns after {feed.warn_after:g} s without a ping or event</div></div>')

    def __panel__(self):
        return self.view
