"""The client's one exception root, and the API's error answers turned into it."""

from __future__ import annotations

import httpx


class TraceStreamError(Exception):
    """The root of every error the client raises."""


class TraceApiError(TraceStreamError):
    """An error answer from the API (``{"error": {"code", "message"}}``) that retrying will not fix."""

    def __init__(self, status_code: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


class StreamAuthError(TraceApiError):
    """The credentials were refused (401) or expired mid-stream: a new token is needed, so no retry."""


def api_error(response: httpx.Response) -> TraceApiError:
    """The API's own reason for a non-2xx answer (the body must be read), as the right exception."""
    code, message = f"http_{response.status_code}", response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    elif response.text.strip():
        message = response.text.strip()[:200]
    kind = StreamAuthError if response.status_code == 401 else TraceApiError
    return kind(response.status_code, code, message)
