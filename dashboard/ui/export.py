"""The rows a table shows, as a file: CSV or Parquet bytes, and a file name that says what they are.
No Panel here: the export buttons (``views/export.py``) call these at click time.

Both formats read back with plain pandas to the same rows and values. ``input``, ``output`` and
``metadata`` hold JSON (a dict, a list) or text: a dict or list is written as JSON text (unicode kept),
text as it is. CSV is UTF-8, every time ISO 8601 UTC with a ``Z``; Parquet keeps times as UTC
timestamps, counts as nullable integers, latency and cost as floats.

Reading the CSV back, tell pandas that only an empty cell is missing, or it takes a name or an output
of "NA", "null" or "None" for a missing value::

    pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"id": str},
                parse_dates=["started_at", "ended_at", "created_at", "updated_at"])
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .frames import traces_frame

Trace = dict[str, Any]
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_SLUG = 40


def export_frame(rows: pd.DataFrame, trace: Callable[[str], Trace | None]) -> pd.DataFrame:
    """The whole trace of each row shown (``rows`` as ``TraceFeed.filtered_frame()`` gives them, in
    the table's order) from ``trace(id)``; a row whose trace the feed no longer keeps is exported
    with the cells the table shows."""
    return traces_frame(trace(row["id"]) or _from_cells(row) for row in rows.to_dict("records"))


def _from_cells(row: dict[str, Any]) -> Trace:
    """A trace from a table row: its time is the server's ``created_at``, to the second."""
    trace = {k: _none_if_missing(v) for k, v in row.items() if k not in ("time", "seq", "flag")}
    trace["error"] = trace.get("error") or None  # the table shows '' for no error
    if row.get("time"):
        trace["created_at"] = str(row["time"]).replace(" ", "T") + "Z"
    return trace


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV (a header, no index); ``pandas.read_csv`` reads back the same values."""
    return _for_file(frame, times_as_text=True).to_csv(index=False, lineterminator="\n").encode("utf-8")


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as Parquet (pyarrow, no index); ``pandas.read_parquet`` reads back the same values and dtypes."""
    buffer = io.BytesIO()
    _for_file(frame, times_as_text=False).to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def export_filename(extension: str, *, model: str = "", status: str = "", text: str = "",
                    at: datetime | None = None) -> str:
    """``traces-20261125T100000Z-model-gpt-4o-status-error.csv``: when, and the filters in force."""
    moment = at or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    parts = ["traces", moment.strftime("%Y%m%dT%H%M%SZ")]
    for label, value in (("model", model), ("status", status), ("text", text)):
        slug = _slug(value)
        if slug:
            parts += [label, slug]
    return "-".join(parts) + "." + extension.lstrip(".")


def _slug(value: str) -> str:
    """A file-name-safe version of a filter value (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value.strip()).strip("_.")[:MAX_SLUG]


def _for_file(frame: pd.DataFrame, *, times_as_text: bool) -> pd.DataFrame:
    """A copy in which JSON values are JSON text and, for CSV, times are ISO 8601 text."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype) and times_as_text:
            out[name] = column.dt.tz_convert("UTC").dt.strftime(TIME_FORMAT)
        elif column.dtype == object and any(isinstance(v, (dict, list, tuple)) for v in column):
            out[name] = column.map(_as_text).astype(object)
    return out


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.dumps(value, ensure_ascii=False, default=str)


def _none_if_missing(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
