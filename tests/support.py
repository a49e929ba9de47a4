"""Real servers for tests: uvicorn on loopback in a thread (inspectable) or in a subprocess (killable)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from dashboard.config import Settings
from dashboard.server import create_app
from dashboard.server.auth import Authenticator
from dashboard.server.runner import build_server
from dashboard.server.services import Services

T = TypeVar("T")
TEST_SECRET = "test-secret-for-the-suite-only-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def test_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(db_url=f"sqlite:///{tmp_path / 'traces.db'}", jwt_secret=TEST_SECRET)
    return replace(base, **overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for server state that has no event of its own (a count after a disconnect), polling briefly."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def poll_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for another process's state (a port answering, a count), which has no event to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def answers(process: subprocess.Popen, url: str, name: str, log: Callable[[], str],
            headers: dict[str, str] | None = None) -> bool:
    """For ``poll_until``: whether a child process answers ``url`` with 200 yet; RuntimeError with the end of
    its log if it has exited instead."""
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited:\n{log()[-3000:]}")
    try:
        return httpx.get(url, headers=headers, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class Tokens:
    """Tokens to call an API under test with, signed with its secret."""

    auth: Authenticator

    def token(self, user: str, ttl: int = 3600) -> str:
        return self.auth.issue_token(user, ttl)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}


class AppUnderTest(Tokens):
    """What a test asks of a running app, wherever it runs: its parts, and tokens to call it with."""

    app: Any

    @property
    def services(self) -> Services:
        return self.app.state.services


class InProcessApi(AppUnderTest):
    """The real app called in-process through httpx's ASGITransport: for plain request/response tests,
    where a socket is not the point. Its lifespan (store, hub) runs between ``start()`` and ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.auth = Authenticator(settings.resolved_jwt_secret())
        self._lifespan: Any = None

    async def start(self) -> InProcessApi:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        return self

    async def stop(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.__aexit__(None, None, None)
            self._lifespan = None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api.test", timeout=10)


class ThreadedApi(AppUnderTest):
    """The real app under real uvicorn on 127.0.0.1, in a thread with its own event loop.

    Tests talk to it over HTTP like any client, and may look inside (open streams, tasks) with ``call``.
    """

    def __init__(self, settings: Settings, *, access_log: bool = False) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server = build_server(self.app, "127.0.0.1", 0, access_log=access_log, log_level="warning")
        self.auth = Authenticator(settings.resolved_jwt_secret())
        self._thread = threading.Thread(target=self.server.run, name="test-api", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> ThreadedApi:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test API did not start")
            time.sleep(0.01)
        self.loop = self.server._loop
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.handle_exit(signal.SIGINT, None)
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "the test API did not stop"

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the server's own loop (to read its state without racing it)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def metric(self, name: str) -> float:
        """A metric's current value, as /metrics would report it."""
        return self.services.metrics.registry.get_sample_value(name) or 0.0

    def server_tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())
        return self.call(count())


class ApiProcess(Tokens):
    """``python -m dashboard api`` as a child process: for SIGKILL, SIGTERM and restarts on the same file."""

    def __init__(self, tmp_path: Path, *, port: int | None = None, env: dict[str, str] | None = None,
                 db_url: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.port = port or free_port()
        self.db_url = db_url or f"sqlite:///{tmp_path / 'traces.db'}"
        self.env = {**os.environ, "TRACES_JWT_SECRET": TEST_SECRET, "TRACES_DB_URL": self.db_url, **(env or {})}
        self.log_path = tmp_path / f"api-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.auth = Authenticator(TEST_SECRET)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiProcess:
        return self.launch().wait_ready()

    def launch(self) -> ApiProcess:
        """Start the process without waiting for it: something else can start meanwhile."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dashboard", "api", "--port", str(self.port)],
            cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self) -> ApiProcess:
        assert self.process is not None, "launch() first"
        process = self.process
        poll_until(lambda: answers(process, self.url + "/healthz", "the API", self.log), 20, "the API to answer /healthz")
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> float:
        """SIGTERM, and how long the process took to exit."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()
