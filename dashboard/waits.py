"""Waiting for an ``asyncio.Event`` with a deadline, in a way a cancellation always gets through.

On Python 3.11, ``asyncio.timeout`` (and ``wait_for``) can take a ``cancel()`` that lands in the same
loop pass as its own expiry for the timeout, raise ``TimeoutError`` instead, and so lose the
cancellation: a task stopped that way went on waiting, and a server's shutdown hung (seen with the
Postgres follower). ``asyncio.wait`` with a timeout cancels nothing of ours, so nothing is lost.
"""

from __future__ import annotations

import asyncio


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set (True) or ``seconds`` have passed (False)."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return bool(done)
