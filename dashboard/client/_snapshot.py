"""The user's recent traces over plain HTTP: the snapshot a stream starts from, and its request helpers."""

from __future__ import annotations

import email.utils
from datetime import UTC
from typing import Any

import httpx

from ..schema import TRACES_PATH
from ._errors import api_error
from ._events import Snapshot
from ._health import utc_now
from ._http import new_client

MAX_PAGE = 1000  # the server's largest page
CONNECT_TIMEOUT = 10.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def filter_params(model: str | None, status: str | None) -> dict[str, str]:
    return {k: v for k, v in (("model", model), ("status", status)) if v is not None}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (either form), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utc_now()).total_seconds())


async def fetch_snapshot(
    api_url: str,
    token: str,
    *,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
    page_size: int | None = None,
    client: httpx.AsyncClient | None = None,
    reason: str = "",
) -> Snapshot:
    """Up to ``limit`` of the user's newest traces, following ``next_cursor`` pages.

    ``last_event_id`` is the first page's position: later pages can only be newer than it, so
    resuming the stream from it may repeat an update but never misses one.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    size = min(page_size or limit, limit, MAX_PAGE)
    owned = client is None
    http = client or new_client(httpx.Timeout(CONNECT_TIMEOUT, read=30.0))
    try:
        traces: list[dict[str, Any]] = []
        position: int | None = None
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": min(size, limit - len(traces)), **filter_params(model, status)}
            if cursor is not None:
                params["cursor"] = cursor
            response = await http.get(api_url.rstrip("/") + TRACES_PATH, params=params, headers=bearer(token))
            if response.status_code != 200:
                raise api_error(response)
            page = response.json()
            if position is None:
                position = int(page["last_event_id"])
            traces.extend(page["traces"])
            cursor = page.get("next_cursor")
            if cursor is None or len(traces) >= limit:
                return Snapshot(traces, position, reason, next_cursor=cursor)
    finally:
        if owned:
            await http.aclose()
