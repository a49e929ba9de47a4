"""Seconds counted in the page: the health gauge and the refresh time are sent when what they say
changes, not every second (the browser test checks the counting itself)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.client import Snapshot, StreamHealth
from dashboard.ui.feed import TraceFeed
from dashboard.ui.views.controls import LiveControls
from dashboard.ui.views.health import HealthGauge
from dashboard.ui.views.ticking import fill

from ..driven import T0, trace


def test_the_markup_says_whole_seconds_and_the_needle_stops_at_the_end_of_the_dial():
    template = "{s} s at {deg}°"
    assert fill(template, 2.5, dial_top=90, dial_sweep=240) == "3 s at 8.0°"  # halves up, as the page rounds
    assert fill(template, 45, dial_top=90, dial_sweep=240) == "45 s at 120.0°"
    assert fill(template, 400, dial_top=90, dial_sweep=240) == "400 s at 240.0°"  # the true seconds, the needle at the end
    assert fill("no connection", None) == "no connection"


def pinged(feed: TraceFeed, at: float) -> None:
    when = datetime.fromtimestamp(at, UTC)
    feed.on_health(StreamHealth(status="connected", connected_at=datetime.fromtimestamp(T0, UTC), last_ping_at=when))


def test_the_gauge_is_sent_again_only_for_new_activity_a_second_on_or_a_change_of_words():
    feed = TraceFeed("token", warn_after=60)
    gauge = HealthGauge(feed=feed)
    assert ">no connection<" in gauge.view.text and "{s}" not in gauge.view.template  # nothing to count yet
    pinged(feed, T0)
    feed.flush(now=T0 + 1)
    sent = gauge.view.sent
    assert "healthy: last sign of life 1 s ago" in gauge.view.text and 'aria-label="since last ping: 1 s"' in gauge.view.text
    for second in range(2, 30):  # quiet: the page counts on by itself
        feed.flush(now=T0 + second)
    assert gauge.view.sent == sent
    pinged(feed, T0 + 30.5)  # a ping: the count starts over
    feed.flush(now=T0 + 31)
    assert gauge.view.sent == sent + 1 and "last sign of life 1 s ago" in gauge.view.text  # 0.5 s, rounded up
    pinged(feed, T0 + 31.2)  # under a second later: the page's count is still right
    feed.flush(now=T0 + 31.5)
    assert gauge.view.sent == sent + 1
    feed.flush(now=T0 + 95)  # over a minute quiet: new words
    assert gauge.view.sent == sent + 2 and 'data-warning="true"' in gauge.view.text
    assert "no ping or event for 64 s" in gauge.view.text


def test_the_refresh_time_is_sent_once_per_load_and_counted_in_the_page():
    feed = TraceFeed("token")
    controls = LiveControls(feed=feed)
    assert f">{feed.refresh_text}<" in controls.refreshed.text  # "loading…": nothing to count yet
    feed.on_health(StreamHealth(status="connected"))
    feed.ingest(Snapshot([trace("a")], last_event_id=1))
    feed.flush(now=T0)
    sent = controls.refreshed.sent
    assert "refreshed " in controls.refreshed.text and "(0 s ago)" in controls.refreshed.text
    for second in range(1, 20):
        feed.flush(now=T0 + second)
    assert controls.refreshed.sent == sent
    assert feed.refresh_text.startswith("refreshed ")  # the view-model still says it, for a notebook
    feed.last_refresh_at = feed.last_refresh_at + timedelta(seconds=20)  # a Refresh
    assert controls.refreshed.sent == sent + 1
