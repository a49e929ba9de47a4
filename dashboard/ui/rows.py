"""How a trace becomes a table row, and whether it matches the text filter.

The table keeps an integer row label (the order rows arrived in) and the trace id as a column:
Tabulator streams and patches by label, and sorts newest first on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import pandas as pd

from .running import CLOCK_COLUMNS, clock_cells

ROW_COLUMNS = ("seq", "id", "time", "name", "model", "status", "latency_ms", "total_tokens", "cost_usd", "error", "flag",
               *CLOCK_COLUMNS)
TEXT_FIELDS = ("id", "name", "model", "provider", "status", "error", "input", "output")


class Flag(StrEnum):
    """A row's highlight, rendered as a CSS class: new until viewed, changed for a moment after an update."""

    NEW = "new"
    CHANGED = "changed"
    NONE = ""


def display_time(trace: dict[str, Any]) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) of when the server recorded the call: the order rows arrive in,
    so the column reads in order (a writer's own ``started_at`` clock may be seconds off)."""
    moment = trace.get("created_at") or trace.get("started_at") or ""
    return moment[:19].replace("T", " ")


def table_row(trace: dict[str, Any], flag: Flag = Flag.NONE) -> dict[str, Any]:
    return {
        "id": trace["id"],
        "time": display_time(trace),
        "name": trace.get("name") or "",
        "model": trace.get("model") or "",
        "status": trace.get("status") or "",
        "latency_ms": _number(trace.get("latency_ms")),
        "total_tokens": _number(trace.get("total_tokens")),
        "cost_usd": _number(trace.get("cost_usd")),
        "error": trace.get("error") or "",
        "flag": Flag(flag).value,
        **clock_cells(trace, None, math.inf),  # the seconds come with the table's next tick
    }


def empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in ROW_COLUMNS})
    frame.index = pd.RangeIndex(0, name="row")
    return frame


def rows_frame(rows: list[dict[str, Any]], labels: list[int], columns: Iterable[str] = ROW_COLUMNS) -> pd.DataFrame:
    """Rows (from ``table_row``) as a frame labelled ``labels``, with ``columns`` (all, by default).
    Built column by column: ``DataFrame(rows)`` then ``astype`` took four times as long for a batch."""
    if not rows:
        return empty_frame()[list(columns)]
    index = pd.Index(labels, name="row")
    return pd.DataFrame({
        # "seq" is the row label again, as a column the table can sort on
        column: pd.Series(labels if column == "seq" else [row[column] for row in rows], index=index, dtype=_dtype(column))
        for column in columns
    }, index=index, copy=False)


def matches_text(trace: dict[str, Any], text: str) -> bool:
    """Case-insensitive substring match over the fields a person would search (input and output too)."""
    if not text:
        return True
    needle = text.casefold()
    for field in TEXT_FIELDS:
        value = trace.get(field)
        if value is None:
            continue
        haystack = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if needle in haystack.casefold():
            return True
    return False


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _dtype(column: str) -> str:
    if column == "seq":
        return "int64"
    return "float64" if column in ("latency_ms", "total_tokens", "cost_usd", "elapsed_s") else "object"
