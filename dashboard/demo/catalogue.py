"""What the synthetic traffic is made of: models with their prices and failures, the operations an
app performs with their sample prompts and answers, and the ways a call fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OTHER_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


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
             "German: \u201eDie Bereitstellung ist fehlgeschlagen.\u201c "
             "French: \u00ab Le d\u00e9ploiement a \u00e9chou\u00e9. \u00bb"),
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
