"""Export round trips through pandas: the rows a feed shows, with awkward values, written as CSV and as
Parquet and read back with plain pandas, are the same rows with the same values (and, from Parquet,
the same dtypes); file names say when and under which filters."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from dashboard.ui.export import export_filename, export_frame, to_csv_bytes, to_parquet_bytes
from dashboard.ui.frames import COUNT_COLUMNS, JSON_COLUMNS, TEXT_COLUMNS, TIME_COLUMNS, text_dtype, traces_frame

from .driven import T0, Feed, trace

ODD = [
    trace("007", name="naïve, \"quoted\" — 日本語 🚀", model="gpt-4o", status="error", provider="openai",
          error="Timeout, after 30 s\nretried \"twice\"\r\nthen gave up; ‘smart’ quotes",
          latency_ms=float("nan"), input_tokens=12, output_tokens=None, total_tokens=12, cost_usd=0.1 + 0.2,
          started_at="2026-11-25T11:00:00.123456+01:00", ended_at=None,
          input=[{"role": "user", "content": "Résumé, please:\n\"a, b\""}], output={"text": "ok", "scores": [0.5, None]},
          metadata={"user": {"tags": ["a", "b,c"], "deep": {"null": None, "ß": "ü"}}, "n": 3},
          created_at="2026-11-25T10:00:02.000001Z", updated_at="2026-11-25T10:00:03.5Z"),
    trace("b", name="NA", model="claude-3-5-sonnet", status="success", error=None, latency_ms=812.25,
          input="null", output="=HYPERLINK(\"x\")", metadata={}, cost_usd=None, total_tokens=0,
          created_at="2026-11-25T10:00:01.000000Z", updated_at="2026-11-25T10:00:01.000000Z"),
    trace("c", name="  padded  ", model="gpt-4o", status="running", input=None, output=None, metadata=None,
          created_at="2026-11-25T10:00:00.000000Z", updated_at="2026-11-25T10:00:00.000000Z"),
]


def shown(*traces: dict) -> pd.DataFrame:
    """What a feed that received these traces exports: the rows it shows, as whole traces."""
    f = Feed()
    f.arrive(*reversed(traces))  # oldest first, as they arrive; the table shows them newest first
    f.flush()
    return export_frame(f.feed.filtered_frame(), f.feed.trace)


def as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as both files hold it: dicts and lists as JSON text, text as it is."""
    out = frame.copy()
    for column in JSON_COLUMNS:
        out[column] = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                       for v in frame[column]]
        out[column] = out[column].astype(text_dtype())
    return out


def read_csv(data: bytes) -> pd.DataFrame:
    back = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""],
                       dtype={column: "str" for column in (*TEXT_COLUMNS, *JSON_COLUMNS)})
    for column in TIME_COLUMNS:
        back[column] = pd.to_datetime(back[column], utc=True, format="ISO8601").dt.as_unit("us")
    return back.astype({column: "Int64" for column in COUNT_COLUMNS})


def test_the_export_holds_the_whole_trace_of_each_row_shown_newest_first():
    frame = shown(*ODD)
    assert list(frame["id"]) == ["007", "b", "c"]
    assert frame.loc[0, "metadata"] == ODD[0]["metadata"] and frame.loc[0, "input"] == ODD[0]["input"]
    assert frame.loc[0, "started_at"] == pd.Timestamp("2026-11-25T10:00:00.123456Z")


def test_csv_reads_back_to_the_same_rows_and_values():
    frame = shown(*ODD)
    data = to_csv_bytes(frame)
    assert data.decode("utf-8")  # UTF-8, unicode as itself
    assert "2026-11-25T10:00:02.000001Z" in data.decode()  # times as ISO 8601 UTC
    back = read_csv(data)
    pd.testing.assert_frame_equal(back, as_written(frame), check_exact=True)
    assert json.loads(back.loc[0, "metadata"]) == ODD[0]["metadata"]
    assert back.loc[0, "error"] == ODD[0]["error"]  # newlines (\n and \r\n), commas and quotes intact
    assert math.isnan(back.loc[0, "latency_ms"]) and back.loc[0, "cost_usd"] == 0.1 + 0.2  # every digit


