"""history_frame: a window of history from the real API (in-process) as a DataFrame a person analyses
with: the trace's fields as columns, proper dtypes, newest first, every page followed."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from dashboard.ui.frames import TRACE_COLUMNS, history_frame, text_dtype, traces_frame

API = "http://api.test"


@pytest.fixture
async def http(app_api):
    async with app_api.client() as client:
        yield client


async def post(http, headers, traces):
    response = await http.post("/api/traces", json={"traces": traces}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["traces"]


async def test_a_window_of_history_is_a_typed_frame_newest_first(app_api, http):
    alice = app_api.headers("alice")
    old = await post(http, alice, [{"id": f"old{i}", "model": "gpt-4o"} for i in range(5)])
    stored = await post(http, alice, [
        {"id": "full", "name": "summarize", "model": "gpt-4o", "provider": "openai", "status": "success",
         "started_at": "2026-11-25T10:00:00.5+01:00", "ended_at": "2026-11-25T09:00:01.25Z", "latency_ms": 750,
         "input_tokens": 12, "output_tokens": 30, "cost_usd": 0.0021, "input": [{"role": "user", "content": "hi"}],
         "output": "hello", "metadata": {"tags": ["a"]}},
        {"id": "bare", "model": "gpt-4o"},
        *({"id": f"n{i}", "model": "gpt-4o"} for i in range(7)),
    ])
    frame = await history_frame(API, app_api.token("alice"), since=stored[0]["created_at"], page_size=2, client=http)

    assert list(frame["id"]) == [t["id"] for t in stored][::-1]  # newest first, nothing from before `since`
    assert not {t["id"] for t in old} & set(frame["id"])
    assert tuple(frame.columns) == TRACE_COLUMNS
    for column in ("started_at", "ended_at", "created_at", "updated_at"):
        assert frame[column].dtype == "datetime64[us, UTC]", column
    for column in ("latency_ms", "cost_usd"):
        assert frame[column].dtype == "float64", column
    for column in ("input_tokens", "output_tokens", "total_tokens"):
        assert frame[column].dtype == "Int64", column
    assert frame["model"].dtype == text_dtype()

    full = frame.set_index("id").loc["full"]
    assert full["started_at"] == pd.Timestamp("2026-11-25T09:00:00.5Z")
    assert full["total_tokens"] == 42  # derived by the server
    assert full["input"] == [{"role": "user", "content": "hi"}] and full["metadata"] == {"tags": ["a"]}
    bare = frame.set_index("id").loc["bare"]
    assert pd.isna(bare["started_at"]) and pd.isna(bare["latency_ms"]) and bare["total_tokens"] is pd.NA
    assert frame.attrs == {"truncated": False, "next_cursor": None, "last_event_id": 14}


async def test_a_frame_cut_short_by_max_rows_says_so(app_api, http, caplog):
    caplog.set_level(logging.WARNING, logger="dashboard.client")
    await post(http, app_api.headers("alice"), [{"id": f"t{i}"} for i in range(10)])
    frame = await history_frame(API, app_api.token("alice"), max_rows=4, page_size=3, client=http)
    assert list(frame["id"]) == ["t9", "t8", "t7", "t6"]
    assert frame.attrs["truncated"] is True
    assert any("max_rows=4" in r.getMessage() for r in caplog.records)
    rest = await history_frame(API, app_api.token("alice"), cursor=frame.attrs["next_cursor"], client=http)
    assert list(rest["id"]) == [f"t{i}" for i in range(5, -1, -1)] and rest.attrs["truncated"] is False


async def test_the_url_and_token_come_from_the_environment_when_not_given(app_api, http, monkeypatch):
    await post(http, app_api.headers("alice"), [{"id": "mine"}])
    monkeypatch.setenv("TRACES_API_URL", API)
    monkeypatch.setenv("TRACES_TOKEN", app_api.token("alice"))
    assert list((await history_frame(client=http))["id"]) == ["mine"]
    monkeypatch.delenv("TRACES_TOKEN")
    with pytest.raises(ValueError, match="TRACES_TOKEN"):
        await history_frame(client=http)


def test_no_traces_is_an_empty_frame_with_the_same_columns_and_dtypes():
    empty = traces_frame([])
    some = traces_frame([{"id": "a", "user_id": "u", "status": "running", "created_at": "2026-11-25T10:00:00Z",
                          "updated_at": "2026-11-25T10:00:00Z", "metadata": {}}])
    assert empty.empty and tuple(empty.columns) == TRACE_COLUMNS
    assert empty.dtypes.to_dict() == some.dtypes.to_dict()


def test_fields_the_frame_does_not_know_yet_are_kept_after_the_known_ones():
    frame = traces_frame([{"id": "a", "status": "running", "colour": "red"}])
    assert list(frame.columns)[-1] == "colour" and frame.loc[0, "colour"] == "red"
