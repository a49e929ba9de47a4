"""What the dashboard announces in toasts, and when: coalesced news of traces (one toast per burst,
naming the call as it is by then), the connection lost and restored, never for what the user did, and
each alert threshold crossed and recovered, at once.

Toasts go to a notifier (the page's notification area) and are kept in ``toasts`` for notebooks and tests.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..client import ConnectionStatus
from .alerts import AlertChange
from .wording import describe_call, shorten

log = logging.getLogger(__name__)

Trace = dict[str, Any]
Toast = tuple[str, str]  # (level: "info" | "success" | "warning" | "error", message)
Notifier = Callable[[str, str], None]
LOST = (ConnectionStatus.reconnecting, ConnectionStatus.error)
MAX_ALERT_TOASTS = 3  # alert changes told one by one at one evaluation; more are told together


class Announcer:
    def __init__(self, notifier: Notifier | None = None) -> None:
        self.notifier = notifier
        self.toasts: deque[Toast] = deque(maxlen=100)
        self._new: list[str] = []  # trace ids, in arrival order
        self._failed: list[str] = []
        self._first: dict[str, Trace] = {}  # id -> the trace as it arrived, if it is gone by the toast
        self._lost = False  # a "connection lost" toast is out, and no "restored" yet

    def new(self, trace: Trace) -> None:
        self._new.append(trace["id"])
        self._first.setdefault(trace["id"], trace)

    def failed(self, trace: Trace) -> None:
        self._failed.append(trace["id"])
        self._first.setdefault(trace["id"], trace)

    @property
    def has_news(self) -> bool:
        return bool(self._new or self._failed)

    def connection(self, previous: ConnectionStatus, now: ConnectionStatus, error: str) -> None:
        """Toast a loss the user did not cause (connected, then reconnecting or failed), and the
        recovery from it; a pause, a Refresh or new filters are the user's own doing and say nothing."""
        if previous == ConnectionStatus.connected and now in LOST:
            self._lost = True
            self._toast("error", error or "connection lost")
        elif now == ConnectionStatus.connected and self._lost:
            self._lost = False
            self._toast("success", "connection restored")

    def forget_loss(self) -> None:
        """The user paused: whatever was lost is theirs to resume, not ours to announce as restored."""
        self._lost = False

    def flush(self, latest: Callable[[str], Trace | None]) -> None:
        """Toast what was collected, one toast per kind, naming calls as ``latest`` has them now."""
        def call(trace_id: str) -> Trace:
            return latest(trace_id) or self._first[trace_id]

        if len(self._new) == 1:
            self._toast("info", f"new trace: {describe_call(call(self._new[0]))}")
        elif self._new:
            self._toast("info", f"{len(self._new)} new traces")
        if len(self._failed) == 1:
            failed = call(self._failed[0])
            reason = shorten(failed.get("error") or "no reason given", 80)
            self._toast("error", f"failed: {describe_call(failed)}: {reason}")
        elif self._failed:
            self._toast("error", f"{len(self._failed)} calls failed")
        self._new, self._failed, self._first = [], [], {}

    def alerts(self, changes: Sequence[AlertChange]) -> None:
        """Each alert raised or ended, told at once: not held back like arrivals, since each is news
        exactly once. More than a few at one evaluation (a new threshold, new filters) go out as one
        toast per direction, not a storm."""
        for raised, level, verb in ((True, "warning", "raised"), (False, "success", "ended")):
            told = [change.words() for change in changes if change.raised == raised]
            if len(told) > MAX_ALERT_TOASTS:
                self._toast(level, shorten(f"{len(told)} alerts {verb}: " + "; ".join(told), 240))
            else:
                for message in told:
                    self._toast(level, message)

    def _toast(self, level: str, message: str) -> None:
        self.toasts.append((level, message))
        if self.notifier is not None:
            try:
                self.notifier(level, message)
            except Exception:
                log.exception("a toast failed")