def test_plain_read_csv_also_gets_every_row_and_awkward_text_right():
    back = pd.read_csv(io.BytesIO(to_csv_bytes(shown(*ODD))))
    assert len(back) == 3 and list(back.columns) == list(traces_frame([]).columns)
    assert back.loc[0, "name"] == ODD[0]["name"] and back.loc[0, "error"] == ODD[0]["error"]
    assert back.loc[1, "output"] == "=HYPERLINK(\"x\")"


def test_parquet_reads_back_to_the_same_rows_values_and_dtypes():
    frame = shown(*ODD)
    back = pd.read_parquet(io.BytesIO(to_parquet_bytes(frame)))
    expected = as_written(frame)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)
    assert back["created_at"].dtype == "datetime64[us, UTC]"  # times stay times
    assert back["total_tokens"].dtype == "Int64" and back["latency_ms"].dtype == "float64"
    assert json.loads(back.loc[0, "output"]) == ODD[0]["output"]


@pytest.mark.parametrize("encode", [to_csv_bytes, to_parquet_bytes])
def test_an_empty_table_exports_its_columns(encode):
    frame = shown()
    assert frame.empty
    read = pd.read_csv if encode is to_csv_bytes else pd.read_parquet
    assert list(read(io.BytesIO(encode(frame))).columns) == list(frame.columns)


def test_only_the_rows_shown_are_exported_not_those_filtered_out_or_held():
    f = Feed()
    f.arrive(trace("a", name="rag search"), trace("b", name="summarize"), trace("c", name="rag answer"))
    f.flush()
    f.feed.text = "rag"
    f.feed.selected_id = "c"  # the user holds the view: new arrivals wait behind the badge
    f.arrive(trace("d", name="rag late"))
    f.flush(T0 + 1)
    assert f.feed.new_count == 1
    assert list(export_frame(f.feed.filtered_frame(), f.feed.trace)["id"]) == ["c", "a"]


def test_a_row_whose_trace_the_feed_no_longer_keeps_is_exported_with_the_cells_shown():
    f = Feed(max_rows=10)
    f.arrive(*(trace(f"t{i}", latency_ms=float(i), created_at=f"2026-11-25T10:00:{i:02d}.5Z") for i in range(10)))
    f.flush()
    f.feed.selected_id = "t9"  # hold arrivals: they push the oldest traces out of memory, not off the table
    f.arrive(*(trace(f"n{i}") for i in range(2)))
    f.flush(T0 + 1)
    assert f.feed.trace("t0") is None and "t0" in set(f.feed.filtered_frame()["id"])
    frame = export_frame(f.feed.filtered_frame(), f.feed.trace)
    assert list(frame["id"]) == [f"t{i}" for i in range(9, -1, -1)]
    oldest = frame.iloc[-1]
    assert (oldest["name"], oldest["model"], oldest["status"], oldest["latency_ms"]) == ("summarize", "gpt-4o", "running", 0.0)
    assert oldest["created_at"] == pd.Timestamp("2026-11-25T10:00:00Z")  # the table's time, to the second
    assert pd.isna(oldest["error"]) and pd.isna(oldest["user_id"])


def test_file_names_say_when_and_the_filters_in_force():
    at = datetime(2026, 11, 25, 11, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    assert export_filename("csv", at=at) == "traces-20261125T103005Z.csv"
    assert export_filename("parquet", model="gpt-4o", status="error", at=at) == \
        "traces-20261125T103005Z-model-gpt-4o-status-error.parquet"
    assert export_filename("csv", model="openai/gpt-4o:latest", text="  time out?! ", at=at) == \
        "traces-20261125T103005Z-model-openai_gpt-4o_latest-text-time_out.csv"
    assert export_filename("csv", text="../../etc/passwd", at=at) == "traces-20261125T103005Z-text-etc_passwd.csv"
    assert export_filename("csv", text="x" * 200, at=at).endswith("-text-" + "x" * 40 + ".csv")
    assert export_filename("csv", text="🚀", at=at) == "traces-20261125T103005Z.csv"  # nothing left to say
    assert export_filename("csv", at=datetime(2026, 11, 25, 10)) == "traces-20261125T100000Z.csv"  # naive is UTC
    before, name, after = datetime.now(UTC), export_filename("csv"), datetime.now(UTC)
    assert name in {f"traces-{moment:%Y%m%dT%H%M%S}Z.csv" for moment in (before, after)}
