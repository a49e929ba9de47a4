"""No credential reaches a log line, however its query parameter is spelled, on real uvicorn with access logs on.

Each spelling below is one the server really accepts (the stream opens), so each is a credential that
must not be written down; the path stays in the log, so the line is still of use.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import pytest

from ..support import ThreadedApi
from ..support import test_settings as settings_in  # (a test_* name here would be collected as a test)

STREAM = "/api/analytics/traces/stream"
LOGGERS = ("uvicorn.access", "uvicorn.error", "dashboard")


def percent_encoded(text: str) -> str:
    """Every character as %XX: what a client may send and the server decodes back."""
    return "".join(f"%{ord(char):02X}" for char in text)


class Lines(logging.Handler):
    """Every log line, formatted, as a handler the user adds would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged_api(tmp_path: Path) -> Iterator[tuple[ThreadedApi, Lines]]:
    """A real API on SQLite with its access log on, and the lines its loggers write."""
    api = ThreadedApi(settings_in(tmp_path), access_log=True)
    lines = Lines()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).addHandler(lines)
        logging.getLogger(name).setLevel(logging.INFO)
    api.start()
    try:
        yield api, lines
    finally:
        api.stop()
        for name, level in levels.items():
            logging.getLogger(name).removeHandler(lines)
            logging.getLogger(name).setLevel(level)


def open_stream(api: ThreadedApi, query: str) -> int:
    """GET the stream with exactly this query string (no client re-encodes it); its status once it answers."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(f"GET {STREAM}?{query} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        received = b""
        while b"event: connected" not in received and not (b"\r\n\r\n" in received and b" 200 " not in received[:16]):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection; got {received[:300]!r}"
            received += chunk
        return int(received.split(b" ", 2)[1])


def ticket_for(api: ThreadedApi, user: str) -> str:
    response = httpx.post(api.url + STREAM + "/ticket", headers=api.headers(user), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["ticket"]


@pytest.mark.parametrize("spelling", [
    "%74oken={}", "t%6Fken={}", "%74oken={encoded}", "token={dots_encoded}", "%74oken={dots_encoded}",
    "token=junk&token={}", "model=x&%74oken={}",
    "%74icket={ticket}", "%74icket={ticket_encoded}", "ti%63ket={ticket}&model=x",
])
def test_no_spelling_of_a_credential_reaches_the_log(logged_api, spelling):
    api, lines = logged_api
    token = api.token("alice")
    ticket = ticket_for(api, "alice")
    query = spelling.format(token, encoded=percent_encoded(token), dots_encoded=token.replace(".", "%2E"),
                            ticket=ticket, ticket_encoded=percent_encoded(ticket))
    assert open_stream(api, query) == 200  # the server took it as a credential
    stream_lines = [line for line in lines.lines if STREAM + "?" in line]
    assert stream_lines, f"no access line for the stream in {lines.lines}"
    secrets = {token.rsplit(".", 1)[1], ticket.rsplit(".", 1)[1]}  # the signatures: what makes each usable
    for line in lines.lines:
        for secret in secrets:
            assert secret not in line and secret not in unquote_plus(line), line
