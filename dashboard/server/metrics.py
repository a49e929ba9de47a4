"""Prometheus metrics, one registry per app (no process-global state, so tests and apps stay apart)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_streams = Gauge("traces_open_streams", "SSE streams open now", registry=self.registry)
        self.events_sent = Counter("traces_events_sent", "trace and trace_update events written to streams",
                                   registry=self.registry)
        self.slow_clients_dropped = Counter(
            "traces_slow_clients_dropped", "streams closed because their send queue was full", registry=self.registry
        )
        self.replays = Counter("traces_replays", "streams that resumed from a Last-Event-ID", registry=self.registry)
        self.resets = Counter("traces_resets", "resume points outside the replay window", registry=self.registry)
        self.auth_failures = Counter(
            "traces_auth_failures", "requests refused for a missing or bad credential", ["reason"], registry=self.registry
        )
        self.streams_refused = Counter(
            "traces_streams_refused", "streams refused for the per-user limit", registry=self.registry
        )
        self.rate_limited = Counter(  # reason: "writes" (a user over TRACES_WRITE_RATE) or "auth_failures" (a client)
            "traces_rate_limited", "requests answered 429 by a rate limit", ["reason"], registry=self.registry
        )
        self.traces_written = Counter(
            "traces_written", "traces stored or updated", ["kind"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
