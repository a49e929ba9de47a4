"""Running the API under uvicorn: redacted logs, proxy headers, bounded request headers, and a shutdown
that ends streams at once.

uvicorn waits for open responses before it exits, and an SSE response never finishes by itself, so
Ctrl-C would hang until the next ping or the graceful timeout. On the first signal we tell the hub
to end every stream (each says why with an ``error`` event), then let uvicorn finish as usual.
"""

from __future__ import annotations

import asyncio
import copy
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from .auth import RedactingFilter
from .http_limits import HEADER_TIMEOUT_SECONDS, MAX_HEADER_BYTES, bounded_headers

GRACEFUL_SHUTDOWN_SECONDS = 5


def logging_config() -> dict:
    """uvicorn's logging, with credentials taken out of every line (access lines carry query strings); on
    the loggers as well as the handlers, so a handler added to them later (an error reporter's) sees no secret."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactingFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["dashboard"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    for logger in config["loggers"].values():
        logger["filters"] = ["redact"]
    # every other library (websockets, realtime, httpx) propagates to the root: write its lines through the
    # redacting handler too, never through logging's unfiltered last resort (Realtime's URL carries the key)
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


class ApiServer(uvicorn.Server):
    """uvicorn.Server that closes the app's streams as soon as it is asked to stop."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.fastapi_app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.fastapi_app.state, "services", None)
        if services is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(services.hub.begin_shutdown)
        super().handle_exit(sig, frame)


def build_server(app: FastAPI, host: str, port: int, *, forwarded_allow_ips: str = "127.0.0.1",
                 log_level: str = "info", access_log: bool = True, max_header_bytes: int = MAX_HEADER_BYTES,
                 header_timeout: float = HEADER_TIMEOUT_SECONDS) -> ApiServer:
    config = uvicorn.Config(
        app,
        http=bounded_headers(max_header_bytes, header_timeout),
        host=host,
        port=port,
        log_config=logging_config(),
        log_level=log_level,
        access_log=access_log,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return ApiServer(config, app)
