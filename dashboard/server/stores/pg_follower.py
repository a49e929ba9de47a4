"""The Postgres store's link to its outbox: the sequencer (``sequencer.EventSequencer``) driven over the
store's pool, woken by a LISTEN connection.

A writer's statement NOTIFYs ``traces_outbox``; the sequencer then numbers the new events
(``traces_sequence_events()``, one sequencer at a time across every node), and every node's sequencer
NOTIFYs ``traces_events`` with the newest id, which moves the watermark here at once. A notification
missed while the listening connection reconnects (across a PostgreSQL restart, say) costs at most the
sequencer's sweep interval.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import psycopg_pool

from ...backoff import Backoff
from .pg_schema import EVENTS_CHANNEL, OUTBOX_CHANNEL
from .sequencer import EventSequencer


def outbox_follower(url: str, pool: psycopg_pool.AsyncConnectionPool, *, replay_events: int, replay_seconds: float,
                    on_trouble: Callable[[], None] = lambda: None) -> EventSequencer:
    async def sequence() -> int:
        async with pool.connection() as conn:
            return (await (await conn.execute("SELECT traces_sequence_events()")).fetchone())[0]

    async def prune() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT traces_prune(%s, %s)", (replay_events, replay_seconds))

    async def listen(sequencer: EventSequencer) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while not sequencer.stopping:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    backoff.reset()
                    sequencer.wake()  # catch up with whatever was missed while not listening
                    async for note in conn.notifies():
                        if note.channel == OUTBOX_CHANNEL:
                            sequencer.wake()
                        elif note.payload.isdigit():
                            sequencer.saw(int(note.payload))
            except psycopg.Error as exc:
                await sequencer.after_failure(backoff, "listening for trace events", exc)

    return EventSequencer(sequence=sequence, prune=prune, listen=listen, failures=(psycopg.Error, psycopg_pool.PoolTimeout),
                          replay_events=replay_events, name="traces-pg", on_trouble=on_trouble)
