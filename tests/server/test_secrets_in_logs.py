"""The suite's promise at DEBUG: no token, ticket or service key in any log line, error body or metric label.

A deployment that turns logging up to DEBUG (the root logger and every library's) writes through the
handlers the API installs (``runner.logging_config``); the lines are captured there, from every thread, as
the deployment would write them. Every path that carries a credential is exercised: a Bearer header,
``?token=``, ``?ticket=``, a percent-encoded name, a bad, an expired and a JWKS-signed token, a reused
ticket, an OTLP export; and on Supabase, the Realtime connection that carries the service key in its URL.
"""

from __future__ import annotations

import io
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ..streams import STREAM
from ..supabase_standin import SupabaseStandIn, make_project, service_key
from ..support import ThreadedApi, free_port, poll_until
from ..support import test_settings as settings_in  # (a test_* name here would be collected as a test)

PRODUCT_HANDLERS = ("default", "access")  # the handlers runner.logging_config installs


class Sink(io.TextIOBase):
    """A stream the product's handlers write to, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.text = ""

    def write(self, text: str) -> int:
        with self._lock:
            self.text += text
        return len(text)

    def lines(self) -> list[str]:
        with self._lock:
            return self.text.splitlines()


@pytest.fixture
def debug_logs() -> Iterator:
    """Start an API, then turn every logger to DEBUG and capture what the product's handlers write."""
    saved: dict[logging.Logger, int] = {}
    streams: dict[logging.StreamHandler, object] = {}
    sink = Sink()

    def start(api: ThreadedApi) -> Sink:  # the API's construction installs its logging config
        loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
        for logger in loggers:
            saved[logger] = logger.level
            if logger is logging.getLogger() or logger.level != logging.NOTSET:
                logger.setLevel(logging.DEBUG)
            for handler in logger.handlers:
                if handler.name in PRODUCT_HANDLERS and isinstance(handler, logging.StreamHandler):
                    streams.setdefault(handler, handler.setStream(sink))
        assert {handler.name for handler in streams} == set(PRODUCT_HANDLERS)
        api.start()
        return sink

    yield start
    for handler, stream in streams.items():
        handler.setStream(stream)
    for logger, level in saved.items():
        logger.setLevel(level)


