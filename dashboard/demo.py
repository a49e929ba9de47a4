"""Synthetic LLM traffic: ``python -m dashboard demo``.

Calls arrive as a Poisson process at ``rate`` per second, spread over a few users (``demo`` always
among them, with the largest share). Each call is POSTed as ``running`` the moment it starts, then,
after a model-dependent latency (lognormal, with an occasional slow tail), PATCHed to ``success``
(tokens, cost from a price table, an output) or ``error`` (rate limits, timeouts, content filters,
provider outages; ``error_rate`` of the calls, 6 % by default).

At most ``max_in_flight`` calls are open at once; when that many are waiting on their "model", new
arrivals wait for a slot, so the number of tasks never grows without bound.

Stopping (``stop`` set, ``duration`` elapsed, or the task cancelled, as by Ctrl-C): no new calls
start, and every call still in flight is finished off at once as ``error`` with
``Cancelled: the demo traffic generator stopped`` and the latency it had reached, so no trace is
left ``running`` forever (a call whose real outcome was already due but not yet stored gets one
last try with it). Those final updates get ``shutdown_timeout`` seconds; any the API has not taken
by then are abandoned (``DemoStats.abandoned``).

When the API is down or answers errors, the generator logs a one-line warning at most every
``WARN_INTERVAL`` seconds, pauses new calls with capped exponential backoff, and carries on when
the API is back: it never raises for the API's sake. A call's final update is retried for up to
``PATCH_RETRY_SECONDS`` (an API restart does not leave its trace ``running``), and a call whose
POST failed is dropped, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from .auth import Authenticator
from .config import Settings
from .models import utc_iso

log = logging.getLogger(__name__)

TOKEN_TTL_SECONDS = 12 * 3600
TOKEN_REFRESH_BEFORE = 3600          # mint a fresh token when the current one has less than this left
WARN_INTERVAL = 10.0                 # at most one warning line per this many seconds
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
PATCH_RETRY_SECONDS = 120.0
SLOW_TAIL_P = 0.03
MAX_LATENCY_MS = 8000.0
CANCELLED_ERROR = "Cancelled: the demo traffic generator stopped"
OTHER_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


# --------------------------------------------------------------------------------------------
# What the traffic looks like


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    median_ms: float
    price_in: float       # USD per million input tokens
    price_out: float      # USD per million output tokens
    server_error: str     # this provider's way of failing

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return round((input_tokens * self.price_in + output_tokens * self.price_out) / 1_000_000, 8)


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("gpt-4o-mini", "openai", 400, 0.15, 0.60,
              "InternalServerError: 500 The server had an error while processing your request"),
    ModelSpec("gpt-4o", "openai", 900, 2.50, 10.00,
              "InternalServerError: 500 The server had an error while processing your request"),
    ModelSpec("claude-3-5-sonnet", "anthropic", 1100, 3.00, 15.00, "OverloadedError: 529 Overloaded"),
    ModelSpec("claude-3-haiku", "anthropic", 350, 0.25, 1.25, "OverloadedError: 529 Overloaded"),
    ModelSpec("llama-3.1-70b", "together", 700, 0.88, 0.88,
              "ServiceUnavailableError: 503 the model is overloaded, try again later"),
)}


@dataclass(frozen=True)
class Operation:
    name: str
    route: str
    models: dict[str, float]                 # model name -> weight
    input_tokens: tuple[int, int]            # a range to draw from (log-uniform)
    output_tokens: tuple[int, int]
    samples: tuple[tuple[Any, Any], ...]     # (input, output) pairs
    weight: float


def _chat(question: str, system: str = "You are a helpful support assistant for Acme Cloud.") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "chat", "/v1/assistant/chat",
        {"gpt-4o-mini": 30, "gpt-4o": 20, "claude-3-5-sonnet": 20, "claude-3-haiku": 15, "llama-3.1-70b": 15},
        (60, 1500), (40, 600),
        (
            (_chat("How do I rotate my API key without downtime?"),
             "Create a second key, deploy it alongside the old one, switch your clients over, then revoke "
             "the old key from Settings > API keys. Both keys stay valid until you revoke one."),
            (_chat("Why was I charged twice this month?"),
             "It looks like your plan renewed on the 1st and an add-on was billed on the 3rd. These are two "
             "separate line items; I can send you the itemised invoice if that helps."),
            (_chat("Can I export my dashboards to PDF?"),
             "Yes: open the dashboard, choose Share > Export, and pick PDF. Scheduled exports are available "
             "on the Team plan."),
            (_chat("Write a haiku about on-call rotations.", "You are a playful poet."),
             "Pager hums at three,\ncoffee cold beside the logs,\ngreen checks greet the dawn."),
            (_chat("What's the difference between a region and a zone?"),
             "A region is a geographic area (for example eu-west); each region has several isolated zones. "
             "Spread replicas across zones for availability, across regions for disaster recovery."),
            (_chat("Translate 'the deployment failed' into German and French.", "You are a translator."),
             "German: \u201eDie Bereitstellung ist fehlgeschlagen.\u201c French: \u00ab Le d\u00e9ploiement a \u00e9chou\u00e9. \u00bb"),
        ),
        weight=30,
    ),
    Operation(
        "summarize", "/api/documents/summarize",
        {"gpt-4o-mini": 35, "claude-3-haiku": 25, "claude-3-5-sonnet": 20, "gpt-4o": 10, "llama-3.1-70b": 10},
        (800, 6000), (80, 400),
        (
            ("Summarize the following incident report in three bullet points.\n\nAt 14:02 UTC the primary "
             "database in eu-west-1 began rejecting writes after its disk filled with WAL segments retained "
             "by a stalled replication slot...",
             "- Writes failed for 23 minutes after the primary's disk filled with retained WAL.\n"
             "- Cause: a replication slot left behind by a decommissioned replica.\n"
             "- Fix: slot dropped, disk alarms lowered to 70 %, slot monitoring added."),
            ("Summarize this customer call transcript for the account manager.\n\nCustomer: We love the new "
             "alerting, but the Slack integration keeps posting duplicates whenever...",
             "The customer is happy with alerting but sees duplicate Slack messages after reconnects; they "
             "want a fix before renewing in Q3. Follow-up: escalate ticket #4821 to the integrations team."),
            ("Summarize the key changes in this pull request description.\n\nThis PR replaces the polling "
             "loop in the scheduler with a notification channel, removes the legacy cron parser...",
             "Replaces scheduler polling with LISTEN/NOTIFY, drops the legacy cron parser, and adds "
             "migration 0042. Reduces idle database load by roughly 90 %."),
            ("TL;DR this article for a newsletter.\n\nVector databases have become a staple of retrieval-"
             "augmented generation, but for many workloads a plain Postgres index is enough...",
             "For most RAG workloads under a few million vectors, pgvector in an existing Postgres is simpler "
             "and fast enough; dedicated vector stores pay off at larger scale or with heavy filtering."),
        ),
        weight=20,
    ),
    Operation(
        "extract-entities", "/api/pipeline/extract",
        {"gpt-4o-mini": 40, "gpt-4o": 20, "claude-3-haiku": 25, "llama-3.1-70b": 15},
        (150, 1200), (30, 250),
        (
            ("Extract people, organisations and dates: 'On 12 March 2024, Priya Raman joined Northwind "
             "Traders as CFO, replacing Tom Becker.'",
             {"people": ["Priya Raman", "Tom Becker"], "organizations": ["Northwind Traders"],
              "dates": ["2024-03-12"], "roles": {"Priya Raman": "CFO"}}),
            ("Extract the invoice fields as JSON: 'Invoice INV-20931 from Contoso Ltd, due 2024-07-01, "
             "total EUR 4,812.50, PO 7781.'",
             {"invoice_number": "INV-20931", "vendor": "Contoso Ltd", "due_date": "2024-07-01",
              "currency": "EUR", "total": 4812.5, "po_number": "7781"}),
            ("Extract the product names and versions mentioned: 'After upgrading from Postgres 14 to 16 and "
             "Django 4.2 to 5.0, our p95 dropped.'",
             {"products": [{"name": "Postgres", "from": "14", "to": "16"},
                           {"name": "Django", "from": "4.2", "to": "5.0"}]}),
            ("Extract locations and quantities: 'Ship 40 units to the Lyon warehouse and 15 to Porto by "
             "Friday.'",
             {"shipments": [{"location": "Lyon", "quantity": 40}, {"location": "Porto", "quantity": 15}],
              "deadline": "Friday"}),
        ),
        weight=15,
    ),
    Operation(
        "rag-answer", "/api/kb/answer",
        {"gpt-4o": 35, "claude-3-5-sonnet": 35, "gpt-4o-mini": 20, "llama-3.1-70b": 10},
        (1500, 7000), (100, 500),
        (
            ({"question": "What is our refund policy for annual plans?",
              "retrieved": ["kb/billing/refunds.md#annual", "kb/billing/plans.md#annual"]},
             "Annual plans can be refunded pro rata within 30 days of purchase or renewal [1]. After 30 days "
             "the plan stays active until the end of the term, with no refund [1][2]."),
            ({"question": "How many concurrent builds does the Team plan allow?",
              "retrieved": ["kb/plans/team.md#limits"]},
             "The Team plan runs up to 10 concurrent builds; extra build slots can be bought in packs of 5 [1]."),
            ({"question": "Which regions support data residency in the EU?",
              "retrieved": ["kb/compliance/residency.md", "kb/infra/regions.md#eu"]},
             "EU data residency is available in eu-west (Dublin) and eu-central (Frankfurt) [1][2]. Backups "
             "stay in the same region [1]."),
            ({"question": "How do I configure SSO with Okta?",
              "retrieved": ["kb/auth/sso-okta.md", "kb/auth/scim.md"]},
             "Add Acme Cloud from the Okta app catalogue, paste the SAML metadata URL from Settings > SSO, "
             "and enable SCIM provisioning if you want users synced automatically [1][2]."),
        ),
        weight=20,
    ),
    Operation(
        "classify-ticket", "/api/support/triage",
        {"gpt-4o-mini": 45, "claude-3-haiku": 35, "llama-3.1-70b": 20},
        (100, 600), (5, 40),
        (
            ("Ticket: 'I can't log in since this morning, the 2FA code is always rejected.'",
             {"label": "account-access", "priority": "high", "confidence": 0.94}),
            ("Ticket: 'Please add an option to export reports as CSV.'",
             {"label": "feature-request", "priority": "low", "confidence": 0.97}),
            ("Ticket: 'We were billed for 12 seats but only have 9 users.'",
             {"label": "billing", "priority": "medium", "confidence": 0.91}),
            ("Ticket: 'The API returns 502 for every request in ap-south since 10:40.'",
             {"label": "outage", "priority": "urgent", "confidence": 0.89}),
            ("Ticket: 'How do I change the timezone of scheduled reports?'",
             {"label": "how-to", "priority": "low", "confidence": 0.86}),
        ),
        weight=15,
    ),
)

# (kind, weight): how calls fail; the message for "server" comes from the model's provider.
ERROR_KINDS = (("rate_limit", 40), ("server", 25), ("content_filter", 20), ("timeout", 15))
TIMEOUT_SECONDS = 10


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
            "status": "running", "started_at": utc_iso(started_at), "input": self.input, "metadata": self.metadata,
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
            body.update(status="success", output=self.output)
        else:
            body.update(status="error", error=self.error)
        return body

    def cancelled_body(self, started_at: datetime, elapsed_s: float) -> dict[str, Any]:
        """The call as the client saw it when it gave up: the prompt was sent, nothing came back."""
        return {
            "status": "error", "error": CANCELLED_ERROR,
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


# --------------------------------------------------------------------------------------------
# Running it


@dataclass
class DemoStats:
    """What a run did. ``completed`` counts calls brought to a final status (``errors`` among them,
    and ``cancelled`` among those); ``failed_requests`` counts HTTP requests that did not succeed."""

    started: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    failed_requests: int = 0
    users: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return self.completed - self.errors

    @property
    def abandoned(self) -> int:
        """Calls started whose final update never reached the API."""
        return self.started - self.completed


class _Tokens:
    """A token per user, minted with the API's secret and re-minted well before it expires."""

    def __init__(self, secret: str) -> None:
        self._auth = Authenticator(secret)
        self._tokens: dict[str, tuple[str, float]] = {}

    def headers(self, user: str) -> dict[str, str]:
        token, expires = self._tokens.get(user, ("", 0.0))
        if time.time() > expires - TOKEN_REFRESH_BEFORE:
            token = self._auth.issue_token(user, TOKEN_TTL_SECONDS)
            self._tokens[user] = (token, time.time() + TOKEN_TTL_SECONDS)
        return {"Authorization": f"Bearer {token}"}


