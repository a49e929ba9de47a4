"""Waiting for a param object to reach a state, on its own change events rather than by polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import param


async def wait_until(subject: param.Parameterized, predicate: Callable[[], bool], timeout: float,
                     describe: Callable[[], str]) -> None:
    """Return once ``predicate()`` holds, checked at every change of any of ``subject``'s params;
    TimeoutError with ``describe()`` after ``timeout`` seconds."""
    ready = asyncio.Event()

    def check(*_: object) -> None:
        if predicate():
            ready.set()

    watcher = subject.param.watch(check, [name for name in subject.param if name != "name"])
    try:
        check()
        async with asyncio.timeout(timeout):
            await ready.wait()
    except TimeoutError:
        raise TimeoutError(f"gave up after {timeout:g} s: {describe()}") from None
    finally:
        subject.param.unwatch(watcher)