def raw_get(api: ThreadedApi, target: str) -> tuple[int, bytes]:
    """GET exactly this target (no client re-encodes it); the status and what came until the stream opened."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        received = b""
        while b"event: subscribed" not in received and not (b"\r\n\r\n" in received and b" 200 " not in received[:16]
                                                              and received.endswith(b"}")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return int(received.split(b" ", 2)[1]), received


def es256_token(kid: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode({"sub": "alice", "aud": "authenticated", "exp": 4_100_000_000}, key, algorithm="ES256",
                      headers={"kid": kid})


def assert_nowhere(hidden: dict[str, str], places: dict[str, str]) -> None:
    for where, text in places.items():
        for what, secret in hidden.items():
            assert secret not in text and secret not in unquote_plus(text), f"the {what} is in {where}: {text[:400]}"


def test_no_credential_reaches_a_log_line_an_error_body_or_a_metric_at_debug(tmp_path: Path, debug_logs):
    jwks_url = f"http://127.0.0.1:{free_port()}/auth/v1/.well-known/jwks.json"  # nobody listens: a failing fetch
    api = ThreadedApi(settings_in(tmp_path, jwks_url=jwks_url), access_log=True)
    sink = debug_logs(api)
    token, expired, foreign = api.token("alice"), api.token("alice", ttl=-60), es256_token("unknown-kid")
    forged = jwt.encode({"sub": "alice", "aud": "authenticated", "exp": 4_100_000_000}, "not-the-secret-" * 3)
    bodies: dict[str, str] = {}
    with httpx.Client(base_url=api.url, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/analytics/traces", headers=bearer).status_code == 200
        ticket = client.post(STREAM + "/ticket", headers=bearer).json()["ticket"]
        reused = client.post(STREAM + "/ticket", headers=bearer).json()["ticket"]
        otlp = {"resourceSpans": []}
        assert client.post("/v1/traces", json=otlp, headers=bearer).status_code < 300
        for name, headers, params in [
            ("forged bearer", {"Authorization": f"Bearer {forged}"}, None),
            ("expired bearer", {"Authorization": f"Bearer {expired}"}, None),
            ("jwks bearer", {"Authorization": f"Bearer {foreign}"}, None),
            ("forged ?token", {}, {"token": forged}),
            ("expired ?token", {}, {"token": expired}),
            ("forged ?ticket", {}, {"ticket": token}),
        ]:
            response = client.get(STREAM, headers=headers, params=params)
            assert response.status_code == 401, (name, response.text)
            bodies[name] = response.text
        for name, headers in [("otlp forged", {"Authorization": f"Bearer {forged}"}),
                              ("otlp expired", {"Authorization": f"Bearer {expired}"})]:
            response = client.post("/v1/traces", json=otlp, headers=headers)
            assert response.status_code == 401, (name, response.text)
            bodies[name] = response.text
        response = client.get("/api/analytics/traces", params={"token": token})  # ?token= only on the stream
        assert response.status_code == 401
        bodies["?token on the snapshot"] = response.text

    assert raw_get(api, f"{STREAM}?token={token}&model=x")[0] == 200
    assert raw_get(api, f"{STREAM}?%74oken={token}")[0] == 200
    assert raw_get(api, f"{STREAM}?ticket={reused}")[0] == 200
    status, answer = raw_get(api, f"{STREAM}?ti%63ket={reused}")  # spent: refused, and the body says why
    assert status == 401
    bodies["reused ticket"] = answer.decode()
    assert raw_get(api, f"{STREAM}?ticket={ticket}")[0] == 200

    metrics = httpx.get(api.url + "/metrics", headers={"Authorization": f"Bearer {api.token('ops')}"}, timeout=10)
    assert metrics.status_code == 200
    poll_until(lambda: sum(STREAM + "?" in line for line in sink.lines()) >= 4, 10, "the stream's access lines")
    api.stop()

    lines = sink.lines()
    assert any(line.startswith("DEBUG") for line in lines), "nothing was logged at DEBUG"
    assert any(f"{STREAM}?token=REDACTED&model=x" in line for line in lines)  # the lines are of use still
    hidden = {}
    for what, value in {"token": token, "expired token": expired, "forged token": forged, "ES256 token": foreign,
                        "ticket": ticket, "reused ticket": reused}.items():
        hidden[what] = value
        hidden[f"{what}'s signature"] = value.rsplit(".", 1)[1]
    assert_nowhere(hidden, {"a log line": "\n".join(lines), **{f"the 401 body for {k}": v for k, v in bodies.items()},
                             "/metrics": metrics.text})


@pytest.mark.parametrize("key_kind", ["legacy JWT", "sb_secret"])
def test_the_supabase_service_key_never_reaches_a_log_line_at_debug(tmp_path: Path, postgres_server, debug_logs,
                                                                     key_kind):
    """Realtime's client puts the key in its URL (``?apikey=``) and its join message (``access_token``), and
    websockets logs both at DEBUG; Supabase's keys are JWTs (legacy) or ``sb_secret_...`` (current)."""
    key = service_key() if key_kind == "legacy JWT" else f"sb_secret_{secrets.token_urlsafe(24)}"
    database = postgres_server.new_database()
    make_project(database)
    with SupabaseStandIn(database, key) as supabase:
        api = ThreadedApi(settings_in(tmp_path, db_url="supabase", supabase_url=supabase.url, supabase_key=key),
                          access_log=True)
        sink = debug_logs(api)
        headers = api.headers("alice")
        with httpx.Client(base_url=api.url, timeout=10) as client:
            assert client.post("/api/traces", json={"id": "t1", "status": "running"}, headers=headers).status_code == 201
            assert client.get("/api/analytics/traces/t1", headers=headers).status_code == 200
        # the channel joined: the library's DEBUG lines about it were written by now
        poll_until(lambda: any("phx_join" in line for line in sink.lines()), 15, "the Realtime join's lines")
        api.stop()
    lines = sink.lines()
    assert any("/realtime/v1/websocket?apikey=" in line for line in lines), "the Realtime URL was never logged"
    secret_part = key.rsplit(".", 1)[-1].removeprefix("sb_secret_")  # the signature, or the random part
    assert_nowhere({"service key": key, "service key's secret part": secret_part}, {"a log line": "\n".join(lines)})
