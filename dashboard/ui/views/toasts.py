"""Toasts for one session, each forgotten on the server once it has faded.

Panel keeps every ``Notification`` it has sent in the session's notification area: the page never
reports a toast gone (measured with Panel 1.9.4: 45 kept after 8 minutes of demo traffic, 6 more
each minute), and each new toast resends the whole list. Left alone, a long session's memory and
messages grow without bound, so the Toaster destroys each toast itself once its time is up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import panel as pn

LEVELS = ("info", "success", "warning", "error")
SHOWN_AT_MOST = 10  # toasts alive at once; the oldest goes first (Panel's own area shows 5)


class Toaster:
    """``toaster(level, message)`` shows a toast in the current session (nothing where there is no
    notification area: notifications not enabled, or a plain Python process)."""

    def __init__(self, *, info_ms: int = 3000, error_ms: int = 6000,
                 area: Callable[[], Any] = lambda: pn.state.notifications,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.info_ms = info_ms
        self.error_ms = error_ms
        self._area = area  # looked up at each toast: the session's area, or the notebook's
        self._clock = clock
        self._shown: deque[tuple[float, Any]] = deque()  # (when to forget it, Notification), oldest first

    def __call__(self, level: str, message: str) -> None:
        area = self._area()
        if area is None:
            return
        self.forget_faded()
        duration = self.error_ms if level in ("error", "warning") else self.info_ms  # a warning is an alert
        send = getattr(area, level if level in LEVELS else "info")
        notification = send(message, duration=duration)
        self._shown.append((self._clock() + duration / 1000 + 1.0, notification))
        while len(self._shown) > SHOWN_AT_MOST:
            self._shown.popleft()[1].destroy()

    def forget_faded(self) -> None:
        """Destroy the toasts whose time is up (Panel then drops them from the area)."""
        now = self._clock()
        while self._shown and self._shown[0][0] <= now:
            self._shown.popleft()[1].destroy()

    @property
    def alive(self) -> int:
        return len(self._shown)
