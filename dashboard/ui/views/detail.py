"""The selected trace in full: what was asked, what came back, the error, the numbers and metadata."""

from __future__ import annotations

import html
import json
from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from ..feed import TraceFeed
from .style import status_pill

EMPTY = '<div class="trace-detail-empty" style="color:#6b7280;padding:12px">Select a row to see the whole trace.</div>'


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _block(title: str, value: Any, colour: str = "#111827") -> str:
    return (f'<div style="margin:8px 0 2px;font-weight:600;color:#374151">{title}</div>'
            f'<pre style="white-space:pre-wrap;word-break:break-word;max-height:260px;overflow:auto;margin:0;'
            f'padding:8px;background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;color:{colour};'
            f'font-size:12.5px">{html.escape(_text(value))}</pre>')


def _tokens(trace: dict[str, Any]) -> str | None:
    """The counts the writer gave, and no zero it did not ("0 in · 0 out" beside a total of 42 is false)."""
    counts = (("input_tokens", "in"), ("output_tokens", "out"), ("total_tokens", "total"))
    parts = [f"{trace[key]:,} {word}" for key, word in counts if trace.get(key) is not None]
    return " · ".join(parts) or None


def _latency(call: dict[str, Any]) -> str:
    return "" if call.get("latency_ms") is None else f"{call['latency_ms']:,.0f} ms"


def _run(trace: dict[str, Any], calls: list[dict[str, Any]]) -> str:
    """The other LLM calls of the same run, so a slow or failed step is seen in its context."""
    if len(calls) < 2:
        return ""
    rows = "".join(
        f'<tr style="{"font-weight:600" if call["id"] == trace["id"] else ""}">'
        f'<td style="padding:1px 10px 1px 0">{html.escape(call.get("name") or call["id"])}</td>'
        f'<td style="padding:1px 10px 1px 0;color:#4b5563">{html.escape(call.get("model") or "")}</td>'
        f'<td style="padding:1px 10px 1px 0;text-align:right">'
        f'{_latency(call)}</td>'
        f'<td>{status_pill(call.get("status") or "")}</td></tr>'
        for call in calls)
    return (f'<div style="margin:8px 0 2px;font-weight:600;color:#374151">same run: {len(calls)} calls</div>'
            f'<table class="trace-run" style="font-size:13px">{rows}</table>')


def render_trace(trace: dict[str, Any], same_run: list[dict[str, Any]] | None = None) -> str:
    facts = [
        ("model", trace.get("model")), ("provider", trace.get("provider")),
        ("latency", f"{trace['latency_ms']:,.0f} ms" if trace.get("latency_ms") is not None else None),
        ("tokens", _tokens(trace)),
        ("cost", f"${trace['cost_usd']:.5f}" if trace.get("cost_usd") is not None else None),
        ("started", trace.get("started_at")), ("ended", trace.get("ended_at")), ("id", trace.get("id")),
    ]
    rows = "".join(f'<tr><td style="color:#6b7280;padding:1px 12px 1px 0">{name}</td><td>{html.escape(str(value))}</td></tr>'
                   for name, value in facts if value is not None)
    parts = [
        f'<div class="trace-detail" data-trace-id="{html.escape(trace["id"])}">',
        f'<div style="display:flex;gap:10px;align-items:center;font-size:16px;font-weight:600">'
        f'{html.escape(trace.get("name") or trace["id"])} {status_pill(trace.get("status") or "")}</div>',
        f'<table style="font-size:13px;margin-top:6px">{rows}</table>',
    ]
    if trace.get("error"):
        parts.append(_block("error", trace["error"], colour="#b91c1c"))
    parts.append(_run(trace, same_run or []))
    parts.append(_block("input", trace.get("input")))
    parts.append(_block("output", trace.get("output")))
    if trace.get("metadata"):
        parts.append(_block("metadata", trace["metadata"]))
    parts.append("</div>")
    return "".join(parts)


class TraceDetail(Viewer):
    feed = param.ClassSelector(class_=TraceFeed)
    max_height = param.Integer(default=None, allow_None=True,
                               doc="None: fill the place it is given. A number: as tall as the trace, up to this, then scroll.")

    def __init__(self, **params):
        super().__init__(**params)
        self.pane = pn.pane.HTML(EMPTY, sizing_mode="stretch_width")
        self._shown: tuple[dict[str, Any] | None, list] = (None, [])
        self.feed.param.watch(self._render, ["selected_id", "changes"])

    def _render(self, *_: object) -> None:
        trace = self.feed.trace(self.feed.selected_id) if self.feed.selected_id else None
        run = self.feed.same_run(trace) if trace else []
        shown = (trace, [(call["id"], call.get("status"), call.get("latency_ms")) for call in run])
        if shown[0] is self._shown[0] and shown[1] == self._shown[1]:
            return  # nothing new to say: the pane is not resent
        self._shown = shown
        self.pane.object = render_trace(trace, run) if trace else EMPTY

    def __panel__(self):
        if self.max_height is not None:  # under the table: no empty box before a row is selected
            return pn.Column("### Trace", pn.Column(self.pane, scroll=True, max_height=self.max_height,
                                                    sizing_mode="stretch_width"), sizing_mode="stretch_width")
        # Fills what the column it sits in leaves, and scrolls: a long trace never pushes the page down.
        return pn.Column("### Trace", pn.Column(self.pane, scroll=True, sizing_mode="stretch_both"),
                         sizing_mode="stretch_both")
