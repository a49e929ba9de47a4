"""Waiting for an ``asyncio.Event`` with a deadline, and stopping a task, so that a cancellation always
gets through.

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


async def cancel_and_wait(task: asyncio.Task, seconds: float = 5.0) -> bool:
    """Cancel ``task`` and wait until it has ended; False if it outlived ``seconds``.

    The cancellation is repeated while the task runs: a library may answer one with an error of its
    own and carry on (psycopg does, inside a query), and a loop that retries after errors would then
    never stop, leaving a server's shutdown waiting on it (seen in the tests).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, left))
    if not task.cancelled():
        task.exception()  # an error it ended with is retrieved here (stopping it was the point)
    return True


def being_cancelled() -> bool:
    """Whether the running task has been asked to stop: an error caught now may be a library's answer to
    that request (psycopg raises one of its own when a query is cancelled), not a failure to retry."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
