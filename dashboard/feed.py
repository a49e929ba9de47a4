"""TraceFeed: the dashboard's view-model. It owns the trace frame, the new-count, the connection's
health and errors, and the per-model stats; the views only read it and call its actions.

One background task follows the stream (``dashboard.client``) and drops events into a small inbox
keyed by trace id (a burst of updates to one call coalesces into one row change). A second task
applies the inbox, resting ``batch_seconds`` between batches, under ``pn.io.hold()``, so a burst
reaches the browser as one message, and keeps the clocks (health age, "refreshed 8 s ago", retry countdown) current.

Arrivals never move rows under a user who has selected a row or scrolled away from the top: they
queue behind the "N new" badge until viewed. Works the same in ``panel serve`` and in Jupyter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pandas as pd
import panel as pn
import param

from .client import (
    Snapshot,
    StreamError,
    StreamHealth,
    TraceEvent,
    TraceStream,
    TraceStreamError,
    fetch_snapshot,
)
from .rows import Flag, empty_frame, matches_text, rows_frame, table_row
from .stats import RollingModelStats

log = logging.getLogger(__name__)

STATUSES = ["", "pending", "running", "success", "error"]
FINAL_STATUSES = ("success", "error")
Notifier = Callable[[str, str], None]  # (level: "info" | "success" | "warning" | "error", message)


@dataclass(frozen=True)
class TableChanges:
    """One batch for the table: rows to stream in, cells to patch, or a whole new frame (``reset``)."""

    appended: pd.DataFrame | None = None  # None rather than an empty frame: building one costs milliseconds
    patches: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    reset: bool = False

    @property
    def empty(self) -> bool:
        return not self.reset and self.appended is None and not self.patches


def _parse_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same(current: Any, value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return bool(pd.isna(current))
    return current == value


def describe_call(trace: dict[str, Any]) -> str:
    """'gpt-4o · summarize · 812 ms': what a toast says about one call."""
    parts = [trace.get("model") or "unknown model", trace.get("name") or trace.get("id", "")]
    latency = trace.get("latency_ms")
    parts.append(f"{latency:,.0f} ms" if latency is not None else trace.get("status") or "")
    return " · ".join(part for part in parts if part)


class TraceFeed(param.Parameterized):
    """The live traces of one user, as a pandas frame plus everything the dashboard shows about them."""

    # What the user sets.
    api_url = param.String(default="http://127.0.0.1:8000", doc="The trace API.")
    live = param.Boolean(default=True, doc="Follow the stream. Off closes it; on resumes without a gap.")
    model = param.String(default="", doc="Only this model ('' for all): a filter on the server's stream.")
    status_filter = param.Selector(default="", objects=STATUSES, doc="Only this status ('' for all), on the server.")
    text = param.String(default="", doc="Only traces containing this text (name, model, error, input, output).")
    max_rows = param.Integer(default=5000, bounds=(10, None), doc="Rows kept; older ones roll off.")
    batch_seconds = param.Number(default=0.25, bounds=(0.01, None), doc="How often arrivals are applied.")
    warn_after = param.Number(default=60.0, bounds=(1, None), doc="Seconds without a ping or event before warning.")
    highlight_seconds = param.Number(default=6.0, doc="How long a new row stays highlighted (until viewed at most).")
    flash_seconds = param.Number(default=1.5, doc="How long an updated row flashes.")
    toast_seconds = param.Number(default=10.0, doc="Trace toasts are coalesced over this long (one per burst).")
    stats_seconds = param.Number(default=5.0, doc="How often the per-model stats are recomputed.")
    stats_window = param.Number(default=300.0, doc="The rolling window of the per-model stats, seconds.")
    max_backoff = param.Number(default=30.0, doc="The longest wait between reconnection attempts.")
    initial_backoff = param.Number(default=0.5, doc="The first wait between reconnection attempts.")

    # What the views read.
    frame = param.DataFrame(doc="The rows shown, newest first, at most ``max_rows``.")
    changes = param.ClassSelector(class_=TableChanges, doc="The last batch applied to ``frame``.")
    new_count = param.Integer(default=0, doc="Traces arrived since the user last viewed them.")
    queued = param.Integer(default=0, doc="Arrivals held back while the user has scrolled or selected.")
    status = param.String(default="off", doc="off | connecting | connected | reconnecting | error")
    status_text = param.String(default="off", doc="The connection state in words.")
    error = param.String(default="", doc="What went wrong, for the banner ('' when nothing is wrong).")
    heartbeat_age = param.Number(default=None, allow_None=True, doc="Seconds since the last ping or event.")
    health_warning = param.Boolean(default=False, doc="No ping or event for more than ``warn_after``.")
    last_refresh_at = param.Date(default=None, doc="When the snapshot was last loaded (UTC).")
    refresh_text = param.String(default="not loaded yet")
    models = param.List(default=[], item_type=str, doc="Every model seen, for the filter.")
    model_stats = param.List(default=[], doc="ModelStats per model over the rolling window.")
    stats_at = param.Number(default=None, allow_None=True, doc="Epoch seconds of ``model_stats``.")

    holding_reason = param.String(default="", doc="Why arrivals wait behind the badge ('' when they show at once).")

    # What the table tells us about the user.
    selected_id = param.String(default="", doc="The selected trace's id ('' for none).")
    at_top = param.Boolean(default=True, doc="The user sees the top of the table (first page, not scrolled).")

    def __init__(self, token: str | None = None, *, notifier: Notifier | None = None,
                 client: httpx.AsyncClient | None = None, **params: Any) -> None:
        params.setdefault("frame", empty_frame())
        params.setdefault("changes", TableChanges())
        super().__init__(**params)
        self._token = token or ""
        self.notifier = notifier
        self._client = client  # for tests; normally each stream owns its own
        self.toasts: deque[tuple[str, str]] = deque(maxlen=100)
        self._traces: dict[str, dict[str, Any]] = {}  # id -> latest trace, for rows shown and queued
        self._labels: dict[str, int] = {}  # id -> row label, rows shown
        self._next_label = 0
        self._inbox: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._held: OrderedDict[str, dict[str, Any]] = OrderedDict()  # arrivals behind the badge
        self._new_until: dict[int, float] = {}  # row label -> when its "new" highlight ends
        self._flash_until: dict[int, float] = {}  # row label -> when its "changed" flash ends
        self._stats = RollingModelStats(self.stats_window)
        self._pending_snapshot: Snapshot | None = None
        self._needs_snapshot = True
        self._position: int | None = None
        self._health = StreamHealth()
        self._own_problem: str | None = None  # a failure outside the stream (the snapshot load)
        self._own_retry_at: float | None = None
        self._own_attempt = 0
        self._was_connected = False
        self._toast_new: list[dict[str, Any]] = []
        self._toast_failed: list[dict[str, Any]] = []
        self._last_toast = 0.0
        self._last_stats = 0.0
        self._last_clock = 0.0
        self._stream: TraceStream | None = None
        self._wake = asyncio.Event()  # live toggled, token set, Retry pressed
        self._restart = asyncio.Event()  # filters changed, Refresh pressed, live turned off
        self._tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------------------- actions

    @property
    def token(self) -> str:
        return self._token

    def set_token(self, token: str) -> None:
        """Use this token from now on (asked for in the page when TRACES_TOKEN is not set)."""
        self._token = token.strip()
        self._needs_snapshot = True
        self._kick()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def start(self) -> None:
        """Start following (on the running event loop). Stop with ``await feed.stop()``."""
        if self.running:
            return
        self._tasks = [
            asyncio.create_task(self._follow_loop(), name="trace-feed follow"),
            asyncio.create_task(self._apply_loop(), name="trace-feed apply"),
        ]

    async def stop(self) -> None:
        """Stop both tasks and close the stream; the frame stays as it is."""
        tasks = self._tasks
        self.cancel()
        self._tasks = []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._stream = None
        self._health = StreamHealth(status="off")
        self._update_status(time.time())

    def cancel(self) -> None:
        """Cancel both tasks without waiting: for a session-destroyed callback, which cannot await.
        The tasks still close their stream on the way out."""
        for task in self._tasks:
            task.cancel()

    def retry_now(self) -> None:
        """Reconnect at once instead of waiting out the backoff (the banner's Retry button)."""
        self._own_retry_at = None
        if self._stream is not None and self._health.status == "reconnecting":
            self._stream.retry_now()
        self._kick()

    def refresh(self) -> None:
        """Reload the snapshot, then continue the stream from its position, staying live."""
        self._needs_snapshot = True
        self._kick()

    def view_new(self) -> None:
        """The user looks at the new rows: queued rows appear, highlights end, the count resets."""
        now = time.time()
        with pn.io.hold():
            changes = TableChanges()
            if self._held:
                changes = self._append(list(self._held.values()), now, new=False)
                self._held.clear()
            seen = list(self._new_until)
            self._new_until.clear()
            changes = self._merge(changes, self._refresh_flags(seen, now))
            self.queued = 0
            self.new_count = 0
            self._publish(changes)

    def filtered_frame(self) -> pd.DataFrame:
        """A copy of the rows shown (newest first), for your own analysis."""
        return self.frame.copy()

    async def snapshot_frame(self, limit: int = 1000) -> pd.DataFrame:
        """Pull your recent traces (with every field) into a new DataFrame, newest first."""
        snapshot = await fetch_snapshot(self.api_url, self._token, model=self.model or None,
                                        status=self.status_filter or None, limit=limit, client=self._client)
        return pd.DataFrame(snapshot.traces)

    async def wait_for(self, predicate: Callable[["TraceFeed"], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(feed)`` holds, checked whenever the feed changes (not by polling).

        ``await feed.wait_for(lambda f: f.status == "connected")`` in a notebook or a test; raises
        TimeoutError, saying what the feed was doing, if it does not happen in ``timeout`` seconds.
        """
        ready = asyncio.Event()

        def check(*_: object) -> None:
            if predicate(self):
                ready.set()

        watcher = self.param.watch(check, [name for name in self.param if name != "name"])
        try:
            check()
            async with asyncio.timeout(timeout):
                await ready.wait()
        except TimeoutError:
            raise TimeoutError(f"gave up after {timeout:g} s: status {self.status_text!r}, {len(self.frame)} rows"
                               + (f", {self.error}" if self.error else "")) from None
        finally:
            self.param.unwatch(watcher)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The whole trace (input, output, metadata) of a row shown or queued."""
        return self._traces.get(trace_id)

    # --------------------------------------------------------------------- what changes it

    @param.depends("live", watch=True)
    def _on_live(self) -> None:
        self._kick()

    @param.depends("model", "status_filter", watch=True)
    def _on_server_filter(self) -> None:
        self.refresh()

    @param.depends("text", watch=True)
    def _on_text(self) -> None:
        """Re-filter the rows shown; arrivals are filtered as they come. Traces hidden earlier by
        another text are not kept, so widening the filter shows them again only after a Refresh."""
        kept = [self._traces[trace_id] for trace_id in self._labels if matches_text(self._traces[trace_id], self.text)]
        with pn.io.hold():
            self._publish(self._replace(kept, keep_counts=True))

    @param.depends("selected_id", "at_top", watch=True)
    def _on_viewport(self) -> None:
        self.holding_reason = ("a row is selected" if self.selected_id else
                               "you browse the table" if not self.at_top else "")
        if not self.holding:
            self.view_new()

    @property
    def holding(self) -> bool:
        """Arrivals wait behind the badge: the user has a row selected or is not at the top."""
        return bool(self.selected_id) or not self.at_top

    def _kick(self) -> None:
        self._wake.set()
        self._restart.set()

    # ------------------------------------------------------------------- the follow task

    async def _follow_loop(self) -> None:
        while True:
            self._wake.clear()
            self._restart.clear()
            if not self.live or not self._token:
                self._health = StreamHealth(status="off")
                await self._wake.wait()
                continue
            try:
                if self._needs_snapshot:
                    await self._load_snapshot()
                await self._follow_stream()
            except TraceStreamError as exc:  # 401, a bad filter: retrying will not help until something changes
                self._fail(str(exc))
                await self._wake.wait()
            except (httpx.HTTPError, OSError) as exc:  # the snapshot could not load: back off and try again
                await self._back_off(f"cannot load traces from {self.api_url}: {exc or type(exc).__name__}")

    async def _load_snapshot(self) -> None:
        self._own_problem = None
        self._health = StreamHealth(status="connecting")
        snapshot = await fetch_snapshot(self.api_url, self._token, model=self.model or None,
                                        status=self.status_filter or None, limit=self.max_rows, client=self._client)
        self._needs_snapshot = False
        self._own_attempt = 0
        self._pending_snapshot = snapshot
        self._position = snapshot.last_event_id

    async def _follow_stream(self) -> None:
        stream = TraceStream(
            self.api_url, self._token, model=self.model or None, status=self.status_filter or None,
            last_event_id=self._position, on_health=self.on_health, client=self._client,
            max_backoff=self.max_backoff, initial_backoff=self.initial_backoff, snapshot_limit=self.max_rows,
        )
        self._stream = stream
        consume = asyncio.ensure_future(self._consume(stream))
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            done, _ = await asyncio.wait({consume, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (consume, restart):
                task.cancel()
            await asyncio.gather(consume, restart, return_exceptions=True)
            await stream.aclose()
            self._stream = None
        if consume in done:
            consume.result()  # a fatal stream error propagates

    async def _consume(self, stream: TraceStream) -> None:
        async for event in stream:
            self.ingest(event)

    def ingest(self, event: object) -> None:
        """Take one stream event; it shows at the next ``flush``. Updates to one trace coalesce."""
        match event:
            case TraceEvent(trace=trace):
                self._inbox[trace["id"]] = trace
                self._inbox.move_to_end(trace["id"])
                self._position = event.id
            case Snapshot():
                self._inbox.clear()
                self._pending_snapshot = event
                self._position = event.last_event_id
            case StreamError(message=message):
                log.info("the stream reported: %s", message)

    async def _back_off(self, problem: str) -> None:
        self._own_attempt += 1
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** min(self._own_attempt, 32))
        delay = random.uniform(0, ceiling)
        self._own_problem = problem
        self._own_retry_at = time.monotonic() + delay
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._own_retry_at = None

    def _fail(self, message: str) -> None:
        self._own_problem = None
        self._health = StreamHealth(status="error", last_error=message)

    def on_health(self, health: StreamHealth) -> None:
        """The stream's health changed (called by the client); the next batch turns it into params."""
        self._health = health

    # --------------------------------------------------------------------- the apply task

    async def _apply_loop(self) -> None:
        """Flush, then rest ``batch_seconds``: the cycle stretches when a flush is slow, so a busy
        dashboard sends fewer, larger updates. A fixed 250 ms schedule was measured against this
        (``bench/dashboard_bench.py``, 100 events/s): the browser spent 76% of a core instead of 60%,
        and on the 2-core bench machine the lag went from 407 ms to 998 ms (p50)."""
        while True:
            try:
                self.flush()
            except Exception:  # never let one bad batch stop the dashboard
                log.exception("applying a batch of traces failed")
            await asyncio.sleep(self.batch_seconds)

    def flush(self, now: float | None = None) -> TableChanges:
        """Apply what arrived since the last call; returns the batch (also published as ``changes``)."""
        now = time.time() if now is None else now
        with pn.io.hold():
            changes = TableChanges()
            if self._pending_snapshot is not None:
                snapshot, self._pending_snapshot = self._pending_snapshot, None
                changes = self._apply_snapshot(snapshot, now)
            if self._inbox:
                inbox, self._inbox = self._inbox, OrderedDict()
                changes = self._merge(changes, self._apply_arrivals(list(inbox.values()), now))
            changes = self._merge(changes, self._expire_flags(now))
            self._publish(changes)
            self._update_status(now)
            if now - self._last_clock >= 1.0 or changes.reset:
                self._last_clock = now
                self._update_refresh_text(now)
            if now - self._last_toast >= self.toast_seconds:
                self._last_toast = now
                self._send_toasts()
            if now - self._last_stats >= self.stats_seconds or changes.reset:
                self._last_stats = now
                self.model_stats = self._stats.compute(now)
                self.stats_at = now
        return changes

    def _apply_snapshot(self, snapshot: Snapshot, now: float) -> TableChanges:
        traces = list(reversed(snapshot.traces))  # oldest first, as rows arrive
        for trace in traces:
            self._count_completion(trace, now)
        self._held.clear()
        self.last_refresh_at = datetime.now(timezone.utc)
        self._note_models(traces)
        return self._replace([t for t in traces if matches_text(t, self.text)], keep_counts=False)

    def _replace(self, traces: list[dict[str, Any]], *, keep_counts: bool) -> TableChanges:
        traces = traces[-self.max_rows:]
        self._traces = {t["id"]: t for t in traces} | {t["id"]: t for t in self._held.values()}
        self._labels = {}
        self._new_until = {}
        self._flash_until = {}
        labels = []
        for trace in traces:
            self._labels[trace["id"]] = self._next_label
            labels.append(self._next_label)
            self._next_label += 1
        self.frame = rows_frame([table_row(t) for t in reversed(traces)], labels[::-1])
        if not keep_counts:
            self.new_count = 0
            self.queued = 0
        return TableChanges(reset=True)

    def _apply_arrivals(self, traces: list[dict[str, Any]], now: float) -> TableChanges:
        fresh: list[dict[str, Any]] = []
        patches: dict[int, dict[str, Any]] = {}
        for trace in traces:
            trace_id = trace["id"]
            known = trace_id in self._traces
            self._count_completion(trace, now, toast=True)
            if not matches_text(trace, self.text):
                continue
            if trace_id in self._labels:  # shown: change it in place, and flash it
                self._traces[trace_id] = trace
                label = self._labels[trace_id]
                self._flash_until[label] = now + self.flash_seconds
                patches[label] = table_row(trace, Flag.CHANGED)
            elif trace_id in self._held:
                self._held[trace_id] = trace
                self._traces[trace_id] = trace
            elif not known:
                self.new_count += 1
                self._toast_new.append(trace)
                self._traces[trace_id] = trace
                if self.holding:
                    self._held[trace_id] = trace
                    while len(self._held) > self.max_rows:
                        dropped, _ = self._held.popitem(last=False)
                        self._traces.pop(dropped, None)
                else:
                    fresh.append(trace)
        self.queued = len(self._held)
        self._note_models(traces)
        changes = self._append(fresh, now, new=True)
        if patches:
            changes = self._merge(changes, self._patch_rows(patches))
        return changes

    def _append(self, traces: list[dict[str, Any]], now: float, *, new: bool) -> TableChanges:
        """Add rows at the newest end (highlighted when ``new``); the oldest roll off past ``max_rows``."""
        if not traces:
            return TableChanges()
        labels = list(range(self._next_label, self._next_label + len(traces)))
        self._next_label += len(traces)
        for trace, label in zip(traces, labels):
            self._labels[trace["id"]] = label
            self._traces[trace["id"]] = trace
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
                if trace_id not in self._held:
                    self._traces.pop(trace_id, None)
            frame = frame.iloc[:-overflow]
        self.frame = frame
        return TableChanges(appended=appended.iloc[-self.max_rows:])

    def _patch_rows(self, rows: dict[int, dict[str, Any]]) -> TableChanges:
        """Change these rows' cells in place; the patch lists only the cells whose value changed."""
        frame = self.frame
        rows = {label: row for label, row in rows.items() if label in frame.index}
        if not rows:
            return TableChanges()
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

    def _flag(self, label: int, now: float) -> str:
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
        return self._patch_rows({label: {"flag": self._flag(label, now)} for label in labels})

    def _expire_flags(self, now: float) -> TableChanges:
        ending = [label for label, until in (*self._flash_until.items(), *self._new_until.items()) if until <= now]
        return self._refresh_flags(list(dict.fromkeys(ending)), now) if ending else TableChanges()

    def _merge(self, first: TableChanges, second: TableChanges) -> TableChanges:
        if second.empty:
            return first
        if first.empty:
            return second
        if first.reset or second.reset:
            return TableChanges(reset=True)
        if first.appended is None or second.appended is None:
            appended = first.appended if second.appended is None else second.appended
        else:
            appended = pd.concat([first.appended, second.appended])
        patches = {column: list(values) for column, values in first.patches.items()}
        for column, values in second.patches.items():
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

    def _publish(self, changes: TableChanges) -> None:
        if not changes.empty:
            self.changes = changes

    def _note_models(self, traces: list[dict[str, Any]]) -> None:
        seen = {t.get("model") for t in traces if t.get("model")}
        if not seen <= set(self.models):
            self.models = sorted(set(self.models) | seen)

    def _count_completion(self, trace: dict[str, Any], now: float, toast: bool = False) -> None:
        """Feed each call into the stats once, when it ends (and queue a toast if it failed)."""
        if trace.get("status") not in FINAL_STATUSES:
            return
        failed = trace["status"] == "error"
        at = _parse_time(trace.get("ended_at")) or _parse_time(trace.get("updated_at")) or now
        counted = self._stats.add(trace["id"], at, trace.get("model") or "", trace.get("latency_ms"), failed)
        if counted and failed and toast:
            self._toast_failed.append(trace)

    # ------------------------------------------------------------------- clocks and words

    def _update_status(self, now: float) -> None:
        """Status and its words from the stream's health, or from our own trouble loading the snapshot."""
        health = self._health
        if self._own_problem is not None and health.status != "connected":
            retry_in = None if self._own_retry_at is None else max(0.0, self._own_retry_at - time.monotonic())
            status = "reconnecting"
            text = self._reconnecting_words(self._own_attempt, retry_in)
            error = f"connection lost: {self._own_problem}"
        else:
            status = health.status
            text, error = self._words(health)
        previous = self.status
        self.status, self.status_text, self.error = status, text, error
        if status == "connected" and previous != "connected":
            if self._was_connected:
                self._toast("success", "connection restored")
            self._was_connected = True
        elif previous == "connected" and status in ("reconnecting", "error"):
            self._toast("error", error or "connection lost")
        last = health.last_activity_at
        if status in ("off", "error") or last is None:
            self.heartbeat_age = None
            self.health_warning = False
        else:  # while reconnecting the age keeps growing from the last sign of life
            self.heartbeat_age = round(max(0.0, now - last.timestamp()), 1)
            self.health_warning = self.heartbeat_age > self.warn_after

    def _update_refresh_text(self, now: float) -> None:
        if self.last_refresh_at is not None:
            ago = max(0, round(now - self.last_refresh_at.timestamp()))
            self.refresh_text = f"refreshed {self.last_refresh_at.astimezone().strftime('%H:%M:%S')} ({ago} s ago)"

    def _words(self, health: StreamHealth) -> tuple[str, str]:
        match health.status:
            case "off":
                return ("paused" if not self.live else "off"), ""
            case "connecting":
                return "connecting…", ""
            case "connected":
                return "connected", ""
            case "reconnecting":
                error = f"connection lost: {health.last_error}" if health.last_error else ""
                return self._reconnecting_words(health.attempt, health.retry_in()), error
            case _:
                reason = health.last_error or "unknown error"
                return f"connection lost: {reason}", f"connection lost: {reason}"

    @staticmethod
    def _reconnecting_words(attempt: int, retry_in: float | None) -> str:
        attempt = max(attempt, 1)
        if retry_in is None or retry_in < 0.5:
            return f"reconnecting (attempt {attempt})"
        return f"reconnecting (attempt {attempt}, next in {math.ceil(retry_in)} s)"

    # ------------------------------------------------------------------------ toasts

    def _toast(self, level: str, message: str) -> None:
        self.toasts.append((level, message))
        if self.notifier is not None:
            try:
                self.notifier(level, message)
            except Exception:
                log.exception("a toast failed")

    def _send_toasts(self) -> None:
        new, self._toast_new = self._toast_new, []
        failed, self._toast_failed = self._toast_failed, []
        if len(new) == 1:
            self._toast("info", f"new trace: {describe_call(new[0])}")
        elif new:
            self._toast("info", f"{len(new)} new traces")
        if len(failed) == 1:
            reason = _short(failed[0].get("error") or "no reason given", 80)
            self._toast("error", f"failed: {describe_call(failed[0])}: {reason}")
        elif failed:
            self._toast("error", f"{len(failed)} calls failed")
