"""A call still in flight (``pending`` or ``running``): how long it has been going, and whether it is stuck.

The table shows the elapsed time in the latency cell until the call's end arrives; these are the two
hidden cells that carry it (``elapsed_s``, ``clock``). Elapsed is measured against the server's
``started_at`` (else ``created_at``), in UTC, and never negative: a writer's clock may be ahead of ours.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

IN_FLIGHT = frozenset({"pending", "running"})
CLOCK_COLUMNS = ("elapsed_s", "clock")  # hidden, and not for queries: they change with time, not with the trace
TICK_SECONDS = 1.0  # how often the elapsed cells move: a person reads seconds


class Clock(StrEnum):
    """A row's clock: none (finished), running (the latency cell ticks), or stuck (past ``stuck_seconds``)."""

    NONE = ""
    RUNNING = "running"
    STUCK = "stuck"


def in_flight(trace: dict[str, Any]) -> bool:
    return trace.get("status") in IN_FLIGHT


def started(trace: dict[str, Any]) -> float | None:
    """Epoch seconds the call started (``started_at``, else ``created_at``); a naive time is UTC."""
    for field in ("started_at", "created_at"):
        value = trace.get(field)
        if not value:
            continue
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


def elapsed_seconds(trace: dict[str, Any], now: float) -> float | None:
    """Seconds since the call started, never negative; None when it has no start time."""
    start = started(trace)
    return None if start is None else max(0.0, now - start)


def clock_cells(trace: dict[str, Any], now: float | None, stuck_seconds: float) -> dict[str, Any]:
    """The hidden cells of a row: whole seconds elapsed and the clock, or nothing for a finished call.
    Without ``now`` (a row just built) the clock runs but the seconds are not known yet."""
    if not in_flight(trace):
        return {"elapsed_s": math.nan, "clock": Clock.NONE.value}
    elapsed = None if now is None else elapsed_seconds(trace, now)
    if elapsed is None:
        return {"elapsed_s": math.nan, "clock": Clock.RUNNING.value}
    stuck = elapsed > stuck_seconds
    return {"elapsed_s": float(math.floor(elapsed)), "clock": (Clock.STUCK if stuck else Clock.RUNNING).value}
