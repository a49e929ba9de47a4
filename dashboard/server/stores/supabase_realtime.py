"""Supabase Realtime as the Supabase store's wake-up: one channel per server process, on the outbox's
inserts (never one per stream, as the audited route had), through the ``realtime`` client the
``supabase`` package ships.

Realtime promises no delivery, so a message only wakes the sequencer (``sequencer.EventSequencer``),
which reads through PostgREST; its sweep catches up without any message at all, and every
(re)subscribe wakes it too, for whatever happened while the channel was down. The client's own
reconnection gives up for good after a few attempts and leaves its channels errored, so this module
supervises instead: a lost channel is reported to the streams (``broken``: they end with ``error`` and
resume), closed, and replaced by a new client and channel after a backoff, for as long as the server
runs. A channel that cannot be joined at all (Realtime off for the project, a refused join) is retried
the same way but ends no stream: they are served by the sweep meanwhile, a second late at most.
"""

from __future__ import annotations

import asyncio
import logging

from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates

from ...backoff import Backoff
from ...waits import wait_for_event
from .sequencer import EventSequencer

log = logging.getLogger(__name__)
TOPIC = "traces-outbox"
CLOSE_SECONDS = 2.0


class RealtimeWakeUp:
    """``listen(sequencer)`` runs the channel until cancelled; ``close()`` then leaves the channel cleanly
    (it runs outside the cancelled task, so a slow goodbye from the server cannot be cut short)."""

    def __init__(self, realtime_url: str, key: str) -> None:
        self.realtime_url = realtime_url
        self.key = key
        self.subscribed = False  # for /healthz and the tests: is the channel joined right now
        self.subscriptions = 0  # how many times the channel was joined since start
        self._current: tuple[AsyncRealtimeClient, AsyncRealtimeChannel | None, asyncio.Event] | None = None

    async def listen(self, sequencer: EventSequencer) -> None:
        backoff = Backoff(initial=0.5, cap=30.0)
        while not sequencer.stopping:
            problem = await self._subscription(sequencer, backoff)
            was_subscribed, self.subscribed = self.subscribed, False
            await self.close()
            if sequencer.stopping:
                return
            if was_subscribed:  # a channel that could not be joined at all leaves streams on the sweep
                sequencer.broken(f"the Supabase Realtime channel was lost ({problem}); reconnect to resume")
            delay = backoff.next_delay()
            log.warning("Supabase Realtime channel %s (%s); subscribing again in %.1f s",
                        "lost" if was_subscribed else "not joined", problem, delay)
            await asyncio.sleep(delay)

    async def _subscription(self, sequencer: EventSequencer, backoff: Backoff) -> str:
        """Join the channel and hold it until it is lost; returns why it was."""
        lost = asyncio.Event()
        left = asyncio.Event()
        problems: list[str] = []

        def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
            if state == RealtimeSubscribeStates.CLOSED:
                left.set()
            if state == RealtimeSubscribeStates.SUBSCRIBED:
                self.subscribed = True
                self.subscriptions += 1
                backoff.reset()
                sequencer.wake()  # what was written while the channel was down is read now
            else:
                problems.append(state.value + (f": {error}" if error else ""))
                lost.set()

        client = AsyncRealtimeClient(self.realtime_url, token=self.key, auto_reconnect=False)
        self._current = (client, None, left)
        try:
            await client.connect()
            channel = client.channel(TOPIC)
            self._current = (client, channel, left)
            channel.on_postgres_changes("INSERT", lambda _change: sequencer.wake(), schema="public", table="traces_outbox")
            await channel.subscribe(on_state)
            await lost.wait()
        except Exception as exc:  # the connection or the join failed: websockets, OSError, a refused join
            problems.append(f"{type(exc).__name__}: {exc}")
        return problems[0] if problems else "closed"

    async def close(self) -> None:
        """Leave the channel (bounded: the server may be gone) and close the socket."""
        current = self._current
        if current is None:
            return
        client, channel, left = current
        if channel is not None and client.is_connected and channel.is_joined:
            # Closing the socket before the server confirms the leave would leave the client's 10 s
            # timeout for that reply running; so the leave is awaited, within bounds.
            try:
                await channel.unsubscribe()
                await wait_for_event(left, CLOSE_SECONDS)
            except Exception as exc:  # the socket failed meanwhile: closing it is all that is left
                log.debug("leaving the Realtime channel failed: %s", exc)
        try:
            await client.close()
        except Exception as exc:  # a socket already gone: nothing left to close
            log.debug("closing the Realtime client failed: %s", exc)
        if self._current is current:  # forgotten only once closed: a close cut short is done again later
            self._current = None
