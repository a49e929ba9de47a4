"""One process's link to the Postgres outbox: a LISTEN connection and the sequencer loop.

A writer's statement NOTIFYs ``traces_outbox``; the loop then numbers the new events
(``traces_sequence_events()``, one sequencer at a time across every node), and every node's sequencer
NOTIFYs ``traces_events`` with the newest id, which wakes the streams here. A notification is only a
wake-up: the loop also runs every ``SWEEP_SECONDS`` (a notification can be missed while the listening
connection reconnects, say across a PostgreSQL restart), so nothing waits on it for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
import psycopg_pool

from ...backoff import Backoff
from ...waits import being_cancelled, cancel_and_wait, wait_for_event
from .pg_schema import EVENTS_CHANNEL, OUTBOX_CHANNEL

log = logging.getLogger(__name__)
SWEEP_SECONDS = 1.0
PRUNE_EVERY_EVENTS = 1000
STOP_SECONDS = 5.0


class OutboxFollower:
    """This process's newest readable event id, kept current; started and stopped with the store."""

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool, *, replay_events: int, replay_seconds: float,
                 on_trouble: Callable[[], None] = lambda: None) -> None:
        self.on_trouble = on_trouble  # told when a connection fails: the pool's others may be dead too
        self.url = url
        self.pool = pool
        self.replay_events = replay_events
        self.replay_seconds = replay_seconds
        self.newest = 0  # the newest event id this process knows to be numbered (and so readable)
        self._pruned_at = 0  # the newest id when this process last pruned
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        self.newest = await self._sequence()
        self._tasks = [asyncio.create_task(self._listen(), name="traces-pg-listen"),
                       asyncio.create_task(self._sequence_loop(), name="traces-pg-sequencer")]

    async def stop(self) -> None:
        # The loops are told, not only cancelled: psycopg turns a cancellation that lands inside a query
        # into an error of its own, which a loop retrying after errors would otherwise take for one.
        self._stopping = True
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
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if being_cancelled():  # psycopg's answer to a cancellation: not a failure
                raise asyncio.CancelledError() from exc
            log.warning("numbering trace events after a write failed (%s); the loop will", exc)
            self._wake.set()

    def saw(self, newest: int) -> None:
        if newest > self.newest:
            self.newest = newest
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_past(self, after: int, timeout: float) -> None:
        if self.newest > after:
            return
        await wait_for_event(self._changed, timeout)

    async def _sequence(self) -> int:
        async with self.pool.connection() as conn:
            newest = (await (await conn.execute("SELECT traces_sequence_events()")).fetchone())[0]
            if newest - self._pruned_at >= min(PRUNE_EVERY_EVENTS, self.replay_events):
                self._pruned_at = newest
                await self._prune(conn, newest)
        return newest

    async def _sequence_loop(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while not self._stopping:
            await wait_for_event(self._wake, SWEEP_SECONDS)
            self._wake.clear()
            try:
                self.saw(await self._sequence())
                backoff.reset()
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                await self._after_failure(backoff, "numbering trace events", exc)

    async def _after_failure(self, backoff: Backoff, doing: str, exc: Exception) -> None:
        """A loop's connection failed: say so, let the store check its pooled connections, wait, go on
        (unless stopping, when the failure is just the way out)."""
        if self._stopping:
            return
        self.on_trouble()
        delay = backoff.next_delay()
        log.warning("%s failed (%s); again in %.1f s", doing, exc, delay)
        await asyncio.sleep(delay)

    async def _prune(self, conn: psycopg.AsyncConnection, newest: int) -> None:
        """Forget events outside the replay window: older than both the last N events and the last T seconds."""
        await conn.execute("DELETE FROM traces_outbox WHERE seq <= %s AND created_at < now() - make_interval(secs => %s)",
                           (newest - self.replay_events, self.replay_seconds))
        await conn.execute("DELETE FROM traces_spent_tickets WHERE expires_at < extract(epoch FROM now())")

    async def _listen(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while not self._stopping:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    backoff.reset()
                    self._wake.set()  # catch up with whatever was missed while not listening
                    async for note in conn.notifies():
                        if note.channel == OUTBOX_CHANNEL:
                            self._wake.set()
                        elif note.payload.isdigit():
                            self.saw(int(note.payload))
            except psycopg.Error as exc:
                await self._after_failure(backoff, "listening for trace events", exc)
