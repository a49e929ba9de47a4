"""TraceFeed: the dashboard's view-model. It owns the table's state, the new-count, the connection's
health and errors, and the per-model stats; the views only read it and call its actions.

One background task follows the stream (``dashboard.client.TraceStream``, which loads the snapshot
first and streams on from it) and drops events into a small inbox keyed by trace id (a burst of
updates to one call coalesces into one row change). A second task applies the inbox, resting
``batch_seconds`` between batches, under ``pn.io.hold()``, so a burst reaches the browser as one
message, and keeps the clocks (health age, "refreshed 8 s ago", retry countdown) current.

Arrivals never move rows under a user who has selected a row or scrolled away from the top: they
queue behind the "N new" badge until viewed. Works the same in ``panel serve`` and in Jupyter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import panel as pn
import param

from ..client import (
    ConnectionStatus,
    Snapshot,
    StreamError,
    StreamHealth,
    TraceEvent,
    TraceStream,
    fetch_snapshot,
)
from .alerts import FeedAlerts
from .announcer import Announcer, Notifier
from .feed_params import FeedParams
from .feed_stats import FeedStats
from .follower import StreamFollower
from .query import QueryError, compile_query
from .row_filter import QUERY_COLUMNS, RowFilter
from .table_state import NO_CHANGE, TableChanges, TableState
from .waiting import wait_until
from .wording import connection_words, refreshed_words, reset_words, showing_words

log = logging.getLogger(__name__)

class TraceFeed(FeedParams):
    """The live traces of one user, as a pandas frame plus everything the dashboard shows about them."""

    def __init__(self, token: str | None = None, *, notifier: Notifier | None = None,
                 client: httpx.AsyncClient | None = None, **params: Any) -> None:
        params.setdefault("changes", NO_CHANGE)
        super().__init__(**params)
        self._token = token or ""
        self._client = client  # for tests; normally each stream owns its own
        self.announcer = Announcer(notifier)
        self._alerts = FeedAlerts(self, self.announcer)  # judged on each new ``model_stats``, not per trace
        self._table = TableState(self.max_rows, highlight_seconds=self.highlight_seconds,
                                 flash_seconds=self.flash_seconds)
        self.frame = self._table.frame
        self._inbox: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stats = FeedStats(self, time.time())
        self._filter = RowFilter()  # the text and query in force (a query only once it has worked)
        self._pending_snapshot: Snapshot | None = None
        self._needs_snapshot = True
        self._position: int | None = None
        self._health = StreamHealth()
        self._last_toast = 0.0
        self._last_clock = 0.0
        self._follower = StreamFollower(self._open_stream, self.ingest)
        self._stopped = False
        self.connection_text, _ = connection_words(self._health, live=self.live, token=bool(self._token))
        self.refresh_text = "loading…" if self.live and self._token else "not loaded"
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshot_waiting = asyncio.Event()  # a new snapshot is applied at once: the user waits for the rows

    # ----------------------------------------------------------------------------- actions

    @property
    def token(self) -> str:
        return self._token

    def set_token(self, token: str) -> None:
        """Use this token from now on (asked for in the page when TRACES_TOKEN is not set)."""
        self._token = token.strip()
        self.refresh()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def start(self) -> None:
        """Start following (on the running event loop). Stop with ``await feed.stop()``."""
        asyncio.get_running_loop()  # RuntimeError, before any task is made, when there is none
        if self.running:
            return
        self._stopped = False
        self._tasks = [
            asyncio.create_task(self._follower.run(), name="trace-feed follow"),
            asyncio.create_task(self._apply_loop(), name="trace-feed apply"),
        ]

    async def stop(self) -> None:
        """Stop both tasks and close the stream; the frame stays as it is."""
        tasks = self._tasks
        self.cancel()
        self._tasks = []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._stopped = True
        self.live = False  # the toggle says it, and turning it back on starts the feed again
        self._health = StreamHealth()
        self._update_connection(time.time())

    def cancel(self) -> None:
        """Cancel both tasks without waiting: for a session-destroyed callback, which cannot await.
        The tasks still close their stream on the way out."""
        for task in self._tasks:
            task.cancel()

    def retry_now(self) -> None:
        """Reconnect at once, with the settings as they are now, instead of waiting out the backoff
        (the banner's Retry button); the stream resumes where it was."""
        self._follower.restart()

    def refresh(self) -> None:
        """Reload the snapshot, then continue the stream from its position, staying live."""
        self._needs_snapshot = True
        self._follower.restart()

    def view_new(self) -> None:
        """The user looks at the new rows: held rows appear, highlights end, the count resets."""
        with pn.io.hold():
            changes = self._table.release_held(time.time())
            self.frame = self._table.frame
            self.new_count = 0
            self._publish(changes)
            self._update_showing()

    def filtered_frame(self) -> pd.DataFrame:
        """A copy of the rows shown (newest first), with the trace columns only, for your own analysis."""
        return self.frame[list(QUERY_COLUMNS)].reset_index(drop=True)  # no seq, flag or clock cells

    async def snapshot_frame(self, limit: int = 1000) -> pd.DataFrame:
        """Pull your recent traces (with every field) into a new DataFrame, newest first."""
        snapshot = await fetch_snapshot(self.api_url, self._token, model=self.model or None,
                                        status=self.status_filter or None, limit=limit, client=self._client)
        return pd.DataFrame(snapshot.traces)

    async def wait_for(self, predicate: Callable[[TraceFeed], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(feed)`` holds, checked whenever the feed changes (not by polling).

        ``await feed.wait_for(lambda f: f.connection == "connected")`` in a notebook or a test; raises
        TimeoutError, saying what the feed was doing, if it does not happen in ``timeout`` seconds.
        """
        await wait_until(self, lambda: predicate(self), timeout, lambda: f"{self.connection_text!r}, "
                         f"{len(self.frame)} rows" + (f", {self.error}" if self.error else ""))

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The whole trace (input, output, metadata) of a row shown or held."""
        return self._table.trace(trace_id)

    def same_run(self, trace: dict[str, Any]) -> list[dict[str, Any]]:
        return self._table.same_run(trace)

    # --------------------------------------------------------------------- what changes it

    @param.depends("live", watch=True)
    def _on_live(self) -> None:
        if not self.live:
            self.announcer.forget_loss()
        elif self._stopped:  # on again after stop(): start again, where an event loop runs here
            with contextlib.suppress(RuntimeError):
                self.start()
        self._follower.restart()

    @param.depends("model", "status_filter", watch=True)
    def _on_server_filter(self) -> None:
        self.refresh()

    @param.depends("text", watch=True)
    def _on_text(self) -> None:
        """Show the loaded traces that match the new text (clearing it brings every row back);
        arrivals are filtered as they come."""
        self._refilter(replace(self._filter, text=self.text))

    @param.depends("query", watch=True)
    def _on_query(self) -> None:
        """A query that parses and runs over the rows loaded applies to them and to every arrival, live
        staying on; any other keeps the last good one in force and says why in ``query_error``."""
        try:
            self._refilter(replace(self._filter, query=compile_query(self.query, QUERY_COLUMNS)))
        except QueryError as exc:
            self.query_error = f"the query {exc}; the last good one is still applied"
            return
        self.query_error = ""

    def _refilter(self, which: RowFilter) -> None:
        """Show exactly the loaded rows ``which`` keeps; the counts and the charts start over from them.
        A query that fails on the rows loaded raises ``QueryError`` before anything changes."""
        changes = self._table.refilter(which)
        self._filter = which
        with pn.io.hold():
            self.frame = self._table.frame  # before the changes: the table view reads the frame on them
            self._publish(changes)
            self.new_count = len(self._table.held)
            self._update_showing()
            self._stats.restart(self._table.matching(which), time.time())

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

    # ------------------------------------------------------------------- the follow task

    def _open_stream(self) -> TraceStream | None:
        """The stream the feed should follow now (None while paused or without a token)."""
        if not self.live or not self._token:
            self._health = StreamHealth()
            return None
        return TraceStream(
            self.api_url, self._token, model=self.model or None, status=self.status_filter or None,
            last_event_id=None if self._needs_snapshot else self._position, load_snapshot=self._needs_snapshot,
            snapshot_limit=self.max_rows, on_health=self.on_health, client=self._client,
            max_backoff=self.max_backoff, initial_backoff=self.initial_backoff,
        )

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
                if self.last_refresh_at is not None:  # a Refresh or new filters: the user waits for it
                    self._snapshot_waiting.set()  # (not on opening: rows sent while the page is still being
                    # built made Chromium show them later, 2.8 -> 3.6 s, bench/dashboard_speed.py)
                self._needs_snapshot = False
                self._position = event.last_event_id
            case StreamError(message=message):
                log.info("the stream reported: %s", message)

    def on_health(self, health: StreamHealth) -> None:
        """The stream's health changed (called by the client); the next batch turns it into params."""
        self._health = health

    # --------------------------------------------------------------------- the apply task

    async def _apply_loop(self) -> None:
        """Flush, then rest ``batch_seconds``: a busy dashboard sends fewer, larger updates. A fixed 250 ms
        schedule measured worse (``bench/dashboard_bench.py``, 100 events/s: 76% of a core, not 60%).
        A new snapshot (a Refresh, new filters) cuts the rest short."""
        while True:
            try:
                self.flush()
            except Exception:  # never let one bad batch stop the dashboard
                log.exception("applying a batch of traces failed")
            self._snapshot_waiting.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._snapshot_waiting.wait(), self.batch_seconds)

    def flush(self, now: float | None = None) -> TableChanges:
        """Apply what arrived since the last call; returns the batch (also published as ``changes``)."""
        now = time.time() if now is None else now
        table = self._table
        with pn.io.hold():
            # The connection first: a watcher that sees new rows never sees them beside a stale state.
            self._update_connection(now)
            changes = NO_CHANGE
            if self._pending_snapshot is not None:
                snapshot, self._pending_snapshot = self._pending_snapshot, None
                changes = self._apply_snapshot(snapshot, now)
            if self._inbox:
                inbox, self._inbox = self._inbox, OrderedDict()
                changes = changes.then(self._apply_arrivals(list(inbox.values()), now))
            changes = changes.then(table.expire_flags(now)).then(table.tick_running(now, self.stuck_seconds))
            self.stuck_count = table.stuck_count
            self.frame = table.frame
            self._publish(changes)
            if not changes.empty:
                self._update_showing()
            if now - self._last_clock >= 1.0 or changes.reset:
                self._last_clock = now
                self._update_refresh_text(now)
            # News after a quiet spell is told at once; more within ``toast_seconds`` waits and is told together.
            if self.announcer.has_news and now - self._last_toast >= self.toast_seconds:
                self._last_toast = now
                self.announcer.flush(self._table.trace)
            if changes.reset:  # the rows shown are others: the charts start over from them
                self._stats.restart(self._table.matching(self._filter), now)
            else:
                self._stats.tick(now)
        return changes

    def _apply_snapshot(self, snapshot: Snapshot, now: float) -> TableChanges:
        traces = list(reversed(snapshot.traces))  # oldest first, as rows arrive
        self.last_refresh_at = datetime.now(UTC)
        if snapshot.reason:  # the server no longer held what we missed: say so, and mark when on the charts
            self.reset_times = [*self.reset_times[-19:], now]
            self.reset_text = reset_words(now, snapshot.reason)
        self._note_models(traces)
        self.new_count = 0
        return self._table.load(traces, which=self._filter)

    def _apply_arrivals(self, traces: list[dict[str, Any]], now: float) -> TableChanges:
        kept = self._keeps(traces)
        for trace in self._stats.add(traces, kept, now):
            self.announcer.failed(trace)
        changes, new = self._table.arrive(traces, now, kept=kept, holding=self.holding)
        for trace in new:
            self.announcer.new(trace)
        self.new_count = len(self._table.held)
        self._note_models(traces)
        return changes

    def _keeps(self, traces: list[dict[str, Any]]) -> list[bool]:
        """Which arrivals the filters keep. A query that worked on the rows loaded but fails on a new
        one (a value of another type) is taken off, and ``query_error`` says so."""
        try:
            return self._filter.keeps(traces)
        except QueryError as exc:
            self.query_error = f"the query {exc}; it is off until you change it"
            self._filter = replace(self._filter, query=None)
            return self._filter.keeps(traces)

    def _publish(self, changes: TableChanges) -> None:
        """Tell the views, even when this batch equals the last one (two resets in a row are two events)."""
        if not changes.empty:
            with param.discard_events(self):
                self.changes = changes
            self.param.trigger("changes")

    def _note_models(self, traces: list[dict[str, Any]]) -> None:
        seen = {t.get("model") for t in traces if t.get("model")}
        if not seen <= set(self.models):
            self.models = sorted(set(self.models) | seen)

    # ------------------------------------------------------------------- clocks and words

    def _update_connection(self, now: float) -> None:
        """The connection's state and its words from the stream's health; toasts when it is lost or back."""
        health = self._health
        status = health.status
        text, error = connection_words(health, live=self.live, token=bool(self._token))
        if self._stopped:
            text, error = "stopped", ""
        previous = self.connection
        self.connection, self.connection_text, self.error = status, text, error
        self.announcer.connection(previous, status, error)
        last = health.last_activity_at
        if status in (ConnectionStatus.off, ConnectionStatus.error) or last is None:
            self.heartbeat_age = self.heartbeat_at = None
            self.health_warning = False
        else:  # while reconnecting the age keeps growing from the last sign of life
            self.heartbeat_age = round(max(0.0, now - last.timestamp()), 1)
            self.heartbeat_at = last.timestamp()
            self.health_warning = self.heartbeat_age > self.warn_after

    def _update_showing(self) -> None:
        self.showing_text = showing_words(len(self.frame), self._table.loaded_count,
                                          model=self.model, status=self.status_filter, text=self.text,
                                          query=self._filter.query.text if self._filter.query else "")

    def _update_refresh_text(self, now: float) -> None:
        if self.last_refresh_at is not None:
            self.refresh_text = refreshed_words(self.last_refresh_at, now)
