"""The connection's state in words a person reads at a glance, and what a toast says about a call."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ..client import ConnectionStatus, StreamHealth


def connection_words(health: StreamHealth, *, live: bool, token: bool = True) -> tuple[str, str]:
    """(the status line, the error banner's message or '') for this health."""
    match health.status:
        case ConnectionStatus.off:
            if not live:
                return "paused", ""
            return ("connecting…" if token else "waiting for a token"), ""
        case ConnectionStatus.connecting:
            return "connecting…", ""
        case ConnectionStatus.connected:
            return "connected", ""
        case ConnectionStatus.reconnecting:
            error = f"connection lost: {health.last_error}" if health.last_error else ""
            return reconnecting_words(health.attempt, health.retry_in()), error
        case _:
            reason = health.last_error or "unknown error"
            return f"connection lost: {reason}", f"connection lost: {reason}"


def reconnecting_words(attempt: int, retry_in: float | None) -> str:
    attempt = max(attempt, 1)
    if retry_in is None or retry_in < 0.5:
        return f"reconnecting (attempt {attempt})"
    return f"reconnecting (attempt {attempt}, next in {math.ceil(retry_in)} s)"


def shorten(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_call(trace: dict[str, Any]) -> str:
    """'gpt-4o · summarize · 812 ms': what a toast says about one call."""
    parts = [trace.get("model") or "unknown model", trace.get("name") or trace.get("id", "")]
    latency = trace.get("latency_ms")
    parts.append(f"{latency:,.0f} ms" if latency is not None else trace.get("status") or "")
    return " · ".join(part for part in parts if part)


def showing_words(shown: int, loaded: int, *, model: str, status: str, text: str, query: str = "") -> str:
    """'showing 12 of 340 · model gpt-4o · status error · text "timeout" · query latency_ms > 1000'."""
    parts = [f"showing {shown:,} of {loaded:,}"]
    if model:
        parts.append(f"model {model}")
    if status:
        parts.append(f"status {status}")
    if text:
        parts.append(f'text "{text}"')
    if query:
        parts.append(f"query {query}")
    return " · ".join(parts)


def reset_words(at: float, reason: str) -> str:
    """'stream reset at 14:03:22: the table was reloaded (events after 12 are no longer kept …)'."""
    moment = datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")
    return f"stream reset at {moment}: the table was reloaded ({reason})"


def refreshed_words(at: datetime, now: float) -> str:
    """'refreshed 14:03:22 (8 s ago)', in the viewer's local time."""
    return refreshed_template(at).replace("{s}", str(max(0, round(now - at.timestamp()))))


def refreshed_template(at: datetime) -> str:
    """'refreshed 14:03:22 ({s} s ago)': the page counts the seconds itself (``views/ticking.py``)."""
    return f"refreshed {at.astimezone().strftime('%H:%M:%S')} ({{s}} s ago)"
