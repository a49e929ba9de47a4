"""Colours shared by the views, one table for each kind of state, so each looks the same everywhere.

A trace's status (pending, running, success, error) and the connection's state (connected,
reconnecting, ...) are different things and never share a colour table.
"""

from __future__ import annotations

import html

from ...client import ConnectionStatus
from ...schema import TraceStatus

# text colour, background
TRACE_STATUS_COLOURS = {
    TraceStatus.pending: ("#374151", "#e5e7eb"),
    TraceStatus.running: ("#1d4ed8", "#dbeafe"),
    TraceStatus.success: ("#15803d", "#dcfce7"),
    TraceStatus.error: ("#b91c1c", "#fee2e2"),
}
UNKNOWN_STATUS_COLOURS = ("#374151", "#f3f4f6")

CONNECTION_COLOURS = {
    ConnectionStatus.connected: "#16a34a",
    ConnectionStatus.connecting: "#d97706",
    ConnectionStatus.reconnecting: "#d97706",
    ConnectionStatus.error: "#dc2626",
    ConnectionStatus.off: "#6b7280",
}

PILL_CSS = "border-radius:9px;padding:1px 8px;font-size:12px;font-weight:600"


def trace_status_css() -> str:
    """The ``.status-<status>`` rules of the status pill, for stylesheets (the table's shadow DOM)."""
    rules = [f".status-pill {{ {PILL_CSS.replace(';', '; ')}; }}"]
    for status, (text, background) in TRACE_STATUS_COLOURS.items():
        rules.append(f".status-{status.value} {{ color: {text}; background: {background}; }}")
    return "\n".join(rules) + "\n"


def status_pill(status: str) -> str:
    """A trace status as a coloured pill, with its colours inline (for panes outside the table)."""
    try:
        text, background = TRACE_STATUS_COLOURS[TraceStatus(status)]
    except ValueError:
        text, background = UNKNOWN_STATUS_COLOURS
    return (f'<span class="status-pill status-{html.escape(status)}" style="color:{text};background:{background};'
            f'{PILL_CSS}">{html.escape(status)}</span>')
