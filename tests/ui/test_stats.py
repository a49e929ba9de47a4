"""Per-model stats over a rolling window: percentiles a person expects, and a rate that does not
understate traffic before the window has filled."""

import math

import pytest

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


def test_cost_and_tokens_per_minute_come_from_finished_traces_over_the_same_window_and_clock():
    stats = RollingModelStats(window_seconds=300)
    ended = "2027-01-15T08:00:00Z"
    at = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    for i in range(6):  # six calls at 1,000 tokens and $0.02 each, all ending at the same moment
        trace = {"id": f"g{i}", "model": "gpt-4o", "status": "success", "latency_ms": 100.0, "ended_at": ended,
                 "total_tokens": 1000, "cost_usd": 0.02}
        assert stats.add_if_final(trace, now=at)
    stats.add_if_final({"id": "r", "model": "gpt-4o", "status": "running", "total_tokens": 9999, "cost_usd": 9.0}, at)
    stats.add_if_final({"id": "nocost", "model": "claude", "status": "error", "ended_at": ended}, at)
    gpt_after_a_minute = {s.model: s for s in stats.compute(now=at + 30)}["gpt-4o"]
    assert gpt_after_a_minute.tokens_per_min == 6000  # divided by a minute, like calls per minute
    assert gpt_after_a_minute.cost_per_min == pytest.approx(0.12)
    claude, gpt = stats.compute(now=at + 120)  # sorted by model name
    assert gpt.tokens_per_min == 3000 and gpt.cost_per_min == pytest.approx(0.06)  # two minutes observed
    assert claude.tokens_per_min == 0 and claude.cost_per_min == 0 and claude.calls == 1  # said neither
    assert stats.compute(now=at + 301) == []  # out of the window: nothing left to spend
