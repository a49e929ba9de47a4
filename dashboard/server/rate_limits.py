"""Rate limits, per API process: traces written per user, and clients that keep failing authentication.

Writes: a token bucket per user, counted in traces, so a writer cannot flood the store and every stream
of its user. Auth failures: an address that fails too often is answered 429 for a while before its
credentials are even looked at, so guessing tickets or tokens is slowed to a crawl, while other
addresses are untouched. Both tables are bounded in entries; forgetting an entry is always safe (a
forgotten bucket is a full one, a forgotten address starts afresh), and the harmless ones go first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from starlette.requests import HTTPConnection

from ..config import Settings
from .errors import ApiError
from .metrics import Metrics

Clock = Callable[[], float]
V = TypeVar("V")

WRITE_BURST_SECONDS = 2.0  # a user may write this many seconds' worth of traces at once
MAX_USERS = 10_000  # write buckets kept; more users than this share the forgetting
AUTH_FAILURES_ALLOWED = 20  # failures from one address within the window before it is slowed
AUTH_FAILURE_WINDOW_SECONDS = 60.0
AUTH_BACKOFF_SECONDS = 60.0  # how long a slowed address is answered 429 without a look at its credentials
MAX_CLIENTS = 10_000  # addresses with recent failures kept
MAX_ADDRESS_CHARS = 64  # an IPv6 address fits; nothing a proxy header says can make an entry bigger
EVICTION_SCAN = 64  # oldest entries looked at for a harmless one to forget, before forgetting the oldest


def whole_seconds(wait: float) -> int:
    """``Retry-After`` in whole seconds, rounded up (waiting that long is enough) and at least 1."""
    return max(1, math.ceil(wait - 1e-9))


def forget_one(table: OrderedDict[str, V], harmless: Callable[[V], bool]) -> None:
    """Drops a harmless entry among the least recently used few, else the least recently used."""
    victim = next((key for key, value in islice(table.items(), EVICTION_SCAN) if harmless(value)), None)
    if victim is None:
        table.popitem(last=False)
    else:
        del table[victim]


@dataclass
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` a second; a request takes its cost, or waits."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Takes ``cost`` and returns 0; or takes nothing and returns the seconds until ``cost`` is there."""
        self._refill(now)
        if cost <= self.tokens:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class WriteLimiter:
    """``rate`` traces a second per user, bursts of ``burst_seconds`` worth; ``rate`` 0 is no limit."""

    def __init__(self, rate: float, *, burst_seconds: float = WRITE_BURST_SECONDS, max_users: int = MAX_USERS,
                 clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, math.floor(rate * burst_seconds))  # whole traces: the most one request may write
        self.max_users = max_users
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, user_id: str, traces: int) -> float:
        """0 when the user may write ``traces`` now (they are counted); else the seconds to wait, counting
        nothing. More than ``burst`` traces never fit: the caller refuses them first."""
        if not self.enabled or traces <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            while len(self._buckets) >= self.max_users:
                forget_one(self._buckets, lambda old: old.is_full(now))
            bucket = self._buckets[user_id] = TokenBucket(self.rate, self.burst, self.burst, now)
        self._buckets.move_to_end(user_id)
        return bucket.take(traces, now)


@dataclass
class Failures:
    window_start: float
    count: int = 0
    blocked_until: float = 0.0


class AuthFailureLimiter:
    """Counts authentication failures per client address; ``allowed`` within ``window`` seconds blocks the
    address for ``backoff`` seconds."""

    def __init__(self, *, allowed: int = AUTH_FAILURES_ALLOWED, window: float = AUTH_FAILURE_WINDOW_SECONDS,
                 backoff: float = AUTH_BACKOFF_SECONDS, max_clients: int = MAX_CLIENTS,
                 clock: Clock = time.monotonic) -> None:
        self.allowed = allowed
        self.window = window
        self.backoff = backoff
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, Failures] = OrderedDict()

    def failed(self, address: str) -> None:
        now, address = self.clock(), address[:MAX_ADDRESS_CHARS]
        entry = self._clients.get(address)
        if entry is None or (now - entry.window_start >= self.window and entry.blocked_until <= now):
            if entry is None:
                while len(self._clients) >= self.max_clients:
                    forget_one(self._clients, lambda old: old.blocked_until <= now)
            entry = self._clients[address] = Failures(window_start=now)
        self._clients.move_to_end(address)
        entry.count += 1
        if entry.count >= self.allowed:
            entry.blocked_until, entry.window_start, entry.count = now + self.backoff, now + self.backoff, 0

    def blocked_for(self, address: str) -> float:
        """Seconds the address stays blocked; 0 when it is not."""
        entry = self._clients.get(address[:MAX_ADDRESS_CHARS])
        return max(0.0, entry.blocked_until - self.clock()) if entry else 0.0


def client_address(connection: HTTPConnection) -> str:
    """The caller's address as the server saw it (behind a trusted proxy, uvicorn's proxy_headers put the
    real client there)."""
    return connection.client.host if connection.client else "unknown"


class RateLimits:
    """The limits one app enforces, answered as 429 with ``Retry-After``, and counted in the metrics."""

    def __init__(self, writes: WriteLimiter, auth_failures: AuthFailureLimiter, metrics: Metrics) -> None:
        self.writes = writes
        self.auth_failures = auth_failures
        self.metrics = metrics

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> RateLimits:
        return cls(WriteLimiter(settings.write_rate), AuthFailureLimiter(), metrics)

    def charge_writes(self, user_id: str, traces: int) -> None:
        """Counts a request's traces before any is stored: over the rate, the request is refused whole."""
        limiter = self.writes
        if limiter.enabled and traces > limiter.burst:  # 413, not 429: no wait would ever let it through
            raise ApiError(413, "batch_exceeds_burst",
                           f"this request writes {traces} traces, more than the {limiter.burst} one user may write at "
                           f"once (TRACES_WRITE_RATE {limiter.rate:g}/s, bursts of {WRITE_BURST_SECONDS:g} s); "
                           f"split it into batches of at most {limiter.burst}")
        wait = limiter.take(user_id, traces)
        if wait:
            self.metrics.rate_limited.labels("writes").inc()
            seconds = whole_seconds(wait)
            raise ApiError(429, "write_rate_exceeded",
                           f"more than {limiter.rate:g} traces a second for this user (TRACES_WRITE_RATE); nothing "
                           f"of this request was stored: send it again in {seconds} s",
                           headers={"Retry-After": str(seconds)})

    def check_client(self, connection: HTTPConnection) -> None:
        """Before any credential is checked: 429 for an address that failed authentication too often."""
        wait = self.auth_failures.blocked_for(client_address(connection))
        if wait:
            self.metrics.rate_limited.labels("auth_failures").inc()
            seconds = whole_seconds(wait)
            raise ApiError(429, "too_many_auth_failures",
                           f"too many failed authentications from this address; try again in {seconds} s "
                           f"with a valid token", headers={"Retry-After": str(seconds)})

    def auth_failed(self, connection: HTTPConnection) -> None:
        self.auth_failures.failed(client_address(connection))
