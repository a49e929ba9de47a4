"""Sending the synthetic traffic to the API: ``python -m dashboard demo``.

Each call is POSTed as ``running`` the moment it starts, then, after its drawn latency, PATCHed to
``success`` or ``error`` (see ``traffic``).

At most ``max_in_flight`` calls are open at once; when that many are waiting on their "model", new
arrivals wait for a slot, so the number of tasks never grows without bound.

Stopping (``stop`` set, ``duration`` elapsed, or the task cancelled, as by Ctrl-C): no new calls
start, and every call still in flight is finished off at once as ``error`` with
``Cancelled: the demo traffic generator stopped`` and the latency it had reached, so no trace is
left ``running`` forever (a call whose real outcome was already due but not yet stored gets one
last try with it). Those final updates get ``shutdown_timeout`` seconds; any the API has not taken
by then are abandoned (``DemoStats.abandoned``).

When the API is down or answers errors, the generator logs a one-line warning at most every
``WARN_INTERVAL`` seconds, pauses new calls with the shared backoff, and carries on when the API is
back: it never raises for the API's sake. A call's final update is retried for up to
``PATCH_RETRY_SECONDS`` (an API restart does not leave its trace ``running``), and a call whose
POST failed is dropped, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..backoff import Backoff
from ..client import api_error
from ..config import Settings
from ..schema import WRITE_PATH
from ..server.auth import Authenticator
from ..waits import wait_for_event
from .traffic import CallPlan, TrafficModel, user_names

log = logging.getLogger("dashboard.demo")

TOKEN_TTL_SECONDS = 12 * 3600
TOKEN_REFRESH_BEFORE = 3600          # mint a fresh token when the current one has less than this left
WARN_INTERVAL = 10.0                 # at most one warning line per this many seconds
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
PATCH_RETRY_SECONDS = 120.0


@dataclass
class DemoStats:
    """What a run did. ``completed`` counts calls brought to a final status (``errors`` among them,
    and ``cancelled`` among those); ``failed_requests`` counts HTTP requests that did not succeed."""

    started: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    failed_requests: int = 0
    users: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return self.completed - self.errors

    @property
    def abandoned(self) -> int:
        """Calls started whose final update never reached the API."""
        return self.started - self.completed


class _Tokens:
    """A token per user, minted with the API's secret and re-minted well before it expires."""

    def __init__(self, secret: str) -> None:
        self._auth = Authenticator(secret)
        self._tokens: dict[str, tuple[str, float]] = {}

    def headers(self, user: str) -> dict[str, str]:
        token, expires = self._tokens.get(user, ("", 0.0))
        if time.time() > expires - TOKEN_REFRESH_BEFORE:
            token = self._auth.issue_token(user, TOKEN_TTL_SECONDS)
            self._tokens[user] = (token, time.time() + TOKEN_TTL_SECONDS)
        return {"Authorization": f"Bearer {token}"}


class _Health:
    """Failures pause new calls with the shared backoff; warnings are one line, rate-limited."""

    def __init__(self, api_url: str, stats: DemoStats, rng: random.Random) -> None:
        self.api_url = api_url
        self.stats = stats
        self.rng = rng
        self.backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX, rng)
        self.backoff_until = 0.0
        self.last_warning = -math.inf
        self.unreported = 0

    def backoff_remaining(self) -> float:
        return max(0.0, self.backoff_until - time.monotonic())

    def failure(self, what: str, reason: str) -> None:
        self.stats.failed_requests += 1
        self.unreported += 1
        now = time.monotonic()
        if now >= self.backoff_until:
            # A fresh failure, not one more of a burst that already set the backoff: back off further.
            self.backoff_until = now + self.backoff.next_delay()
        if now - self.last_warning >= WARN_INTERVAL:
            more = f" ({self.unreported} failed requests since the last report)" if self.unreported > 1 else ""
            log.warning("demo: %s to %s failed: %s; pausing new calls for %.1f s%s",
                        what, self.api_url, reason, self.backoff_remaining(), more)
            self.last_warning = now
            self.unreported = 0

    def success(self) -> None:
        if self.backoff.attempt:
            log.warning("demo: the API at %s answers again; resuming traffic", self.api_url)
            self.backoff.reset()
            self.backoff_until = 0.0
            self.unreported = 0
            self.last_warning = -math.inf


def _describe(response: httpx.Response) -> str:
    error = api_error(response)
    hint = " (is TRACES_JWT_SECRET the API's?)" if response.status_code == 401 else ""
    return f"HTTP {response.status_code} {error.code}: {error.message}{hint}"


