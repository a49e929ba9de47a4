"""Per-model stats over a rolling window: percentiles a person expects, and a rate that does not
understate traffic before the window has filled."""

import math

from dashboard.ui.stats import RollingModelStats, percentile


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10 and percentile(values, 95) == 19 and percentile([7.0], 95) == 7


def test_calls_per_minute_counts_only_the_time_observed_until_the_window_fills():
    stats = RollingModelStats(window_seconds=300)
    for i in range(120):  # two minutes of traffic, one call a second, since the start
        stats.add(f"c{i}", 1000.0 + i, "gpt-4o", 100.0, failed=False)
    (two_minutes,) = stats.compute(now=1120.0)
    assert two_minutes.calls_per_min == 60  # not 120 calls / 5 minutes = 24

    for i in range(120, 600):  # ten minutes in: the window (5 min) is full
        stats.add(f"c{i}", 1000.0 + i, "gpt-4o", 100.0, failed=False)
    (full,) = stats.compute(now=1600.0)
    assert full.calls == 300 and full.calls_per_min == 60


def test_the_first_seconds_are_divided_by_a_minute_not_by_almost_nothing():
    stats = RollingModelStats(window_seconds=300)
    stats.add("c0", 1000.0, "gpt-4o", 100.0, failed=False)
    (first,) = stats.compute(now=1002.0)
    assert first.calls_per_min == 1


def test_failed_calls_count_in_the_error_rate_but_not_in_latency():
    stats = RollingModelStats(window_seconds=300)
    stats.add("c0", 1000.0, "claude", 5000.0, failed=True)
    (only_failures,) = stats.compute(now=1001.0)
    assert only_failures.error_rate == 1 and math.isnan(only_failures.p50_ms)


def test_a_call_counts_once_and_is_forgotten_when_it_leaves_the_window():
    stats = RollingModelStats(window_seconds=300)
    assert stats.add("c0", 1000.0, "gpt-4o", 100.0, failed=False)
    assert not stats.add("c0", 1000.0, "gpt-4o", 100.0, failed=False)  # seen again after a refresh
    (one,) = stats.compute(now=1001.0)
    assert one.calls == 1
    assert stats.compute(now=1400.0) == [] and len(stats) == 0  # memory stays flat on a long session


def test_at_most_max_calls_are_kept():
    stats = RollingModelStats(window_seconds=300, max_calls=100)
    for i in range(250):
        stats.add(f"c{i}", 1000.0, "gpt-4o", 100.0, failed=False)
    assert len(stats) == 100
    assert stats.add("c0", 1000.0, "gpt-4o", 100.0, failed=False)  # forgotten, so it counts again
