"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...schema import ErrorResponse, Health
from ..services import ServicesDep, UserDep

router = APIRouter()


@router.get("/healthz", response_model=Health, summary="Liveness, and which store this server uses")
async def healthz(services: ServicesDep) -> Health:
    return Health(status="ok", store=services.backend.name)


@router.get("/metrics", summary="Prometheus metrics", responses={401: {"model": ErrorResponse}},
            response_class=Response)
async def metrics(_: UserDep, services: ServicesDep) -> Response:
    services.metrics.open_streams.set(services.hub.open_streams)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
