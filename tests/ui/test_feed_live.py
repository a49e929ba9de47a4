"""TraceFeed against a real API: live rows, refresh continuity, the live toggle, filters, errors, retry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from dashboard.ui.feed import TraceFeed

from ..streams import post_trace
from ..support import wait_until


async def until(feed: TraceFeed, predicate: Callable[[], bool], timeout: float = 10) -> None:
    await feed.wait_for(lambda _: predicate(), timeout)


@pytest.fixture
async def feed_for(api):
    feeds: list[TraceFeed] = []

    async def make(user: str = "alice", **params) -> TraceFeed:
        params.setdefault("batch_seconds", 0.05)
        params.setdefault("initial_backoff", 0.05)
        params.setdefault("max_backoff", 0.5)
        feed = TraceFeed(api.token(user), api_url=api.url, **params)
        feed.start()
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        await feed.stop()


@pytest.fixture
async def client(api):
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        yield http


async def test_the_snapshot_loads_then_live_rows_arrive(api, client, feed_for):
    alice = api.headers("alice")
    await post_trace(client, alice, id="old", status="success", latency_ms=10)
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected" and list(feed.frame["id"]) == ["old"])
    assert feed.refresh_text.startswith("refreshed ")
    await post_trace(client, alice, id="new", status="running")
    await until(feed, lambda: list(feed.frame["id"]) == ["new", "old"])
    assert feed.new_count == 0  # at the top, in view: nothing is held back
    await client.patch("/api/traces/new", headers=alice, json={"status": "success", "latency_ms": 5})
    await until(feed, lambda: feed.frame.set_index("id").at["new", "status"] == "success")
    assert len(feed.frame) == 2


async def test_a_new_snapshot_is_shown_as_soon_as_it_arrives_not_at_the_next_batch(api, client, feed_for):
    """After a Refresh (or new filters) the user waits for the rows, so the snapshot skips the rest
    between batches: with a minute's rest, the rows still come within seconds."""
    await post_trace(client, api.headers("alice"), id="old", status="success", latency_ms=10)
    feed = await feed_for()
    await until(feed, lambda: list(feed.frame["id"]) == ["old"], timeout=10)
    feed.batch_seconds = 60  # from the next rest on
    await post_trace(client, api.headers("alice"), id="later", status="success", latency_ms=10)
    feed.refresh()
    await until(feed, lambda: list(feed.frame["id"]) == ["later", "old"], timeout=10)


async def test_refresh_while_live_misses_and_repeats_nothing(api, client, feed_for):
    alice = api.headers("alice")
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected")
    for i in range(3):
        await post_trace(client, alice, id=f"before{i}")
    await until(feed, lambda: len(feed.frame) == 3)
    first_refresh = feed.last_refresh_at
    feed.refresh()
    await post_trace(client, alice, id="during")
    await until(feed, lambda: feed.last_refresh_at != first_refresh and feed.connection == "connected")
    await post_trace(client, alice, id="after")
    await until(feed, lambda: "after" in set(feed.frame["id"]))
    ids = list(feed.frame["id"])
    assert sorted(ids) == sorted(["before0", "before1", "before2", "during", "after"])
    assert len(ids) == len(set(ids))


async def test_live_off_closes_the_stream_and_on_resumes_without_a_gap(api, client, feed_for):
    alice = api.headers("alice")
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected")
    feed.live = False
    await until(feed, lambda: feed.connection == "off" and feed.connection_text == "paused")
    await wait_until(lambda: api.services.hub.open_streams == 0)
    await post_trace(client, alice, id="while-paused")
    feed.live = True
    await until(feed, lambda: "while-paused" in set(feed.frame["id"]))
    assert feed.connection == "connected"


