"""The stream endpoint and its ticket: who is asking, where they resume, which traces they want.

The body of the stream itself is ``server.event_stream``; the frames are built in ``server.sse``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from ...schema import STREAM_EVENTS, STREAM_PATH, ErrorResponse, StreamTicket, TraceStatus
from ..auth import AuthError, Principal, bearer_token
from ..errors import ApiError
from ..event_stream import TraceStreamResponse, stream_frames
from ..hub import ShuttingDown, TooManyStreams
from ..services import Services, ServicesDep, UserDep
from ..stores import EventFilter

router = APIRouter()

RETRY_AFTER_SECONDS = 5


async def stream_principal(request: Request, services: Services, ticket: str | None, token: str | None) -> Principal:
    """Header first, then a single-use ticket, then ``?token=`` (for compatibility)."""
    header_token = bearer_token(request.headers.get("authorization"))
    if header_token is not None:
        return await services.auth.verify_token(header_token)
    if ticket:
        principal, ticket_id = services.auth.verify_ticket(ticket)
        if not await services.backend.tickets.spend_ticket(ticket_id, principal.expires_at):
            raise AuthError("ticket_reused", "this ticket was already used; get a new one for each connection")
        return principal
    if token:
        return await services.auth.verify_token(token)
    raise AuthError("missing_credentials", "send 'Authorization: Bearer <token>', or ?ticket= from "
                    "POST /api/analytics/traces/stream/ticket")


def resume_point(header: str | None, query: int | None) -> int | None:
    """``Last-Event-ID`` (set by a reconnecting client) wins over ``?last_event_id`` (a first connect)."""
    if header is not None and header.strip() != "":
        if not header.strip().isdigit():
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must be a non-negative integer")
        return int(header.strip())
    return query


def _stream_docs() -> str:
    rows = "\n".join(f"| `{name}` | {doc} | `{model.__name__}` |" for name, (model, doc) in STREAM_EVENTS.items())
    return (
        "Server-sent events of your traces, live. The body opens with `retry: <ms>`, then:\n\n"
        "| event | meaning | data (JSON) |\n|---|---|---|\n" + rows + "\n\n"
        "Credentials, in order of preference: `Authorization: Bearer <jwt>`; `?ticket=` from "
        "`POST /api/analytics/traces/stream/ticket` (for a browser's `EventSource`); `?token=<jwt>` "
        "(compatibility; redacted from logs). Resume with `Last-Event-ID`, or `?last_event_id=N` from a "
        "snapshot's `last_event_id`. Too many open streams: 429 with `Retry-After`."
    )


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The event stream.", "content": {"text/event-stream": {"schema": {
        "type": "string", "description": "SSE frames; see the table above for each event's data schema.",
        "x-events": {name: {"$ref": f"#/components/schemas/{model.__name__}"} for name, (model, _) in STREAM_EVENTS.items()},
    }}}},
    401: {"model": ErrorResponse, "description": "Missing, invalid, expired or reused credentials."},
    422: {"model": ErrorResponse, "description": "An unknown status filter or a malformed Last-Event-ID."},
    429: {"model": ErrorResponse, "description": "Too many open streams for this user; see Retry-After."},
}


@router.get(STREAM_PATH, status_code=200, response_class=TraceStreamResponse, responses=STREAM_RESPONSES,
            summary="Live stream of your traces (SSE)", description=_stream_docs())
async def trace_stream(
    request: Request,
    services: ServicesDep,
    model: Annotated[str | None, Query(max_length=512, description="only traces of this model")] = None,
    status: Annotated[TraceStatus | None, Query(description="only traces in this status")] = None,
    last_event_id: Annotated[int | None, Query(ge=0, description="resume after this position (first connect)")] = None,
    ticket: Annotated[str | None, Query(description="single-use ticket")] = None,
    token: Annotated[str | None, Query(description="a JWT, for compatibility; prefer the header or a ticket")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> TraceStreamResponse:
    principal = await stream_principal(request, services, ticket, token)
    resume_from = resume_point(last_event_id_header, last_event_id)
    which = EventFilter(user_id=principal.user_id, model=model, status=status.value if status else None)
    try:
        sub = services.hub.subscribe(which)
    except TooManyStreams as exc:
        services.metrics.streams_refused.inc()
        raise ApiError(429, "too_many_streams", f"{exc}; close one or retry later",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except ShuttingDown as exc:
        raise ApiError(503, "shutting_down", str(exc), headers={"Retry-After": "1"}) from None
    frames = stream_frames(services.settings, services.backend.events, services.metrics, sub, principal, resume_from)
    return TraceStreamResponse(frames, services.hub, sub)


@router.post(STREAM_PATH + "/ticket", response_model=StreamTicket,
             responses={401: {"model": ErrorResponse}}, summary="A single-use credential for EventSource")
async def stream_ticket(user: UserDep, services: ServicesDep) -> StreamTicket:
    """Fetch with your Bearer token, then open ``EventSource('/api/analytics/traces/stream?ticket=...')``
    within ``expires_in`` seconds. Each ticket opens one stream, once."""
    ticket = services.auth.issue_ticket(user)
    return StreamTicket(ticket=ticket.value, expires_in=max(1, round(ticket.expires_at - time.time())))
