"""The trace table: newest first, status as a coloured pill, new rows highlighted and changed rows flashed.

The feed keeps its frame newest first, so the table needs no sorting of its own. Paginated on the
server: a batch that adds rows sends the visible page (50 rows), never the whole frame; one that only
changes cells (ticks, highlights fading, calls ending) sends just those cells. While the user is busy
(a row selected, the pointer on the rows, scrolled down, another page, or sorted by a column) the table is left alone, so
nothing moves under them; it catches up, in one message, when they come back or click the badge.
"""

from __future__ import annotations

import panel as pn
import param
from bokeh.models.widgets.tables import HTMLTemplateFormatter, NumberFormatter
from panel.viewable import Viewer

from ..feed import TraceFeed
from ..running import CLOCK_COLUMNS
from .cells import LATENCY_TEMPLATE, RUNNING_CSS, STATUS_TEMPLATE
from .sensor import TableSensor
from .style import trace_status_css

PAGE_SIZE = 50
TABLE_HEIGHT = 460  # about 14 rows in view, and the charts still above the fold at 1440×900

# Each row carries its flag on the status pill; ``:has`` lets the whole row take the colour.
TABLE_CSS = """
.tabulator-row:has([data-flag="new"]) { background-color: #fffbeb !important; box-shadow: inset 4px 0 0 #f59e0b; }
.tabulator-row:has([data-flag="changed"]) { background-color: #dbeafe !important; box-shadow: inset 4px 0 0 #3b82f6; }
.tabulator-row.tabulator-selected { background-color: #e0e7ff !important; outline: 2px solid #4f46e5; outline-offset: -2px; }
""" + trace_status_css() + RUNNING_CSS


class ReadOnlyTabulator(pn.widgets.Tabulator):
    """A Tabulator whose data only Python changes: data the browser sends back is ignored.

    In a notebook, Panel 1.9's comm manager sends every change the kernel makes back to it from the
    browser. A page sent a batch earlier then arrived as if the user had edited it: Tabulator wrote it
    into ``value`` (the feed's own frame) and, once the frame had moved on, raised ValueError or
    "'NoneType' object has no attribute 'iloc'" inside the comm handler, which printed a traceback
    above the view and left the notebook's document un-held, so later updates were dropped. The
    table is never edited (``disabled=True``), so nothing is lost.
    """

    def _process_data(self, data) -> None:
        return None


class TraceTable(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)

    def __init__(self, **params):
        super().__init__(**params)
        feed = self.feed
        self.table = ReadOnlyTabulator(
            feed.frame,
            pagination="remote",
            page_size=PAGE_SIZE,
            show_index=False,
            selectable=1,
            disabled=True,
            hidden_columns=["seq", "id", "flag", *CLOCK_COLUMNS],
            titles={"time": "time (UTC)", "latency_ms": "latency ms", "total_tokens": "tokens", "cost_usd": "cost $"},
            formatters={
                "status": HTMLTemplateFormatter(template=STATUS_TEMPLATE),
                # The whole error on hover when the cell cuts it off (escaped: it is the writer's text).
                "error": HTMLTemplateFormatter(template='<span title="<%- value %>"><%- value %></span>'),
                "latency_ms": HTMLTemplateFormatter(template=LATENCY_TEMPLATE),
                "total_tokens": NumberFormatter(format="0,0"),
                "cost_usd": NumberFormatter(format="0.00000"),
            },
            stylesheets=[TABLE_CSS],
            css_classes=["trace-table"],
            # Said in the empty table, rather than a blank box: nothing loaded yet, or nothing matches.
            configuration={"placeholder": "No traces to show: none yet, or none match the filters"},
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            height=TABLE_HEIGHT,
        )
        self.sensor = TableSensor(width=0, height=0, margin=0)
        feed.param.watch(self._show, "changes")
        feed.param.watch(self._on_holding, "holding_reason")
        feed.param.watch(self._on_feed_selection, "selected_id")
        self.table.param.watch(self._on_selection, "selection")
        self.table.param.watch(self._on_viewport, ["page", "sorters"])
        self.sensor.param.watch(self._on_viewport, ["scrolled", "pointer_over"])
        self.sensor.param.watch(self._deselect, "deselect_requests")
        self.sensor.param.watch(self._on_pick, "picked")

    def _show(self, *_: object) -> None:
        """Send the current page of the feed's frame. While the user is busy with the table, rows
        still change in place (a running call ends, a highlight fades), but none is added."""
        changes = self.feed.changes
        if self.feed.holding and changes.appended is not None and not changes.reset:
            return
        if self._cells_only(changes):
            self.table.patch(changes.patches)  # labels; Panel sends those on the page shown, by position
            return
        # Same object, then a trigger: Panel recomputes and sends the page, and keeps the selection
        # (it clears it when ``value`` becomes another object).
        with param.discard_events(self.table):
            self.table.value = self.feed.frame
        self.table.param.trigger("value")
        self._select_by_id()

    def _cells_only(self, changes) -> bool:
        """Only cells changed (a tick, a highlight ending, a call ending), in the frame the table already
        holds, on its first page, unsorted: send those cells, not the page again. (On another page
        Panel would send the page's cells at the frame's positions.)"""
        return (not changes.reset and changes.appended is None and bool(changes.patches)
                and self.table.value is self.feed.frame and self.table.page == 1 and not self.table.sorters)

    def _on_holding(self, event: param.parameterized.Event) -> None:
        if not event.new:  # the user is back: show what changed meanwhile
            self._show()

    def _on_pick(self, event: param.parameterized.Event) -> None:
        """A click picked a trace by id: that trace is the selection, wherever its row is by now."""
        if event.new.get("id"):
            self.feed.selected_id = str(event.new["id"])
            self._select_by_id()

    def _on_selection(self, _: param.parameterized.Event) -> None:
        rows = self.table.selected_dataframe
        if not len(rows):
            self.feed.selected_id = ""
        elif not self.sensor.picked:  # the page never said which trace (no pick yet): the position must do
            self.feed.selected_id = str(rows["id"].iloc[0])
        self._select_by_id()

    def _select_by_id(self) -> None:
        """Keep the highlighted row on the selected trace: positions move when rows are added."""
        selected = self.feed.selected_id
        if not selected:
            return
        shown = self.table.value
        positions = (shown["id"] == selected).to_numpy().nonzero()[0]
        want = [int(positions[0])] if len(positions) else []
        if self.table.selection != want:
            self.table.selection = want

    def _on_feed_selection(self, event: param.parameterized.Event) -> None:
        if not event.new and self.table.selection:
            self.table.selection = []

    def _on_viewport(self, *_: object) -> None:
        sensor = self.sensor
        self.feed.at_top = (self.table.page == 1 and not self.table.sorters
                            and not sensor.scrolled and not sensor.pointer_over)

    def _deselect(self, *_: object) -> None:
        self.table.selection = []
        self.feed.selected_id = ""

    def show_newest(self) -> None:
        """What the badge does: drop the selection and any sorting, go to the top, show what arrived."""
        self.feed.selected_id = ""
        self.table.sorters = []
        self.table.page = 1
        self.sensor.to_top()
        self.feed.view_new()

    def __panel__(self):
        return pn.Column(self.table, self.sensor, sizing_mode="stretch_width")
