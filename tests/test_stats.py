"""Per-model stats over a rolling window: percentiles a person expects, and a rate that does not
understate traffic before the window has filled."""

import math

from dashboard.stats import RollingModelStats, percentile


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10 and percentile(values, 95) == 19 and percentile([7.0], 95) == 7


def test_calls_per_minute_counts_only_the_time_observed_until_the_window_fills():
    stats = RollingModelStats(window_seconds=300)
    for i in range(120):  # two minutes of traffic, one call a second, since the start
        stats.add(1000.0 + i, "gpt-4o", 100.0, failed=False)
    (two_minutes,) = stats.compute(now=1120.0)
    assert two_minutes.calls_per_min == 60  # not 120 calls / 5 minutes = 24

    for i in range(120, 600):  # ten minutes in: the window (5 min) is full
        stats.add(1000.0 + i, "gpt-4o", 100.0, failed=False)
    (full,) = stats.compute(now=1600.0)
    assert full.calls == 300 and full.calls_per_min == 60


def test_the_first_seconds_are_divided_by_a_minute_not_by_almost_nothing():
    stats = RollingModelStats(window_seconds=300)
    stats.add(1000.0, "gpt-4o", 100.0, failed=False)
    (first,) = stats.compute(now=1002.0)
    assert first.calls_per_min == 1


def test_failed_calls_count_in_the_error_rate_but_not_in_latency():
    stats = RollingModelStats(window_seconds=300)
    stats.add(1000.0, "claude", 5000.0, failed=True)
    (only_failures,) = stats.compute(now=1001.0)
    assert only_failures.error_rate == 1 and math.isnan(only_failures.p50_ms)