class _Health:
    """Failures pause new calls with capped exponential backoff; warnings are one line, rate-limited."""

    def __init__(self, api_url: str, stats: DemoStats, rng: random.Random) -> None:
        self.api_url = api_url
        self.stats = stats
        self.rng = rng
        self.level = 0
        self.backoff_until = 0.0
        self.last_warning = -math.inf
        self.unreported = 0

    def backoff_remaining(self) -> float:
        return max(0.0, self.backoff_until - time.monotonic())

    def failure(self, what: str, reason: str) -> None:
        self.stats.failed_requests += 1
        self.unreported += 1
        now = time.monotonic()
        if now >= self.backoff_until:
            # A fresh failure, not one more of a burst that already set the backoff: back off further.
            self.level += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.level - 1))
            self.backoff_until = now + delay * self.rng.uniform(0.5, 1.0)
        if now - self.last_warning >= WARN_INTERVAL:
            more = f" ({self.unreported} failed requests since the last report)" if self.unreported > 1 else ""
            log.warning("demo: %s to %s failed: %s; pausing new calls for %.1f s%s",
                        what, self.api_url, reason, self.backoff_remaining(), more)
            self.last_warning = now
            self.unreported = 0

    def success(self) -> None:
        if self.level:
            log.warning("demo: the API at %s answers again; resuming traffic", self.api_url)
            self.level = 0
            self.backoff_until = 0.0
            self.unreported = 0
            self.last_warning = -math.inf


