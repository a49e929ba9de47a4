"""Settings from the environment: defaults, parsing, refusals that name the variable, and the JWT secret."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dashboard.config import DEFAULT_DB_URL, MIB, ConfigError, Settings


def sqlite_settings(directory: Path, **fields) -> Settings:
    return Settings(db_url=f"sqlite:///{directory / 'traces.db'}", **fields)


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any TRACES_* setting, plus ``extra``."""
    return {**{key: value for key, value in os.environ.items() if not key.startswith("TRACES_")}, **extra}


# Parsing.

def test_an_empty_environment_gives_the_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.db_url, settings.jwt_secret, settings.token) == (DEFAULT_DB_URL, None, None)
    assert (settings.ping_interval, settings.max_streams_per_user, settings.replay_events) == (30.0, 10, 10_000)
    assert (settings.max_body_bytes, settings.dashboard_rows, settings.health_warn_seconds) == (8 * MIB, 5000, 60.0)
    assert settings.api_url == "http://127.0.0.1:8000"
    assert settings.cors_origins == ("http://127.0.0.1:5006", "http://localhost:5006")


NUMBERS = [  # variable, field, a good value, what it becomes
    ("TRACES_PING_INTERVAL", "ping_interval", "0.5", 0.5),
    ("TRACES_MAX_STREAMS_PER_USER", "max_streams_per_user", "3", 3),
    ("TRACES_REPLAY_EVENTS", "replay_events", "500", 500),
    ("TRACES_MAX_BODY_BYTES", "max_body_bytes", "1024", 1024),
    ("TRACES_DASHBOARD_ROWS", "dashboard_rows", "10", 10),
    ("TRACES_HEALTH_WARN_SECONDS", "health_warn_seconds", "2.5", 2.5),
    ("TRACES_WRITE_RATE", "write_rate", "250", 250.0),
    ("TRACES_WRITE_RATE", "write_rate", "0", 0.0),  # no limit
]


@pytest.mark.parametrize(("name", "field", "text", "value"), NUMBERS, ids=[row[0] for row in NUMBERS])
def test_each_number_is_parsed_and_a_blank_one_means_the_default(name, field, text, value):
    assert getattr(Settings.from_env({name: text}), field) == value
    assert getattr(Settings.from_env({name: "  "}), field) == getattr(Settings(), field)


BAD_NUMBERS = [  # variable, a bad value, what the message says
    ("TRACES_PING_INTERVAL", "soon", "must be a number, got 'soon'"),
    ("TRACES_PING_INTERVAL", "0.01", "must be at least 0.05"),
    ("TRACES_MAX_STREAMS_PER_USER", "ten", "must be an integer, got 'ten'"),
    ("TRACES_MAX_STREAMS_PER_USER", "0", "must be at least 1"),
    ("TRACES_REPLAY_EVENTS", "2.5", "must be an integer, got '2.5'"),
    ("TRACES_REPLAY_EVENTS", "0", "must be at least 1"),
    ("TRACES_MAX_BODY_BYTES", "8MB", "must be an integer, got '8MB'"),
    ("TRACES_MAX_BODY_BYTES", "-1", "must be at least 1"),
    ("TRACES_DASHBOARD_ROWS", "lots", "must be an integer, got 'lots'"),
    ("TRACES_DASHBOARD_ROWS", "9", "must be at least 10"),
    ("TRACES_HEALTH_WARN_SECONDS", "a minute", "must be a number, got 'a minute'"),
    ("TRACES_HEALTH_WARN_SECONDS", "0.5", "must be at least 1"),
    ("TRACES_WRITE_RATE", "fast", "must be a number, got 'fast'"),
    ("TRACES_WRITE_RATE", "-1", "must be at least 0"),
]


@pytest.mark.parametrize(("name", "text", "says"), BAD_NUMBERS, ids=[f"{name}={text}" for name, text, _ in BAD_NUMBERS])
def test_a_bad_number_is_a_config_error_naming_the_variable(name, text, says):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: text})
    assert str(refused.value).startswith(f"{name} ")
    assert says in str(refused.value)


@pytest.mark.parametrize("name", ["TRACES_PING_INTERVAL", "TRACES_HEALTH_WARN_SECONDS"])
def test_nan_and_infinity_are_refused(name):
    for raw in ("nan", "inf", "-inf"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: raw})


@pytest.mark.parametrize(("raw", "origins"), [
    ("https://a.example", ("https://a.example",)),
    ("https://a.example/, http://b.example:5006 ,", ("https://a.example", "http://b.example:5006")),
    ("", ()),
    (" , ", ()),
])
def test_cors_origins_are_a_comma_list_without_trailing_slashes(raw, origins):
    assert Settings.from_env({"TRACES_CORS_ORIGINS": raw}).cors_origins == origins


