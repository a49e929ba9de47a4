"""Receiving a request's headers is bounded, on real uvicorn over raw sockets: in size (431) and in time (408).

Neither bound touches what comes after the headers: a normal request, keep-alive reuse and a long SSE
response work as before. No credential is sent: the bounds hold before any auth.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.server.http_limits import MAX_HEADER_BYTES, bounded_headers

from ..streams import open_stream
from ..support import ThreadedApi
from ..support import test_settings as settings_in  # (a test_* name here would be collected as a test)

HEADER_TIMEOUT = 1.0  # seconds, short for the tests; the server's default is longer
PARTIAL_REQUEST = b"GET /api/analytics/traces HTTP/1.1\r\nHost: api.test\r\n"


@pytest.fixture
def bounded_api(tmp_path: Path) -> Iterator[ThreadedApi]:
    """A real API on SQLite (the transport is the same on every store) with a header timeout short enough
    to wait for, and pings every 0.5 s."""
    server = ThreadedApi(settings_in(tmp_path, ping_interval=0.5))
    server.server.config.http = bounded_headers(header_timeout=HEADER_TIMEOUT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(api: ThreadedApi) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response off the socket: its status, its headers (names lower-cased) and its body."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before a whole response; got {received[:200]!r}")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the connection closed in the middle of a response body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server ends the connection (end of file or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def assert_refused(response: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got_status, headers, body = response
    assert got_status == status, body[:300]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]


def resident_bytes() -> int:
    """This process's resident memory (the server under test runs in it, in a thread)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_headers_within_the_bound_work_and_the_connection_is_reused(bounded_api):
    start = b"GET /healthz HTTP/1.1\r\nHost: api.test\r\nCookie: "
    request = start + b"c" * (MAX_HEADER_BYTES - len(start) - 4) + b"\r\n\r\n"  # exactly the bound
    with connect(bounded_api) as sock:
        for _ in range(2):
            sock.sendall(request)
            status, headers, body = read_response(sock)
            assert (status, json.loads(body)["status"]) == (200, "ok")
            assert headers.get("connection") != "close"
        # idle between requests for longer than the header timeout: the clock starts with the next request
        assert not select.select([sock], [], [], HEADER_TIMEOUT * 2)[0], "the server closed an idle keep-alive connection"
        sock.sendall(request)
        assert read_response(sock)[0] == 200


def test_a_complete_header_over_the_bound_is_431_and_the_connection_closes(bounded_api):
    request = PARTIAL_REQUEST + b"X-Padding: " + b"p" * (16 * MAX_HEADER_BYTES) + b"\r\n\r\n"
    with connect(bounded_api) as sock:
        sock.sendall(request)
        assert_refused(read_response(sock), 431, "headers_too_large")
        assert closed_by_server(sock, within=10)


def test_an_unterminated_header_is_cut_off_not_buffered(bounded_api):
    limit = 50 * 1024 * 1024
    chunk = b"p" * 65536
    before = resident_bytes()
    sent = 0
    with connect(bounded_api) as sock:
        sock.sendall(PARTIAL_REQUEST + b"X-Padding: ")
        while sent < limit and not select.select([sock], [], [], 0)[0]:
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        grown = resident_bytes() - before
        assert grown < 16 * 1024 * 1024, f"the server's memory grew by {grown / 2**20:.0f} MiB"
        assert sent < limit, "the server kept reading an endless header"
        assert_refused(read_response(sock), 431, "headers_too_large")
        assert closed_by_server(sock, within=10)


@pytest.mark.parametrize("earlier_requests", [0, 1], ids=["first-request", "keep-alive-request"])
def test_headers_sent_slowly_are_408_after_the_timeout(bounded_api, earlier_requests):
    with connect(bounded_api) as sock:
        for _ in range(earlier_requests):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api.test\r\n\r\n")
            assert read_response(sock)[0] == 200
        began = time.monotonic()
        sock.sendall(PARTIAL_REQUEST)
        # slowloris: a header byte whenever the server has said nothing for a tenth of the timeout
        while not select.select([sock], [], [], HEADER_TIMEOUT / 10)[0]:
            assert time.monotonic() - began < HEADER_TIMEOUT * 5, "a trickling client kept its connection open"
            sock.sendall(b"X")
        answered_after = time.monotonic() - began
        assert_refused(read_response(sock), 408, "request_timeout")
        assert closed_by_server(sock, within=10)
    assert answered_after >= HEADER_TIMEOUT * 0.9


def test_many_idle_and_half_sent_connections_are_all_closed(bounded_api):
    idle = [connect(bounded_api) for _ in range(50)]
    half_sent = [connect(bounded_api) for _ in range(50)]
    try:
        for sock in half_sent:
            sock.sendall(PARTIAL_REQUEST)
        for sock in half_sent:
            assert_refused(read_response(sock), 408, "request_timeout")
        assert all(closed_by_server(sock, within=HEADER_TIMEOUT * 5) for sock in idle + half_sent)
    finally:
        for sock in idle + half_sent:
            sock.close()


async def test_a_stream_outlives_the_header_timeout(bounded_api):
    async with httpx.AsyncClient(base_url=bounded_api.url, timeout=httpx.Timeout(10, read=10)) as client:
        async with open_stream(client, headers=bounded_api.headers("alice")) as stream:
            began = time.monotonic()
            pings = 0
            while time.monotonic() - began < HEADER_TIMEOUT * 3:
                await stream.next("ping", timeout=5)
                pings += 1
    assert pings >= 4
