"""The body of one trace stream: retry hint, ``connected``, ``subscribed``, replay from the event log,
then live events from the hub and pings, until the client leaves or the server ends it with ``error``.

Replay and live meet without a gap or a repeat: the subscription exists before replay starts, replay
reads up to the watermark it saw at connect, and live frames at or below that are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..schema import now_iso
from .auth import Principal
from .hub import CloseReason, Hub, Subscription
from .metrics import Metrics
from .sse import control_frame, event_frame, retry_frame
from .stores import EventBounds, EventLog, StoreError, may_continue

REPLAY_PAGE = 500
AHEAD_WAIT_SECONDS = 1.0  # how long a resume point ahead of this node may take to become readable here
log = logging.getLogger(__name__)
STREAM_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


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


def _unavailable(exc: StoreError) -> bytes:
    """The stream's last frame when the store fails under it; logged at ERROR, so error tracking reports it."""
    log.error("a stream ended: the trace store is unavailable: %s", exc)
    return control_frame("error", {"code": CloseReason.backend_unavailable.value,
                                   "message": f"the trace store is unavailable: {exc}"})


async def _caught_up(events: EventLog, bounds: EventBounds, resume_from: int) -> EventBounds:
    """A resume point from another node may be ahead of what this one has seen yet: wait for it, briefly."""
    deadline = time.monotonic() + AHEAD_WAIT_SECONDS
    while bounds.watermark < resume_from and (left := deadline - time.monotonic()) > 0:
        await events.wait_for_events(bounds.watermark, left)
        bounds = await events.bounds()
    return bounds


async def stream_frames(settings: Settings, events: EventLog, metrics: Metrics, sub: Subscription,
                        principal: Principal, resume_from: int | None) -> AsyncIterator[bytes]:
    yield retry_frame(settings.retry_ms)
    try:
        bounds = await events.bounds()
        if resume_from is not None and resume_from > bounds.watermark:
            bounds = await _caught_up(events, bounds, resume_from)
    except StoreError as exc:
        yield _unavailable(exc)
        return
    watermark = bounds.watermark
    yield control_frame("connected", {"user_id": principal.user_id, "server_time": now_iso(), "last_event_id": watermark})
    if resume_from is not None and not bounds.floor <= resume_from <= watermark:
        reason = (f"events after {resume_from} are no longer kept (the replay window starts after {bounds.floor})"
                  if resume_from < bounds.floor else
                  f"resume point {resume_from} is ahead of this server's stream ({watermark}); was the store replaced?")
        metrics.resets.inc()
        yield control_frame("reset", {"reason": reason, "last_event_id": watermark})
        resume_from = None
    yield control_frame("subscribed", {"filters": sub.which.narrowing(), "replaying_from": resume_from})

    if resume_from is not None:
        metrics.replays.inc()
        position = resume_from
        page_bytes = max(1, settings.stream_buffer_bytes // 2)  # replay is bounded like the live queue
        while sub.closed_reason is None and position < watermark:
            try:
                page = await events.events_after(position, watermark, REPLAY_PAGE, sub.which, max_bytes=page_bytes)
            except StoreError as exc:
                yield _unavailable(exc)
                return
            position = page[-1].seq if may_continue(page, REPLAY_PAGE, page_bytes) else watermark
            frames, sent = b"".join(event_frame(event) for event in page), len(page)
            del page  # a reader that stalls on the frames below holds them alone, not the page as well
            if sent:
                yield frames
                metrics.events_sent.inc(sent)

    last_sent = watermark
    next_ping = time.monotonic() + settings.ping_interval
    while True:
        expires_in = principal.expires_at - time.time()
        batch = await sub.take(max(0.0, min(next_ping - time.monotonic(), expires_in)))
        if sub.closed_reason is not None:
            yield control_frame("error", {"code": sub.closed_reason.value, "message": sub.closed_message})
            return
        frames = [frame for seq, frame in batch if seq > last_sent]
        if frames:
            yield b"".join(frames)
            metrics.events_sent.inc(len(frames))
            last_sent = batch[-1][0]
        if principal.expires_at <= time.time():
            yield control_frame("error", {"code": CloseReason.token_expired.value,
                                          "message": "your token expired; sign in again to resume"})
            return
        if time.monotonic() >= next_ping:
            yield control_frame("ping", {"server_time": now_iso()})
            next_ping = time.monotonic() + settings.ping_interval
