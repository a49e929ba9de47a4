"""Settings read from the environment in one place, so no other module touches ``os.environ``."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB_URL = "sqlite:///./data/traces.db"
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_float(env: Mapping[str, str], name: str, minimum: float) -> float | None:
    """A number that may be unset: an alert threshold is off unless someone chose one."""
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else _float(env, name, 0.0, minimum)


def _origins(raw: str | None) -> tuple[str, ...]:
    """Browser origins allowed to call the API (the dashboard's by default); ``""`` allows none."""
    if raw is None:
        return Settings.cors_origins
    return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the server, the client and the demo read from the environment."""

    db_url: str = DEFAULT_DB_URL
    jwt_secret: str | None = None
    ping_interval: float = 30.0
    api_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    max_streams_per_user: int = 10
    replay_events: int = 10_000
    replay_seconds: float = 600.0
    max_body_bytes: int = 8 * MIB
    max_batch_traces: int = 1000
    write_rate: float = 1000.0  # traces per second per user, bursts of 2 s' worth; 0 turns the limit off
    stream_buffer_bytes: int = 4 * MIB  # a stream whose unsent frames pass this is a slow consumer
    max_streams: int = 1000  # open streams per API process, all users together
    retry_ms: int = 1000
    dashboard_rows: int = 5000
    health_warn_seconds: float = 60.0
    alert_p95_ms: float | None = None  # the dashboard's default alert thresholds; None: off
    alert_error_rate: float | None = None  # percent
    stuck_seconds: float = 120.0  # the dashboard marks a call running longer than this as stuck
    cors_origins: tuple[str, ...] = ("http://127.0.0.1:5006", "http://localhost:5006")
    supabase_url: str | None = None
    supabase_key: str | None = None
    jwks_url: str | None = None  # ES256/RS256 tokens are checked against these keys (Supabase's signing keys)
    sentry_dsn: str | None = None  # where failures are reported; none: nothing is sent

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            db_url=env.get("TRACES_DB_URL") or DEFAULT_DB_URL,
            jwt_secret=env.get("TRACES_JWT_SECRET") or None,
            ping_interval=_float(env, "TRACES_PING_INTERVAL", 30.0, minimum=0.05),
            api_url=(env.get("TRACES_API_URL") or "http://127.0.0.1:8000").rstrip("/"),
            token=env.get("TRACES_TOKEN") or None,
            max_streams_per_user=_int(env, "TRACES_MAX_STREAMS_PER_USER", 10),
            max_streams=_int(env, "TRACES_MAX_STREAMS", 1000),
            stream_buffer_bytes=_int(env, "TRACES_STREAM_BUFFER_BYTES", 4 * MIB, minimum=64 * 1024),
            replay_events=_int(env, "TRACES_REPLAY_EVENTS", 10_000),
            max_body_bytes=_int(env, "TRACES_MAX_BODY_BYTES", 8 * MIB),
            write_rate=_float(env, "TRACES_WRITE_RATE", 1000.0, minimum=0),
            dashboard_rows=_int(env, "TRACES_DASHBOARD_ROWS", 5000, minimum=10),
            health_warn_seconds=_float(env, "TRACES_HEALTH_WARN_SECONDS", 60.0, minimum=1),
            alert_p95_ms=_optional_float(env, "TRACES_ALERT_P95_MS", minimum=0),
            alert_error_rate=_optional_float(env, "TRACES_ALERT_ERROR_RATE", minimum=0),
            stuck_seconds=_float(env, "TRACES_STUCK_SECONDS", 120.0, minimum=0),
            cors_origins=_origins(env.get("TRACES_CORS_ORIGINS")),
            supabase_url=(env.get("SUPABASE_URL") or "").rstrip("/") or None,
            supabase_key=env.get("SUPABASE_KEY") or None,
            jwks_url=env.get("TRACES_JWKS_URL") or (
                f"{env['SUPABASE_URL'].rstrip('/')}/auth/v1/.well-known/jwks.json" if env.get("SUPABASE_URL") else None),
            sentry_dsn=(env.get("SENTRY_DSN") or "").strip() or None,
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file named by ``db_url``, or None for another backend."""
        prefix = "sqlite:///"
        if not self.db_url.startswith(prefix):
            return None
        return Path(self.db_url[len(prefix):])

    def resolved_jwt_secret(self) -> str:
        """The JWT secret: the configured one, else one generated once and kept beside the SQLite file.

        Keeping it on disk means tokens printed by ``python -m dashboard token`` stay valid across
        restarts of the API, and the API and the CLI agree without any setup.
        """
        if self.jwt_secret:
            return self.jwt_secret
        path = self.sqlite_path
        if path is None:
            raise ConfigError("TRACES_JWT_SECRET must be set for a database other than the embedded SQLite")
        secret_file = path.parent / "jwt_secret"
        if secret_file.exists():
            return secret_file.read_text().strip()
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: when two processes
        # start at once, exactly one link succeeds and both read the same complete secret.
        tmp = secret_file.with_name(f".jwt_secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, secret_file)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return secret_file.read_text().strip()
