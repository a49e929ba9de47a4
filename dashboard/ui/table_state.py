"""The table's bookkeeping, apart from Panel and from any IO: which traces are rows (newest first,
at most ``max_rows``), which wait behind the badge, which are highlighted until when, and what each
batch changes, as ``TableChanges`` the table view sends as a stream, a patch or a whole new page.

Each row has an integer label (the order rows arrived in) and the trace id as a column: Tabulator
streams and patches by label.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .row_filter import RowFilter
from .rows import Flag, empty_frame, rows_frame, table_row
from .running import TICK_SECONDS, Clock, clock_cells

Trace = dict[str, Any]


@dataclass(frozen=True)
class TableChanges:
    """One batch for the table: rows to stream in, cells to patch, or a whole new frame (``reset``)."""

    appended: pd.DataFrame | None = None  # None rather than an empty frame: building one costs milliseconds
    patches: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    reset: bool = False

    @property
    def empty(self) -> bool:
        return not self.reset and self.appended is None and not self.patches

    def then(self, later: TableChanges) -> TableChanges:
        """This batch followed by ``later``, as one."""
        if later.empty:
            return self
        if self.empty:
            return later
        if self.reset or later.reset:
            return TableChanges(reset=True)
        if self.appended is None or later.appended is None:
            appended = self.appended if later.appended is None else later.appended
        else:
            appended = pd.concat([self.appended, later.appended])
        patches = {column: list(values) for column, values in self.patches.items()}
        for column, values in later.patches.items():
            patches.setdefault(column, []).extend(values)
        # A cell patched in a row that is also being appended: fold the patch into the appended row.
        for column, values in list(patches.items()):
            kept = []
            for label, value in values:
                if appended is not None and label in appended.index:
                    appended.at[label, column] = value
                else:
                    kept.append((label, value))
            if kept:
                patches[column] = kept
            else:
                del patches[column]
        return TableChanges(appended=appended, patches=patches)


NO_CHANGE = TableChanges()


def _same(current: Any, value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return bool(pd.isna(current))
    return current == value


def run_id(trace: Trace) -> str | None:
    """The OpenTelemetry trace a call was part of, when it came through /v1/traces."""
    otel = (trace.get("metadata") or {}).get("otel")
    run = otel.get("trace_id") if isinstance(otel, dict) else None
    return run if isinstance(run, str) else None


class TableState:
    """Every trace loaded for the server's filters (``loaded``, at most ``max_rows``), the rows shown
    (those matching the text filter), the rows held back from view, and their highlights."""

    def __init__(self, max_rows: int, *, highlight_seconds: float = 6.0, flash_seconds: float = 1.5) -> None:
        self.max_rows = max_rows
        self.highlight_seconds = highlight_seconds
        self.flash_seconds = flash_seconds
        self.frame = empty_frame()
        self.held: OrderedDict[str, Trace] = OrderedDict()  # arrivals behind the badge, oldest first
        self._loaded: OrderedDict[str, Trace] = OrderedDict()  # id -> latest trace, oldest first
        self._labels: dict[str, int] = {}  # id -> row label, rows shown
        self._next_label = 0
        self._new_until: dict[int, float] = {}  # row label -> when its "new" highlight ends
        self._flash_until: dict[int, float] = {}  # row label -> when its "changed" flash ends
        self._last_tick: float | None = None  # when the running rows' elapsed cells last moved

    @property
    def loaded_count(self) -> int:
        return len(self._loaded)

    def trace(self, trace_id: str) -> Trace | None:
        return self._loaded.get(trace_id)

    def same_run(self, trace: Trace) -> list[Trace]:
        """The loaded calls of the trace's run (its OpenTelemetry trace), itself included, in start order."""
        run = run_id(trace)
        if run is None:
            return []
        calls = [t for t in self._loaded.values() if run_id(t) == run]
        return sorted(calls, key=lambda t: t.get("started_at") or t.get("created_at") or "")

    def matching(self, which: RowFilter) -> list[Trace]:
        """The loaded traces the filter keeps, oldest first (held ones included)."""
        return which.matching(list(self._loaded.values()))

    def load(self, traces: list[Trace], *, which: RowFilter) -> TableChanges:
        """Start over from these traces (oldest first): what a snapshot holds. Nothing is held."""
        self._loaded = OrderedDict((t["id"], t) for t in traces[-self.max_rows:])
        self.held.clear()
        return self.refilter(which)

    def refilter(self, which: RowFilter) -> TableChanges:
        """Show exactly the loaded traces the filter keeps (and are not held), plain; held ones it no
        longer keeps are let go. The filter is applied once, to both, before anything changes: a query
        that fails on these rows (``QueryError``) leaves the table as it was."""
        held = list(self.held.values())
        rest = [t for t in self._loaded.values() if t["id"] not in self.held]
        kept = which.keeps(held + rest)
        self.held = OrderedDict((t["id"], t) for t, keep in zip(held, kept[:len(held)], strict=True) if keep)
        shown = [t for t, keep in zip(rest, kept[len(held):], strict=True) if keep]
        self._labels = {}
        self._new_until = {}
        self._flash_until = {}
        labels = []
        for trace in shown:
            self._labels[trace["id"]] = self._next_label
            labels.append(self._next_label)
            self._next_label += 1
        self.frame = rows_frame([table_row(t) for t in reversed(shown)], labels[::-1])
        return TableChanges(reset=True)

    def arrive(self, traces: list[Trace], now: float, *, kept: list[bool], holding: bool) -> tuple[TableChanges, list[Trace]]:
        """Take arrivals: shown rows change in place and flash; traces new to the view (new, or
        changed so that the filter now keeps them: ``kept``, one per trace) appear highlighted, or are
        held while ``holding``. Returns the changes and the traces that are new to the view."""
        fresh: list[Trace] = []
        new: list[Trace] = []
        patches: dict[int, dict[str, Any]] = {}
        for trace, keep in zip(traces, kept, strict=True):
            trace_id = trace["id"]
            self._remember(trace)
            if trace_id in self._labels:  # shown: change it in place, and flash it
                label = self._labels[trace_id]
                self._flash_until[label] = now + self.flash_seconds
                patches[label] = table_row(trace, Flag.CHANGED)
            elif trace_id in self.held:
                self.held[trace_id] = trace
            elif keep:
                new.append(trace)
                if holding:
                    self.held[trace_id] = trace
                else:
                    fresh.append(trace)
        changes = self._append(fresh, now, new=True)
        if patches:
            changes = changes.then(self._patch_rows(patches))
        return changes, new

    def release_held(self, now: float) -> TableChanges:
        """The user looks: held rows appear, and every highlight ends."""
        changes = NO_CHANGE
        if self.held:
            held = [t for t in self.held.values() if t["id"] in self._loaded]
            self.held.clear()
            changes = self._append(held, now, new=False)
        seen = list(self._new_until)
        self._new_until.clear()
        return changes.then(self._refresh_flags(seen, now))

    def expire_flags(self, now: float) -> TableChanges:
        ending = [label for label, until in (*self._flash_until.items(), *self._new_until.items()) if until <= now]
        return self._refresh_flags(list(dict.fromkeys(ending)), now) if ending else NO_CHANGE

    def tick_running(self, now: float, stuck_seconds: float) -> TableChanges:
        """Move the elapsed time of the rows shown still in flight, once every ``TICK_SECONDS`` (rows just
        shown get theirs at once); a row past ``stuck_seconds`` turns stuck. Only those rows are patched."""
        due = self._last_tick is None or now - self._last_tick >= TICK_SECONDS
        clocks = self.frame["clock"]
        ticking = clocks != Clock.NONE.value
        if not due:
            ticking &= self.frame["elapsed_s"].isna()
        if due:
            self._last_tick = now
        if not ticking.any():
            return NO_CHANGE
        ids = self.frame.loc[ticking, "id"]
        return self._patch_rows({label: clock_cells(self._loaded[trace_id], now, stuck_seconds)
                                 for label, trace_id in ids.items() if trace_id in self._loaded})

    @property
    def stuck_count(self) -> int:
        """Rows shown whose call has run past the threshold."""
        return int((self.frame["clock"] == Clock.STUCK.value).sum())

    def _remember(self, trace: Trace) -> None:
        """Keep the latest version of every loaded trace; the oldest are forgotten past ``max_rows``."""
        trace_id = trace["id"]
        if trace_id not in self._loaded and len(self._loaded) >= self.max_rows:
            gone, _ = self._loaded.popitem(last=False)
            self.held.pop(gone, None)
        self._loaded[trace_id] = trace

    def _append(self, traces: list[Trace], now: float, *, new: bool) -> TableChanges:
        """Add rows at the newest end (highlighted when ``new``); the oldest roll off past ``max_rows``."""
        if not traces:
            return NO_CHANGE
        labels = list(range(self._next_label, self._next_label + len(traces)))
        self._next_label += len(traces)
        for trace, label in zip(traces, labels):
            self._labels[trace["id"]] = label
            if new:
                self._new_until[label] = now + self.highlight_seconds
        appended = rows_frame([table_row(t, Flag.NEW if new else Flag.NONE) for t in traces], labels)
        newest_first = appended.iloc[::-1]
        frame = pd.concat([newest_first, self.frame]) if not self.frame.empty else newest_first
        overflow = len(frame) - self.max_rows
        if overflow > 0:
            for trace_id in frame["id"].iloc[-overflow:]:
                label = self._labels.pop(trace_id, None)
                self._new_until.pop(label, None)
                self._flash_until.pop(label, None)
            frame = frame.iloc[:-overflow]
        self.frame = frame
        return TableChanges(appended=appended.iloc[-self.max_rows:])

    def _patch_rows(self, rows: dict[int, dict[str, Any]]) -> TableChanges:
        """Change these rows' cells in place; the patch lists only the cells whose value changed."""
        frame = self.frame
        rows = {label: row for label, row in rows.items() if label in frame.index}
        if not rows:
            return NO_CHANGE
        columns = list(dict.fromkeys(column for row in rows.values() for column in row))
        current = frame.loc[list(rows), columns].to_dict("index")  # one read, not one per cell
        patches: dict[str, list[tuple[int, Any]]] = {}
        for label, row in rows.items():
            for column, value in row.items():
                if not _same(current[label][column], value):
                    patches.setdefault(column, []).append((label, value))
        for column, cells in patches.items():  # one write per column
            frame.loc[[label for label, _ in cells], column] = [value for _, value in cells]
        return TableChanges(patches=patches)

    def _flag(self, label: int, now: float) -> Flag:
        """A row flashes while just changed, else stays highlighted while new, else is plain."""
        if self._flash_until.get(label, 0) > now:
            return Flag.CHANGED
        if self._new_until.get(label, 0) > now:
            return Flag.NEW
        return Flag.NONE

    def _refresh_flags(self, labels: list[int], now: float) -> TableChanges:
        """Patch the flag of these rows to what it should be now, forgetting highlights that ended."""
        for label in labels:
            if self._flash_until.get(label, now + 1) <= now:
                del self._flash_until[label]
            if self._new_until.get(label, now + 1) <= now:
                del self._new_until[label]
        return self._patch_rows({label: {"flag": self._flag(label, now).value} for label in labels})