def _describe(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        detail = f"{error['code']}: {error['message']}"
    except Exception:
        detail = response.text[:200].strip() or response.reason_phrase
    hint = " (is TRACES_JWT_SECRET the API's?)" if response.status_code == 401 else ""
    return f"HTTP {response.status_code} {detail}{hint}"


def _transport_reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Runner:
    def __init__(self, api_url: str, tokens: _Tokens, traffic: TrafficModel, client: httpx.AsyncClient,
                 stats: DemoStats, health: _Health, stopping: asyncio.Event) -> None:
        self.api_url = api_url
        self.tokens = tokens
        self.traffic = traffic
        self.client = client
        self.stats = stats
        self.health = health
        self.stopping = stopping

    async def _request(self, method: str, path: str, user: str, body: dict[str, Any], what: str) -> httpx.Response | None:
        """The response for a 2xx, or for a 4xx (retrying will not help); None for a failure worth
        retrying (no answer, 5xx, 429). Every non-2xx is counted and maybe logged."""
        try:
            response = await self.client.request(method, self.api_url + path, json=body,
                                                 headers=self.tokens.headers(user))
        except httpx.HTTPError as exc:
            self.health.failure(what, _transport_reason(exc))
            return None
        if response.is_success:
            self.health.success()
            return response
        self.health.failure(what, _describe(response))
        return response if response.status_code < 500 and response.status_code != 429 else None

    async def call(self, plan: CallPlan) -> None:
        try:
            started_at = datetime.now(timezone.utc)
            began = time.monotonic()
            response = await self._request("POST", "/api/traces", plan.user_id, plan.start_body(started_at), "POST /api/traces")
            if response is None or not response.is_success:
                return
            self.stats.started += 1
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=plan.latency_s)
                cancelled = True
            except asyncio.TimeoutError:
                cancelled = False
            elapsed = time.monotonic() - began
            if cancelled:
                body = plan.cancelled_body(started_at, elapsed)
            else:
                body = plan.final_body(started_at, elapsed)
            if await self._finish(plan, body, retry=not cancelled):
                self.stats.completed += 1
                if body["status"] == "error":
                    self.stats.errors += 1
                if cancelled:
                    self.stats.cancelled += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not end the run
            log.warning("demo: a call failed unexpectedly: %s", _transport_reason(exc))

    async def _finish(self, plan: CallPlan, body: dict[str, Any], *, retry: bool) -> bool:
        """PATCH the final status. While running, a failure is retried with backoff for up to
        ``PATCH_RETRY_SECONDS`` (the API may be restarting); once stopping, one more try at most."""
        delay = BACKOFF_FIRST
        give_up = time.monotonic() + PATCH_RETRY_SECONDS
        while True:
            stopped_before = self.stopping.is_set()
            response = await self._request("PATCH", f"/api/traces/{plan.id}", plan.user_id, body, "PATCH /api/traces/{id}")
            if response is not None:
                return response.is_success          # a 4xx will not get better by retrying
            if not retry or stopped_before or time.monotonic() >= give_up:
                return False
            await _wait(self.stopping, delay * self.health.rng.uniform(0.5, 1.0))
            delay = min(BACKOFF_MAX, delay * 2)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``event`` is set first; True when it was."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
        return True
    except asyncio.TimeoutError:
        return False


