"""TraceFeed, the dashboard's view-model, without a browser: batches, the badge, queueing, highlights,
toasts, health words, filters, rollover, stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.client import Snapshot, StreamHealth, TraceEvent
from dashboard.ui.feed import TraceFeed
from dashboard.ui.rows import Flag

from .driven import T0, Feed, trace


def test_a_new_trace_at_the_top_appears_highlighted_and_no_badge_counts_it():
    f = Feed()
    f.arrive(trace("a"))
    changes = f.flush()
    assert f.ids() == ["a"]
    assert list(changes.appended["id"]) == ["a"]
    assert f.flags() == {"a": Flag.NEW}
    assert f.feed.new_count == 0  # in view: nothing held back
    assert f.feed.showing_text == "showing 1 of 1"


def test_viewing_resets_the_count_and_ends_the_highlight():
    f = Feed()
    f.arrive(trace("a"), trace("b"))
    f.flush()
    f.feed.view_new()
    assert f.feed.new_count == 0
    assert f.flags() == {"a": Flag.NONE, "b": Flag.NONE}
    assert sorted(f.feed.changes.patches["flag"]) == [(0, Flag.NONE), (1, Flag.NONE)]


def test_an_update_changes_the_row_in_place_and_flashes_it():
    f = Feed(flash_seconds=1.5, highlight_seconds=8)
    f.arrive(trace("a"))
    f.flush(T0)
    f.arrive(trace("a", status="success", latency_ms=812.0), update=True)
    changes = f.flush(T0 + 1)
    assert f.ids() == ["a"]  # no second row
    assert changes.appended is None  # no new row
    assert dict(changes.patches)["status"] == [(0, "success")]
    assert f.flags() == {"a": Flag.CHANGED}
    f.flush(T0 + 3)  # the flash ends; the row is still new
    assert f.flags() == {"a": Flag.NEW}
    f.flush(T0 + 9)
    assert f.flags() == {"a": Flag.NONE}
    assert f.feed.new_count == 0


def test_updates_to_one_trace_in_one_batch_coalesce():
    f = Feed()
    f.arrive(trace("a"))
    f.arrive(trace("a", status="success"), update=True)
    changes = f.flush()
    assert list(changes.appended["status"]) == ["success"]
    assert not changes.patches


@pytest.mark.parametrize("how", ["selected", "scrolled"])
def test_arrivals_queue_behind_the_badge_while_the_user_is_busy(how):
    f = Feed()
    f.arrive(trace("a"))
    f.flush()
    if how == "selected":
        f.feed.selected_id = "a"
    else:
        f.feed.at_top = False
    f.arrive(trace("b"), trace("c"))
    f.arrive(trace("a", status="error", error="Timeout"), update=True)
    changes = f.flush(T0 + 1)
    assert f.ids() == ["a"]  # nothing moved under the user...
    assert dict(changes.patches)["status"] == [(0, "error")]  # ...but the shown row still changes in place
    assert f.feed.new_count == 2  # b and c, held back from view
    if how == "selected":
        f.feed.selected_id = ""
    else:
        f.feed.at_top = True
    assert f.ids() == ["a", "b", "c"]
    assert f.feed.new_count == 0


def test_clicking_the_badge_shows_queued_rows_even_while_scrolled():
    f = Feed()
    f.feed.at_top = False
    f.arrive(trace("a"))
    f.flush()
    assert f.ids() == []
    f.feed.view_new()
    assert f.ids() == ["a"] and f.feed.new_count == 0


def test_rows_roll_over_at_max_rows():
    f = Feed(max_rows=10)
    f.arrive(*(trace(f"t{i}") for i in range(25)))
    f.flush()
    assert f.ids() == [f"t{i}" for i in range(15, 25)]
    assert f.feed.trace("t3") is None and f.feed.trace("t24")["id"] == "t24"
    f.arrive(trace("t3", status="success"), update=True)  # an update for a row that rolled off: ignored...
    f.flush(T0 + 1)
    assert len(f.ids()) == 10


def test_a_burst_makes_one_toast_and_a_single_arrival_names_the_call():
    f = Feed(toast_seconds=3)
    f.flush(T0)
    f.arrive(*(trace(f"t{i}") for i in range(37)))
    f.flush(T0 + 0.25)
    f.flush(T0 + 3)
    f.arrive(trace("one", model="claude-3-haiku", name="classify", status="success", latency_ms=812.0))
    f.flush(T0 + 6)
    assert list(f.feed.announcer.toasts) == [("info", "37 new traces"), ("info", "new trace: claude-3-haiku · classify · 812 ms")]


def test_a_failed_call_makes_an_error_toast():
    f = Feed(toast_seconds=3)
    f.flush(T0)
    f.arrive(trace("a"))
    f.arrive(trace("a", status="error", error="RateLimitError: 429 Too Many Requests", latency_ms=40.0), update=True)
    f.flush(T0 + 3)
    assert ("error", "failed: gpt-4o · summarize · 40 ms: RateLimitError: 429 Too Many Requests") in f.feed.announcer.toasts


def test_the_notifier_receives_each_toast():
    got = []
    feed = TraceFeed("token", notifier=lambda level, message: got.append((level, message)), toast_seconds=1)
    feed.flush(now=T0)
    feed.ingest(TraceEvent(1, "trace", trace("a")))
    feed.flush(now=T0 + 1)
    assert got == [("info", "new trace: gpt-4o · summarize · running")]


def test_the_text_filter_applies_to_rows_shown_and_arriving():
    f = Feed()
    f.arrive(trace("a", name="summarize"), trace("b", name="classify", error="boom"))
    f.flush()
    f.feed.text = "BOOM"
    assert f.ids() == ["b"]
    assert f.feed.changes.reset
    f.arrive(trace("c", name="summarize"), trace("d", input=[{"role": "user", "content": "boom there"}]))
    f.flush(T0 + 1)
    assert f.ids() == ["b", "d"]
    assert f.feed.showing_text == 'showing 2 of 4 · text "BOOM"'
    f.feed.text = ""  # clearing the search brings every row back, arrivals included
    assert f.ids() == ["a", "b", "c", "d"]
    assert f.feed.showing_text == "showing 4 of 4"


def test_a_snapshot_replaces_the_rows():
    f = Feed()
    f.arrive(trace("live"))
    f.flush()
    f.feed.ingest(Snapshot([trace("s2"), trace("s1")], last_event_id=40, reason="reset"))
    changes = f.flush(T0 + 1)
    assert changes.reset
    assert f.ids() == ["s1", "s2"]
    assert list(f.feed.frame["id"]) == ["s2", "s1"]  # the frame, like the table, is newest first
    assert f.feed.new_count == 0
    assert f.feed.last_refresh_at is not None


def test_a_reset_is_said_with_when_and_why_and_marked_for_the_charts():
    f = Feed()
    f.feed.ingest(Snapshot([trace("first")], last_event_id=3))  # the first load: no reset
    f.flush()
    assert f.feed.reset_text == "" and f.feed.reset_times == []
    f.feed.ingest(Snapshot([trace("s1")], last_event_id=90, reason="events after 3 are no longer kept"))
    f.flush(T0 + 60)
    assert f.feed.reset_text.startswith("stream reset at ")
    assert f.feed.reset_text.endswith("the table was reloaded (events after 3 are no longer kept)")
    assert f.feed.reset_times == [T0 + 60]
    assert f.ids() == ["s1"]


def health(**fields) -> StreamHealth:
    return StreamHealth(**fields)


def test_the_status_is_said_in_words():
    feed = TraceFeed("token")
    feed.on_health(health(status="connected", connected_at=datetime.now(UTC)))
    feed.flush()
    assert (feed.connection, feed.connection_text, feed.error) == ("connected", "connected", "")
    retry_at = datetime.now(UTC) + timedelta(seconds=7.2)
    feed.on_health(health(status="reconnecting", attempt=3, next_retry_at=retry_at, retry_delay=8,
                          last_error="cannot connect to http://api: connection refused"))
    feed.flush()
    assert feed.connection_text == "reconnecting (attempt 3, next in 8 s)"
    assert feed.error == "connection lost: cannot connect to http://api: connection refused"
    feed.on_health(health(status="error", last_error="the token has expired"))
    feed.flush()
    assert feed.connection_text == "connection lost: the token has expired"


def test_connection_lost_and_restored_make_toasts():
    feed = TraceFeed("token")
    feed.on_health(health(status="connected"))
    feed.flush()
    feed.on_health(health(status="reconnecting", attempt=1, last_error="the server closed the stream"))
    feed.flush()
    feed.on_health(health(status="connected"))
    feed.flush()
    assert list(feed.announcer.toasts) == [("error", "connection lost: the server closed the stream"),
                                 ("success", "connection restored")]


def test_what_the_user_did_is_not_announced():
    feed = TraceFeed("token")
    feed.on_health(health(status="connected"))
    feed.flush()
    feed.live = False  # paused: the stream closes
    feed.on_health(health(status="off"))
    feed.flush()
    feed.live = True
    feed.on_health(health(status="connecting"))
    feed.flush()
    feed.on_health(health(status="connected"))
    feed.flush()
    feed.refresh()  # a Refresh, or new filters, replace the stream too
    feed.on_health(health(status="off"))
    feed.flush()
    feed.on_health(health(status="connected"))
    feed.flush()
    assert list(feed.announcer.toasts) == []


def test_a_lost_connection_the_user_then_paused_is_not_announced_as_restored():
    feed = TraceFeed("token")
    feed.on_health(health(status="connected"))
    feed.flush()
    feed.on_health(health(status="reconnecting", attempt=1, last_error="the server closed the stream"))
    feed.flush()
    feed.live = False
    feed.live = True
    feed.on_health(health(status="connected"))
    feed.flush()
    assert [level for level, _ in feed.announcer.toasts] == ["error"]


def test_news_after_a_quiet_spell_is_told_at_once_and_more_waits_for_the_next_toast():
    f = Feed(toast_seconds=30)
    f.flush(T0)
    f.arrive(trace("a", status="error", error="boom", latency_ms=40.0))
    f.flush(T0 + 0.25)
    assert [level for level, _ in f.feed.announcer.toasts] == ["info", "error"]
    f.arrive(trace("b"), trace("c"))
    f.flush(T0 + 10)
    assert len(f.feed.announcer.toasts) == 2
    f.flush(T0 + 30.25)
    assert list(f.feed.announcer.toasts)[2:] == [("info", "2 new traces")]


def test_a_toast_names_the_call_as_it_is_when_the_toast_goes_out():
    f = Feed(toast_seconds=3)
    f.arrive(trace("first"))
    f.flush(T0)  # told at once; what follows waits for the next toast
    f.arrive(trace("a", name="classify", status="running"))
    f.flush(T0 + 1)
    f.arrive(trace("a", name="classify", status="success", latency_ms=812.0), update=True)
    f.flush(T0 + 3)
    assert list(f.feed.announcer.toasts)[1:] == [("info", "new trace: gpt-4o · classify · 812 ms")]


def test_the_health_warns_after_a_minute_without_a_ping_or_event():
    feed = TraceFeed("token", warn_after=60)
    last = datetime.fromtimestamp(T0, UTC)
    feed.on_health(health(status="connected", connected_at=last, last_ping_at=last))
    feed.flush(now=T0 + 30)
    assert (feed.heartbeat_age, feed.health_warning) == (30, False)
    feed.flush(now=T0 + 61)
    assert (feed.heartbeat_age, feed.health_warning) == (61, True)
    feed.on_health(health(status="connected", connected_at=last, last_ping_at=last + timedelta(seconds=62)))
    feed.flush(now=T0 + 63)
    assert (feed.heartbeat_age, feed.health_warning) == (1, False)


def test_per_model_stats_come_from_completed_calls():
    f = Feed(stats_seconds=5, stats_window=300)
    ended = "2026-11-25T10:00:00Z"
    at = datetime.fromisoformat(ended.replace("Z", "+00:00")).timestamp()
    calls = [trace(f"g{i}", model="gpt-4o", status="success", latency_ms=float(100 * (i + 1)), ended_at=ended)
             for i in range(20)]
    calls.append(trace("c0", model="claude", status="error", latency_ms=50.0, ended_at=ended, error="x"))
    calls.append(trace("c1", model="claude", status="running"))
    f.arrive(*calls)
    f.arrive(calls[0], update=True)  # the same completion twice counts once
    f.flush(at + 10)
    stats = {s.model: s for s in f.feed.model_stats}
    assert stats["gpt-4o"].p50_ms == 1000 and stats["gpt-4o"].p95_ms == 1900
    assert stats["gpt-4o"].calls == 20 and stats["gpt-4o"].error_rate == 0
    assert stats["claude"].calls == 1 and stats["claude"].error_rate == 1
    assert f.feed.models == ["claude", "gpt-4o"]


def test_a_new_search_lets_go_of_held_rows_it_no_longer_matches():
    f = Feed()
    f.feed.at_top = False
    f.arrive(trace("a", name="summarize"), trace("b", name="classify"))
    f.flush()
    assert f.feed.new_count == 2
    f.feed.text = "classify"
    assert f.feed.new_count == 1
    f.feed.at_top = True
    assert f.ids() == ["b"]