async def test_server_side_filters_keep_live_mode_on(api, client, feed_for):
    alice = api.headers("alice")
    await post_trace(client, alice, id="g-old", model="gpt-4o")
    await post_trace(client, alice, id="c-old", model="claude")
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected" and set(feed.frame["id"]) == {"g-old", "c-old"})
    loaded = feed.last_refresh_at
    feed.model = "claude"
    # Only true once the traces were reloaded with the filter: the gpt-4o row has gone.
    await until(feed, lambda: feed.last_refresh_at != loaded and list(feed.frame["id"]) == ["c-old"])
    await post_trace(client, alice, id="g-live", model="gpt-4o")
    await post_trace(client, alice, id="c-live", model="claude")
    # Live rows still arrive, and only the model's: g-live was written first, so it would be here by now.
    await until(feed, lambda: "c-live" in set(feed.frame["id"]))
    assert list(feed.frame["id"]) == ["c-live", "c-old"]
    assert set(feed.frame["model"]) == {"claude"}
    assert (feed.connection, feed.connection_text, feed.error) == ("connected", "connected", "")
    await wait_until(lambda: api.services.hub.open_streams == 1)  # the unfiltered stream was closed, not left open


async def test_an_expired_token_is_shown_and_a_new_token_recovers(api, feed_for):
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected")
    await feed.stop()
    expired = TraceFeed(api.token("alice", ttl=-10), api_url=api.url, batch_seconds=0.05)
    expired.start()
    try:
        await until(expired, lambda: expired.connection == "error")
        assert expired.error == "connection lost: the token has expired"
        expired.set_token(api.token("alice"))
        await until(expired, lambda: expired.connection == "connected")
        assert expired.error == ""
    finally:
        await expired.stop()


async def test_an_unreachable_api_is_shown_with_the_retry_countdown_and_retry_reconnects(api, feed_for):
    from ..support import free_port

    feed = await feed_for(initial_backoff=20, max_backoff=30)
    feed.api_url = f"http://127.0.0.1:{free_port()}"
    feed.refresh()
    await until(feed, lambda: feed.connection == "reconnecting" and "next in" in feed.connection_text)
    assert feed.error.startswith("connection lost: cannot load traces from http://127.0.0.1:")
    feed.api_url = api.url
    feed.retry_now()  # without it the next attempt would be up to 30 s away
    await until(feed, lambda: feed.connection == "connected", timeout=5)


async def test_stopping_leaves_no_task_and_no_stream(api, feed_for):
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected")
    await feed.stop()
    assert not feed.running
    await wait_until(lambda: api.services.hub.open_streams == 0)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("trace-")] == []
    assert (feed.live, feed.connection_text) == (False, "stopped")  # said, and the toggle shows it


async def test_turning_live_on_after_stop_starts_the_feed_again(api, client, feed_for):
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected")
    await feed.stop()
    await post_trace(client, api.headers("alice"), id="after-stop")
    feed.live = True
    await until(feed, lambda: feed.connection == "connected" and "after-stop" in set(feed.frame["id"]))
    assert feed.running


async def test_filters_changed_quickly_end_on_the_latest_choice(api, client, feed_for):
    alice = api.headers("alice")
    for i, (model, status) in enumerate([("gpt-4o", "success"), ("gpt-4o", "error"), ("claude", "success"),
                                         ("claude", "error"), ("gpt-4o", "success")]):
        await post_trace(client, alice, id=f"t{i}", model=model, status=status)
    feed = await feed_for()
    await until(feed, lambda: feed.connection == "connected" and len(feed.frame) == 5)
    feed.model = "gpt-4o"  # then, before that reload is done, a status
    feed.status_filter = "error"
    await until(feed, lambda: feed.showing_text == "showing 1 of 1 · model gpt-4o · status error")
    assert list(feed.frame["id"]) == ["t1"]
    feed.model = ""  # both back to "all", quickly
    feed.status_filter = ""
    await until(feed, lambda: feed.showing_text == "showing 5 of 5")
    assert sorted(feed.frame["id"]) == [f"t{i}" for i in range(5)]
    await post_trace(client, alice, id="live", model="claude", status="running")
    await until(feed, lambda: "live" in set(feed.frame["id"]))
    assert feed.showing_text == "showing 6 of 6"
