"""OpenTelemetry ingest: OTLP/HTTP trace exports (protobuf or JSON) decoded with opentelemetry-proto
(``otlp``), and the LLM spans in them turned into traces (``spans``), GenAI and OpenInference alike."""
