"""notebooks/live_traces.ipynb runs top to bottom against a real API (nbclient, no browser)."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from ..streams import post_trace
from ..support import ROOT

NOTEBOOK = ROOT / "notebooks" / "live_traces.ipynb"


async def test_the_notebook_runs_and_shows_recent_traces_then_the_live_view(api, monkeypatch):
    import httpx

    async with httpx.AsyncClient(base_url=api.url) as client:
        for i in range(3):
            await post_trace(client, api.headers("alice"), name=f"notebook-call-{i}", model="gpt-4o",
                             status="success", latency_ms=100.0 * (i + 1))
    monkeypatch.setenv("TRACES_API_URL", api.url)
    monkeypatch.setenv("TRACES_TOKEN", api.token("alice"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Run All leaves the feed live; the user stops it when done, as this extra cell does.
    notebook.cells.append(nbformat.v4.new_code_cell(
        'assert view.feed.running\nawait view.stop()\nprint("live feed:", view.feed.connection_text)'))
    await NotebookClient(notebook, timeout=120, kernel_name="python3").async_execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    text = "".join(output.get("text", "") for output in outputs)
    assert "notebook-call-2" in html and "<table" in html  # the DataFrame, rendered
    assert "3 traces in the last 24 hours, stream position 3" in text
    assert "connected" in text
    assert "live feed: stopped" in text
    assert any("application/vnd.holoviews_exec.v0+json" in output.get("data", {}) for output in outputs)
    assert not [output for output in outputs if output.get("output_type") == "error"]
    shown = next(cell for cell in notebook.cells if cell.cell_type == "code" and "filtered_frame()" in cell.source)
    shown_html = "".join(output.get("data", {}).get("text/html", "") for output in shown.outputs)
    assert "<th>name</th>" in shown_html and "<th>flag</th>" not in shown_html and "<th>seq</th>" not in shown_html
