"""Rate limits: a user writing faster than TRACES_WRITE_RATE is refused whole with Retry-After while others
write on; an address that keeps failing authentication is slowed while other addresses are not.

Time is a clock the test moves (never a sleep): the limiters read it through an injected ``clock``."""

from __future__ import annotations

import httpx
import pytest

from dashboard.server.rate_limits import AuthFailureLimiter, TokenBucket, WriteLimiter, whole_seconds

from ..streams import STREAM

TRACES = "/api/analytics/traces"


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the limiters themselves


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    bucket = TokenBucket(rate=10, capacity=20, tokens=20, updated=0)
    assert bucket.take(20, now=0) == 0  # the whole burst at once
    assert bucket.take(1, now=0) == pytest.approx(0.1)  # refused, with the wait for one more
    assert bucket.take(5, now=0.5) == 0  # half a second refilled five
    assert bucket.take(1, now=0.5) == pytest.approx(0.1)
    assert bucket.is_full(now=100) and bucket.tokens == 20  # never more than the burst


def test_a_refused_take_costs_nothing():
    bucket = TokenBucket(rate=10, capacity=20, tokens=3, updated=0)
    assert bucket.take(8, now=0) == pytest.approx(0.5)
    assert bucket.take(3, now=0) == 0


@pytest.mark.parametrize(("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.2, 2), (59.01, 60)])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(wait, seconds):
    assert whole_seconds(wait) == seconds


def test_a_user_writes_twice_the_rate_at_once_and_then_the_rate():
    clock = Clock()
    limiter = WriteLimiter(1000, clock=clock)
    assert limiter.burst == 2000
    assert limiter.take("alice", 2000) == 0
    assert limiter.take("alice", 1) > 0
    assert limiter.take("bob", 2000) == 0  # each user has their own bucket
    clock.advance(1)
    assert limiter.take("alice", 1000) == 0
    assert limiter.take("alice", 1) > 0


def test_the_bucket_table_is_bounded_and_forgets_full_buckets_first():
    clock = Clock()
    limiter = WriteLimiter(10, max_users=2, clock=clock)
    limiter.take("drained", 20)
    limiter.take("idle", 1)
    clock.advance(1)  # "idle" is full again, "drained" is not
    limiter.take("newcomer", 1)
    assert limiter.take("drained", 20) > 0  # still remembered: still limited
    assert len(limiter._buckets) == 2


def test_when_no_bucket_is_full_the_least_recently_used_is_forgotten():
    limiter = WriteLimiter(10, max_users=2, clock=Clock())
    limiter.take("first", 20)
    limiter.take("second", 20)
    limiter.take("third", 20)
    assert len(limiter._buckets) == 2
    assert limiter.take("first", 20) == 0  # forgotten, so full again: the table stays bounded


def test_a_rate_of_zero_is_no_limit():
    limiter = WriteLimiter(0, clock=Clock())
    assert not limiter.enabled
    assert limiter.take("alice", 10**9) == 0


def test_failures_within_the_window_block_an_address_for_the_backoff():
    clock = Clock()
    limiter = AuthFailureLimiter(allowed=20, window=60, backoff=60, clock=clock)
    for _ in range(19):
        limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 60
    assert limiter.blocked_for("10.0.0.2") == 0
    clock.advance(60)
    assert limiter.blocked_for("10.0.0.1") == 0


def test_failures_spread_over_more_than_the_window_block_nothing():
    clock = Clock()
    limiter = AuthFailureLimiter(allowed=20, window=60, clock=clock)
    for _ in range(40):
        limiter.failed("10.0.0.1")
        clock.advance(5)  # 12 a minute
    assert limiter.blocked_for("10.0.0.1") == 0


def test_the_address_table_is_bounded():
    limiter = AuthFailureLimiter(max_clients=100, clock=Clock())
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._clients) == 100


# --- over HTTP


@pytest.fixture
async def limited(make_app_api):
    """The app with 10 traces a second per user (bursts of 20) on a clock the test moves."""
    api = await make_app_api(write_rate=10)
    api.clock = Clock()
    api.services.limits.writes.clock = api.clock
    api.services.limits.auth_failures.clock = api.clock
    return api


def client_at(api, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=10)


async def names(client, headers) -> list[str]:
    response = await client.get(TRACES, params={"limit": 1000}, headers=headers)
    return sorted(trace["name"] for trace in response.json()["traces"])


def rate_limited(api, reason: str) -> float:
    return api.services.metrics.registry.get_sample_value("traces_rate_limited_total", {"reason": reason}) or 0.0


async def test_a_user_over_the_rate_is_refused_whole_while_another_writes_on(limited):
    alice, bob = limited.headers("alice"), limited.headers("bob")
    async with limited.client() as client:
        first = await client.post("/api/traces", headers=alice, json={"traces": [{"name": f"a{i}"} for i in range(15)]})
        assert first.status_code == 201
        over = await client.post("/api/traces", headers=alice, json={"traces": [{"name": f"late{i}"} for i in range(10)]})
        assert over.status_code == 429
        assert over.headers["Retry-After"] == "1"  # 5 traces short at 10 a second: half a second, rounded up
        assert over.json()["error"]["code"] == "write_rate_exceeded"
        assert "nothing of this request was stored" in over.json()["error"]["message"]
        others = await client.post("/api/traces", headers=bob, json={"traces": [{"name": f"b{i}"} for i in range(20)]})
        assert others.status_code == 201  # bob's whole burst, at the same moment
        assert await names(client, alice) == sorted(f"a{i}" for i in range(15))  # none of the refused batch
        assert rate_limited(limited, "writes") == 1

        limited.clock.advance(int(over.headers["Retry-After"]))  # the client waits as told
        again = await client.post("/api/traces", headers=alice, json={"traces": [{"name": f"late{i}"} for i in range(10)]})
        assert again.status_code == 201


async def test_a_patch_costs_one_trace_and_a_refused_one_changes_nothing(limited):
    alice = limited.headers("alice")
    async with limited.client() as client:
        await client.post("/api/traces", headers=alice, json={"traces": [{"id": f"t{i}", "name": "x"} for i in range(20)]})
        refused = await client.patch("/api/traces/t0", headers=alice, json={"name": "changed"})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert (await client.get(f"{TRACES}/t0", headers=alice)).json()["name"] == "x"
        limited.clock.advance(0.1)  # one trace's worth
        assert (await client.patch("/api/traces/t0", headers=alice, json={"name": "changed"})).status_code == 200


async def test_a_batch_larger_than_the_burst_is_refused_saying_how_to_split_it(limited):
    alice = limited.headers("alice")
    async with limited.client() as client:
        response = await client.post("/api/traces", headers=alice, json={"traces": [{"name": "x"}] * 21})
        assert response.status_code == 413  # no wait would let it through, so not 429
        error = response.json()["error"]
        assert error["code"] == "batch_exceeds_burst"
        assert "batches of at most 20" in error["message"]
        assert await names(client, alice) == []
        full = await client.post("/api/traces", headers=alice, json={"traces": [{"name": "x"}] * 20})
        assert full.status_code == 201  # the refused batch cost nothing


def otlp_export(llm_spans: int, other_spans: int = 0, start: int = 0) -> dict:
    def span(i: int, attributes: list[dict]) -> dict:
        return {"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"span{i}",
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
                "attributes": attributes}

    model = [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]
    spans = [span(start + i, model) for i in range(llm_spans)]
    spans += [span(10_000 + start + i, [{"key": "http.route", "value": {"stringValue": "/x"}}]) for i in range(other_spans)]
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


async def test_an_otlp_export_costs_the_llm_spans_it_would_store(limited):
    alice = limited.headers("alice")
    async with limited.client() as client:
        accepted = await client.post("/v1/traces", headers=alice, json=otlp_export(15, other_spans=30))
        assert accepted.status_code == 200  # 45 spans, but only the 15 LLM calls count
        refused = await client.post("/v1/traces", headers=alice, json=otlp_export(10, start=100))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert len(await names(client, alice)) == 15
        too_big = await client.post("/v1/traces", headers=alice, json=otlp_export(21, start=200))
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "batch_exceeds_burst"


async def test_an_address_that_keeps_failing_auth_is_slowed_and_others_are_not(limited):
    valid, bad = limited.headers("alice"), {"Authorization": "Bearer not-a-token"}
    async with client_at(limited, "10.0.0.1") as prober, client_at(limited, "10.0.0.2") as neighbour:
        for _ in range(20):
            assert (await prober.get(TRACES, headers=bad)).status_code == 401
        slowed = await prober.get(TRACES, headers=valid)  # not even a valid token is looked at
        assert slowed.status_code == 429
        assert slowed.headers["Retry-After"] == "60"
        assert slowed.json()["error"]["code"] == "too_many_auth_failures"
        ticket = (await neighbour.post(STREAM + "/ticket", headers=valid)).json()["ticket"]
        assert (await prober.get(STREAM, params={"ticket": ticket})).status_code == 429  # streams too
        assert (await prober.get(STREAM, params={"ticket": "guess"})).status_code == 429

        assert (await neighbour.get(TRACES, headers=valid)).status_code == 200
        assert (await neighbour.get(TRACES, headers=bad)).status_code == 401  # its own count, far from the limit
        assert rate_limited(limited, "auth_failures") == 3

        limited.clock.advance(60)
        assert (await prober.get(TRACES, headers=valid)).status_code == 200


async def test_wrong_tickets_count_as_failures(limited):
    async with client_at(limited, "10.0.0.3") as prober:
        for i in range(20):
            assert (await prober.get(STREAM, params={"ticket": f"guess-{i}"})).status_code == 401
        assert (await prober.get(STREAM, params={"ticket": "guess"})).status_code == 429
        assert (await prober.get("/healthz")).status_code == 200  # asks for no credential: nothing to slow
