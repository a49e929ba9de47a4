"""The one retry policy: exponential backoff with full jitter, used by everything that reconnects.

Full jitter (a wait drawn uniformly between 0 and the exponential ceiling) keeps a crowd of clients
that lost the same server from coming back in step (the AWS architecture blog's "Exponential Backoff
And Jitter" measured it as the least total work among the usual policies).
"""

from __future__ import annotations

import random
from typing import Protocol


class UniformSource(Protocol):
    """What the backoff needs of a random source (``random.Random`` fits; tests pass a stub)."""

    def uniform(self, a: float, b: float) -> float: ...


class Backoff:
    """``next_delay()`` after each failure, ``reset()`` after a success; ``attempt`` counts failures."""

    def __init__(self, initial: float, cap: float, rng: UniformSource | None = None) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("need 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._rng: UniformSource = rng or random.Random()

    def ceiling(self, base: float | None = None) -> float:
        """The longest the next wait can be: ``base`` (at least ``initial``) doubled per failure, capped."""
        start = max(self.initial, base or 0.0)
        return min(self.cap, start * 2.0 ** min(self.attempt, 64))

    def next_delay(self, *, base: float | None = None, at_least: float | None = None) -> float:
        """The wait before the next try: uniform(0, ceiling), raised to ``at_least`` (a server's
        ``Retry-After``); counts one more failure."""
        delay = self._rng.uniform(0.0, self.ceiling(base))
        if at_least is not None:
            delay = max(delay, at_least)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
