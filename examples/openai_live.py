"""The real ``openai`` SDK, instrumented with OpenTelemetry, exporting to the live view's ``/v1/traces``:
no code of ours in the app, only an exporter endpoint. Runs without network or an API key against the
stub model server beside it (``stub_openai.py``): three calls, the last one failing.

    TRACES_TOKEN=$(cat data/demo.token) .venv/bin/python examples/openai_live.py               # official GenAI
    TRACES_TOKEN=$(cat data/demo.token) .venv/bin/python examples/openai_live.py openinference  # OpenInference

``TRACES_API_URL`` (http://127.0.0.1:8000) is where the API listens. The calls appear in the dashboard
as they finish; the official instrumentation records messages only when asked
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only``, set here).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stub_openai import StubServer  # noqa: E402


def instrument(which: str, provider: TracerProvider) -> None:
    if which == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    OpenAIInstrumentor().instrument(tracer_provider=provider)


def main(which: str = "official") -> int:
    api_url = os.environ.get("TRACES_API_URL", "http://127.0.0.1:8000").rstrip("/")
    exporter = OTLPSpanExporter(endpoint=f"{api_url}/v1/traces",
                                headers={"Authorization": f"Bearer {os.environ['TRACES_TOKEN']}"})
    provider = TracerProvider(resource=Resource.create({"service.name": f"openai-example-{which}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrument(which, provider)
    tracer = provider.get_tracer("examples.openai_live")
    with StubServer() as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="sk-stub", max_retries=0)
        with tracer.start_as_current_span("answer-question"):  # the run the calls belong to
            for model, question in (("gpt-4o-mini", "What is our refund policy?"), ("gpt-4o", "Summarise it.")):
                reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
                print(f"{model}: {reply.choices[0].message.content}")
            try:
                client.chat.completions.create(model="err-429", messages=[{"role": "user", "content": "again"}])
            except openai.RateLimitError as exc:
                print(f"err-429 failed as planned: {exc.__class__.__name__}")
    provider.shutdown()  # sends what is still batched
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
