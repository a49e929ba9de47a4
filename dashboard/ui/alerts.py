"""Thresholds on a model's p95 latency and error rate: which models are over them, and what changed.

Judged only when the feed recomputes its stats (or the user changes a threshold), never per trace, so
a burst of slow calls is one crossing. Against flapping: a state changes only on at least
``MIN_CALLS`` calls in the window (one slow call in a quiet minute proves nothing), and an alert ends
only once the value is back to ``RECOVER_AT`` of the threshold or less (hysteresis), except right
after the user changed the threshold: then what is above it alerts, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .stats import ModelStats

P95, ERROR_RATE = "p95", "error_rate"
KINDS = (P95, ERROR_RATE)
LABELS = {P95: "p95 latency", ERROR_RATE: "error rate"}
MIN_CALLS = 5
RECOVER_AT = 0.9


def amount(kind: str, value: float) -> str:
    """2,340 ms or 12.5 %: as a person reads it."""
    if kind == P95:
        return f"{value:,.0f} ms"
    return f"{value:.1f}".removesuffix(".0") + "%"


@dataclass(frozen=True, slots=True)
class Alert:
    model: str
    kind: str  # P95 | ERROR_RATE
    value: float  # ms or percent, at the last evaluation
    threshold: float

    def words(self) -> str:
        return f"{self.model} {LABELS[self.kind]} {amount(self.kind, self.value)} is above {amount(self.kind, self.threshold)}"


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert raised (crossed) or ended (back under), to be told once."""

    model: str
    kind: str
    value: float | None  # None: the model has no calls left in the window (or shown)
    threshold: float
    raised: bool

    def words(self) -> str:
        if self.raised:
            return Alert(self.model, self.kind, self.value or 0.0, self.threshold).words()
        now = "no recent calls shown" if self.value is None else amount(self.kind, self.value)
        return f"{self.model} {LABELS[self.kind]} back under {amount(self.kind, self.threshold)} ({now})"


def _value(stats: ModelStats, kind: str) -> float:
    return stats.p95_ms if kind == P95 else stats.error_rate * 100


class AlertStates:
    """The alerts in force, per (model, kind), and the changes each evaluation makes to them."""

    def __init__(self, min_calls: int = MIN_CALLS, recover_at: float = RECOVER_AT) -> None:
        self.min_calls = min_calls
        self.recover_at = recover_at
        self._active: dict[tuple[str, str], Alert] = {}

    @property
    def active(self) -> list[Alert]:
        return [self._active[key] for key in sorted(self._active)]

    def evaluate(self, stats: Sequence[ModelStats], thresholds: Mapping[str, float | None],
                 fresh: bool = False) -> list[AlertChange]:
        """Move each (model, kind) between ok and alerting; ``fresh`` (a threshold just changed) ignores
        the hysteresis. A threshold turned off ends its alerts silently: the user did it, and sees it."""
        by_model = {s.model: s for s in stats}
        changes: list[AlertChange] = []
        for kind in KINDS:
            threshold = thresholds.get(kind)
            if threshold is None:
                self._active = {key: alert for key, alert in self._active.items() if key[1] != kind}
                continue
            for model in sorted(set(by_model) | {m for m, k in self._active if k == kind}):
                change = self._judge(model, kind, threshold, by_model.get(model), fresh)
                if change is not None:
                    changes.append(change)
        return changes

    def _judge(self, model: str, kind: str, threshold: float, stats: ModelStats | None,
               fresh: bool) -> AlertChange | None:
        key = (model, kind)
        current = self._active.get(key)
        if stats is None:  # no calls of it in the window any more: nothing is slow or failing
            if current is None:
                return None
            del self._active[key]
            return AlertChange(model, kind, None, threshold, raised=False)
        value = _value(stats, kind)
        if stats.calls < self.min_calls or value != value:  # too few calls, or no latency (NaN): no evidence
            if current is not None:
                self._active[key] = Alert(model, kind, current.value, threshold)
            return None
        if value > threshold:
            self._active[key] = Alert(model, kind, value, threshold)
            return None if current is not None else AlertChange(model, kind, value, threshold, raised=True)
        if current is None:
            return None
        if fresh or value <= threshold * self.recover_at:
            del self._active[key]
            return AlertChange(model, kind, value, threshold, raised=False)
        self._active[key] = Alert(model, kind, value, threshold)  # under, but not by enough yet
        return None


class FeedAlerts:
    """Keeps a feed's ``alerts`` current and tells its announcer each change: judged whenever the feed
    publishes new ``model_stats`` (every ``stats_seconds``, and after new filters or a reload), and when
    the user changes a threshold."""

    def __init__(self, feed: Any, announcer: Any) -> None:
        self.feed = feed
        self.announcer = announcer
        self.states = AlertStates()
        feed.param.watch(lambda _: self.evaluate(), "model_stats")
        feed.param.watch(lambda _: self.evaluate(fresh=True), ["alert_p95_ms", "alert_error_rate"])

    def evaluate(self, fresh: bool = False) -> None:
        feed = self.feed
        changes = self.states.evaluate(feed.model_stats, {P95: feed.alert_p95_ms, ERROR_RATE: feed.alert_error_rate},
                                       fresh=fresh)
        feed.alerts = self.states.active
        self.announcer.alerts(changes)
