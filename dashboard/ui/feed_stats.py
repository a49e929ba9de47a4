"""The per-model stats and the totals of what a feed shows, published into its params
(``model_stats``, ``stats_at``, ``stats_history``, ``totals``).

Fed each batch's arrivals the filters keep; recomputed every ``stats_seconds``, only while connected
(a chart must not show a fall in traffic it did not see); started over from the loaded rows after a
reload or a change of filters, with their past as chart points.
"""

from __future__ import annotations

from typing import Any

from ..client import ConnectionStatus
from ..schema import TraceStatus
from .feed_params import FeedParams
from .stats import RollingModelStats
from .totals import RunningTotals

Trace = dict[str, Any]


class FeedStats:
    def __init__(self, feed: FeedParams, opened_at: float) -> None:
        self._feed = feed
        self._stats = RollingModelStats(feed.stats_window)
        self._totals = RunningTotals(opened_at)  # since the page opened
        self._last = 0.0

    def add(self, traces: list[Trace], kept: list[bool], now: float) -> list[Trace]:
        """Count the kept arrivals; returns the failed calls counted now (each is told once)."""
        failed = []
        for trace, keep in zip(traces, kept, strict=True):
            if keep and self._stats.add_if_final(trace, now) and trace["status"] == TraceStatus.error.value:
                failed.append(trace)
        self._totals.add_all([trace for trace, keep in zip(traces, kept, strict=True) if keep], now)
        return failed

    def tick(self, now: float) -> None:
        """Publish new stats when ``stats_seconds`` have passed, if connected."""
        feed = self._feed
        if now - self._last < feed.stats_seconds or feed.connection != ConnectionStatus.connected:
            return
        self._last = now
        feed.model_stats = self._stats.compute(now)
        feed.totals = self._totals.totals
        feed.stats_at = now

    def restart(self, kept: list[Trace], now: float) -> None:
        """Stats of these traces (the loaded ones the filters keep, oldest first), with their past."""
        feed = self._feed
        self._stats = RollingModelStats(feed.stats_window)
        for trace in kept:
            self._stats.add_if_final(trace, now)
        feed.totals = self._totals.recount(kept, now)
        self._last = now
        feed.stats_history = self._stats.history(now, feed.stats_seconds)
        feed.model_stats = self._stats.compute(now)
        feed.stats_at = now
