"""The app factory: settings in, a FastAPI app out, owning its store, hub and metrics for its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from .. import __version__
from ..auth import Authenticator
from ..config import Settings
from ..hub import Hub
from ..metrics import Metrics
from ..models import STREAM_EVENTS, TraceCreate, TracePatch
from ..stores import TraceStore, open_store
from . import ops, stream, traces
from .deps import Services
from .errors import install_error_handlers
from .limits import BodySizeLimit


def create_app(settings: Settings | None = None, *, store: TraceStore | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_store = store or open_store(settings.db_url, replay_events=settings.replay_events,
                                        replay_seconds=settings.replay_seconds)
        await the_store.open()
        metrics = Metrics()
        hub = Hub(the_store, metrics, max_streams_per_user=settings.max_streams_per_user,
                  queue_size=settings.stream_queue_size)
        await hub.start()
        app.state.services = Services(settings, the_store, hub, Authenticator(settings.resolved_jwt_secret()), metrics)
        try:
            yield
        finally:
            await hub.stop()
            await the_store.close()

    app = FastAPI(
        title="Live LLM traces",
        version=__version__,
        description="Store LLM traces and watch them live over server-sent events.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(stream.router)  # before traces: /traces/stream must not match /traces/{id}
    app.include_router(traces.router)
    app.include_router(ops.router)
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
