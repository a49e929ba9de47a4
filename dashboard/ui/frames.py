"""Traces as a pandas DataFrame with the dtypes a person analyses with, and ``history_frame``: any window
of the user's history from the API, every page followed, in one frame (for notebooks: ``await`` it).

Columns are the trace's fields in the contract's order: times as timezone-aware UTC ``datetime64``,
latency and cost as floats, token counts as nullable ``Int64``, text as pandas' string dtype (object
before pandas 3), and ``input``/``output``/``metadata`` as the Python values the API sent
(text, lists, dicts). Rows stay in the order given: the API's, newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import pandas as pd

from ..client import fetch_history
from ..config import Settings
from ..schema import Trace

log = logging.getLogger(__name__)

TRACE_COLUMNS = tuple(Trace.model_fields)
TIME_COLUMNS = ("started_at", "ended_at", "created_at", "updated_at")
FLOAT_COLUMNS = ("latency_ms", "cost_usd")
COUNT_COLUMNS = ("input_tokens", "output_tokens", "total_tokens")
JSON_COLUMNS = ("input", "output", "metadata")
TEXT_COLUMNS = tuple(c for c in TRACE_COLUMNS if c not in (*TIME_COLUMNS, *FLOAT_COLUMNS, *COUNT_COLUMNS, *JSON_COLUMNS))


def text_dtype() -> Any:
    """The dtype pandas itself gives text (its ``str`` dtype from pandas 3, object before): what
    ``read_csv`` and ``read_parquet`` give back too, so a frame and its round trip compare equal."""
    return pd.Series(["text"]).dtype


def traces_frame(traces: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per trace, in the order given, one column per trace field (unknown fields after them)."""
    traces = list(traces)
    extra = list(dict.fromkeys(key for trace in traces for key in trace if key not in TRACE_COLUMNS))
    columns: dict[str, pd.Series] = {}
    for name in (*TRACE_COLUMNS, *extra):
        values = [trace.get(name) for trace in traces]
        columns[name] = _column(name, values)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(traces)))


def _column(name: str, values: list[Any]) -> pd.Series:
    if name in TIME_COLUMNS:
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601").dt.as_unit("us")
    if name in FLOAT_COLUMNS:
        return pd.Series(values, dtype="float64")
    if name in COUNT_COLUMNS:
        return pd.Series(values, dtype="Int64")
    if name in TEXT_COLUMNS:
        return pd.Series(values, dtype=object).astype(text_dtype())
    return pd.Series(values, dtype=object)


async def history_frame(
    api_url: str | None = None,
    token: str | None = None,
    *,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    model: str | None = None,
    status: str | None = None,
    max_rows: int | None = 100_000,
    page_size: int = 1000,
    cursor: str | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Your traces created in ``[since, until)``, newest first, as a DataFrame (every page followed).

    ``api_url`` and ``token`` default to ``TRACES_API_URL`` and ``TRACES_TOKEN``. ``since``/``until``
    take datetimes (naive ones are UTC), dates or ISO 8601 strings. When ``max_rows`` cut the window
    short a warning is logged, ``frame.attrs["truncated"]`` is True, and ``cursor=frame.attrs["next_cursor"]``
    (same window) fetches the rest. ``frame.attrs["last_event_id"]`` is the stream position the first
    page reflected.

        frame = await history_frame(since="2026-11-01", until="2026-11-08", model="gpt-4o")
    """
    if api_url is None or token is None:
        settings = Settings.from_env()
        api_url = api_url or settings.api_url
        token = token or settings.token
    if not token:
        raise ValueError("no token: pass token=… or set TRACES_TOKEN (python -m dashboard token --user ID)")
    history = await fetch_history(api_url, token, since=since, until=until, model=model, status=status,
                                  max_rows=max_rows, page_size=page_size, cursor=cursor, client=client)
    frame = traces_frame(history.traces)
    frame.attrs.update(truncated=history.truncated, next_cursor=history.next_cursor, last_event_id=history.last_event_id)
    return frame
