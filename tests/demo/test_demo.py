"""The demo traffic generator against a real API, a stopped one, and one that refuses its tokens."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import httpx

from dashboard.demo import CANCELLED_ERROR, TrafficModel, run_demo, user_names
from dashboard.demo.catalogue import MODELS

from ..support import ThreadedApi, free_port
from ..support import test_settings as make_settings

HANG = 30  # seconds: only a guard against a run that never returns, not a claim about its speed


async def all_traces(client: httpx.AsyncClient, api: ThreadedApi, user: str) -> list[dict]:
    traces: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = await client.get(api.url + "/api/analytics/traces", params=params, headers=api.headers(user))
        assert response.status_code == 200, response.text
        page = response.json()
        traces += page["traces"]
        cursor = page["next_cursor"]
        if cursor is None:
            return traces


def assert_final(trace: dict) -> None:
    assert trace["status"] in ("success", "error"), trace
    assert trace["ended_at"] >= trace["started_at"]
    assert trace["latency_ms"] is not None and trace["latency_ms"] > 0
    assert isinstance(trace["input_tokens"], int) and isinstance(trace["output_tokens"], int)
    assert trace["total_tokens"] == trace["input_tokens"] + trace["output_tokens"]
    assert trace["cost_usd"] is not None and trace["cost_usd"] >= 0
    assert trace["model"] in MODELS and trace["provider"] == MODELS[trace["model"]].provider
    assert trace["name"] and trace["input"]
    assert {"session_id", "env", "route"} <= set(trace["metadata"])
    if trace["status"] == "success":
        assert trace["output"] and trace["error"] is None
        assert trace["output_tokens"] > 0 and trace["cost_usd"] > 0
    else:
        assert trace["error"] and trace["output"] is None


async def test_demo_fills_each_users_own_traces(api):
    before = asyncio.all_tasks()
    async with asyncio.timeout(HANG):
        stats = await run_demo(api.url, api.settings, rate=50, users=3, duration=1.5, seed=7,
                               error_rate=0.25, latency_scale=0.3)
    assert asyncio.all_tasks() == before  # it stopped by itself, with no call left running behind it
    assert stats.users == ["demo", "alice", "bob"]
    assert stats.started > 30 and stats.failed_requests == 0
    # Every call that started was finished off, in flight at the stop or not: nothing stays "running".
    assert stats.completed == stats.started and stats.abandoned == 0

    seen: dict[str, set[str]] = {}
    everything: list[dict] = []
    async with httpx.AsyncClient() as client:
        for user in stats.users:
            traces = await all_traces(client, api, user)
            assert traces, f"no traces for {user}"
            assert {t["user_id"] for t in traces} == {user}
            seen[user] = {t["id"] for t in traces}
            everything += traces
    assert sum(map(len, seen.values())) == len({t["id"] for t in everything}) == stats.started
    assert len(seen["demo"]) >= max(len(seen["alice"]), len(seen["bob"])) * 0.8   # demo gets a good share

    for trace in everything:
        assert_final(trace)
    errors = [t for t in everything if t["status"] == "error"]
    assert len(errors) == stats.errors
    assert len([t for t in errors if t["error"] == CANCELLED_ERROR]) == stats.cancelled
    assert any(t["error"] != CANCELLED_ERROR for t in errors), "no simulated LLM failure at all"
    assert len([t for t in everything if t["status"] == "success"]) == stats.succeeded > 0
    assert len({t["model"] for t in everything}) >= 3
    assert len({t["name"] for t in everything}) >= 3


async def test_stop_event_finishes_in_flight_calls_and_uses_the_given_client(api):
    stop = asyncio.Event()
    posts = 0

    async def count_posts(response: httpx.Response) -> None:
        nonlocal posts
        if response.request.method == "POST" and response.status_code == 201:
            posts += 1
            if posts == 20:
                stop.set()

    async with httpx.AsyncClient(event_hooks={"response": [count_posts]}) as client:
        stats = await run_demo(api.url, api.settings, rate=50, users=2, stop=stop, client=client, seed=3)
        assert not client.is_closed          # a client we were given is left for us to close
        traces = await all_traces(client, api, "demo") + await all_traces(client, api, "alice")
    assert stats.started == posts >= 20
    # The call whose POST set the stop was in flight then, so at least one was cancelled.
    assert stats.cancelled >= 1 and stats.completed == stats.started
    assert all(t["status"] in ("success", "error") for t in traces)
    cancelled = [t for t in traces if t["error"] == CANCELLED_ERROR]
    assert len(cancelled) == stats.cancelled
    assert all(t["output_tokens"] == 0 and t["latency_ms"] > 0 for t in cancelled)


async def test_demo_against_a_closed_port_keeps_going_without_raising(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dashboard.demo")
    url = f"http://127.0.0.1:{free_port()}"
    before = asyncio.all_tasks()
    async with asyncio.timeout(HANG):  # it stops at its duration even while backing off from the failures
        stats = await run_demo(url, make_settings(tmp_path), rate=50, users=3, duration=0.5)
    assert asyncio.all_tasks() == before
    assert stats.started == 0 and stats.completed == 0
    assert stats.failed_requests >= 1
    warnings = [r for r in caplog.records if r.name == "dashboard.demo"]
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]   # one line, not one per request
    assert url in warnings[0].getMessage() and "Traceback" not in caplog.text


async def test_demo_with_the_wrong_secret_says_so_and_keeps_going(api, caplog):
    caplog.set_level(logging.WARNING, logger="dashboard.demo")
    wrong = replace(api.settings, jwt_secret="not-the-api-secret-" + "x" * 32)
    stats = await run_demo(api.url, wrong, rate=50, users=2, duration=0.5)
    assert stats.started == 0 and stats.failed_requests >= 1
    message = caplog.records[0].getMessage()
    assert "401" in message and "TRACES_JWT_SECRET" in message


def test_a_seed_fixes_the_sequence_of_calls():
    def draw(seed: int) -> list[tuple]:
        model = TrafficModel(user_names(4), seed=seed)
        return [(c.user_id, c.name, c.model.name, c.latency_s, c.input_tokens, c.output_tokens, c.error,
                 c.metadata["session_id"]) for c in (model.next_call() for _ in range(200))]

    assert draw(1) == draw(1) != draw(2)
    calls = draw(1)
    assert {c[0] for c in calls} == {"demo", "alice", "bob", "carol"}
    assert sum(c[0] == "demo" for c in calls) > 50
    assert all(0 < c[3] <= 10.5 for c in calls)
    assert user_names(10)[-2:] == ["heidi", "user-10"] and len(user_names(12)) == 12
