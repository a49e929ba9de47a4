"""A call in flight, without a browser: its elapsed time ticks once a second in the latency cell until its
end arrives, only running rows are patched, and one past ``stuck_seconds`` is marked stuck and counted."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from dashboard.ui.views.controls import LiveControls

from .driven import T0, Feed, trace


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def running(trace_id: str, started: float, **fields) -> dict:
    return trace(trace_id, status="running", started_at=iso(started), created_at=iso(started), **fields)


def cell(f: Feed, trace_id: str, column: str):
    frame = f.feed.frame
    return frame.loc[frame["id"] == trace_id, column].iloc[0]


def patched_ids(f: Feed, changes, column: str) -> set[str]:
    labels = {label for label, _ in changes.patches.get(column, [])}
    return set(f.feed.frame.loc[sorted(labels), "id"])


def test_the_elapsed_time_grows_one_second_per_second_and_only_running_rows_are_patched():
    f = Feed()
    f.arrive(trace("done", status="success", latency_ms=300.0), running("call", T0 - 5))
    f.flush(T0)
    assert cell(f, "call", "elapsed_s") == 5 and cell(f, "call", "clock") == "running"
    assert math.isnan(cell(f, "done", "elapsed_s")) and cell(f, "done", "clock") == ""
    f.feed.view_new()
    for k in range(1, 6):
        assert f.flush(T0 + k - 0.5).patches.get("elapsed_s") is None  # not between seconds
        changes = f.flush(T0 + k)
        assert cell(f, "call", "elapsed_s") == 5 + k
        assert patched_ids(f, changes, "elapsed_s") == {"call"}  # the finished row is left alone
        assert set(changes.patches) <= {"elapsed_s", "clock"} and changes.appended is None  # a patch, no new page


def test_the_end_stops_the_tick_and_shows_the_real_latency():
    f = Feed()
    f.arrive(running("call", T0 - 2))
    f.flush(T0)
    f.arrive(trace("call", status="success", started_at=iso(T0 - 2), latency_ms=2345.0), update=True)
    changes = f.flush(T0 + 1)
    assert cell(f, "call", "latency_ms") == 2345.0 and cell(f, "call", "status") == "success"
    assert cell(f, "call", "clock") == "" and math.isnan(cell(f, "call", "elapsed_s"))
    assert dict(changes.patches)["clock"] == [(0, "")]
    for k in range(2, 5):
        assert "elapsed_s" not in f.flush(T0 + k).patches


def test_a_call_running_past_the_threshold_is_marked_stuck_and_counted():
    f = Feed(stuck_seconds=10)
    f.arrive(running("slow", T0 - 8), running("fresh", T0))
    f.flush(T0)
    assert f.feed.stuck_count == 0
    f.flush(T0 + 2)
    assert cell(f, "slow", "clock") == "running"  # 10 s: not past the threshold yet
    f.flush(T0 + 3)
    assert cell(f, "slow", "clock") == "stuck" and cell(f, "fresh", "clock") == "running"
    assert f.feed.stuck_count == 1
    controls = LiveControls(feed=f.feed)
    assert controls.stuck.visible and ">⚠ 1 call has run over 10 s<" in controls.stuck.object
    f.arrive(trace("slow", status="error", error="timeout", latency_ms=11000.0), update=True)
    f.flush(T0 + 4)
    assert cell(f, "slow", "clock") == "" and f.feed.stuck_count == 0
    assert not controls.stuck.visible


def test_the_stuck_threshold_comes_from_the_environment(monkeypatch):
    from dashboard.config import Settings
    from dashboard.ui.session import make_feed

    assert Settings.from_env({}).stuck_seconds == 120
    monkeypatch.setenv("TRACES_STUCK_SECONDS", "45")
    assert make_feed(token="t").stuck_seconds == 45


def test_a_start_ahead_of_our_clock_reads_zero_and_a_pending_call_counts_from_its_creation():
    f = Feed()
    f.arrive(running("ahead", T0 + 30), trace("queued", status="pending", created_at=iso(T0 - 7)))
    f.flush(T0)
    assert cell(f, "ahead", "elapsed_s") == 0  # never negative
    assert cell(f, "queued", "elapsed_s") == 7


def test_a_running_row_rolled_off_or_filtered_out_is_not_ticked():
    f = Feed(max_rows=10)
    f.arrive(running("old", T0 - 1))
    f.flush(T0)
    f.arrive(*(trace(f"done-{i}", status="success", latency_ms=1.0) for i in range(10)))
    f.flush(T0 + 1)
    assert "old" not in f.ids()
    assert f.flush(T0 + 2).patches.get("elapsed_s") is None

    g = Feed()
    g.arrive(running("hidden", T0 - 1, name="rag-call"), running("kept", T0 - 1, name="chat-call"))
    g.flush(T0)
    g.feed.text = "chat"
    assert g.ids() == ["kept"]
    changes = g.flush(T0 + 1)
    assert patched_ids(g, changes, "elapsed_s") == {"kept"}


def test_the_clock_cells_stay_out_of_exports_and_queries():
    f = Feed()
    f.arrive(running("call", T0 - 1))
    f.flush(T0)
    assert "elapsed_s" not in f.feed.filtered_frame().columns
    f.feed.query = "elapsed_s > 0"
    assert "unknown" in f.feed.query_error or "elapsed_s" in f.feed.query_error
