"""How fast LLM spans get in through ``POST /v1/traces`` (OTLP/HTTP), side by side with the same calls
sent as our own JSON to ``POST /api/traces``, against one API process on the embedded SQLite store.

Spans are made by the real OpenTelemetry SDK (GenAI attributes and a realistic prompt and answer, about
0.7 KB of text, as ``common.realistic_trace``) and encoded as its OTLP exporter encodes them; each
measurement sends them over one keep-alive connection, one request at a time, as one exporter does.

    .venv/bin/python bench/ingest_bench.py [--quick] [--keep-tmp]

Results overwrite ``bench/ingest_results.json`` and ``bench/INGEST.md``; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, Server, fmt, free_port, machine_info, pct, r, realistic_trace, run_and_write, server_env
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-haiku")


def make_spans(count: int) -> list:
    """``count`` ended LLM spans from the real SDK, with the fields of ``realistic_trace``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.ingest")
    sample = realistic_trace("x", "m", 0, {})
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        tracer.start_span(f"chat {model}", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": sample["input_tokens"], "gen_ai.usage.output_tokens": sample["output_tokens"],
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": sample["input"]}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": sample["output"]}]}]),
        }).end()
    return list(exporter.get_finished_spans())


def otlp_json(request) -> bytes:
    """OTLP/JSON as other SDKs and collectors send it: ids in hex (``MessageToDict`` writes base64)."""
    from google.protobuf import json_format

    document = json_format.MessageToDict(request)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


async def send_all(url: str, token: str, bodies: list[bytes], content_type: str) -> dict[str, Any]:
    """Every body, one request at a time over one connection: seconds and per-request latencies."""
    latencies = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with httpx.AsyncClient(timeout=60) as client:
        began = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
            latencies.append((time.perf_counter() - sent) * 1000)
        return {"seconds": time.perf_counter() - began, "latencies_ms": latencies}


async def run(workdir: Path, quick: bool) -> dict[str, Any]:
    total = 2_048 if quick else 10_240
    singles = 300 if quick else 1_000
    port = free_port()
    env = server_env({"TRACES_JWT_SECRET": SECRET, "TRACES_DB_URL": f"sqlite:///{workdir / 'traces.db'}"})
    api = Server("api", [sys.executable, "-m", "dashboard", "api", "--port", str(port), "--no-access-log"], env, workdir, port)
    await api.start()
    sys.path.insert(0, str(ROOT))
    from dashboard.server.auth import Authenticator

    auth = Authenticator(SECRET)
    measurements = []
    try:
        cases = [
            ("OTLP protobuf, 512 spans per request (the SDK's batch)", "/v1/traces", "application/x-protobuf", 512, total),
            ("OTLP JSON (hex ids), 512 spans per request", "/v1/traces", "application/json", 512, total),
            ("our JSON POST /api/traces, 512 traces per request", "/api/traces", "application/json", 512, total),
            ("OTLP protobuf, 1 span per request", "/v1/traces", "application/x-protobuf", 1, singles),
            ("our JSON POST /api/traces, 1 trace per request", "/api/traces", "application/json", 1, singles),
        ]
        for index, (label, path, content_type, batch, count) in enumerate(cases):
            spans = make_spans(count)
            bodies = []
            for start in range(0, count, batch):
                chunk = spans[start:start + batch]
                if path == "/v1/traces":
                    request = encode_spans(chunk)
                    bodies.append(request.SerializeToString() if content_type.endswith("protobuf") else otlp_json(request))
                else:
                    traces = [realistic_trace(s.name, s.attributes["gen_ai.request.model"], 500.0, {"i": n})
                              for n, s in enumerate(chunk)]
                    bodies.append(json.dumps({"traces": traces} if batch > 1 else traces[0]).encode())
            token = auth.issue_token(f"bench-{index}", 3600)  # a user per case: each stores into an empty account
            cpu_before = api.cpu_s()
            timing = await send_all(api.url + path, token, bodies, content_type)
            cpu = api.cpu_s() - cpu_before
            async with httpx.AsyncClient(timeout=30) as client:
                stored = 0
                cursor = None
                while True:
                    params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
                    page = (await client.get(api.url + "/api/analytics/traces", params=params,
                                             headers={"Authorization": f"Bearer {token}"})).json()
                    stored += len(page["traces"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
            measurements.append({
                "case": label, "items_count": count, "per_request_count": batch, "requests_count": len(bodies),
                "stored_count": stored, "body_kb_per_request": r(sum(map(len, bodies)) / len(bodies) / 1024),
                "items_per_s": r(count / timing["seconds"], 0),
                "request_p50_ms": r(pct(timing["latencies_ms"], 50)), "request_p95_ms": r(pct(timing["latencies_ms"], 95)),
                "server_cpu_s_per_1000_items": r(cpu / count * 1000, 2),
            })
            print(json.dumps(measurements[-1]), flush=True)
    finally:
        api.stop()
    return {"machine": machine_info(("fastapi", "uvicorn", "opentelemetry-proto", "protobuf", "opentelemetry-sdk")),
            "quick": quick, "measurements": measurements}


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = ["# Ingest: OTLP/HTTP beside our own JSON", "",
             f"`.venv/bin/python bench/ingest_bench.py{' --quick' if results['quick'] else ''}` on {machine['cores_count']} cores "
             f"({machine['cpu_model']}), Python {machine['python']}, commit {machine['git_commit']}; one API process, "
             "SQLite, one connection, one request at a time.", "",
             "| what was sent | items | stored | per request | body | items/s | request p50 / p95 | server CPU per 1,000 |",
             "|---|---|---|---|---|---|---|---|"]
    for m in results["measurements"]:
        lines.append(f"| {m['case']} | {fmt(m['items_count'])} | {fmt(m['stored_count'])} | {m['per_request_count']} | "
                     f"{fmt(m['body_kb_per_request'], 'KB')} | {fmt(m['items_per_s'])} | "
                     f"{fmt(m['request_p50_ms'])} / {fmt(m['request_p95_ms'], 'ms')} | {fmt(m['server_cpu_s_per_1000_items'], 's')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer spans: about 20 s")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args()
    return run_and_write(lambda workdir: run(workdir, args.quick), tmp_prefix="ingest-bench-", keep_tmp=args.keep_tmp,
                         json_name="ingest_results.json", markdown_name="INGEST.md", markdown=markdown)


if __name__ == "__main__":
    sys.exit(main())
