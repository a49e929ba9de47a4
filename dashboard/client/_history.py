"""Any window of the user's history over plain HTTP: ``fetch_history`` follows ``next_cursor`` pages
until the window is covered or ``max_rows`` is reached, and says which.

The window is on ``created_at`` (when the server recorded the call), ``since`` included, ``until``
excluded, so consecutive windows tile without a trace in two of them. The API filters both ends (an
API without ``until`` is still right: traces at or after it are also dropped here).
Pages are cut by the server's row position, not by time or offset: traces written while the
pages are read never shift them, so none is missed or repeated at a page boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import httpx

from ..schema import TRACES_PATH, utc_iso
from ._errors import TraceStreamError, api_error
from ._http import new_client
from ._snapshot import CONNECT_TIMEOUT, MAX_PAGE, bearer, filter_params

log = logging.getLogger("dashboard.client")

Moment = datetime | date | str


@dataclass(frozen=True, slots=True)
class History:
    """The traces of a window, newest first.

    ``truncated`` is True when ``max_rows`` cut the window short: older traces in it were left out;
    ``next_cursor`` then picks up exactly where this stopped (``fetch_history(..., cursor=next_cursor)``
    with the same window). ``last_event_id`` is the stream position of the first page: a stream opened
    after it misses nothing.
    """

    traces: list[dict[str, Any]]
    truncated: bool
    last_event_id: int | None
    next_cursor: str | None = None


def as_utc(value: Moment, name: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime, a date (its midnight) or an ISO 8601 string;
    one without a zone is taken as UTC, as the API does."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a datetime or an ISO 8601 time, got {value!r}") from None
    elif not isinstance(value, datetime):
        if not isinstance(value, date):
            raise TypeError(f"{name} must be a datetime, a date or an ISO 8601 string, not {type(value).__name__}")
        value = datetime.combine(value, time())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def fetch_history(
    api_url: str,
    token: str,
    *,
    since: Moment | None = None,
    until: Moment | None = None,
    model: str | None = None,
    status: str | None = None,
    max_rows: int | None = 100_000,
    page_size: int = MAX_PAGE,
    cursor: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> History:
    """The user's traces created in ``[since, until)`` (either end open when None), newest first, at
    most ``max_rows`` of them (None for no limit), fetched ``page_size`` (1–1000) at a time; from
    ``cursor`` (a truncated History's ``next_cursor``) on when given.

    Raises ``TraceApiError`` (``StreamAuthError`` for a refused token) with the API's own reason,
    and ``ValueError`` for a window or size that cannot be asked for.
    """
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be 1–{MAX_PAGE} (the API's largest page), got {page_size}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (or None for no limit), got {max_rows}")
    start = as_utc(since, "since") if since is not None else None
    end = as_utc(until, "until") if until is not None else None
    if start is not None and end is not None and end < start:
        raise ValueError(f"until ({utc_iso(end)}) is before since ({utc_iso(start)})")

    url = api_url.rstrip("/") + TRACES_PATH
    query: dict[str, str | int] = filter_params(model, status)
    if start is not None:
        query["since"] = utc_iso(start)
    if end is not None:
        query["until"] = utc_iso(end)
    owned = client is None
    http = client or new_client(httpx.Timeout(CONNECT_TIMEOUT, read=30.0))
    traces: list[dict[str, Any]] = []
    position: int | None = None
    try:
        while True:
            wanted = page_size if max_rows is None else min(page_size, max_rows - len(traces))
            params = {**query, "limit": wanted} | ({"cursor": cursor} if cursor is not None else {})
            response = await http.get(url, params=params, headers=bearer(token))
            if response.status_code != 200:
                raise api_error(response)
            page = response.json()
            if position is None:
                position = int(page["last_event_id"])
            rows = page["traces"]
            traces.extend(rows if end is None else [t for t in rows if _created(t) < end])
            if page.get("next_cursor") is None:
                return History(traces, truncated=False, last_event_id=position)
            if max_rows is not None and len(traces) >= max_rows:  # the API said more are there
                log.warning("history: stopped at max_rows=%d, at a trace created %s; older traces in the window "
                            "were left out (raise max_rows, or go on with cursor=%s)",
                            max_rows, traces[-1]["created_at"], page["next_cursor"])
                return History(traces, truncated=True, last_event_id=position, next_cursor=page["next_cursor"])
            if page["next_cursor"] == cursor:  # a page that does not move on would repeat forever
                raise TraceStreamError(f"the API returned next_cursor {cursor!r} twice: its pages do not move on")
            cursor = page["next_cursor"]
    finally:
        if owned:
            await http.aclose()


def _created(trace: dict[str, Any]) -> datetime:
    return as_utc(trace["created_at"], "created_at")
