"""The trace table's selection, without a browser: it follows the trace a click picked, not a row position."""

from __future__ import annotations

from dashboard.ui.views.table import TraceTable

from ..driven import T0, Feed, trace


def table_with(*ids: str) -> tuple[Feed, TraceTable]:
    f = Feed()
    f.arrive(*(trace(i, name=f"call-{i}") for i in ids))
    f.flush()
    return f, TraceTable(feed=f.feed)


def test_a_click_selects_the_trace_it_picked_even_when_a_row_arrived_before_its_message():
    f, view = table_with("a", "b", "c")  # shown newest first: c, b, a
    # The page clicked "b" at position 1 of a page that did not have "d" yet; "d" is in the table now.
    f.arrive(trace("d"))
    f.flush(T0 + 1)
    assert list(view.table.value["id"]) == ["d", "c", "b", "a"]
    view.sensor.picked = {"id": "b", "at": 1.0}
    view.table.selection = [1]  # Tabulator's own message: a position, now "c"'s
    assert f.feed.selected_id == "b"
    assert view.table.selection == [2]  # the highlight moved back onto "b"


def test_without_a_pick_the_position_still_selects():
    f, view = table_with("a", "b")
    view.table.selection = [0]
    assert f.feed.selected_id == "b"


def test_deselecting_clears_the_selected_trace():
    f, view = table_with("a", "b")
    view.sensor.picked = {"id": "a", "at": 1.0}
    assert view.table.selection == [1]
    view.sensor.deselect_requests += 1
    assert (f.feed.selected_id, view.table.selection) == ("", [])


def test_a_batch_that_only_changes_cells_sends_those_cells_not_the_page_again():
    from bokeh.document import Document

    f, view = table_with("a", "b")
    model = view.table.get_root(Document())  # what the page holds: the first page's rows
    page = model.source.data
    f.arrive(trace("a", status="success", latency_ms=120.0))  # a call ends: its row changes in place
    f.flush(T0 + 1)
    assert model.source.data is page  # patched, not replaced
    assert list(page["status"]) == ["running", "success"] and list(page["flag"]) == ["new", "changed"]
    f.arrive(trace("c"))  # a new row: the page is sent again, newest first
    f.flush(T0 + 2)
    assert model.source.data is not page and list(model.source.data["id"]) == ["c", "b", "a"]
