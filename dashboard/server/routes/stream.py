"""The stream endpoint and its ticket: who is asking, where they resume, which traces they want.

The body of the stream itself is ``server.event_stream``; the frames are built in ``server.sse``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from ...schema import STREAM_EVENTS, STREAM_PATH, ErrorResponse, ShortText, StreamTicket, TraceStatus
from ..auth import AuthError, Principal, bearer_token
from ..errors import ApiError
from ..event_stream import TraceStreamResponse, stream_frames
from ..hub import ServerFull, ShuttingDown, TooManyStreams
from ..services import Services, ServicesDep, UserDep
from ..stores import MAX_SEQ, EventFilter, parse_seq

router = APIRouter()

RETRY_AFTER_SECONDS = 5


async def stream_principal(request: Request, services: Services, ticket: str | None, token: str | None) -> Principal:
    """Header first, then a single-use ticket, then ``?token=`` (for compatibility). A ticket is spent
    only once the stream is sure to open: one refused with 429 can be used again when there is room."""
    services.limits.check_client(request)
    header_token = bearer_token(request.headers.get("authorization"))
    if header_token is not None:
        return await services.auth.verify_token(header_token)
    if ticket:
        principal, ticket_id = services.auth.verify_ticket(ticket)
        room_for(services, principal)
        if not await services.backend.tickets.spend_ticket(ticket_id, principal.expires_at):
            raise AuthError("ticket_reused", "this ticket was already used; get a new one for each connection")
        return principal
    if token:
        return await services.auth.verify_token(token)
    raise AuthError("missing_credentials", "send 'Authorization: Bearer <token>', or ?ticket= from "
                    "POST /api/analytics/traces/stream/ticket")


def room_for(services: Services, principal: Principal) -> Principal:
    """The principal, if this server can take another stream of theirs; else the 429 (or 503) to answer."""
    try:
        services.hub.check_room(principal.user_id)
    except TooManyStreams as exc:
        services.metrics.streams_refused.inc()
        code = "server_full" if isinstance(exc, ServerFull) else "too_many_streams"
        advice = "retry later" if isinstance(exc, ServerFull) else "close one or retry later"
        raise ApiError(429, code, f"{exc}; {advice}", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except ShuttingDown as exc:
        raise ApiError(503, "shutting_down", str(exc), headers={"Retry-After": "1"}) from None
    return principal


def resume_point(header: str | None, query: int | None) -> int | None:
    """``Last-Event-ID`` (set by a reconnecting client) wins over ``?last_event_id`` (a first connect)."""
    if header is not None and header.strip() != "":
        position = parse_seq(header.strip())
        if position is None:
            raise ApiError(422, "invalid_last_event_id",
                           f"Last-Event-ID must be a stream position: an integer from 0 to {MAX_SEQ}")
        return position
    return query


def _stream_docs() -> str:
    rows = "\n".join(f"| `{name}` | {doc} | `{model.__name__}` |" for name, (model, doc) in STREAM_EVENTS.items())
    return (
        "Server-sent events of your traces, live. The body opens with `retry: <ms>`, then:\n\n"
        "| event | meaning | data (JSON) |\n|---|---|---|\n" + rows + "\n\n"
        "Credentials, in order of preference: `Authorization: Bearer <jwt>`; `?ticket=` from "
        "`POST /api/analytics/traces/stream/ticket` (for a browser's `EventSource`); `?token=<jwt>` "
        "(compatibility; redacted from logs). Resume with `Last-Event-ID`, or `?last_event_id=N` from a "
        "snapshot's `last_event_id`. Too many open streams, yours or the server's: 429 with `Retry-After` (a "
        "ticket refused so is not spent)."
    )


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The event stream.", "content": {"text/event-stream": {"schema": {
        "type": "string", "description": "SSE frames; see the table above for each event's data schema.",
        "x-events": {name: {"$ref": f"#/components/schemas/{model.__name__}"} for name, (model, _) in STREAM_EVENTS.items()},
    }}}},
    401: {"model": ErrorResponse, "description": "Missing, invalid, expired or reused credentials."},
    422: {"model": ErrorResponse, "description": "An unknown status filter or a malformed Last-Event-ID."},
    429: {"model": ErrorResponse, "description": "Too many open streams for this user (`too_many_streams`) or on "
          "this server (`server_full`), or too many failed authentications from this address "
          "(`too_many_auth_failures`); see Retry-After."},
}


@router.get(STREAM_PATH, status_code=200, response_class=TraceStreamResponse, responses=STREAM_RESPONSES,
            summary="Live stream of your traces (SSE)", description=_stream_docs())
async def trace_stream(
    request: Request,
    services: ServicesDep,
    model: Annotated[ShortText | None, Query(description="only traces of this model")] = None,
    status: Annotated[TraceStatus | None, Query(description="only traces in this status")] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_SEQ,
                                               description="resume after this position (first connect)")] = None,
    ticket: Annotated[str | None, Query(description="single-use ticket")] = None,
    token: Annotated[str | None, Query(description="a JWT, for compatibility; prefer the header or a ticket")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> TraceStreamResponse:
    resume_from = resume_point(last_event_id_header, last_event_id)  # before a ticket is spent on a bad request
    principal = await stream_principal(request, services, ticket, token)
    which = EventFilter(user_id=principal.user_id, model=model, status=status.value if status else None)
    room_for(services, principal)  # for a ticket, again: others may have taken the room while it was spent
    sub = services.hub.subscribe(which)
    frames = stream_frames(services.settings, services.backend.events, services.metrics, sub, principal, resume_from)
    return TraceStreamResponse(frames, services.hub, sub)


@router.post(STREAM_PATH + "/ticket", response_model=StreamTicket,
             responses={401: {"model": ErrorResponse}}, summary="A single-use credential for EventSource")
async def stream_ticket(user: UserDep, services: ServicesDep) -> StreamTicket:
    """Fetch with your Bearer token, then open ``EventSource('/api/analytics/traces/stream?ticket=...')``
    within ``expires_in`` seconds. Each ticket opens one stream, once."""
    ticket = services.auth.issue_ticket(user)
    return StreamTicket(ticket=ticket.value, expires_in=max(1, round(ticket.expires_at - time.time())))
