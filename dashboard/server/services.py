"""What every route needs from the app: its parts, and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from .auth import Authenticator, AuthError, Principal, bearer_token
from .hub import Hub
from .metrics import Metrics
from .rate_limits import RateLimits
from .stores import Backend
from .writes import TraceWriter


@dataclass
class Services:
    """The parts one app owns, created in its lifespan and kept on ``app.state.services``."""

    settings: Settings
    backend: Backend
    hub: Hub
    auth: Authenticator
    metrics: Metrics
    writer: TraceWriter
    limits: RateLimits


async def get_services(request: Request) -> Services:
    # async: a plain ``def`` dependency costs a threadpool hop on every request
    return request.app.state.services


async def current_user(request: Request) -> Principal:
    """The caller named by ``Authorization: Bearer <jwt>``; 401 otherwise (429 for an address that keeps failing)."""
    request.app.state.services.limits.check_client(request)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise AuthError("missing_credentials",
                        "send 'Authorization: Bearer <token>'; get one with: python -m dashboard token --user ID")
    return await request.app.state.services.auth.verify_token(token)


ServicesDep = Annotated[Services, Depends(get_services)]
UserDep = Annotated[Principal, Depends(current_user)]
