"""The traffic model: who calls, which operation and model, how long it takes, how it ends.

Calls arrive as a Poisson process, spread over a few users (``demo`` always among them, with the
largest share). A latency is model-dependent (lognormal, with an occasional slow tail); ``error_rate``
of the calls fail as rate limits, timeouts, content filters or provider outages. Everything about a
call is drawn up front, so a seed fixes the whole sequence.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..schema import TraceStatus, utc_iso
from .catalogue import ERROR_KINDS, MODELS, OPERATIONS, OTHER_USERS, TIMEOUT_SECONDS, ModelSpec

SLOW_TAIL_P = 0.03
MAX_LATENCY_MS = 8000.0
CANCELLED_ERROR = "Cancelled: the demo traffic generator stopped"


@dataclass(frozen=True)
class CallPlan:
    """Everything about one synthetic call, drawn up front so a seed fixes the whole sequence."""

    id: str
    user_id: str
    name: str
    model: ModelSpec
    input: Any
    output: Any
    metadata: dict[str, Any]
    latency_s: float
    input_tokens: int
    output_tokens: int
    error: str | None            # None for a success

    def start_body(self, started_at: datetime) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "model": self.model.name, "provider": self.model.provider,
            "status": TraceStatus.running.value, "started_at": utc_iso(started_at), "input": self.input,
            "metadata": self.metadata,
        }

    def final_body(self, started_at: datetime, elapsed_s: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ended_at": utc_iso(started_at + timedelta(seconds=elapsed_s)),
            "latency_ms": round(elapsed_s * 1000, 1),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "cost_usd": self.model.cost(self.input_tokens, self.output_tokens),
        }
        if self.error is None:
            body.update(status=TraceStatus.success.value, output=self.output)
        else:
            body.update(status=TraceStatus.error.value, error=self.error)
        return body

    def cancelled_body(self, started_at: datetime, elapsed_s: float) -> dict[str, Any]:
        """The call as the client saw it when it gave up: the prompt was sent, nothing came back."""
        return {
            "status": TraceStatus.error.value, "error": CANCELLED_ERROR,
            "ended_at": utc_iso(started_at + timedelta(seconds=elapsed_s)),
            "latency_ms": round(elapsed_s * 1000, 1),
            "input_tokens": self.input_tokens, "output_tokens": 0, "total_tokens": self.input_tokens,
            "cost_usd": 0.0,
        }


def user_names(users: int) -> list[str]:
    """``demo`` first, then alice, bob, …, then user-10, user-11, … as needed."""
    names = ["demo"]
    for index in range(1, max(1, users)):
        names.append(OTHER_USERS[index - 1] if index <= len(OTHER_USERS) else f"user-{index + 1}")
    return names


class TrafficModel:
    """Draws calls: who makes them, which operation and model, how long they take, how they end."""

    def __init__(self, users: list[str], *, seed: int | None = None, error_rate: float = 0.06,
                 latency_scale: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.users = users
        # "demo" gets at least 40 % of the traffic (all of it when alone); the others share the rest.
        demo_share = 1.0 if len(users) == 1 else max(0.4, 1 / len(users))
        rest = (1 - demo_share) / max(1, len(users) - 1)
        self.user_weights = [demo_share] + [rest] * (len(users) - 1)
        self.error_rate = error_rate
        self.latency_scale = latency_scale
        self.sessions: dict[str, list[str]] = {user: [self._session_id() for _ in range(3)] for user in users}

    def _session_id(self) -> str:
        return f"sess_{self.rng.getrandbits(48):012x}"

    def _session(self, user: str) -> str:
        pool = self.sessions[user]
        if self.rng.random() < 0.1:       # now and then a session ends and a new one begins
            pool[self.rng.randrange(len(pool))] = self._session_id()
        return self.rng.choice(pool)

    def _log_uniform(self, low: int, high: int) -> int:
        return int(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))

    def _latency_ms(self, model: ModelSpec, output_tokens: int) -> float:
        latency = self.rng.lognormvariate(math.log(model.median_ms), 0.35)
        latency *= min(2.5, max(0.4, output_tokens / 250)) ** 0.5   # longer answers take longer
        if self.rng.random() < SLOW_TAIL_P:
            latency *= self.rng.uniform(3, 8)
        return min(latency, MAX_LATENCY_MS)

    def next_call(self) -> CallPlan:
        rng = self.rng
        user = rng.choices(self.users, self.user_weights)[0]
        op = rng.choices(OPERATIONS, [o.weight for o in OPERATIONS])[0]
        model = MODELS[rng.choices(list(op.models), list(op.models.values()))[0]]
        prompt, answer = rng.choice(op.samples)
        input_tokens = self._log_uniform(*op.input_tokens)
        output_tokens = self._log_uniform(*op.output_tokens)
        latency_ms = self._latency_ms(model, output_tokens)
        error = None
        if rng.random() < self.error_rate:
            kind = rng.choices([k for k, _ in ERROR_KINDS], [w for _, w in ERROR_KINDS])[0]
            if kind == "rate_limit":          # refused up front: quick, nothing billed
                error, latency_ms, input_tokens = "RateLimitError: 429 Too Many Requests", rng.uniform(40, 250), 0
            elif kind == "timeout":           # the client gave up waiting
                error, latency_ms = f"Timeout after {TIMEOUT_SECONDS}s", TIMEOUT_SECONDS * 1000 * rng.uniform(1.0, 1.02)
            elif kind == "content_filter":    # the prompt was read, the answer withheld
                error, latency_ms = "ContentFilterError: the response was blocked by the content policy", latency_ms * 0.6
            else:
                error, latency_ms = model.server_error, latency_ms * rng.uniform(0.2, 1.0)
            output_tokens = 0
        metadata = {
            "session_id": self._session(user),
            "env": "prod" if rng.random() < 0.9 else "staging",
            "route": op.route,
            "temperature": rng.choice((0.0, 0.2, 0.7)),
            "source": "demo",
        }
        return CallPlan(
            id=str(uuid.uuid4()),  # random even with a seed: a rerun must not collide with stored ids
            user_id=user, name=op.name, model=model, input=prompt, output=answer, metadata=metadata,
            latency_s=latency_ms * self.latency_scale / 1000, input_tokens=input_tokens,
            output_tokens=output_tokens, error=error,
        )

    def interarrival(self, rate: float) -> float:
        return self.rng.expovariate(rate)
