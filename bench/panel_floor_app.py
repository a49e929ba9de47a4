"""The floor for ``panel_floor.py``: a bare Panel page with a status word and a Tabulator of 200 rows shaped
like the dashboard's (same columns, page of 50, same height), its data built in the page. Nothing of ours:
no feed, no API, no charts. What any Panel page with this table costs to open on the machine."""

import pandas as pd
import panel as pn

ROWS = 200
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "llama-3.1-70b"]

pn.extension("tabulator", notifications=True)
frame = pd.DataFrame({
    "time": pd.date_range("2026-01-01", periods=ROWS, freq="s").strftime("%H:%M:%S"),
    "name": [f"call-{i}" for i in range(ROWS)],
    "model": [MODELS[i % len(MODELS)] for i in range(ROWS)],
    "status": ["error" if i % 17 == 0 else "success" for i in range(ROWS)],
    "latency_ms": [400.0 + (i * 37) % 900 for i in range(ROWS)],
    "total_tokens": [100 + (i * 53) % 4000 for i in range(ROWS)],
    "cost_usd": [round(((i * 53) % 4000) * 2e-6, 6) for i in range(ROWS)],
    "error": ["RateLimitError: 429" if i % 17 == 0 else "" for i in range(ROWS)],
    "id": [f"trace-{i:06d}" for i in range(ROWS)],
})
pn.Column(
    pn.pane.HTML('<span class="trace-status" data-status="connected">connected</span>'),
    pn.widgets.Tabulator(frame, pagination="remote", page_size=50, height=460, show_index=False, selectable=1,
                         disabled=True, layout="fit_data_stretch", sizing_mode="stretch_width"),
    sizing_mode="stretch_width",
).servable(title="Panel floor")
