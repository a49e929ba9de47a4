"""ModelCharts, the per-model charts, over a TraceFeed driven by hand, without a browser: what each chart
plots for each model, the legend, the "fill in" note, gaps for failed-only models, and rollover."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from bokeh.models import ColumnDataSource, GlyphRenderer

from dashboard.client import StreamHealth, TraceEvent
from dashboard.ui.feed import TraceFeed
from dashboard.ui.stats import ModelStats
from dashboard.ui.views.charts import MAX_POINTS, ModelCharts

from ..support import wait_until

T0 = 1_800_000_000.0
ENDED = datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
FIELDS = ("p50", "p95", "calls_per_min", "error_pct", "cost_per_min", "tokens_per_min")


def trace(trace_id: str, **fields) -> dict:
    base = {"id": trace_id, "user_id": "alice", "name": "summarize", "model": "gpt-4o", "status": "running",
            "created_at": ENDED, "latency_ms": None, "error": None}
    return base | fields


def done(trace_id: str, model: str, latency_ms: float) -> dict:
    return trace(trace_id, model=model, status="success", latency_ms=latency_ms, ended_at=ENDED)


def failed(trace_id: str, model: str, latency_ms: float = 30.0) -> dict:
    return trace(trace_id, model=model, status="error", latency_ms=latency_ms, ended_at=ENDED, error="Timeout")


class Charts:
    """A TraceFeed with its ModelCharts: events in, ``flush(at)``, and what the charts hold."""

    def __init__(self, **params) -> None:
        params.setdefault("stats_seconds", 5)
        self.feed = TraceFeed("token", **params)
        self.feed.on_health(StreamHealth(status="connected"))  # points are plotted only while connected
        self.charts = ModelCharts(feed=self.feed)
        self.seq = 0
        self.recomputed: list[tuple[datetime, list[ModelStats]]] = []  # what the feed published, in order

    def arrive(self, *traces: dict) -> None:
        for item in traces:
            self.seq += 1
            self.feed.ingest(TraceEvent(self.seq, "trace", item))

    def flush(self, at: float) -> None:
        before = self.feed.stats_at
        self.feed.flush(now=at)
        if self.feed.stats_at != before and self.feed.model_stats:
            self.recomputed.append((datetime.fromtimestamp(self.feed.stats_at, UTC).replace(tzinfo=None),
                                    list(self.feed.model_stats)))

    @property
    def figures(self):
        return (self.charts.latency, self.charts.calls, self.charts.errors, self.charts.cost, self.charts.tokens)

    def model_renderers(self, plot) -> list[GlyphRenderer]:
        """The renderers that draw a model (not the empty placeholder line every figure starts with)."""
        return [r for r in plot.renderers if r.data_source in self.charts.sources.values()]

    def legend_labels(self, plot=None) -> list[str]:
        return [item.label.value for item in self.charts.legends[plot or self.charts.latency].items]


def column(source: ColumnDataSource, name: str) -> list:
    return list(source.data[name])


def test_before_any_call_completes_the_note_shows_and_no_model_is_drawn():
    c = Charts()
    c.flush(T0)  # stats computed over nothing
    c.arrive(trace("r1", model="gpt-4o"), trace("r2", model="claude", status="pending"))
    c.flush(T0 + 5)  # stats recomputed: calls in flight do not count yet
    assert c.feed.stats_at == T0 + 5 and c.feed.model_stats == []
    assert c.charts.empty.visible
    assert "Charts fill in as calls complete" in c.charts.empty.object
    assert c.charts.sources == {}
    assert c.legend_labels() == []
    for plot in c.figures:
        # only the empty placeholder line, with no data
        assert [dict(r.data_source.data) for r in plot.renderers] == [{"x": [], "y": []}]
    layout = c.charts.__panel__()
    assert layout.objects[0].objects == [c.charts.empty]  # the note, where the charts will be


def test_each_model_gets_one_source_with_one_point_per_recompute_matching_the_feeds_stats():
    c = Charts(stats_seconds=5)
    c.arrive(*(done(f"g{i}", "gpt-4o", 100.0 * (i + 1)) for i in range(20)))
    c.arrive(done("c0", "claude", 400.0), done("c1", "claude", 800.0), failed("c2", "claude"))
    c.flush(T0 + 10)
    c.flush(T0 + 11)  # within stats_seconds: no recompute, so no point
    c.arrive(done("g20", "gpt-4o", 5000.0), failed("c3", "claude"))
    c.flush(T0 + 15)
    c.flush(T0 + 20)
    assert len(c.recomputed) == 3

    assert not c.charts.empty.visible
    assert c.charts.holder.objects[0].objects == c.charts.panes  # the figures, in the note's place
    assert sorted(c.charts.sources) == ["claude", "gpt-4o"]
    for model, source in c.charts.sources.items():
        assert column(source, "time") == [at for at, _ in c.recomputed]
        assert set(column(source, "model")) == {model}
        expected = [{s.model: s for s in stats}[model] for _, stats in c.recomputed]
        assert column(source, "p50") == [s.p50_ms for s in expected]
        assert column(source, "p95") == [s.p95_ms for s in expected]
        assert column(source, "calls_per_min") == [s.calls_per_min for s in expected]
        assert column(source, "error_pct") == [s.error_rate * 100 for s in expected]

    gpt, claude = c.charts.sources["gpt-4o"], c.charts.sources["claude"]
    # What a reader of the charts sees, worked out by hand from the calls above.
    assert column(gpt, "p50")[0] == 1000 and column(gpt, "p95")[0] == 1900
    assert column(gpt, "p95")[1:] == [2000, 2000]  # the 5 s call arrived: 21 calls, nearest rank 20
    assert column(claude, "p50")[0] == 400 and column(claude, "p95")[0] == 800  # the failed call's 30 ms is not latency
    assert column(claude, "error_pct") == pytest.approx([100 / 3, 50.0, 50.0])  # 1 of 3 failed, then 2 of 4
    assert column(gpt, "error_pct") == [0.0, 0.0, 0.0]
    assert column(gpt, "calls_per_min")[0] == 20 and column(gpt, "calls_per_min")[-1] == 21  # per the first minute


def test_each_model_has_one_colour_in_every_chart_and_every_chart_has_a_legend():
    c = Charts()
    c.arrive(done("g", "gpt-4o", 100.0), done("c", "claude", 200.0))
    c.flush(T0)
    c.arrive(done("h", "haiku", 300.0))  # a model seen later gets its lines then
    c.flush(T0 + 5)

    for plot in c.figures:
        assert c.legend_labels(plot) == ["claude", "gpt-4o", "haiku"]
        assert len(plot.legend) == 1 and plot.legend[0] is c.charts.legends[plot]
        for item in c.charts.legends[plot].items:
            source = c.charts.sources[item.label.value]
            assert {r.data_source for r in item.renderers} == {source}  # the item hides that model's lines

    colours = {}
    for model, source in c.charts.sources.items():
        drawn = {r.glyph.line_color for plot in c.figures for r in c.model_renderers(plot) if r.data_source is source}
        assert len(drawn) == 1, (model, drawn)  # the same colour in all three charts
        colours[model] = drawn.pop()
    assert len(set(colours.values())) == 3  # and a different one per model
    for plot in c.figures:
        assert {r.data_source for r in c.model_renderers(plot)} == set(c.charts.sources.values())


def test_a_model_with_only_failed_calls_leaves_a_latency_gap_not_a_zero():
    c = Charts()
    c.arrive(failed("f1", "broken-model"), failed("f2", "broken-model"), done("g", "gpt-4o", 250.0))
    c.flush(T0)
    broken = c.charts.sources["broken-model"]
    assert math.isnan(column(broken, "p50")[0]) and math.isnan(column(broken, "p95")[0])
    assert column(broken, "error_pct") == [100.0]
    assert column(broken, "calls_per_min") == [2.0]  # its traffic and errors are still drawn
    assert column(c.charts.sources["gpt-4o"], "p50") == [250.0]


def test_points_roll_over_at_max_points():
    c = Charts(stats_seconds=5, stats_window=10 * 24 * 3600)  # the calls stay in the window throughout
    c.arrive(done("g", "gpt-4o", 100.0))
    extra = 7
    for i in range(MAX_POINTS + extra):
        c.flush(T0 + 5 * i)
    assert len(c.recomputed) == MAX_POINTS + extra
    times = column(c.charts.sources["gpt-4o"], "time")
    assert len(times) == MAX_POINTS
    assert times == [at for at, _ in c.recomputed[extra:]]  # the oldest points went, the newest stayed
    for name in ("model", *FIELDS):
        assert len(column(c.charts.sources["gpt-4o"], name)) == MAX_POINTS


def test_nothing_is_plotted_while_disconnected_or_paused():
    c = Charts(stats_seconds=5)
    c.arrive(done("g", "gpt-4o", 100.0))
    c.flush(T0)
    c.feed.on_health(StreamHealth(status="reconnecting", attempt=1))
    c.flush(T0 + 5)
    c.flush(T0 + 10)
    c.feed.on_health(StreamHealth(status="connected"))
    c.flush(T0 + 15)
    assert column(c.charts.sources["gpt-4o"], "time") == [at for at, _ in c.recomputed]
    assert len(c.recomputed) == 2  # before the outage and after it: a gap, not a fall in traffic


def test_after_a_reload_the_charts_start_over_from_the_loaded_traces_past():
    from dashboard.client import Snapshot

    c = Charts(stats_seconds=5, stats_window=300)
    c.arrive(done("old", "claude", 100.0))
    c.flush(T0)
    # A reload (new filters) brings calls that ended over the last four minutes.
    past = [done(f"p{i}", "gpt-4o", 200.0) | {"ended_at": datetime.fromtimestamp(T0 - 240 + 20 * i, UTC).isoformat()}
            for i in range(12)]
    c.feed.ingest(Snapshot(list(reversed(past)), last_event_id=40, reason=""))
    c.flush(T0 + 1)
    assert "claude" not in {s.model for _, stats in [(0, c.feed.model_stats)] for s in stats}
    assert len(column(c.charts.sources["claude"], "time")) == 0  # what the old filters showed is gone
    times = column(c.charts.sources["gpt-4o"], "time")
    assert len(times) > 10  # a line across the loaded past at once, not one point ramping up
    assert times[0] <= datetime.fromtimestamp(T0 - 200, UTC).replace(tzinfo=None)
    assert column(c.charts.sources["gpt-4o"], "p50")[-1] == 200.0


def test_cost_and_tokens_per_minute_are_charted_per_model_with_their_units():
    c = Charts(stats_seconds=5)
    c.arrive(*(done(f"g{i}", "gpt-4o", 100.0) | {"total_tokens": 1500, "cost_usd": 0.01} for i in range(4)))
    c.arrive(done("c0", "claude", 200.0) | {"total_tokens": 800, "cost_usd": 0.5}, done("c1", "claude", 300.0))
    c.flush(T0 + 10)
    gpt, claude = c.charts.sources["gpt-4o"], c.charts.sources["claude"]
    # Over the first minute: what a reader of the two charts sees, worked out by hand.
    assert column(gpt, "tokens_per_min") == [6000] and column(gpt, "cost_per_min") == pytest.approx([0.04])
    assert column(claude, "tokens_per_min") == [800] and column(claude, "cost_per_min") == [0.5]  # c1 said neither
    assert c.charts.cost.yaxis[0].axis_label == "USD / min"
    assert c.charts.tokens.yaxis[0].axis_label == "tokens / min"
    assert c.legend_labels(c.charts.cost) == c.legend_labels(c.charts.tokens) == ["claude", "gpt-4o"]
    assert len(c.charts.panes) == 5  # beside the other three, in the same flex-wrapped row


def test_a_marked_model_is_flagged_in_every_legend_with_its_reason_until_unmarked():
    c = Charts()
    c.charts.mark("claude", "p95 2,400 ms, above 2,000 ms")  # before its first call: marked when it appears
    c.arrive(done("g", "gpt-4o", 100.0), done("c", "claude", 2400.0))
    c.flush(T0)
    for plot in c.figures:
        assert c.legend_labels(plot) == ["⚠ claude", "gpt-4o"]
    assert c.charts.marked.visible and "claude: p95 2,400 ms, above 2,000 ms" in c.charts.marked.object
    c.charts.unmark("claude")
    for plot in c.figures:
        assert c.legend_labels(plot) == ["claude", "gpt-4o"]
    assert not c.charts.marked.visible


def test_a_reset_is_marked_where_it_happened_in_every_chart_once():
    from bokeh.models import Span

    from dashboard.client import Snapshot

    c = Charts()
    c.feed.ingest(Snapshot([done("s1", "gpt-4o", 100.0)], last_event_id=90, reason="events after 3 are no longer kept"))
    c.flush(T0 + 60)
    c.flush(T0 + 61)  # nothing new: the same reset is not marked twice
    for plot in c.figures:
        spans = [item for item in plot.center if isinstance(item, Span)]
        assert [span.location for span in spans] == [(T0 + 60) * 1000]


async def test_served_the_figures_join_the_page_a_moment_after_their_first_points_and_not_after_the_session():
    """In a served page the first points come with the table's first rows; the figures follow in a message
    of their own, so the rows and the connection state are drawn first. A session gone meanwhile gets none."""
    import asyncio

    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from dashboard.ui.views import charts as charts_module

    for close_first in (False, True):
        c = Charts()
        with set_curdoc(Document()):
            c.arrive(done("a", "gpt-4o", 300.0))
            c.flush(T0)
            assert c.charts.sources and c.charts.holder.objects == [c.charts.empty]  # not yet in the page
            timer = c.charts._show_later
            assert timer is not None and timer.when() - asyncio.get_running_loop().time() <= charts_module.SHOW_AFTER_S
            if close_first:
                c.charts.close()
                assert timer.cancelled()
                continue
            await wait_until(lambda charts=c.charts: charts.holder.objects != [charts.empty], timeout=5)  # the timer's turn
        assert c.charts.holder.objects[0].objects == c.charts.panes
