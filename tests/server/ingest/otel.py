"""Spans made by the real OpenTelemetry SDK, encoded as its OTLP exporter encodes them."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode


class SpanFactory:
    """A tracer that keeps what it ends: ``llm_span(...)``, then ``export()`` of everything ended."""

    def __init__(self, service: str = "rag-service") -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests.ingest")

    def span(self, name: str, attributes: dict, *, error: str | None = None, exception: Exception | None = None,
             end: bool = True, parent=None):
        from opentelemetry import trace

        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, attributes=attributes)
        if exception is not None:
            span.record_exception(exception)
        if error is not None or exception is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        if end:
            span.end()
        return span

    def export(self, *spans) -> ExportTraceServiceRequest:
        """The given spans (ended or not) or else every ended one, as one OTLP request."""
        return encode_spans(list(spans) or list(self.exporter.get_finished_spans()))
