"""The Supabase stand-in for tests: PostgREST's and Realtime's stand-ins on one loopback base URL (the
``SUPABASE_URL``), as one Starlette app under uvicorn in a thread with its own event loop, backed by a
real PostgreSQL database (made a Supabase project by ``make_project``). Supabase's real servers cannot
run here; this serves only what the adapter sends (see ``postgrest.py`` and ``realtime.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import jwt
import uvicorn
from starlette.applications import Starlette

from .postgrest import PostgrestStandIn
from .realtime import RealtimeStandIn

STANDIN_JWT_SECRET = "supabase-standin-jwt-secret-for-tests-only-0123456789"


def service_key(secret: str = STANDIN_JWT_SECRET) -> str:
    """A service key shaped as Supabase's legacy ones: an HS256 JWT with role service_role.

    supabase 2.34 only requires a non-empty string (it does not decode the key); a JWT keeps the stand-in
    honest should anything read its claims.
    """
    return jwt.encode({"iss": "supabase-standin", "ref": "standin", "role": "service_role",
                       "iat": 1_700_000_000, "exp": 4_100_000_000}, secret, algorithm="HS256")


class SupabaseStandIn:
    """``SupabaseStandIn(db_url, key).start()``; ``.url`` is the SUPABASE_URL; ``.rest`` and ``.realtime``
    hold the counters and controls; ``stop()`` (or ``with``) ends the server and every task it ran."""

    def __init__(self, db_url: str, service_key: str, *, port: int = 0) -> None:
        self.db_url = db_url
        self.service_key = service_key
        self.rest = PostgrestStandIn(db_url, service_key)
        self.realtime = RealtimeStandIn(db_url, service_key)
        self.app = Starlette(routes=[*self.rest.routes(), *self.realtime.routes()], lifespan=self._lifespan)
        self._port = port
        self.server: uvicorn.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.leftover_tasks: list[str] = []  # tasks still running when the server had stopped (should be none)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            await self.realtime.open()  # direct connections first: an unreachable database fails at once
            await self.rest.open()
        except BaseException as error:
            self._error = error
            await self.realtime.close()
            await self.rest.close()
            raise
        try:
            yield
        finally:
            await self.realtime.close()
            await self.rest.close()

    def start(self) -> Self:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self._port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="supabase-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Supabase stand-in did not start: {self._error!r}") from self._error
            time.sleep(0.01)
        self._port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        assert self.server is not None
        try:
            await self.server.serve()
        finally:
            current = asyncio.current_task()
            self.leftover_tasks = [task.get_name() for task in asyncio.all_tasks() if task is not current]

    def stop(self) -> None:
        """Stop serving (websockets are closed, the LISTEN connection and pool too); raise if a task was left."""
        if self._thread is not None and self._thread.is_alive():
            assert self.server is not None
            self.server.should_exit = True
            self._thread.join(timeout=20)
            if self._thread.is_alive():
                raise RuntimeError("the Supabase stand-in did not stop")
        if self.leftover_tasks:
            raise AssertionError(f"the Supabase stand-in left tasks running: {self.leftover_tasks}")

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The SUPABASE_URL: PostgREST under /rest/v1, Realtime under /realtime/v1."""
        return f"http://127.0.0.1:{self._port}"

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the stand-in's own loop (to look at its state without racing it)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
