"""The query box in the feed: the rows, the badge, the counts and the charts follow a pandas query, for
the rows loaded and every arrival, with live staying on; a bad query is said in words while the last
good one keeps working. The same ``feed.query = "..."`` works in a notebook."""

from __future__ import annotations

from .driven import T0, Feed, trace


def finished(trace_id: str, model: str, latency_ms: float, **fields) -> dict:
    return trace(trace_id, model=model, status="success", latency_ms=latency_ms, **fields)


def test_a_query_filters_the_rows_loaded_and_every_arrival_with_live_on():
    f = Feed()
    f.arrive(finished("slow", "gpt-4o", 2500.0), finished("fast", "gpt-4o", 300.0), finished("other", "claude", 4000.0))
    f.flush()
    f.feed.query = 'latency_ms > 1000 and model == "gpt-4o"'
    assert f.ids() == ["slow"]
    assert f.feed.query_error == ""
    assert f.feed.live
    f.arrive(finished("slow-2", "gpt-4o", 1800.0), finished("fast-2", "gpt-4o", 90.0))
    f.flush(T0 + 1)
    assert f.ids() == ["slow", "slow-2"]
    assert f.feed.showing_text == 'showing 2 of 5 · query latency_ms > 1000 and model == "gpt-4o"'
    f.feed.query = ""  # clearing it brings every row back
    assert f.ids() == ["slow", "fast", "other", "slow-2", "fast-2"]


def test_the_badge_counts_only_the_arrivals_the_query_keeps():
    f = Feed()
    f.feed.query = 'name.str.contains("rag")'
    f.feed.selected_id = "x"  # a row is selected: arrivals wait behind the badge
    f.arrive(trace("r1", name="rag-search"), trace("c1", name="chat"), trace("r2", name="rag-answer"))
    f.flush()
    assert f.feed.new_count == 2


def test_a_query_that_does_not_parse_is_said_in_words_and_the_last_good_one_keeps_working():
    f = Feed()
    f.arrive(finished("slow", "gpt-4o", 2500.0), finished("fast", "gpt-4o", 300.0))
    f.flush()
    f.feed.query = "latency_ms > 1000"
    f.feed.query = "latency_ms > "  # half typed
    assert "does not parse" in f.feed.query_error and "last good one" in f.feed.query_error
    f.arrive(finished("slow-2", "gpt-4o", 1200.0), finished("fast-2", "gpt-4o", 100.0))
    f.flush(T0 + 1)
    assert f.ids() == ["slow", "slow-2"]  # still latency_ms > 1000
    f.feed.query = "latency > 1000"
    assert "names no column 'latency'" in f.feed.query_error
    f.feed.query = "latency_ms > 2000"
    assert f.feed.query_error == "" and f.ids() == ["slow"]


def test_a_query_that_could_run_code_is_refused_and_nothing_runs():
    f = Feed()
    f.arrive(trace("a"))
    f.flush()
    f.feed.query = '__import__("os").system("touch /tmp/query-pwned")'
    assert "only a column's own methods" in f.feed.query_error
    assert f.ids() == ["a"]


def test_a_query_that_fails_on_the_rows_loaded_is_refused_before_it_applies():
    f = Feed()
    f.arrive(trace("a", name="chat"))
    f.flush()
    f.feed.query = "name > 3"  # text compared with a number
    assert "cannot be applied" in f.feed.query_error
    assert f.ids() == ["a"]


def test_the_charts_follow_the_query():
    f = Feed()
    f.arrive(*(finished(f"g{i}", "gpt-4o", 100.0 * (i + 1)) for i in range(5)),
             *(finished(f"c{i}", "claude", 5000.0) for i in range(5)))
    f.flush()
    assert {stats.model for stats in f.feed.model_stats} == {"gpt-4o", "claude"}
    f.feed.query = 'model == "gpt-4o"'
    assert {stats.model for stats in f.feed.model_stats} == {"gpt-4o"}
    f.arrive(finished("c-late", "claude", 5000.0), finished("g-late", "gpt-4o", 100.0))
    f.flush(T0 + f.feed.stats_seconds)  # the next computation of the stats
    assert {stats.model for stats in f.feed.model_stats} == {"gpt-4o"}


def test_the_query_and_the_text_filter_apply_together():
    f = Feed()
    f.arrive(finished("a", "gpt-4o", 2000.0, name="rag"), finished("b", "gpt-4o", 2000.0, name="chat"),
             finished("c", "gpt-4o", 10.0, name="rag"))
    f.flush()
    f.feed.query = "latency_ms > 1000"
    f.feed.text = "rag"
    assert f.ids() == ["a"]
    assert f.feed.showing_text == 'showing 1 of 3 · text "rag" · query latency_ms > 1000'
