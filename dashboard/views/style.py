"""Colours and small HTML pieces shared by the views, so a status looks the same everywhere."""

from __future__ import annotations

import html

STATUS_COLOURS = {"pending": ("#374151", "#e5e7eb"), "running": ("#1d4ed8", "#dbeafe"),
                  "success": ("#15803d", "#dcfce7"), "error": ("#b91c1c", "#fee2e2")}


def status_pill(status: str) -> str:
    text, background = STATUS_COLOURS.get(status, ("#374151", "#f3f4f6"))
    return (f'<span class="status-pill status-{html.escape(status)}" style="color:{text};background:{background};'
            f'border-radius:9px;padding:1px 8px;font-size:12px;font-weight:600">{html.escape(status)}</span>')
