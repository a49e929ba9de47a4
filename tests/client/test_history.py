"""fetch_history against the real API (in-process, over ASGI; once over a socket): every trace of a
window exactly once, newest first, however the pages fall, with ``max_rows`` honoured and said."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from dashboard.client import StreamAuthError, TraceApiError
from dashboard.client._history import History, as_utc, fetch_history
from dashboard.client._snapshot import retry_after

API = "http://api.test"
BATCHES = 6
BATCH = 500  # the API takes up to 1000 a request; 500 gives six distinct created_at instants
MODELS = ("gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b")
STATUSES = ("success", "error", "running", "pending")


async def post_all(http: httpx.AsyncClient, headers: dict[str, str], traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST one batch, waiting out a 429 (the per-user write rate) as the API asks; what was stored."""
    while True:
        response = await http.post("/api/traces", json={"traces": traces}, headers=headers)
        if response.status_code != 429:
            assert response.status_code == 201, response.text
            return response.json()["traces"]
        await asyncio.sleep(retry_after(response) or 1.0)


def make_traces(start: int, count: int) -> list[dict[str, Any]]:
    return [{"id": f"h{i:05d}", "name": f"call {i}", "model": MODELS[i % 3], "status": STATUSES[i % 4],
             "latency_ms": float(i), "metadata": {"i": i}} for i in range(start, start + count)]


@dataclass
class Posted:
    """What the history holds: each batch's stored traces, in the order written (oldest first)."""

    api: Any
    http: httpx.AsyncClient
    token: str
    batches: list[list[dict[str, Any]]]

    @property
    def newest_first(self) -> list[dict[str, Any]]:
        return [t for batch in self.batches for t in batch][::-1]

    def created(self, batch: int) -> str:
        return self.batches[batch][0]["created_at"]

    def ids(self, *, since: int = 0, until: int = BATCHES, model: str | None = None, status: str | None = None) -> list[str]:
        """Ids of batches ``since`` … ``until - 1`` matching the filters, newest first."""
        return [t["id"] for batch in self.batches[since:until][::-1] for t in batch[::-1]
                if model in (None, t["model"]) and status in (None, t["status"])]

    async def fetch(self, **kwargs: Any) -> History:
        return await fetch_history(API, self.token, client=self.http, **kwargs)


@pytest.fixture
async def posted(app_api) -> Posted:
    async with app_api.client() as http:
        headers = app_api.headers("alice")
        batches = [await post_all(http, headers, make_traces(k * BATCH, BATCH)) for k in range(BATCHES)]
        await post_all(http, app_api.headers("bob"), [{"id": "bobs", "model": "gpt-4o"}])  # never alice's
        assert len({batch[0]["created_at"] for batch in batches}) == BATCHES, "each batch at its own instant"
        yield Posted(app_api, http, app_api.token("alice"), batches)


def ids(history: History) -> list[str]:
    return [t["id"] for t in history.traces]


@pytest.mark.parametrize("page_size", [1000, 333, 1])
async def test_the_whole_history_comes_back_once_newest_first_however_the_pages_fall(posted, page_size):
    kwargs: dict[str, Any] = {"page_size": page_size}
    if page_size == 1:  # one trace a page: a window of 40, so the test stays quick
        kwargs.update(since=posted.created(5), model="gpt-4o", status="error", max_rows=None)
    history = await posted.fetch(**kwargs)
    expected = posted.ids(since=5, model="gpt-4o", status="error") if page_size == 1 else posted.ids()
    assert ids(history) == expected  # the same ids in the same order: none missing, none twice
    assert len(expected) == (42 if page_size == 1 else BATCHES * BATCH)
    wanted = set(expected)
    assert history.traces == [t for t in posted.newest_first if t["id"] in wanted]  # the whole traces, as stored
    assert not history.truncated
    assert history.last_event_id == BATCHES * BATCH + 1


async def test_a_window_is_since_included_until_excluded_filtered_by_the_api_and_the_client(posted):
    since, until = posted.created(2), posted.created(4)
    for page_size in (1000, 333, 499):  # pages that start and end inside batches, and across the until edge
        history = await posted.fetch(since=since, until=until, page_size=page_size)
        assert ids(history) == posted.ids(since=2, until=4)
    assert ids(await posted.fetch(since=since)) == posted.ids(since=2)
    assert ids(await posted.fetch(until=until)) == posted.ids(until=4)
    assert ids(await posted.fetch(since=since, until=since)) == []  # an empty window, not an error
    narrowed = await posted.fetch(since=since, until=until, model="claude-3-5-sonnet", status="running", page_size=17)
    assert ids(narrowed) == posted.ids(since=2, until=4, model="claude-3-5-sonnet", status="running") != []


async def test_windows_side_by_side_hold_every_trace_exactly_once(posted):
    edges = [None, *(posted.created(k) for k in (1, 3, 4)), None]
    windows = [await posted.fetch(since=a, until=b, page_size=271) for a, b in zip(edges, edges[1:])]
    together = [trace_id for history in reversed(windows) for trace_id in ids(history)]
    assert together == posted.ids()


