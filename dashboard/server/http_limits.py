"""Bounds on receiving a request's headers: their size and the time they take to arrive.

httptools keeps a request's line and headers in memory for as long as they keep coming, so one
connection could hold any amount of memory, and a client trickling a byte every few seconds could hold
a connection for ever (slowloris). This protocol counts bytes and time until the headers are complete;
past either bound it answers 431 or 408 (JSON, like every API error) and closes the connection, before
any auth. What follows the headers is not limited here: an SSE stream is a long response, and a body
has its own limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024  # the request line and every header, as sent
HEADER_TIMEOUT_SECONDS = 10.0  # from a request's first byte (a connection's opening) to its last header
LINGER_SECONDS = 2.0  # after a refusal, how long to read and drop what the client still sends


def refusal(status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole response in the API's error shape, saying the connection closes after it."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
    return b"".join(head) + body


class BoundedHeadersProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing headers over ``max_header_bytes`` or ``header_timeout``.

    Bytes are fed to the parser no further than the size bound while headers are awaited, so the
    parser never holds more. (A request that starts in the same read as the previous request's body
    is counted from the next read: the bound is then off by at most one read.)
    """

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_body = False  # between a request's headers and its end; otherwise bytes are header bytes
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None  # the headers' deadline, or the end of lingering
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._set_deadline(self.header_timeout, self._headers_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop, so the refusal is not lost to a reset
        while data and not self.transport.is_closing():
            if self._in_body:
                super().data_received(data)
                return
            room = self.max_header_bytes - self._header_bytes
            if room <= 0:
                self._refuse(431, "headers_too_large",
                             f"the request line and headers exceed {self.max_header_bytes} bytes")
                return
            piece, data = data[:room], data[room:]
            self._header_bytes += len(piece)
            super().data_received(piece)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the first request's clock started with the connection
            self._set_deadline(self.header_timeout, self._headers_overdue)

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._clear_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._header_bytes = 0
        super().on_message_complete()

    def _headers_overdue(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._header_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._refuse(408, "request_timeout", f"the request's headers took longer than {self.header_timeout:g} s to arrive")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` and close; mid-response there is no room for an answer, so only close."""
        self._refused = True
        self._clear_deadline()
        self.logger.warning("%s:%s - %s; closing the connection", *(self.client or ("?", "?")), message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(refusal(status, code, message, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._set_deadline(LINGER_SECONDS, self.transport.close)

    def _set_deadline(self, seconds: float, then: Callable[[], object]) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(seconds, then)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def bounded_headers(max_header_bytes: int = MAX_HEADER_BYTES,
                    header_timeout: float = HEADER_TIMEOUT_SECONDS) -> type[BoundedHeadersProtocol]:
    """The protocol class with these bounds, for ``uvicorn.Config(http=...)`` (which takes a class)."""
    return type("BoundedHeadersProtocol", (BoundedHeadersProtocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout})
