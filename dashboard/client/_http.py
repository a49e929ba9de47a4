"""The HTTP clients the stream, snapshot and history readers make when they are not given one."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process, as httpx would build it: loading the certificates took about 30 ms,
    and every stream (each reconnect and change of filter) built its own, even for plain http."""
    return httpx.create_ssl_context()


def new_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, verify=_tls())
