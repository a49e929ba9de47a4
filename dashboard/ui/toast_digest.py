"""Trace toasts, coalesced: what arrived and what failed since the last toast, as at most two messages."""

from __future__ import annotations

from typing import Any

from .wording import describe_call, shorten

Toast = tuple[str, str]  # (level: "info" | "success" | "warning" | "error", message)


class ToastDigest:
    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._new = 0
        self._first_new: dict[str, Any] | None = None
        self._failed = 0
        self._first_failed: dict[str, Any] | None = None

    def new(self, trace: dict[str, Any]) -> None:
        self._new += 1
        self._first_new = self._first_new or trace

    def failed(self, trace: dict[str, Any]) -> None:
        self._failed += 1
        self._first_failed = self._first_failed or trace

    def drain(self) -> list[Toast]:
        """The toasts for what was collected (one per kind, however many), and start over."""
        toasts: list[Toast] = []
        if self._new == 1 and self._first_new is not None:
            toasts.append(("info", f"new trace: {describe_call(self._first_new)}"))
        elif self._new:
            toasts.append(("info", f"{self._new} new traces"))
        if self._failed == 1 and self._first_failed is not None:
            reason = shorten(self._first_failed.get("error") or "no reason given", 80)
            toasts.append(("error", f"failed: {describe_call(self._first_failed)}: {reason}"))
        elif self._failed:
            toasts.append(("error", f"{self._failed} calls failed"))
        self._clear()
        return toasts
