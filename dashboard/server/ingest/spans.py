"""The LLM calls in an OTLP export, as traces: GenAI semantic conventions (``gen_ai.*``) and
OpenInference (``llm.*``, ``openinference.span.kind = LLM``) read into one trace row each.

A trace's id comes from its span: a UUID (version 5) of the span's trace id and span id, so the same
span sent at its start and again at its end is the same trace, and the id fits stores that declare
``id`` a ``uuid``. The OTel ids themselves stay in ``metadata.otel``, with the parent span and its name
when the parent came in the same export. Other spans are not stored.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from ...schema import MAX_NAME_CHARS, TraceCreate, TraceStatus
from ..json_body import JsonError, load_json

SPAN_NAMESPACE = uuid.UUID("5f6b7c2e-7a43-5d3c-9a55-0c1e8b1f3a21")  # ours: ids of traces made from spans
Attributes = dict[str, Any]


def trace_id_of_span(trace_id_hex: str, span_id_hex: str) -> str:
    """The id of the trace made from this span (hex ids, as OTLP/JSON and most tools print them)."""
    return str(uuid.uuid5(SPAN_NAMESPACE, f"{trace_id_hex.lower()}:{span_id_hex.lower()}"))


@dataclass
class IngestResult:
    traces: list[TraceCreate] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 5:
            self.reasons.append(reason)


def llm_traces(request: ExportTraceServiceRequest) -> IngestResult:
    """Every LLM span of the export as a trace; spans that cannot be one are counted as rejected."""
    result = IngestResult()
    names = {span.span_id: span.name for resource in request.resource_spans for scope in resource.scope_spans
             for span in scope.spans}
    for service, scope_name, span in _spans(request):
        attributes = _attributes(span.attributes)
        if not is_llm_span(attributes):
            continue
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            result.reject(f"span {span.name!r}: trace id and span id must be 16 and 8 bytes")
            continue
        try:
            result.traces.append(span_trace(span, attributes, service=service, scope=scope_name,
                                            parent_name=names.get(span.parent_span_id)))
        except ValidationError as exc:
            first = exc.errors()[0]
            result.reject(f"span {span.name!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    return result


def is_llm_span(attributes: Attributes) -> bool:
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str):
        return kind.upper() == "LLM"
    return any(key.startswith(("gen_ai.", "llm.")) for key in attributes)


def span_trace(span: Span, attributes: Attributes, *, service: str | None = None, scope: str | None = None,
               parent_name: str | None = None) -> TraceCreate:
    """One LLM span as the trace to store; only what the span says is set (an update changes nothing else)."""
    trace_hex, span_hex = span.trace_id.hex(), span.span_id.hex()
    started = _time(span.start_time_unix_nano)
    ended = _time(span.end_time_unix_nano)
    input_tokens = _count(attributes, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
    output_tokens = _count(attributes, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                           "llm.token_count.completion")
    total = _count(attributes, "llm.token_count.total", "gen_ai.usage.total_tokens")
    if total is None and input_tokens is not None and output_tokens is not None:
        total = input_tokens + output_tokens
    otel = {"trace_id": trace_hex, "span_id": span_hex, "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower()}
    if span.parent_span_id:
        otel["parent_span_id"] = span.parent_span_id.hex()
    if parent_name:
        otel["parent_name"] = parent_name
    if service:
        otel["service"] = service
    if scope:
        otel["scope"] = scope
    fields: dict[str, Any] = {
        "id": trace_id_of_span(trace_hex, span_hex),
        "name": span.name[:MAX_NAME_CHARS] or None,
        "model": _text(attributes, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
        or _invocation_model(attributes),
        "provider": _text(attributes, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
        "started_at": started,
        "ended_at": ended,
        "latency_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        if ended and started and span.end_time_unix_nano >= span.start_time_unix_nano else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "cost_usd": _number(attributes, "llm.cost.total", "gen_ai.usage.cost"),
        "input": _messages(attributes, "gen_ai.input.messages", "llm.input_messages", "input.value", "gen_ai.prompt"),
        "output": _messages(attributes, "gen_ai.output.messages", "llm.output_messages", "output.value", "gen_ai.completion"),
        "metadata": {"otel": otel},
    }
    if ended is None:
        fields["status"] = TraceStatus.running
    elif span.status.code == Status.STATUS_CODE_ERROR:
        fields["status"] = TraceStatus.error
        fields["error"] = _error_message(span, attributes)
    else:  # OK, or UNSET: an ended span that did not say it failed
        fields["status"] = TraceStatus.success
    return TraceCreate.model_validate({key: value for key, value in fields.items() if value is not None})


def _spans(request: ExportTraceServiceRequest) -> Iterator[tuple[str | None, str | None, Span]]:
    for resource in request.resource_spans:
        service = _attributes(resource.resource.attributes).get("service.name")
        for scope in resource.scope_spans:
            for span in scope.spans:
                yield (service if isinstance(service, str) else None), (scope.scope.name or None), span


def _attributes(pairs) -> Attributes:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind) if kind else None


def _time(unix_nano: int) -> datetime | None:
    """0 means the span did not say (one sent before it ended), never 1970."""
    if unix_nano <= 0:
        return None
    seconds, nanos = divmod(unix_nano, 1_000_000_000)  # integers: a float loses the microseconds
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def _text(attributes: Attributes, *keys: str) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value[:MAX_NAME_CHARS]
    return None


def _number(attributes: Attributes, *keys: str) -> float | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
    return None


def _count(attributes: Attributes, *keys: str) -> int | None:
    """A token count as a whole number; a value of another type is not a count (the span is kept)."""
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and 0 <= value <= 2**53:
            return value
    return None


def _invocation_model(attributes: Attributes) -> str | None:
    """OpenInference names the request's model only inside its invocation parameters (JSON text)."""
    parameters = _json(attributes.get("llm.invocation_parameters"))
    model = parameters.get("model") if isinstance(parameters, dict) else None
    return model[:MAX_NAME_CHARS] if isinstance(model, str) and model else None


