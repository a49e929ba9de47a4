"""Error tracking: the API as its own process (Sentry is set up once per process), reporting to a local
stand-in for Sentry's ingest; and ``scrub`` on a crafted event.

The store fails for real: the API's PostgreSQL database has a 1 s statement timeout and the test holds an
exclusive lock on its tables, so every read the API makes times out, as on a wedged database.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from dashboard.server.auth import Authenticator
from dashboard.server.error_tracking import scrub

from ..streams import open_stream
from ..support import TEST_SECRET, poll_until

TICKET = "/api/analytics/traces/stream/ticket"
HUB_FAILED = "the store failed; closing open streams"
REQUEST_FAILED = "store failure"
STREAM_FAILED = "a stream ended: the trace store is unavailable"


class SentryEndpoint:
    """Sentry's ingest, as far as the SDK sees it: records every envelope POSTed to ``/api/<project>/envelope/``
    on 127.0.0.1, as sent (``bodies()`` decompresses them)."""

    def __init__(self) -> None:
        self._received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = re.fullmatch(r"/api/\d+/envelope/", self.path.partition("?")[0]) is not None
                if found:
                    with endpoint._lock:
                        endpoint._received.append((self.headers.get("Content-Encoding") or "", body))
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="sentry-endpoint", daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def start(self) -> SentryEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def bodies(self) -> list[bytes]:
        with self._lock:
            received = list(self._received)
        decoders = {"": lambda body: body, "identity": lambda body: body, "gzip": gzip.decompress}
        for encoding, _ in received:
            assert encoding in decoders, f"the SDK sent {encoding!r}, which this stand-in cannot read"
        return [decoders[encoding](body) for encoding, body in received]

    def messages(self) -> list[str]:
        """What each reported event says: its log message, else its exception."""
        said = []
        for event in (event for body in self.bodies() for event in envelope_events(body)):
            entry = event.get("logentry") or {}
            exceptions = (event.get("exception") or {}).get("values") or [{}]
            said.append(entry.get("formatted") or entry.get("message") or event.get("message")
                        or f"{exceptions[-1].get('type')}: {exceptions[-1].get('value')}")
        return said


def envelope_events(body: bytes) -> list[dict[str, Any]]:
    """The ``event`` items of one envelope: a header line, then items of a header line and a payload."""
    events = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[:header["length"]], rest[header["length"]:].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        if header.get("type") == "event":
            events.append(json.loads(payload))
    return events


@pytest.fixture
def sentry() -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint().start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def slow_database(postgres_server) -> str:
    """A fresh database whose statements give up after 1 s, so a locked table fails the API's reads."""
    url = postgres_server.new_database()
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET statement_timeout = 1000')
    return url


@contextmanager
def tables_locked(db_url: str) -> Iterator[None]:
    """The API's event log and traces under an exclusive lock until the block ends: its reads time out."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute("LOCK TABLE traces_outbox, llm_traces IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def ended_unavailable(rest: list) -> bool:
    return bool(rest) and rest[-1].event == "error" and json.loads(rest[-1].data)["code"] == "backend_unavailable"


async def test_store_failures_are_reported_with_no_token_or_ticket_in_them(sentry, slow_database, api_process):
    server = api_process(db_url=slow_database, env={"SENTRY_DSN": sentry.dsn})
    token = server.token("alice")
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as client:
        refused = await client.get("/api/analytics/traces", headers={"Authorization": "Bearer not-a-jwt"})
        assert refused.status_code == 401  # a client's mistake: not reported
        ticket = (await client.post(TICKET, headers=bearer)).json()["ticket"]
        async with open_stream(client, params={"token": token}) as stream:
            await stream.next("subscribed")
            with tables_locked(slow_database):
                assert ended_unavailable(await stream.until_closed(timeout=30))
                assert (await client.get("/api/analytics/traces", headers=bearer)).status_code == 503
                for credential in ({"token": token}, {"ticket": ticket}):
                    async with open_stream(client, params=credential) as late:
                        assert ended_unavailable(await late.until_closed(timeout=30))
                poll_until(lambda: sum(STREAM_FAILED in said for said in sentry.messages()) >= 2
                           and any(HUB_FAILED in said for said in sentry.messages())
                           and any(said.startswith(REQUEST_FAILED) for said in sentry.messages()),
                           30, f"the failures to be reported (got {sentry.messages()})")

    reported = sentry.messages()
    assert all(said.startswith((HUB_FAILED, REQUEST_FAILED, STREAM_FAILED)) for said in reported), reported
    sent = b"\n".join(sentry.bodies())
    for credential in (token, ticket):
        signature = credential.rsplit(".", 1)[1]
        assert credential.encode() not in sent and signature.encode() not in sent
    assert b"token=REDACTED" in sent and b"ticket=REDACTED" in sent  # the failed requests are named, scrubbed


async def test_without_a_dsn_nothing_is_sent(sentry, slow_database, api_process):
    server = api_process(db_url=slow_database, env={"SENTRY_DSN": ""})
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as client:
        async with open_stream(client, params={"token": server.token("alice")}) as stream:
            await stream.next("subscribed")
            with tables_locked(slow_database):
                assert ended_unavailable(await stream.until_closed(timeout=30))
                poll_until(lambda: HUB_FAILED in server.log(), 30, "the API to log the store failure")
    server.terminate()  # an SDK sends what it holds before its process exits: after this, nothing more can come
    assert sentry.bodies() == []


def test_scrub_takes_every_credential_out_of_an_event():
    token = Authenticator(TEST_SECRET).issue_token("alice")
    signature = token.rsplit(".", 1)[1]
    event = {
        "request": {
            "url": f"http://api.test/api/analytics/traces/stream?token={token}",
            "query_string": f"token={token}&model=gpt-4o&ticket=opaque-ticket-value",
            "headers": {"authorization": f"Bearer {token}", "Cookie": "session=cookie-value", "user-agent": "httpx"},
            "cookies": {"session": "cookie-value"},
        },
        "logentry": {"message": "GET %s", "params": ("/stream?access_token=opaque-access-value",),
                     "formatted": "GET /stream?access_token=opaque-access-value"},
        "exception": {"values": [{"type": "StoreError",
                                  "value": f"postgresql://traces:db-password@db/traces refused {token}"}]},
        "breadcrumbs": {"values": [{"message": "GET /api/analytics/traces/stream?%74oken=opaque-token-value",
                                    "data": {"nested": [token, {"deeper": f"Bearer {token}"}]}}]},
        "extra": {"sys.argv": ["python", "-m", "dashboard", "api", "--db", "postgresql://traces:db-password@db/t"],
                  "said": "the secret is jwt-secret-value"},
    }
    sent = json.dumps(scrub(event, None, secrets=("jwt-secret-value",)))
    for secret in (signature, "opaque-ticket-value", "cookie-value", "opaque-access-value", "db-password",
                   "opaque-token-value", "jwt-secret-value"):
        assert secret not in sent
    scrubbed = json.loads(sent)
    assert scrubbed["request"]["query_string"] == "token=REDACTED&model=gpt-4o&ticket=REDACTED"
    assert scrubbed["request"]["headers"] == {"user-agent": "httpx"}  # what is no credential stays, to debug with
    assert scrubbed["exception"]["values"][0]["type"] == "StoreError"
