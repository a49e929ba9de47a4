"""Which traces the table shows, beyond the server's model and status filters: the text box and the
query box together, decided for many traces at once (one small frame per batch of arrivals, not one
per trace: the query is a pandas-style expression, cheap over a column, dear over a row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .query import Query
from .rows import ROW_COLUMNS, matches_text, rows_frame, table_row
from .running import CLOCK_COLUMNS

Trace = dict[str, Any]
QUERY_COLUMNS = tuple(column for column in ROW_COLUMNS  # what a query may name
                      if column not in ("seq", "flag", *CLOCK_COLUMNS))


@dataclass(frozen=True)
class RowFilter:
    text: str = ""
    query: Query | None = None

    def keeps(self, traces: list[Trace]) -> list[bool]:
        """For each trace, whether the table may show it; ``QueryError`` if the query cannot be applied."""
        keep = [matches_text(trace, self.text) for trace in traces]
        if self.query is not None and traces:
            frame = rows_frame([table_row(trace) for trace in traces], list(range(len(traces))), self.query.columns)
            keep = [kept and bool(match) for kept, match in zip(keep, self.query.mask(frame), strict=True)]
        return keep

    def matching(self, traces: list[Trace]) -> list[Trace]:
        return [trace for trace, kept in zip(traces, self.keeps(traces), strict=True) if kept]
