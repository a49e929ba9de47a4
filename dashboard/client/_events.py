"""What the stream yields: one small immutable type per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from ..schema import EventKind


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted the stream; ``last_event_id`` is its position now."""

    user_id: str
    server_time: str
    last_event_id: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The live subscription is active; ``replaying_from`` is the resume point, if one was honoured."""

    filters: dict[str, Any]
    replaying_from: int | None


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """A trace inserted (``trace``) or changed (``trace_update``); ``trace`` is the whole row."""

    id: int
    kind: EventKind
    trace: dict[str, Any]

    @property
    def is_update(self) -> bool:
        return self.kind == EventKind.trace_update


@dataclass(frozen=True, slots=True)
class Ping:
    """The server's keep-alive: the connection is alive even when no trace arrives."""

    server_time: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The user's newest traces (newest first, up to a limit, over as many pages as it took), and the
    stream position they reflect.

    Yielded by the stream first when it loads one before streaming, and after a server ``reset``:
    replace what you hold with ``traces``; the stream then continues after ``last_event_id``.
    ``next_cursor`` is set when more (older) traces exist.
    """

    traces: list[dict[str, Any]]
    last_event_id: int
    reason: str = ""
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """The server could not resume; only yielded with ``load_snapshot_on_reset=False``: reload yourself."""

    reason: str
    last_event_id: int


@dataclass(frozen=True, slots=True)
class StreamError:
    """A server ``error`` event; the connection ends after it (and is retried unless it is fatal)."""

    code: str
    message: str


StreamEvent: TypeAlias = Connected | Subscribed | TraceEvent | Ping | Snapshot | Reset | StreamError
