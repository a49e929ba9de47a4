from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .support import ApiProcess, InProcessApi, ThreadedApi, test_settings


@pytest.fixture
async def make_app_api(tmp_path: Path) -> AsyncIterator:
    """The app in-process (ASGITransport), with particular settings: ``await make_app_api(max_body_bytes=2048)``."""
    started: list[InProcessApi] = []

    async def make(**overrides) -> InProcessApi:
        api = await InProcessApi(test_settings(tmp_path, **overrides)).start()
        started.append(api)
        return api

    yield make
    for api in started:
        await api.stop()


@pytest.fixture
async def app_api(make_app_api) -> InProcessApi:
    """The app in-process on a fresh SQLite file, for request/response tests."""
    return await make_app_api()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ThreadedApi]:
    """A real API on loopback with a short ping interval, on a fresh SQLite file."""
    server = ThreadedApi(test_settings(tmp_path, ping_interval=0.5)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator:
    """Build an API with particular settings: ``make_api(max_streams_per_user=2)``."""
    started: list[ThreadedApi] = []

    def make(**overrides) -> ThreadedApi:
        server = ThreadedApi(test_settings(tmp_path, **overrides)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator:
    """Start ``python -m dashboard api`` subprocesses on the same file; all are killed afterwards."""
    started: list[ApiProcess] = []

    def start(**kwargs) -> ApiProcess:
        process = ApiProcess(tmp_path, **kwargs).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
