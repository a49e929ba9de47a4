"""Request body cap as plain ASGI (no BaseHTTPMiddleware, which would also wrap every open stream)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the request body is larger than the limit of {max_bytes} bytes")


class BodySizeLimit:
    """Answers 413 for a body larger than ``max_bytes``: at once by its Content-Length, else as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Raised inside the request, the error reaches the app's own handler and is answered as JSON.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send) -> None:
        error = too_large(self.max_bytes)
        body = json.dumps({"error": {"code": error.code, "message": error.message}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
