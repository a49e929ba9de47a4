"""The one schema, shared by the server, the client and the dashboard: what a trace is, what a writer
may send, what the stream says, and where each of them lives on the wire."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

STREAM_PATH = "/api/analytics/traces/stream"
TRACES_PATH = "/api/analytics/traces"
WRITE_PATH = "/api/traces"

MAX_ID_CHARS = 128
MAX_NAME_CHARS = 512
MAX_TEXT_CHARS = 1_000_000
MAX_JSON_DEPTH = 64  # objects and lists in input, output and metadata: far past any real payload


class TraceStatus(StrEnum):
    """Where an LLM call is in its life (not to be confused with a connection's state)."""

    pending = "pending"
    running = "running"
    success = "success"
    error = "error"

    @property
    def final(self) -> bool:
        return self in (TraceStatus.success, TraceStatus.error)


class EventKind(StrEnum):
    """The two stream events that carry a trace, and that have a sequence id."""

    trace = "trace"  # inserted
    trace_update = "trace_update"  # changed


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, microseconds and a four-digit year always present (strftime
    writes year 1 as ``1``), so strings sort as times do."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


def _in_utc_years(moment: datetime) -> datetime:
    """A time whose UTC form leaves years 1-9999 cannot be written as ISO 8601, nor kept by any store."""
    try:
        utc_iso(moment)
    except OverflowError:
        raise ValueError("a time must stay within the years 1 to 9999 once converted to UTC") from None
    return moment


def _storable_text(text: str) -> str:
    """NUL is refused here because PostgreSQL cannot keep it in text or jsonb; SQLite could, and a
    trace must read the same on every store. A lone surrogate is no Unicode and cannot be UTF-8."""
    if "\x00" in text:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError("text may not contain a lone surrogate (\\ud800-\\udfff)") from None
    return text


def _storable_json(value: Any) -> Any:
    """Refused here, what ``json.loads`` lets through but no store keeps as sent: NaN and Infinity (they
    would become null), nesting deeper than MAX_JSON_DEPTH (which serialising fails on) and unstorable text.
    Walked without recursion, so no depth can overflow the stack."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _storable_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers (nor is a number beyond a double's range)")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels of objects and lists")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


UtcMoment = Annotated[datetime, AfterValidator(_in_utc_years)]
UtcDatetime = Annotated[UtcMoment, PlainSerializer(utc_iso, return_type=str)]
NonNegativeInt = Annotated[int, Field(ge=0, le=2**53)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ShortText = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_storable_text)]
TraceId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[A-Za-z0-9._:\-]+$")]
Payload = Annotated[str | list[Any] | dict[str, Any], AfterValidator(_storable_json),
                    Field(description=f"Text, or JSON such as chat messages (nested at most {MAX_JSON_DEPTH} deep).")]
Metadata = Annotated[dict[str, Any], AfterValidator(_storable_json)]


class TraceFields(BaseModel):
    """The fields a writer may set; unknown fields and wrong types are refused, never dropped."""

    model_config = ConfigDict(extra="forbid", strict=False)

    name: ShortText | None = None
    model: ShortText | None = None
    provider: ShortText | None = None
    status: TraceStatus | None = None
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    latency_ms: NonNegativeFloat | None = None
    input_tokens: NonNegativeInt | None = None
    output_tokens: NonNegativeInt | None = None
    total_tokens: NonNegativeInt | None = None
    cost_usd: NonNegativeFloat | None = None
    input: Payload | None = None
    output: Payload | None = None
    error: Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(_storable_text)] | None = None
    metadata: Metadata | None = None

    @field_validator("input_tokens", "output_tokens", "total_tokens", mode="before")
    @classmethod
    def _no_fractional_tokens(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a token count is an integer, not a boolean")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("a token count is a whole number")
        return value


class TraceCreate(TraceFields):
    """A new trace. ``user_id``, when present, must be the caller's own."""

    id: TraceId | None = None
    user_id: ShortText | None = None


class TracePatch(TraceFields):
    """A partial update: only the fields sent change; ``null`` clears a field."""

    user_id: ShortText | None = None


class Trace(BaseModel):
    """A stored trace, as the API returns it and the stream sends it."""

    id: str
    user_id: str
    name: str | None = None
    model: str | None = None
    provider: str | None = None
    status: TraceStatus
    started_at: str | None = None
    ended_at: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    updated_at: str


class TracePage(BaseModel):
    """One page of a user's traces, newest first: what the store reads and the API answers."""

    traces: list[Trace]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page; null at the end.")
    last_event_id: int = Field(description="The stream position this snapshot reflects: resume the stream from it.")


class TraceBatchResult(BaseModel):
    traces: list[Trace]


class StreamTicket(BaseModel):
    ticket: str
    expires_in: int


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"]
    store: str


# The stream's events, for the OpenAPI document and for anyone decoding them.

class ConnectedData(BaseModel):
    user_id: str
    server_time: str
    last_event_id: int


class SubscribedData(BaseModel):
    filters: dict[str, str]
    replaying_from: int | None


class PingData(BaseModel):
    server_time: str


class ResetData(BaseModel):
    reason: str
    last_event_id: int


class StreamErrorData(BaseModel):
    code: str
    message: str


STREAM_EVENTS: dict[str, tuple[type[BaseModel], str]] = {
    "connected": (ConnectedData, "First event: who you are and the stream position now. No `id:`."),
    "subscribed": (SubscribedData, "The live subscription is active; replay (if any) follows. No `id:`."),
    "trace": (Trace, "A trace was inserted. `id:` is its sequence number; send it back as `Last-Event-ID`."),
    "trace_update": (Trace, "A trace changed; the whole trace after the change. `id:` as for `trace`."),
    "ping": (PingData, "Every TRACES_PING_INTERVAL seconds, so a client can tell a quiet stream from a dead one."),
    "reset": (ResetData, "Your resume point is older than the replay window: reload the snapshot, then resume."),
    "error": (StreamErrorData, "A backend failure or an expired token; the stream ends and the client reconnects."),
}
