"""LLM spans of each convention, built attribute by attribute with the real SDK, read into traces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dashboard.server.ingest.spans import llm_traces, trace_id_of_span

from .otel import SpanFactory

GENAI = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7,
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}]),
}
OPENINFERENCE = {
    "openinference.span.kind": "LLM", "llm.system": "openai", "llm.provider": "openai", "llm.model_name": "gpt-4o-mini",
    "llm.invocation_parameters": json.dumps({"model": "gpt-4o-mini", "temperature": 0.2}),
    "llm.token_count.prompt": 20, "llm.token_count.completion": 5, "llm.token_count.total": 25, "llm.cost.total": 0.0004,
    "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be brief",
    "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hello",
    "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "hi",
    "input.value": "{\"messages\": []}", "input.mime_type": "application/json",
}


def one(request):
    result = llm_traces(request)
    assert result.rejected == 0, result.reasons
    [trace] = result.traces
    return trace


def test_a_genai_span_becomes_a_trace_with_model_provider_tokens_and_messages():
    spans = SpanFactory()
    span = spans.span("chat gpt-4o", GENAI)
    trace = one(spans.export())
    context = span.get_span_context()
    assert trace.id == trace_id_of_span(f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert (trace.name, trace.model, trace.provider, trace.status) == ("chat gpt-4o", "gpt-4o-2024-08-06", "openai", "success")
    assert (trace.input_tokens, trace.output_tokens, trace.total_tokens) == (11, 7, 18)
    assert trace.input == [{"role": "user", "content": "hello"}]  # text parts read as the other conventions have them
    assert trace.output == [{"role": "assistant", "content": "hi"}]
    assert trace.latency_ms == (span.end_time - span.start_time) / 1e6
    seconds, nanos = divmod(span.start_time, 10**9)
    assert trace.started_at == datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)
    assert trace.metadata["otel"] == {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
                                      "kind": "internal", "service": "rag-service", "scope": "tests.ingest"}


def test_genai_messages_with_more_than_text_are_kept_as_sent():
    spans = SpanFactory()
    tool_call = [{"role": "assistant", "parts": [{"type": "tool_call", "name": "search", "arguments": {"q": "refunds"}}]}]
    spans.span("chat", {"gen_ai.request.model": "gpt-4o", "gen_ai.output.messages": json.dumps(tool_call)})
    assert one(spans.export()).output == tool_call


def test_older_genai_names_still_map():
    spans = SpanFactory()
    spans.span("completion", {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-haiku",
                              "gen_ai.usage.prompt_tokens": 3, "gen_ai.usage.completion_tokens": 4})
    trace = one(spans.export())
    assert (trace.provider, trace.model, trace.input_tokens, trace.output_tokens, trace.total_tokens) == (
        "anthropic", "claude-3-haiku", 3, 4, 7)


def test_an_openinference_span_becomes_a_trace_with_cost_and_messages():
    spans = SpanFactory()
    spans.span("ChatCompletion", OPENINFERENCE)
    trace = one(spans.export())
    assert (trace.model, trace.provider, trace.cost_usd) == ("gpt-4o-mini", "openai", 0.0004)
    assert (trace.input_tokens, trace.output_tokens, trace.total_tokens) == (20, 5, 25)
    assert trace.input == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert trace.output == [{"role": "assistant", "content": "hi"}]


def test_a_failed_openinference_call_names_its_model_from_the_invocation_and_its_error_from_the_status():
    spans = SpanFactory()
    attributes = {k: v for k, v in OPENINFERENCE.items() if not k.startswith(("llm.model_name", "llm.token", "llm.output"))}
    spans.span("ChatCompletion", attributes, error="RateLimitError: Error code: 429", exception=RuntimeError("429"))
    trace = one(spans.export())
    assert (trace.status, trace.error, trace.model) == ("error", "RateLimitError: Error code: 429", "gpt-4o-mini")
    assert trace.output_tokens is None and trace.output is None


def test_an_error_without_a_message_takes_the_exception_event():
    spans = SpanFactory()
    span = spans.span("chat", {"gen_ai.request.model": "gpt-4o"}, end=False)
    span.record_exception(TimeoutError("no answer in 10 s"))
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR))
    span.end()
    assert one(spans.export()).error == "TimeoutError: no answer in 10 s"


def test_unset_status_counts_as_success_and_a_span_not_ended_is_running():
    spans = SpanFactory()
    running = spans.span("chat", {"gen_ai.request.model": "gpt-4o"}, end=False)
    trace = one(spans.export(running))
    assert (trace.status, trace.ended_at, trace.latency_ms) == ("running", None, None)
    running.end()
    ended = one(spans.export())
    assert (ended.id, ended.status) == (trace.id, "success")
    assert ended.ended_at is not None


def test_other_spans_are_not_stored_but_name_the_parent_of_an_llm_span():
    spans = SpanFactory()
    parent = spans.span("answer-question", {"http.route": "/ask"}, end=False)
    spans.span("retrieve", {"openinference.span.kind": "RETRIEVER", "llm.model_name": "not-an-llm-call"}, parent=parent)
    spans.span("chat gpt-4o", GENAI, parent=parent)
    parent.end()
    trace = one(spans.export())
    assert trace.name == "chat gpt-4o"
    assert trace.metadata["otel"]["parent_name"] == "answer-question"
    assert trace.metadata["otel"]["parent_span_id"] == f"{parent.get_span_context().span_id:016x}"


def test_attributes_of_the_wrong_type_are_left_out_and_the_span_kept():
    spans = SpanFactory()
    spans.span("chat", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": "eleven",
                        "gen_ai.usage.output_tokens": -3, "llm.cost.total": "free", "gen_ai.input.messages": 42})
    trace = one(spans.export())
    assert (trace.input_tokens, trace.output_tokens, trace.cost_usd, trace.input) == (None, None, None, "42")
