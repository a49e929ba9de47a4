"""Turning what a writer sent into the stored trace: server-set fields, defaults, derived numbers.

The write service calls these, so a trace looks the same whichever backend keeps it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from ..schema import TraceCreate, TracePatch, TraceStatus, utc_iso

TRACE_FIELDS = (
    "id", "user_id", "name", "model", "provider", "status", "started_at", "ended_at", "latency_ms",
    "input_tokens", "output_tokens", "total_tokens", "cost_usd", "input", "output", "error", "metadata",
    "created_at", "updated_at",
)


def new_record(user_id: str, sent: TraceCreate, now: str) -> dict[str, Any]:
    """The full trace for a create: ``user_id`` from the token, an id when none was sent, timestamps."""
    values = sent.model_dump(mode="json", exclude_none=True)
    record: dict[str, Any] = {name: None for name in TRACE_FIELDS}
    record.update(values)
    record["id"] = sent.id or str(uuid.uuid4())
    record["user_id"] = user_id
    record["status"] = values.get("status", TraceStatus.pending.value)
    record["metadata"] = values.get("metadata") or {}
    record["created_at"] = now
    record["updated_at"] = now
    return _derive(record)


def patched_record(current: dict[str, Any], patch: TracePatch, now: str) -> dict[str, Any]:
    """``current`` with the fields the patch set (``null`` clears); derived numbers refreshed.

    ``updated_at`` always moves forward, even when the clock did not: it is what a concurrent
    writer's compare-and-set checks, so two versions of a trace never share it.
    """
    record = dict(current)
    changes = patch.model_dump(mode="json", include=patch.model_fields_set - {"user_id"})
    record.update(changes)
    if record.get("metadata") is None:
        record["metadata"] = {}
    if record.get("status") is None:
        record["status"] = current["status"]
    record["updated_at"] = max(now, _just_after(current["updated_at"]))
    return _derive(record, explicit=set(changes))


def as_patch(sent: TraceCreate) -> TracePatch:
    """A create sent for an id that exists, as the update it means: the fields it set, nothing else."""
    fields = sent.model_fields_set - {"id", "user_id"}
    return TracePatch.model_validate({name: getattr(sent, name) for name in fields})


def _just_after(moment: str) -> str:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return utc_iso(parsed + timedelta(microseconds=1))


def _derive(record: dict[str, Any], explicit: set[str] | None = None) -> dict[str, Any]:
    """Fill ``total_tokens`` and ``latency_ms`` when the writer gave their parts but not them."""
    explicit = explicit or set()
    if record["total_tokens"] is None or (
        "total_tokens" not in explicit and ({"input_tokens", "output_tokens"} & explicit)
    ):
        if record["input_tokens"] is not None and record["output_tokens"] is not None:
            record["total_tokens"] = record["input_tokens"] + record["output_tokens"]
    if record["latency_ms"] is None and record["started_at"] and record["ended_at"]:
        started = datetime.fromisoformat(record["started_at"])
        ended = datetime.fromisoformat(record["ended_at"])
        if ended >= started:
            record["latency_ms"] = round((ended - started).total_seconds() * 1000, 3)
    return record


def encode(record: dict[str, Any]) -> str:
    """The one JSON encoding of a trace: stored once, sent as is to every stream."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
