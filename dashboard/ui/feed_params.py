"""What the feed holds for the views to read and the user to set, as params, apart from how it changes
(``feed.TraceFeed``): the feed's interface, one place to look for every name a view or a notebook uses."""

from __future__ import annotations

import param

from ..client import ConnectionStatus
from ..schema import TraceStatus
from .table_state import TableChanges
from .totals import Totals

STATUS_CHOICES = ["", *(status.value for status in TraceStatus)]  # '' for every status


class FeedParams(param.Parameterized):
    """The params of ``TraceFeed``; see it for what they do."""

    # What the user sets.
    api_url = param.String(default="http://127.0.0.1:8000", doc="The trace API.")
    live = param.Boolean(default=True, doc="Follow the stream. Off closes it; on resumes without a gap.")
    model = param.String(default="", doc="Only this model ('' for all): a filter on the server's stream.")
    status_filter = param.Selector(default="", objects=STATUS_CHOICES,
                                   doc="Only traces in this status ('' for all), on the server.")
    text = param.String(default="", doc="Only traces containing this text (name, model, error, input, output).")
    query = param.String(default="", doc="A pandas query over the table's columns (latency_ms > 1000 and "
                                         "model == 'gpt-4o'): only the rows it keeps are shown, counted and charted.")
    query_error = param.String(default="", doc="Why the query typed last is not in force, in words (the last good "
                                               "one still is); empty when it is.")
    max_rows = param.Integer(default=5000, bounds=(10, None), doc="Rows kept; older ones roll off.")
    batch_seconds = param.Number(default=0.25, bounds=(0.01, None), doc="How often arrivals are applied.")
    warn_after = param.Number(default=60.0, bounds=(1, None), doc="Seconds without a ping or event before warning.")
    highlight_seconds = param.Number(default=6.0, doc="How long a new row stays highlighted (until viewed at most).")
    flash_seconds = param.Number(default=1.5, doc="How long an updated row flashes.")
    stuck_seconds = param.Number(default=120.0, bounds=(0, None), doc="A call running longer than this is marked stuck.")
    toast_seconds = param.Number(default=30.0, doc="News after a toast waits this long, then goes out together: not noise.")
    stats_seconds = param.Number(default=5.0, doc="How often the per-model stats are recomputed.")
    stats_window = param.Number(default=300.0, doc="The rolling window of the per-model stats, seconds.")
    alert_p95_ms = param.Number(default=None, allow_None=True, bounds=(0, None),
                                doc="Alert when a model's p95 latency (ms) is above this; None: off.")
    alert_error_rate = param.Number(default=None, allow_None=True, bounds=(0, 100),
                                    doc="Alert when a model's error rate (%) is above this; None: off.")
    max_backoff = param.Number(default=30.0, doc="The longest wait between reconnection attempts.")
    initial_backoff = param.Number(default=0.5, doc="The first wait between reconnection attempts.")

    # What the views read.
    frame = param.DataFrame(doc="The rows shown, newest first, at most ``max_rows``.")
    changes = param.ClassSelector(class_=TableChanges, doc="The last batch applied to ``frame``.")
    new_count = param.Integer(default=0, doc="Traces held back from view (the badge); 0 when none are.")
    showing_text = param.String(default="showing 0 of 0", doc="What the table shows: 'showing N of M · model …'.")
    connection = param.Selector(default=ConnectionStatus.off, objects=list(ConnectionStatus),
                                doc="The connection's state: off | connecting | connected | reconnecting | error")
    connection_text = param.String(default="off", doc="The connection's state in words.")
    error = param.String(default="", doc="What went wrong, for the banner ('' when nothing is wrong).")
    heartbeat_age = param.Number(default=None, allow_None=True, doc="Seconds since the last ping or event.")
    heartbeat_at = param.Number(default=None, allow_None=True, doc="When that was (epoch seconds); None with no connection.")
    health_warning = param.Boolean(default=False, doc="No ping or event for more than ``warn_after``.")
    last_refresh_at = param.Date(default=None, doc="When the snapshot was last loaded (UTC).")
    reset_text = param.String(default="", doc="When the stream was last reset and the table reloaded, and why "
                                              "('' if it never was).")
    reset_times = param.List(default=[], doc="Epoch seconds of the resets (the last 20), marked on the charts.")
    refresh_text = param.String(default="not loaded yet")
    models = param.List(default=[], item_type=str, doc="Every model seen, for the filter.")
    model_stats = param.List(default=[], doc="ModelStats per model over the rolling window.")
    totals = param.ClassSelector(class_=Totals, doc="Calls, tokens, cost, errors since the page opened, under "
                                                    "the filters in force (``totals.py``); with the stats.")
    stats_at = param.Number(default=None, allow_None=True, doc="Epoch seconds of ``model_stats``.")
    stats_history = param.List(default=[], doc="(epoch seconds, [ModelStats]) the charts start over from, "
                                               "after a reload or a new text: the loaded traces' past.")
    stuck_count = param.Integer(default=0, doc="Rows shown whose call has run past ``stuck_seconds``.")
    alerts = param.List(default=[], doc="The alerts in force: alerts.Alert(model, kind, value, threshold).")
    holding_reason = param.String(default="", doc="Why arrivals wait behind the badge ('' when they show at once).")

    # What the table tells us about the user.
    selected_id = param.String(default="", doc="The selected trace's id ('' for none).")
    at_top = param.Boolean(default=True, doc="The user sees the top of the table (first page, not scrolled).")
