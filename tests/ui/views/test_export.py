"""The export buttons, without a browser: a click builds the file from the rows shown at that moment,
filters applied, and names it after them."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pytest

from dashboard.client import Snapshot
from dashboard.ui.views.export import ExportButtons

from ..driven import T0, Feed, trace


def click(button) -> tuple[str, bytes]:
    """What the browser receives for one click: the file name and the file's bytes."""
    button._clicks += 1  # what Bokeh sets when the button is pressed
    header, _, encoded = button.data.partition(";base64,")
    assert header.startswith("data:")
    return button.filename, base64.b64decode(encoded)


@pytest.fixture
def traffic() -> Feed:
    f = Feed()
    f.arrive(trace("a", name="rag search", model="gpt-4o", status="error", error="Timeout, 30 s"),
             trace("b", name="summarize", model="claude", status="success", latency_ms=812.5),
             trace("c", name="rag answer", model="gpt-4o", status="success", metadata={"k": [1, "ü"]}))
    f.flush()
    return f


def test_each_click_exports_the_rows_shown_then_under_the_filters_then(traffic):
    view = ExportButtons(feed=traffic.feed)
    name, data = click(view.csv)
    assert name.startswith("traces-") and name.endswith("Z.csv") and "-model-" not in name
    assert list(pd.read_csv(io.BytesIO(data))["id"]) == ["c", "b", "a"]

    traffic.feed.text = "rag"
    name, data = click(view.csv)
    assert name.endswith("-text-rag.csv")
    back = pd.read_csv(io.BytesIO(data))
    assert list(back["id"]) == ["c", "a"]
    assert back.loc[0, "metadata"] == '{"k": [1, "ü"]}' and back.loc[1, "error"] == "Timeout, 30 s"


def test_parquet_follows_the_server_filters_and_keeps_the_dtypes(traffic):
    view = ExportButtons(feed=traffic.feed)
    traffic.feed.model, traffic.feed.status_filter = "gpt-4o", "success"
    # The server's filters reload the table: the snapshot under them arrives.
    traffic.feed.ingest(Snapshot([trace("c", model="gpt-4o", status="success", latency_ms=3.0)], last_event_id=9))
    traffic.flush(T0 + 1)
    name, data = click(view.parquet)
    assert name.endswith("-model-gpt-4o-status-success.parquet")
    back = pd.read_parquet(io.BytesIO(data))
    assert list(back["id"]) == ["c"] and back["latency_ms"].tolist() == [3.0]
    assert back["created_at"].dtype == "datetime64[us, UTC]"
    assert view.frame()["id"].tolist() == ["c"]


def test_the_buttons_say_what_they_do():
    view = ExportButtons(feed=Feed().feed)
    assert (view.csv.label, view.parquet.label) == ("CSV", "Parquet")
    assert "rows shown" in view.csv.description and "filters applied" in view.parquet.description
    _, data = click(view.csv)  # an empty table: a file with the header only
    assert pd.read_csv(io.BytesIO(data)).empty
