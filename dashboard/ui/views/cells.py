"""How the table's status and latency cells read, in Tabulator templates: a call still in flight shows
its elapsed time ("12 s so far", in italics, so it never reads as a final latency; words, not a
stopwatch glyph, which fonts without emoji draw as a box), and one past the stuck
threshold shows an amber "⚠ stuck" pill, so a person finds it at a glance.

The templates read the row's hidden ``elapsed_s`` and ``clock`` cells (``..running``), which the feed
patches once a second; nothing here keeps time.
"""

from __future__ import annotations

STATUS_TEMPLATE = (
    '<% var stuck = clock == "stuck"; %>'
    '<span class="status-pill status-<%= stuck ? "stuck" : value %>" data-flag="<%= flag %>" data-id="<%- id %>"'
    ' data-clock="<%= clock %>"<% if (stuck) { %> title="<%= value %> for <%= elapsed_s %> s: past the stuck'
    ' threshold"<% } %>><%= stuck ? "⚠ stuck" : value %></span>'
)

LATENCY_TEMPLATE = (
    '<% if (clock) { %>'
    '<span class="running-elapsed<%= clock == "stuck" ? " stuck" : "" %>" data-elapsed="<%= elapsed_s %>"'
    ' title="still running: the time since it started, not its latency">'
    '<% if (elapsed_s != null && !isNaN(elapsed_s)) { var s = Math.floor(elapsed_s); %>'
    '<%= s < 60 ? s + " s" : Math.floor(s / 60) + " m " + String(s % 60).padStart(2, "0") + " s" %> so far'
    '<% } else { %>running<% } %></span>'
    '<% } else if (value != null && !isNaN(value)) { %><%= Math.round(value).toLocaleString("en-US") %><% } %>'
)

RUNNING_CSS = """
.running-elapsed { color: #1d4ed8; font-style: italic; font-variant-numeric: tabular-nums; }
.running-elapsed.stuck { color: #b45309; font-weight: 600; }
.status-stuck { color: #92400e; background: #fde68a; outline: 1px solid #d97706; }
.tabulator-row:has([data-clock="stuck"]) { box-shadow: inset 4px 0 0 #d97706; }
"""