async def test_times_may_be_datetimes_in_any_zone_naive_ones_utc_or_iso_strings(posted):
    since = datetime.fromisoformat(posted.created(3))
    expected = posted.ids(since=3)
    paris = timezone(timedelta(hours=1))
    for value in (since, since.astimezone(paris), since.replace(tzinfo=None), posted.created(3),
                  since.astimezone(paris).isoformat(), since.replace(tzinfo=None).isoformat()):
        assert ids(await posted.fetch(since=value)) == expected, value
    assert ids(await posted.fetch(since=date.today() + timedelta(days=2))) == []
    assert ids(await posted.fetch(until=date(2000, 1, 1))) == []


async def test_max_rows_is_honoured_and_a_window_cut_short_says_so(posted, caplog):
    caplog.set_level(logging.WARNING, logger="dashboard.client")
    cut = await posted.fetch(max_rows=1234, page_size=1000)
    assert ids(cut) == posted.ids()[:1234]
    assert cut.truncated
    [record] = [r for r in caplog.records if "max_rows=1234" in r.getMessage()]
    assert posted.newest_first[1233]["created_at"] in record.getMessage() and cut.next_cursor in record.getMessage()
    rest = await posted.fetch(cursor=cut.next_cursor, page_size=1000)  # picks up exactly where it stopped
    assert ids(cut) + ids(rest) == posted.ids() and not rest.truncated and rest.next_cursor is None

    caplog.clear()
    window = posted.ids(since=1, until=3)
    whole = await posted.fetch(since=posted.created(1), until=posted.created(3), max_rows=len(window), page_size=300)
    assert ids(whole) == window and not whole.truncated  # exactly the window: nothing was left out
    cut = await posted.fetch(since=posted.created(1), until=posted.created(3), max_rows=len(window) - 1, page_size=300)
    assert ids(cut) == window[:-1] and cut.truncated
    rest = await posted.fetch(since=posted.created(1), until=posted.created(3), cursor=cut.next_cursor)
    assert ids(rest) == window[-1:]  # the trace left out, though it shares its created_at with those before it
    assert ids(await posted.fetch(max_rows=1)) == posted.ids()[:1]


async def test_traces_written_and_changed_while_paging_neither_repeat_nor_shift_the_pages(posted):
    """The pages are cut by row position: arrivals are newer than the first page, and a change keeps a
    trace where it was."""
    writes: list[str] = []

    async def write_between_pages(response: httpx.Response) -> None:
        if response.request.url.path == "/api/analytics/traces" and not writes:
            writes.append("done")
            headers = posted.api.headers("alice")
            await post_all(posted.http, headers, make_traces(90_000, 250))
            changed = await posted.http.patch(f"/api/traces/{posted.batches[0][0]['id']}", json={"status": "error"},
                                              headers=headers)
            assert changed.status_code == 200

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=posted.api.app), base_url=API,
                                 event_hooks={"response": [write_between_pages]}) as reader:
        history = await fetch_history(API, posted.token, page_size=400, client=reader)
    assert writes
    assert ids(history) == posted.ids()
    assert history.traces[-1]["status"] == "error"  # the oldest trace, changed after the first page


async def test_without_a_client_it_opens_and_closes_its_own_over_a_real_socket(api):
    token = api.token("carol")
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as http:
        for start in (0, 20):
            assert http.post("/api/traces", json={"traces": make_traces(start, 20)}).status_code == 201
    history = await fetch_history(api.url + "/", token, page_size=7, status="error")
    assert ids(history) == [f"h{i:05d}" for i in range(39, -1, -1) if STATUSES[i % 4] == "error"]


async def test_the_apis_own_reason_is_raised(posted):
    with pytest.raises(StreamAuthError):
        await fetch_history(API, "not-a-token", client=posted.http)
    with pytest.raises(TraceApiError) as refused:
        await posted.fetch(status="done")
    assert refused.value.status_code == 422


@pytest.mark.parametrize("kwargs", [
    {"page_size": 0}, {"page_size": 1001}, {"max_rows": 0},
    {"since": "2026-11-25T10:00:00Z", "until": "2026-11-25T09:59:59Z"},
    {"since": "yesterday"},
])
async def test_a_window_or_size_that_cannot_be_asked_for_is_refused_before_any_request(kwargs):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(ValueError):
            await fetch_history(API, "token", client=http, **kwargs)


def test_as_utc_reads_every_form_a_notebook_user_types():
    ten = datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert as_utc("2026-11-25T10:00:00Z") == ten
    assert as_utc("2026-11-25T12:00:00+02:00") == ten
    assert as_utc("2026-11-25 10:00") == ten
    assert as_utc(datetime(2026, 11, 25, 10)) == ten
    assert as_utc(date(2026, 11, 25)) == ten - timedelta(hours=10)
    assert as_utc(ten).tzinfo is UTC
    with pytest.raises(TypeError):
        as_utc(1764064800)  # type: ignore[arg-type]
