"""The README's quick start, run as written: the real ``openai`` SDK with each real instrumentation,
calling the stub model server, exporting over OTLP/HTTP to the real API; the calls arrive as traces."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from ..support import ROOT

EXAMPLE = ROOT / "examples" / "openai_live.py"


def run_example(api, which: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACES_", "OTEL_"))}
    env |= {"TRACES_API_URL": api.url, "TRACES_TOKEN": api.token("alice")}
    done = subprocess.run([sys.executable, str(EXAMPLE), which], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "err-429 failed as planned" in done.stdout
    traces = httpx.get(api.url + "/api/analytics/traces", headers=api.headers("alice")).json()["traces"]
    return sorted(traces, key=lambda t: t["started_at"])


@pytest.mark.parametrize("which", ["official", "openinference"])
def test_an_instrumented_openai_app_shows_its_calls_with_no_code_of_ours(api, which):
    first, second, failed = run_example(api, which)
    assert [t["model"] for t in (first, second)] == ["gpt-4o-mini", "gpt-4o"]
    assert [t["status"] for t in (first, second, failed)] == ["success", "success", "error"]
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (11, 7, 18)
    assert first["provider"] == "openai" and first["latency_ms"] > 0
    assert "What is our refund policy?" in str(first["input"]) and "echo: What is our refund policy?" in str(first["output"])
    assert "429" in failed["error"] and "Rate limit" in failed["error"]
    assert failed["model"] == "err-429"
    runs = {t["metadata"]["otel"]["trace_id"] for t in (first, second, failed)}
    assert len(runs) == 1  # one run: the three calls share their OTel trace, under the same parent
    assert {t["metadata"]["otel"].get("parent_name") for t in (first, second, failed)} == {"answer-question"}