def test_the_api_url_loses_its_trailing_slash():
    assert Settings.from_env({"TRACES_API_URL": "https://traces.example/"}).api_url == "https://traces.example"
    assert Settings.from_env({"TRACES_API_URL": "http://127.0.0.1:9000//"}).api_url == "http://127.0.0.1:9000"


def test_empty_strings_mean_unset():
    settings = Settings.from_env({"TRACES_DB_URL": "", "TRACES_JWT_SECRET": "", "TRACES_TOKEN": "",
                                  "SUPABASE_URL": "", "SUPABASE_KEY": ""})
    assert settings.db_url == DEFAULT_DB_URL
    assert (settings.jwt_secret, settings.token, settings.supabase_url, settings.supabase_key) == (None, None, None, None)


@pytest.mark.parametrize(("db_url", "path"), [
    ("sqlite:///./data/traces.db", Path("data/traces.db")),
    ("sqlite:////var/lib/traces.db", Path("/var/lib/traces.db")),
    ("postgresql://db.example/traces", None),
    ("sqlite://relative-without-third-slash.db", None),
])
def test_sqlite_path_is_the_file_of_a_sqlite_url_and_none_otherwise(db_url, path):
    assert Settings(db_url=db_url).sqlite_path == path


# The JWT secret.

def test_a_configured_jwt_secret_wins_over_a_file_beside_the_database(tmp_path):
    (tmp_path / "jwt_secret").write_text("from-the-file")
    assert sqlite_settings(tmp_path, jwt_secret="from-the-env").resolved_jwt_secret() == "from-the-env"
    assert (tmp_path / "jwt_secret").read_text() == "from-the-file"


def test_without_one_a_secret_is_generated_once_beside_the_sqlite_file_private_to_its_owner(tmp_path):
    directory = tmp_path / "not-yet-created"
    first = sqlite_settings(directory).resolved_jwt_secret()
    secret_file = directory / "jwt_secret"
    assert secret_file.read_text().strip() == first and len(first) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert sqlite_settings(directory).resolved_jwt_secret() == first  # the same, however often it is asked
    assert Settings.from_env({"TRACES_DB_URL": f"sqlite:///{directory / 'traces.db'}"}).resolved_jwt_secret() == first
    assert sorted(path.name for path in directory.iterdir()) == ["jwt_secret"]  # no temporary file left


def test_another_database_without_a_secret_is_a_config_error():
    with pytest.raises(ConfigError, match="TRACES_JWT_SECRET must be set"):
        Settings(db_url="postgresql://db.example/traces").resolved_jwt_secret()


def test_threads_resolving_the_secret_at_once_agree(tmp_path):
    for round_ in range(10):  # several rounds: a race shows up only sometimes
        settings = sqlite_settings(tmp_path / f"round{round_}")
        start = threading.Barrier(8)
        secrets: list[str] = []

        def resolve(settings: Settings = settings, start: threading.Barrier = start, secrets: list[str] = secrets) -> None:
            start.wait(timeout=10)
            secrets.append(settings.resolved_jwt_secret())

        threads = [threading.Thread(target=resolve) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert len(secrets) == 8 and len(set(secrets)) == 1, secrets
        assert sorted(path.name for path in settings.sqlite_path.parent.iterdir()) == ["jwt_secret"]


RESOLVE_ON_GO = """
import sys
from dashboard.config import Settings
settings = Settings(db_url=sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(settings.resolved_jwt_secret())
"""


def test_processes_resolving_the_secret_at_once_agree(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'shared' / 'traces.db'}"
    children = [subprocess.Popen([sys.executable, "-c", RESOLVE_ON_GO, db_url], cwd=tmp_path, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_environ())
                for _ in range(4)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # released together
            child.stdin.write("go\n")
            child.stdin.flush()
        secrets = {child.communicate(timeout=30)[0].strip() for child in children}
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=10)
    assert len(secrets) == 1 and all(secrets)
    assert secrets == {(tmp_path / "shared" / "jwt_secret").read_text().strip()}


# The command line.

@pytest.mark.parametrize(("value", "says"), [("soon", "must be a number"), ("0", "must be at least 0.05")])
def test_the_api_refuses_a_bad_ping_interval_with_a_one_line_error_and_exit_code_2(tmp_path, value, says):
    result = subprocess.run([sys.executable, "-m", "dashboard", "api", "--port", "0"], cwd=tmp_path, timeout=60,
                            capture_output=True, text=True, env=clean_environ(TRACES_PING_INTERVAL=value))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: TRACES_PING_INTERVAL ") and says in line
    assert result.stdout == ""