async def run_demo(
    api_url: str,
    settings: Settings,
    *,
    rate: float = 2.0,
    users: int = 3,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    client: httpx.AsyncClient | None = None,
    seed: int | None = None,
    error_rate: float = 0.06,
    latency_scale: float = 1.0,
    max_in_flight: int = 256,
    shutdown_timeout: float = 5.0,
) -> DemoStats:
    """Send synthetic LLM traffic to the API at ``api_url`` until ``stop`` is set or ``duration`` passes.

    ``rate``: new calls per second (Poisson arrivals) over all users. ``users``: how many users, ``demo``
    always first. ``seed``: the same sequence of calls (users, models, texts, latencies, outcomes) on
    every run. ``error_rate``: the share of calls that end in ``error``. ``latency_scale``: multiplies
    every simulated latency (below 1 for quicker tests). ``max_in_flight``: calls open at once, at most.
    ``client``: an httpx client to use (not closed here). Returns what happened as ``DemoStats``.
    """
    if rate <= 0:
        raise ValueError(f"rate must be greater than 0, got {rate}")
    api_url = api_url.rstrip("/")
    tokens = _Tokens(settings.resolved_jwt_secret())
    names = user_names(users)
    traffic = TrafficModel(names, seed=seed, error_rate=error_rate, latency_scale=latency_scale)
    stats = DemoStats(users=names)
    health = _Health(api_url, stats, random.Random(None if seed is None else seed + 1))
    stopping = asyncio.Event()
    print(f"demo: sending ~{rate:g} calls/s for users {', '.join(names)} to {api_url}"
          + (f" for {duration:g} s" if duration else ""), flush=True)

    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0),
                                   limits=httpx.Limits(max_connections=min(max_in_flight, 100)))
    runner = _Runner(api_url, tokens, traffic, client, stats, health, stopping)
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    began = time.monotonic()
    deadline = None if duration is None else began + duration

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()

    async def watch_stop() -> None:
        waits = []
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        if deadline is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(max(0.0, deadline - time.monotonic()))))
        if not waits:
            return
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        stopping.set()

    watcher = asyncio.create_task(watch_stop())
    try:
        next_at = time.monotonic()
        while not stopping.is_set():
            next_at += traffic.interarrival(rate)
            if await _wait(stopping, next_at - time.monotonic()):
                break
            pause = health.backoff_remaining()
            if pause > 0:
                if await _wait(stopping, pause):
                    break
                next_at = time.monotonic()      # no burst to catch up after a pause
            if slots.locked():                  # all slots busy: wait for one (or the stop)
                acquire = asyncio.ensure_future(slots.acquire())
                halt = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({acquire, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if not acquire.done():
                    acquire.cancel()
                    break
                if stopping.is_set():
                    slots.release()
                    break
                next_at = max(next_at, time.monotonic())
            else:
                await slots.acquire()
            task = asyncio.create_task(runner.call(traffic.next_call()))
            tasks.add(task)
            task.add_done_callback(done)
    finally:
        # Stopping for whatever reason, a cancellation (Ctrl-C) included: finish off what is in flight.
        stopping.set()
        watcher.cancel()
        pending = set(tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=shutdown_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if own_client:
            await client.aclose()
        elapsed = time.monotonic() - began
        print(f"demo: stopped after {elapsed:.1f} s: {stats.started} calls started, {stats.completed} completed "
              f"({stats.errors} errors, {stats.cancelled} cancelled at stop), {stats.failed_requests} failed requests",
              flush=True)
    return stats
