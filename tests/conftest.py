from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dashboard.server.stores import StoreOptions

from .postgres import PostgresServer, postgres_bin
from .supabase_standin import SupabaseStandIn, make_project, service_key
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
def supabase(postgres_server: PostgresServer) -> Iterator[SupabaseStandIn]:
    """A stand-in for a Supabase project's PostgREST and Realtime (they cannot run here), over a new database
    of the test PostgreSQL with Supabase's roles and the pasted ``supabase-sql``."""
    database = postgres_server.new_database()
    make_project(database)
    with SupabaseStandIn(database, service_key()) as standin:
        yield standin


@pytest.fixture
def store_settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings naming a fresh, empty store of the kind under test: a SQLite file, a new database on
    the test PostgreSQL, or a Supabase project (the stand-in) over one."""
    if store == "sqlite":
        return {"db_url": f"sqlite:///{tmp_path / 'traces.db'}"}
    if store == "postgres":
        return {"db_url": request.getfixturevalue("postgres_server").new_database()}
    standin: SupabaseStandIn = request.getfixturevalue("supabase")
    return {"db_url": "supabase", "supabase_url": standin.url, "supabase_key": standin.service_key}


@pytest.fixture
def db_url(store_settings: dict[str, str]) -> str:
    return store_settings["db_url"]


@pytest.fixture
def database_url(store: str, store_settings: dict[str, str], request: pytest.FixtureRequest) -> str:
    """The PostgreSQL database behind a ``postgres`` or ``supabase`` store, for writers that bypass the API."""
    if store == "supabase":
        return request.getfixturevalue("supabase").db_url
    return store_settings["db_url"]


@pytest.fixture
def store_options(store_settings: dict[str, str]) -> StoreOptions:
    """What a backend is opened with besides its URL (the Supabase project, for ``supabase``)."""
    return StoreOptions(supabase_url=store_settings.get("supabase_url"), supabase_key=store_settings.get("supabase_key"))


@pytest.fixture
def store_env(store_settings: dict[str, str]) -> dict[str, str]:
    """The same, as the environment of ``python -m dashboard api``."""
    names = {"db_url": "TRACES_DB_URL", "supabase_url": "SUPABASE_URL", "supabase_key": "SUPABASE_KEY"}
    return {names[key]: value for key, value in store_settings.items()}


@pytest.fixture
async def make_app_api(tmp_path: Path, store_settings: dict[str, str]) -> AsyncIterator:
    """The app in-process (ASGITransport), with particular settings: ``await make_app_api(max_body_bytes=2048)``."""
    started: list[InProcessApi] = []

    async def make(**overrides) -> InProcessApi:
        api = await InProcessApi(test_settings(tmp_path, **{**store_settings, **overrides})).start()
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
def api(tmp_path: Path, store_settings: dict[str, str]) -> Iterator[ThreadedApi]:
    """A real API on loopback with a short ping interval, on a fresh store."""
    server = ThreadedApi(test_settings(tmp_path, **store_settings, ping_interval=0.5)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_api(tmp_path: Path, store_settings: dict[str, str]) -> Iterator:
    """Build an API with particular settings: ``make_api(max_streams_per_user=2)``; all on one store."""
    started: list[ThreadedApi] = []

    def make(**overrides) -> ThreadedApi:
        server = ThreadedApi(test_settings(tmp_path, **{**store_settings, **overrides})).start()
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
