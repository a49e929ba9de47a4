"""Totals since the page opened (calls, tokens, cost, errors), through a TraceFeed driven by hand: each
call counted once when it ends, calls that ended before the page opened left out, and the filters in
force deciding what counts, then and after they change."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dashboard.client import Snapshot, StreamHealth, TraceEvent
from dashboard.ui.feed import TraceFeed
from dashboard.ui.totals import RunningTotals, Totals, totals_words
from dashboard.ui.views.totals import TotalsLine


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def call(trace_id: str, ended: float | None, status: str = "success", **fields) -> dict:
    base = {"id": trace_id, "user_id": "alice", "name": "summarize", "model": "gpt-4o", "status": status,
            "created_at": iso(ended or 0), "latency_ms": 100.0, "error": None, "total_tokens": 1000, "cost_usd": 0.25}
    return base | ({"ended_at": iso(ended)} if ended else {}) | fields


class Page:
    """A feed opened at ``opened`` (its own clock), connected; events in, ``flush(at)``, totals out."""

    def __init__(self) -> None:
        self.opened = time.time()
        self.feed = TraceFeed("token", stats_seconds=5)
        self.feed.on_health(StreamHealth(status="connected"))
        self.seq = 0

    def snapshot(self, *traces: dict) -> None:
        self.feed.ingest(Snapshot(list(reversed(traces)), last_event_id=0, reason=""))

    def arrive(self, *traces: dict) -> None:
        for trace in traces:
            self.seq += 1
            self.feed.ingest(TraceEvent(self.seq, "trace", trace))

    def flush(self, after: float) -> Totals:
        self.feed.flush(now=self.opened + after)
        return self.feed.totals


def test_the_words_say_since_when_and_read_at_a_glance():
    since = datetime(2026, 12, 1, 21, 14, 3, tzinfo=UTC).timestamp()
    totals = Totals(since, calls=1204, tokens=2_112_000, cost_usd=4.3149, errors=12)
    assert totals_words(totals) == "since 21:14:03 UTC: 1,204 calls · 2.1 M tokens · $4.31 · 12 errors"
    assert totals_words(Totals(since, calls=1, tokens=950, cost_usd=0.0004, errors=1)) == \
        "since 21:14:03 UTC: 1 call · 950 tokens · $0.0004 · 1 error"  # a tiny cost is not shown as $0.00


def test_each_call_counts_once_when_it_ends_and_the_first_snapshots_finished_calls_do_not():
    page = Page()
    before, after = page.opened - 600, page.opened + 30
    page.snapshot(call("old", before), call("old-error", before, "error"), call("slow", None, "running"))
    first = page.flush(1)
    assert (first.calls, first.tokens, first.cost_usd, first.errors) == (0, 0, 0, 0)  # ended before the page opened
    assert 0 <= first.since - page.opened < 1  # the page's own clock, when its feed was made

    page.arrive(call("slow", after, "success", total_tokens=3000, cost_usd=1.5),  # the running call ends
                call("new", after, "error", total_tokens=None, cost_usd=None))  # a failure that said neither
    page.arrive(call("slow", after, "success", total_tokens=3000, cost_usd=1.5, output="edited"))  # updated again
    page.flush(2)  # counted now, shown with the next stats
    totals = page.flush(8)
    assert (totals.calls, totals.tokens, totals.cost_usd, totals.errors) == (2, 3000, 1.5, 1)
    page.arrive(call("new", after, "error", error="retried: still failing"))
    page.arrive(call("running", None, "running"))
    assert page.flush(16) == totals  # a call seen again, or still running, changes nothing


def test_only_calls_the_filters_keep_count_then_and_after_a_change_of_filters():
    page = Page()
    after = page.opened + 30
    page.snapshot()
    page.flush(1)
    page.feed.query = 'model == "claude"'
    page.arrive(call("g1", after), call("c1", after, model="claude"), call("c2", after, "error", model="claude"))
    totals = page.flush(10)
    assert (totals.calls, totals.errors, totals.tokens) == (2, 1, 2000)  # gpt-4o's call is not shown: not counted

    page.feed.query = ""  # every call shown again: the totals are counted again from them
    totals = page.feed.totals
    assert (totals.calls, totals.errors, totals.tokens, totals.cost_usd) == (3, 1, 3000, 0.75)
    page.feed.text = "no such text"
    assert page.feed.totals.calls == 0 and page.feed.totals.since == totals.since  # still since the page opened


def test_ids_remembered_are_bounded_on_a_long_session():
    totals = RunningTotals(since=0.0, max_ids=10)
    for i in range(25):
        assert totals.add_if_final(call(f"c{i}", 100.0), now=100.0)
    assert totals.totals.calls == 25 and len(totals._counted) == 10


def test_the_line_above_the_charts_shows_the_totals_and_says_what_counts():
    page = Page()
    line = TotalsLine(feed=page.feed)
    assert "counting from the first calls to end" in line.pane.object
    page.snapshot()
    page.arrive(call("a", page.opened + 5, total_tokens=12_345, cost_usd=4.2))
    page.flush(10)
    shown = line.pane.object
    assert "1 call · 12.3 k tokens · $4.20 · 0 errors" in shown
    assert "since " + datetime.fromtimestamp(page.feed.totals.since, UTC).strftime("%H:%M:%S") in shown
    assert "Calls that ended since the page opened" in shown and "filters in force" in shown
