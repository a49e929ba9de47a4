"""Waiting with a deadline and stopping a task, so that a cancellation is never lost."""

from __future__ import annotations

import asyncio

from dashboard.waits import cancel_and_wait, wait_for_event


async def test_waiting_for_an_event_says_whether_it_came():
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_for_event(event, 5) is True


async def test_a_task_that_takes_a_cancellation_for_an_error_and_carries_on_is_still_stopped():
    rounds = 0

    async def stubborn_loop():  # as a retry loop around a library that turns a cancel into its own error
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if rounds > 2:
                    raise
                continue

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, seconds=5) is True
    assert task.cancelled() and rounds == 3


async def test_a_task_that_never_ends_is_reported_not_waited_on_forever():
    released = asyncio.Event()

    async def immortal():  # takes every cancellation for something else, until released
        while not released.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, seconds=0.3) is False
    released.set()
    task.cancel()
    await asyncio.wait({task})
