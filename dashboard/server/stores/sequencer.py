"""One process's view of the newest readable event id, for backends whose ids come from the database's
sequencer (``traces_sequence_events()``, see ``pg_schema``): PostgreSQL over a connection, Supabase over
PostgREST.

A loop numbers committed events and learns the newest id, when a backend's listener wakes it (LISTEN on
Postgres, a Realtime channel on Supabase) and at least every ``SWEEP_SECONDS`` regardless: a wake-up can
be missed (a listener reconnecting, a Realtime message that never came), so nothing waits on one for
long. A listener that loses its channel says so with ``broken()``: the hub's next wait raises it, and the
streams get an ``error`` event and resume elsewhere or later, losing nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ...backoff import Backoff
from ...waits import being_cancelled, cancel_and_wait, wait_for_event
from .protocol import StoreError

log = logging.getLogger(__name__)
SWEEP_SECONDS = 1.0
PRUNE_EVERY_EVENTS = 1000
STOP_SECONDS = 5.0


class EventSequencer:
    """``start()``/``stop()`` with the store; ``number_now()`` after a write; ``wait_past()`` for readers.

    ``sequence()`` numbers what committed and returns the newest id; ``prune()`` forgets events outside
    the replay window; ``listen(self)`` runs until stopped, calling ``wake()``, ``saw()`` and ``broken()``;
    ``failures`` are the exceptions that mean the backend failed (retried), not a bug.
    """

    def __init__(self, *, sequence: Callable[[], Awaitable[int]], prune: Callable[[], Awaitable[None]],
                 listen: Callable[[EventSequencer], Awaitable[None]], failures: tuple[type[BaseException], ...],
                 replay_events: int, name: str, on_trouble: Callable[[], None] = lambda: None) -> None:
        self._sequence_call = sequence
        self._prune = prune
        self._listen = listen
        self.failures = failures
        self.replay_events = replay_events
        self.name = name
        self.on_trouble = on_trouble  # told when a call fails: a pool's other connections may be dead too
        self.newest = 0  # the newest event id this process knows to be numbered (and so readable)
        self._pruned_at = 0
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._failure: str | None = None
        self._tasks: list[asyncio.Task] = []
        self.stopping = False

    async def start(self) -> None:
        self.newest = await self._sequence()
        self._tasks = [asyncio.create_task(self._listen(self), name=f"{self.name}-listen"),
                       asyncio.create_task(self._sequence_loop(), name=f"{self.name}-sequencer")]

    async def stop(self) -> None:
        # The loops are told, not only cancelled: psycopg turns a cancellation that lands inside a query
        # into an error of its own, which a loop retrying after errors would otherwise take for one.
        self.stopping = True
        self._wake.set()
        for task in self._tasks:
            if not await cancel_and_wait(task, STOP_SECONDS):  # a shutdown must not hang on it
                log.error("%s did not stop within %g s; left behind", task.get_name(), STOP_SECONDS)
        self._tasks = []

    async def number_now(self) -> None:
        """A write through this process committed: number its events before answering the writer, so the
        stream position of anything read next reflects it. Failing here loses nothing: the events are
        stored, and the loop numbers them."""
        try:
            self.saw(await self._sequence())
        except self.failures as exc:
            if being_cancelled():  # psycopg's answer to a cancellation: not a failure
                raise asyncio.CancelledError() from exc
            log.warning("numbering trace events after a write failed (%s); the loop will", exc)
            self._wake.set()

    def wake(self) -> None:
        """Something was written: number it soon."""
        self._wake.set()

    def saw(self, newest: int) -> None:
        if newest > self.newest:
            self.newest = newest
            self._notify()

    def broken(self, message: str) -> None:
        """The listener lost its channel: the next wait for events says so (once), so streams end with an
        ``error`` and resume; the sweep keeps numbering meanwhile."""
        self._failure = message
        self._notify()

    async def wait_past(self, after: int, timeout: float) -> None:
        """Return once the newest id passes ``after`` or ``timeout`` passes; ``StoreError`` after ``broken()``."""
        if self.newest <= after and self._failure is None:
            await wait_for_event(self._changed, timeout)
        if self._failure is not None:
            message, self._failure = self._failure, None
            raise StoreError(message)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _sequence(self) -> int:
        newest = await self._sequence_call()
        if newest - self._pruned_at >= min(PRUNE_EVERY_EVENTS, self.replay_events):
            self._pruned_at = newest
            await self._prune()
        return newest

    async def _sequence_loop(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while not self.stopping:
            await wait_for_event(self._wake, SWEEP_SECONDS)
            self._wake.clear()
            try:
                self.saw(await self._sequence())
                backoff.reset()
            except self.failures as exc:
                await self.after_failure(backoff, "numbering trace events", exc)

    async def after_failure(self, backoff: Backoff, doing: str, exc: BaseException) -> None:
        """A loop's call failed: say so, let the store know, wait, go on (unless stopping, when the failure
        is just the way out)."""
        if self.stopping:
            return
        self.on_trouble()
        delay = backoff.next_delay()
        log.warning("%s failed (%s); again in %.1f s", doing, exc, delay)
        await asyncio.sleep(delay)
