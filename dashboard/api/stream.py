"""The SSE stream: credentials, filters, resume, replay, live events, pings, and its ticket.

Frames are built with ``fastapi.sse.format_sse_event``; trace frames come from the hub already
framed (once per event, shared by every stream that gets them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.sse import format_sse_event
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..auth import AuthError, Principal, bearer_token
from ..hub import CloseReason, Hub, ShuttingDown, StreamFilters, Subscription, TooManyStreams, event_frame
from ..models import STREAM_EVENTS, ErrorResponse, StreamTicket, TraceStatus, now_iso
from ..stores import StoreError
from .deps import Services, ServicesDep, UserDep
from .errors import ApiError

log = logging.getLogger(__name__)
router = APIRouter()

STREAM_PATH = "/api/analytics/traces/stream"
REPLAY_PAGE = 500
RETRY_AFTER_SECONDS = 5
STREAM_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def sse(event: str, data: Any) -> bytes:
    """A frame without an id: control events are not positions in the stream."""
    return format_sse_event(data_str=json.dumps(data, separators=(",", ":")), event=event)


class TraceStreamResponse(StreamingResponse):
    """An event stream that gives its subscription back however it ends, and can be cut off when stuck.

    Not ``fastapi.sse.EventSourceResponse``: as a route's response class that one makes FastAPI frame a
    generator per stream and add ``: ping`` comments; our frames are already built, once per event.
    """

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], hub: Hub, subscription: Subscription) -> None:
        super().__init__(frames, headers=STREAM_HEADERS)
        self.headers["content-type"] = "text/event-stream"
        self.hub = hub
        self.subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.CancelScope() as cancel_scope:
                # A reader that stopped reading leaves us blocked in send(); cancelling is the only way out.
                self.subscription.on_slow = cancel_scope.cancel
                await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.subscription)


async def stream_frames(services: Services, sub: Subscription, principal: Principal, resume_from: int | None) -> AsyncIterator[bytes]:
    """The body of one stream: retry hint, connected, subscribed, replay, then live events and pings."""
    settings, store, metrics = services.settings, services.store, services.metrics
    yield format_sse_event(retry=settings.retry_ms)
    try:
        bounds = await store.event_bounds()
    except StoreError as exc:
        yield sse("error", {"code": CloseReason.BACKEND, "message": f"the trace store is unavailable: {exc}"})
        return
    yield sse("connected", {"user_id": principal.user_id, "server_time": now_iso(), "last_event_id": bounds.head})
    if resume_from is not None and not bounds.floor <= resume_from <= bounds.head:
        reason = (f"events after {resume_from} are no longer kept (the replay window starts after {bounds.floor})"
                  if resume_from < bounds.floor else
                  f"resume point {resume_from} is ahead of this server's stream ({bounds.head}); was the store replaced?")
        metrics.resets.inc()
        yield sse("reset", {"reason": reason, "last_event_id": bounds.head})
        resume_from = None
    yield sse("subscribed", {"filters": sub.filters.as_dict(), "replaying_from": resume_from})

    last_sent = bounds.head
    if resume_from is not None:
        metrics.replays.inc()
        last_sent = resume_from
        while sub.closed_reason is None:
            try:
                events = await store.events_after(last_sent, REPLAY_PAGE, user_id=sub.user_id,
                                                  model=sub.filters.model, status=sub.filters.status)
            except StoreError as exc:
                yield sse("error", {"code": CloseReason.BACKEND, "message": f"the trace store is unavailable: {exc}"})
                return
            if not events:
                break
            yield b"".join(event_frame(event) for event in events)
            metrics.events_sent.inc(len(events))
            last_sent = events[-1].seq

    next_ping = time.monotonic() + settings.ping_interval
    while True:
        now = time.monotonic()
        expires_in = principal.expires_at - time.time()
        batch = await sub.take(max(0.0, min(next_ping - now, expires_in)))
        if sub.closed_reason is not None:
            yield sse("error", {"code": sub.closed_reason, "message": sub.closed_message})
            return
        frames = [frame for seq, frame in batch if seq > last_sent]
        if frames:
            yield b"".join(frames)
            metrics.events_sent.inc(len(frames))
            last_sent = batch[-1][0]
        if principal.expires_at <= time.time():
            yield sse("error", {"code": "token_expired", "message": "your token expired; sign in again to resume"})
            return
        if time.monotonic() >= next_ping:
            yield sse("ping", {"server_time": now_iso()})
            next_ping = time.monotonic() + settings.ping_interval


async def stream_principal(request: Request, services: Services, ticket: str | None, token: str | None) -> Principal:
    """Header first, then a single-use ticket, then ``?token=`` (for compatibility)."""
    header_token = bearer_token(request.headers.get("authorization"))
    if header_token is not None:
        return services.auth.verify_token(header_token)
    if ticket:
        principal, ticket_id = services.auth.verify_ticket(ticket)
        if not await services.store.spend_ticket(ticket_id, principal.expires_at):
            raise AuthError("ticket_reused", "this ticket was already used; get a new one for each connection")
        return principal
    if token:
        return services.auth.verify_token(token)
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
    filters = StreamFilters(model=model, status=status.value if status else None)
    try:
        sub = services.hub.subscribe(principal.user_id, filters)
    except TooManyStreams as exc:
        services.metrics.streams_refused.inc()
        raise ApiError(429, "too_many_streams", f"{exc}; close one or retry later",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except ShuttingDown as exc:
        raise ApiError(503, "shutting_down", str(exc), headers={"Retry-After": "1"}) from None
    return TraceStreamResponse(stream_frames(services, sub, principal, resume_from), services.hub, sub)


@router.post(STREAM_PATH + "/ticket", response_model=StreamTicket,
             responses={401: {"model": ErrorResponse}}, summary="A single-use credential for EventSource")
async def stream_ticket(user: UserDep, services: ServicesDep) -> StreamTicket:
    """Fetch with your Bearer token, then open ``EventSource('/api/analytics/traces/stream?ticket=...')``
    within ``expires_in`` seconds. Each ticket opens one stream, once."""
    ticket = services.auth.issue_ticket(user)
    return StreamTicket(ticket=ticket.value, expires_in=max(1, round(ticket.expires_at - time.time())))