def _messages(attributes: Attributes, genai: str, indexed: str, plain: str, legacy: str) -> Any:
    """Chat messages as a list of {role, content} where the span has them, else its text or JSON."""
    if genai in attributes:
        return _plain_messages(_json(attributes[genai]))
    prefix = indexed + "."
    by_index: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            if index.isdigit() and rest in ("message.role", "message.content"):
                by_index.setdefault(int(index), {})[rest.removeprefix("message.")] = value
    if by_index:
        return [by_index[index] for index in sorted(by_index)]
    for key in (plain, legacy):
        if key in attributes:
            return _json(attributes[key])
    return None


def _plain_messages(messages: Any) -> Any:
    """GenAI messages whose parts are all text as {role, content}, as the other conventions have them
    (readable in the detail, found by the search); anything richer (tool calls, images) as sent."""
    if not isinstance(messages, list):
        return messages
    plain = []
    for message in messages:
        parts = message.get("parts") if isinstance(message, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
            return messages
        plain.append({"role": message.get("role"), "content": "".join(str(p.get("content", "")) for p in parts)})
    return plain


def _json(value: Any) -> Any:
    """JSON text as the value it holds; other text as it is; anything else as text (a payload is one of those)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return load_json(value)
        except JsonError:  # also JSON too deep or with too long a number to read: kept as the text it is
            return value
    return value if isinstance(value, str | list | dict) or value is None else str(value)


def _error_message(span: Span, attributes: Attributes) -> str:
    if span.status.message:
        return span.status.message
    for event in span.events:
        if event.name == "exception":
            details = _attributes(event.attributes)
            kind, message = details.get("exception.type"), details.get("exception.message")
            if message:
                return f"{kind}: {message}" if kind else str(message)
    return str(attributes.get("error.type") or "the span's status is ERROR")
