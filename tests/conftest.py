from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .postgres import PostgresServer, postgres_bin
from .support import ApiProcess, InProcessApi, ThreadedApi, test_settings

STORES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The server's tests (the store suite, the API, the stream) run on every store; the rest on SQLite."""
    chosen = any("store" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize"))
    if "store" in metafunc.fixturenames and not chosen:  # a test may name its stores itself
        every = "server" in Path(str(metafunc.definition.path)).relative_to(Path(__file__).parent).parts[:1]
        metafunc.parametrize("store", STORES if every else STORES[:1], scope="function")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run (Debian's, started in a temporary folder); a database per test."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (./serve.sh test installs Debian's postgresql as root)")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def db_url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store of the kind under test: a SQLite file, or a new database on the test PostgreSQL."""
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'traces.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
async def make_app_api(tmp_path: Path, db_url: str) -> AsyncIterator:
    """The app in-process (ASGITransport), with particular settings: ``await make_app_api(max_body_bytes=2048)``."""
    started: list[InProcessApi] = []

    async def make(**overrides) -> InProcessApi:
        api = await InProcessApi(test_settings(tmp_path, db_url=db_url, **overrides)).start()
        started.append(api)
        return api

    yield make
    for api in started:
        await api.stop()


@pytest.fixture
async def app_api(make_app_api) -> InProcessApi:
    """The app in-process on a fresh store, for request/response tests."""
    return await make_app_api()


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[ThreadedApi]:
    """A real API on loopback with a short ping interval, on a fresh store."""
    server = ThreadedApi(test_settings(tmp_path, db_url=db_url, ping_interval=0.5)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_api(tmp_path: Path, db_url: str) -> Iterator:
    """Build an API with particular settings: ``make_api(max_streams_per_user=2)``; all on one store."""
    started: list[ThreadedApi] = []

    def make(**overrides) -> ThreadedApi:
        server = ThreadedApi(test_settings(tmp_path, **{"db_url": db_url, **overrides})).start()
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
