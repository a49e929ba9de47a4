"""Per-model latency, traffic, cost and tokens over a rolling window, from the calls as they complete.

Bounded: only calls inside the window are kept, and at most ``max_calls`` of them. A call counts once,
however often its completion is seen again (a refresh reloads calls already counted).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..schema import TraceStatus


@dataclass(frozen=True, slots=True)
class ModelStats:
    model: str
    p50_ms: float
    p95_ms: float
    calls_per_min: float
    error_rate: float  # 0..1
    calls: int
    cost_per_min: float = 0.0  # USD, of the calls that said their cost
    tokens_per_min: float = 0.0  # of the calls that said their token count


@dataclass(frozen=True, slots=True)
class _Call:
    at: float  # epoch seconds the call completed (or arrived, when it did not say)
    model: str
    latency_ms: float | None
    failed: bool
    tokens: float
    cost: float


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list (what a person expects 'p95 of 20 calls' to mean)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class RollingModelStats:
    def __init__(self, window_seconds: float = 300.0, max_calls: int = 50_000) -> None:
        self.window_seconds = window_seconds
        self.max_calls = max_calls
        self._calls: OrderedDict[str, _Call] = OrderedDict()  # by call id, in the order added
        self._earliest: float | None = None  # the oldest call ever added: before it we saw nothing

    def add(self, call_id: str, at: float, model: str, latency_ms: float | None, failed: bool,
            tokens: float | None = None, cost: float | None = None) -> bool:
        """Count a completed call; False (and nothing changes) when it is already counted. A call that
        does not say its tokens or cost adds nothing to those rates (but still counts as a call)."""
        if call_id in self._calls:
            return False
        if len(self._calls) >= self.max_calls:
            self._calls.popitem(last=False)
        self._calls[call_id] = _Call(at, model or "unknown", latency_ms, failed, tokens or 0.0, cost or 0.0)
        self._earliest = at if self._earliest is None else min(self._earliest, at)
        return True

    def add_if_final(self, trace: dict[str, Any], now: float) -> bool:
        """Count a trace once it has ended (at its end time, else its last update, else ``now``);
        True when it was counted just now."""
        status = trace.get("status")
        if status not in (TraceStatus.success.value, TraceStatus.error.value):
            return False
        at = _epoch(trace.get("ended_at")) or _epoch(trace.get("updated_at")) or now
        return self.add(trace["id"], at, trace.get("model") or "", trace.get("latency_ms"),
                        status == TraceStatus.error.value, trace.get("total_tokens"), trace.get("cost_usd"))

    def __len__(self) -> int:
        return len(self._calls)

    def _minutes_observed(self, now: float) -> float:
        """The part of the window we have seen calls for, at least a minute: right after a start (or
        a snapshot shorter than the window), dividing by the whole window would understate the rate."""
        seen = self.window_seconds if self._earliest is None else now - self._earliest
        return max(60.0, min(self.window_seconds, seen)) / 60

    def compute(self, now: float) -> list[ModelStats]:
        """Stats per model over the window ending ``now``, models sorted by name; calls older than
        the window are forgotten."""
        horizon = now - self.window_seconds
        while self._calls and next(iter(self._calls.values())).at < horizon:
            self._calls.popitem(last=False)
        return self.compute_at(now)

    def compute_at(self, at: float) -> list[ModelStats]:
        """Stats per model over the window ending ``at`` (which may be in the past), forgetting nothing."""
        horizon = at - self.window_seconds
        by_model: dict[str, list[_Call]] = {}
        for call in self._calls.values():
            if horizon <= call.at <= at:
                by_model.setdefault(call.model, []).append(call)
        minutes = self._minutes_observed(at)
        result = []
        for model in sorted(by_model):
            calls = by_model[model]
            latencies = [c.latency_ms for c in calls if c.latency_ms is not None and not c.failed]
            result.append(ModelStats(
                model=model,
                p50_ms=percentile(latencies, 50) if latencies else float("nan"),
                p95_ms=percentile(latencies, 95) if latencies else float("nan"),
                calls_per_min=len(calls) / minutes,
                error_rate=sum(c.failed for c in calls) / len(calls),
                calls=len(calls),
                cost_per_min=sum(c.cost for c in calls) / minutes,
                tokens_per_min=sum(c.tokens for c in calls) / minutes,
            ))
        return result

    def history(self, now: float, step: float, most: int = 60) -> list[tuple[float, list[ModelStats]]]:
        """Points at most ``most`` and at least ``step`` seconds apart, from the first call held (or the
        window's start) to ``now``: what the charts start from, instead of ramping up from nothing."""
        if self._earliest is None:
            return []
        start = max(now - self.window_seconds, self._earliest)
        step = max(step, (now - start) / most)
        times = [now]
        while times[-1] - step >= start:
            times.append(times[-1] - step)
        return [(at, stats) for at in reversed(times) if (stats := self.compute_at(at))]
