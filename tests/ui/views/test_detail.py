"""The detail view's text: what the writer gave, escaped, and nothing it did not give."""

from __future__ import annotations

from dashboard.ui.views.detail import render_trace


def test_token_counts_are_the_ones_given_never_an_invented_zero():
    assert "42 total" in render_trace({"id": "a", "total_tokens": 42})
    assert " in ·" not in render_trace({"id": "a", "total_tokens": 42})
    assert "1,200 in · 30 out · 1,230 total" in render_trace(
        {"id": "a", "input_tokens": 1200, "output_tokens": 30, "total_tokens": 1230})
    assert "tokens" not in render_trace({"id": "a"})


def test_what_the_writer_sent_is_shown_as_text_not_markup():
    html = render_trace({"id": "a", "name": "<b>x</b>", "error": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_the_calls_of_the_same_run_are_listed_with_latency_and_status():
    from ..driven import Feed, trace

    def call(trace_id: str, run: str, started: str, **fields) -> dict:
        return trace(trace_id, name=f"step-{trace_id}", started_at=started, metadata={"otel": {"trace_id": run}}, **fields)

    f = Feed()
    f.arrive(call("b", "run-1", "2026-12-01T10:00:02Z", status="error", latency_ms=10_000.0),
             call("a", "run-1", "2026-12-01T10:00:01Z", status="success", latency_ms=812.0),
             call("c", "run-2", "2026-12-01T10:00:03Z"), trace("d"))
    f.flush()
    selected = f.feed.trace("a")
    run = f.feed.same_run(selected)
    assert [t["id"] for t in run] == ["a", "b"]  # in start order, this run only
    html = render_trace(selected, run)
    assert "same run: 2 calls" in html and "10,000 ms" in html and "status-error" in html
    assert f.feed.same_run(f.feed.trace("d")) == []
    assert "same run" not in render_trace(f.feed.trace("c"), f.feed.same_run(f.feed.trace("c")))
