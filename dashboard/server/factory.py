"""The app factory: settings in, a FastAPI app out, owning its backend, hub and metrics for its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from .. import __version__
from ..config import Settings
from ..schema import STREAM_EVENTS, TraceCreate, TracePatch
from .auth import Authenticator
from .errors import install_error_handlers
from .hub import Hub
from .jwks import SigningKeys
from .limits import BodySizeLimit
from .metrics import Metrics
from .rate_limits import RateLimits
from .routes import ops, otlp, stream, traces
from .services import Services
from .stores import Backend, StoreOptions, open_backend
from .writes import TraceWriter


def authenticator(settings: Settings) -> Authenticator:
    """HS256 with the secret; with a JWKS URL, also the project's published ES256/RS256 keys (and its issuer)."""
    keys = SigningKeys(settings.jwks_url) if settings.jwks_url else None
    issuer = f"{settings.supabase_url}/auth/v1" if settings.supabase_url and keys else None
    return Authenticator(settings.resolved_jwt_secret(), keys, issuer)


def store_options(settings: Settings) -> StoreOptions:
    return StoreOptions(settings.replay_events, settings.replay_seconds, settings.supabase_url, settings.supabase_key)


def create_app(settings: Settings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """The API over ``backend`` (default: the one ``settings.db_url`` names), opened and closed with the app."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = backend or open_backend(settings.db_url, store_options(settings))
        await parts.open()
        metrics = Metrics()
        hub = Hub(parts.events, metrics, max_streams_per_user=settings.max_streams_per_user,
                  max_streams=settings.max_streams, buffer_bytes=settings.stream_buffer_bytes)
        try:
            await hub.start()
            app.state.services = Services(settings, parts, hub, authenticator(settings), metrics,
                                          TraceWriter(parts.traces, metrics), RateLimits.from_settings(settings, metrics))
            yield
        finally:
            await hub.stop()
            await parts.close()

    app = FastAPI(
        title="Live LLM traces",
        version=__version__,
        description="Store LLM traces and watch them live over server-sent events.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry would trace every request once an SDK is configured in the process:
        # an app exporting to its own /v1/traces would then export its exports, without end.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.include_router(stream.router)  # before traces: /traces/stream must not match /traces/{id}
    app.include_router(traces.router)
    app.include_router(ops.router)
    app.include_router(otlp.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # lets a page on another origin use fetch() and EventSource with a ticket
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "PATCH"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"], max_age=600)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models = [TraceCreate, TracePatch, *(model for model, _ in STREAM_EVENTS.values())]
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components.setdefault(model.__name__, model_schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