def _transport_reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Runner:
    def __init__(self, api_url: str, tokens: _Tokens, traffic: TrafficModel, client: httpx.AsyncClient,
                 stats: DemoStats, health: _Health, stopping: asyncio.Event) -> None:
        self.api_url = api_url
        self.tokens = tokens
        self.traffic = traffic
        self.client = client
        self.stats = stats
        self.health = health
        self.stopping = stopping

    async def _request(self, method: str, path: str, user: str, body: dict[str, Any], what: str) -> httpx.Response | None:
        """The response for a 2xx, or for a 4xx (retrying will not help); None for a failure worth
        retrying (no answer, 5xx, 429). Every non-2xx is counted and maybe logged."""
        try:
            response = await self.client.request(method, self.api_url + path, json=body,
                                                 headers=self.tokens.headers(user))
        except httpx.HTTPError as exc:
            self.health.failure(what, _transport_reason(exc))
            return None
        if response.is_success:
            self.health.success()
            return response
        self.health.failure(what, _describe(response))
        return response if response.status_code < 500 and response.status_code != 429 else None

    async def call(self, plan: CallPlan) -> None:
        try:
            started_at = datetime.now(UTC)
            began = time.monotonic()
            response = await self._request("POST", WRITE_PATH, plan.user_id, plan.start_body(started_at), f"POST {WRITE_PATH}")
            if response is None or not response.is_success:
                return
            self.stats.started += 1
            cancelled = await wait_for_event(self.stopping, plan.latency_s)
            elapsed = time.monotonic() - began
            if cancelled:
                body = plan.cancelled_body(started_at, elapsed)
            else:
                body = plan.final_body(started_at, elapsed)
            if await self._finish(plan, body, retry=not cancelled):
                self.stats.completed += 1
                if body["status"] == "error":
                    self.stats.errors += 1
                if cancelled:
                    self.stats.cancelled += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not end the run
            log.warning("demo: a call failed unexpectedly: %s", _transport_reason(exc))

    async def _finish(self, plan: CallPlan, body: dict[str, Any], *, retry: bool) -> bool:
        """PATCH the final status. While running, a failure is retried with backoff for up to
        ``PATCH_RETRY_SECONDS`` (the API may be restarting); once stopping, one more try at most."""
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX, self.health.rng)
        give_up = time.monotonic() + PATCH_RETRY_SECONDS
        while True:
            stopped_before = self.stopping.is_set()
            response = await self._request("PATCH", f"{WRITE_PATH}/{plan.id}", plan.user_id, body, f"PATCH {WRITE_PATH}/{{id}}")
            if response is not None:
                return response.is_success          # a 4xx will not get better by retrying
            if not retry or stopped_before or time.monotonic() >= give_up:
                return False
            await wait_for_event(self.stopping, backoff.next_delay())


async def run_demo(
    api_url: str,
    settings: Settings,
    *,
    rate: float = 2.0,
    users: int = 3,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    client: httpx.AsyncClient | None = None,
    seed: int | None = None,
    error_rate: float = 0.06,
    latency_scale: float = 1.0,
    max_in_flight: int = 256,
    shutdown_timeout: float = 5.0,
) -> DemoStats:
    """Send synthetic LLM traffic to the API at ``api_url`` until ``stop`` is set or ``duration`` passes.

    ``rate``: new calls per second (Poisson arrivals) over all users. ``users``: how many users, ``demo``
    always first. ``seed``: the same sequence of calls (users, models, texts, latencies, outcomes) on
    every run. ``error_rate``: the share of calls that end in ``error``. ``latency_scale``: multiplies
    every simulated latency (below 1 for quicker tests). ``max_in_flight``: calls open at once, at most.
    ``client``: an httpx client to use (not closed here). Returns what happened as ``DemoStats``.
    """
    if rate <= 0:
        raise ValueError(f"rate must be greater than 0, got {rate}")
    api_url = api_url.rstrip("/")
    tokens = _Tokens(settings.resolved_jwt_secret())
    names = user_names(users)
    traffic = TrafficModel(names, seed=seed, error_rate=error_rate, latency_scale=latency_scale)
    stats = DemoStats(users=names)
    health = _Health(api_url, stats, random.Random(None if seed is None else seed + 1))
    stopping = asyncio.Event()
    print(f"demo: sending ~{rate:g} calls/s for users {', '.join(names)} to {api_url}"
          + (f" for {duration:g} s" if duration else ""), flush=True)

    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0),
                                   limits=httpx.Limits(max_connections=min(max_in_flight, 100)))
    runner = _Runner(api_url, tokens, traffic, client, stats, health, stopping)
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    began = time.monotonic()
    deadline = None if duration is None else began + duration

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()

    async def watch_stop() -> None:
        waits = []
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        if deadline is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(max(0.0, deadline - time.monotonic()))))
        if not waits:
            return
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        stopping.set()

    watcher = asyncio.create_task(watch_stop())
    try:
        next_at = time.monotonic()
        while not stopping.is_set():
            next_at += traffic.interarrival(rate)
            if await wait_for_event(stopping, next_at - time.monotonic()):
                break
            pause = health.backoff_remaining()
            if pause > 0:
                if await wait_for_event(stopping, pause):
                    break
                next_at = time.monotonic()      # no burst to catch up after a pause
            if slots.locked():                  # all slots busy: wait for one (or the stop)
                acquire = asyncio.ensure_future(slots.acquire())
                halt = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({acquire, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if not acquire.done():
                    acquire.cancel()
                    break
                if stopping.is_set():
                    slots.release()
                    break
                next_at = max(next_at, time.monotonic())
            else:
                await slots.acquire()
            task = asyncio.create_task(runner.call(traffic.next_call()))
            tasks.add(task)
            task.add_done_callback(done)
    finally:
        # Stopping for whatever reason, a cancellation (Ctrl-C) included: finish off what is in flight.
        stopping.set()
        watcher.cancel()
        pending = set(tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=shutdown_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if own_client:
            await client.aclose()
        elapsed = time.monotonic() - began
        print(f"demo: stopped after {elapsed:.1f} s: {stats.started} calls started, {stats.completed} completed "
              f"({stats.errors} errors, {stats.cancelled} cancelled at stop), {stats.failed_requests} failed requests",
              flush=True)
    return stats
