"""A deliberately naive SSE endpoint: the baseline that bench/stream_bench.py compares against.

NOT PRODUCT CODE. It exists only so the benchmark can put numbers side by side.

It is written the way the audited design did live traces: every open connection gets its own
backend subscription. Here that subscription is per-client polling: each stream opens its own
SQLite connection to the same file the real API writes, and every 0.5 s asks "any rows of my user
after the last one I sent?" (a Supabase realtime channel per browser tab, or a `setInterval` poll
per client, has the same shape: cost grows with connections, latency is bounded by the poll).

Kept honest and simple, not a straw man:
- FastAPI's own ``fastapi.sse.EventSourceResponse`` with a generator, as its docs show;
- the query runs in a worker thread (``asyncio.to_thread``), so polling never blocks the event loop;
- the query uses the store's ``(user_id, seq)`` index;
- the Bearer JWT is checked (PyJWT, HS256, ``aud=authenticated``) before the stream starts.

What it leaves out on purpose (the real API does these): updates (``trace_update``), filters, resume
with ``Last-Event-ID``, pings of its own (FastAPI sends a ``: ping`` comment every 15 s), limits.
It reads the real store's ``traces`` table (``seq``, ``user_id``, ``body``), so it follows that schema.

Run: ``TRACES_JWT_SECRET=... python bench/naive_server.py --port 8001 --db /path/to/traces.db``.
Stream: ``GET /stream`` with ``Authorization: Bearer <jwt>``; events ``connected`` then ``trace`` (``id:`` = row seq).
"""

import argparse
import asyncio
import os
import sqlite3
from collections.abc import AsyncIterable
from typing import Annotated

import jwt
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.sse import EventSourceResponse, ServerSentEvent

POLL_SECONDS = 0.5


def create_app(db_path: str, secret: str) -> FastAPI:
    app = FastAPI(title="naive SSE baseline (benchmark only)")

    def current_user(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token")
        try:
            return jwt.decode(token, secret, algorithms=["HS256"], audience="authenticated")["sub"]
        except jwt.PyJWTError as exc:
            raise HTTPException(401, f"bad token: {exc}") from None

    def head(db: sqlite3.Connection, user: str) -> int:
        return db.execute("SELECT coalesce(max(seq), 0) FROM traces WHERE user_id = ?", (user,)).fetchone()[0]

    def rows_after(db: sqlite3.Connection, user: str, after: int) -> list[tuple[int, str]]:
        return db.execute(
            "SELECT seq, body FROM traces WHERE user_id = ? AND seq > ? ORDER BY seq", (user, after)
        ).fetchall()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stream", response_class=EventSourceResponse)
    async def stream(user: Annotated[str, Depends(current_user)]) -> AsyncIterable[ServerSentEvent]:
        # One backend subscription per connection: its own database connection and its own poll loop.
        db = sqlite3.connect(db_path, check_same_thread=False)
        try:
            last = await asyncio.to_thread(head, db, user)
            yield ServerSentEvent(event="connected", data={"user_id": user, "last_seq": last})
            while True:
                await asyncio.sleep(POLL_SECONDS)
                for seq, body in await asyncio.to_thread(rows_after, db, user, last):
                    yield ServerSentEvent(event="trace", raw_data=body, id=str(seq))
                    last = seq
        finally:
            db.close()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--db", required=True, help="path of the SQLite file the real API writes")
    args = parser.parse_args()
    secret = os.environ.get("TRACES_JWT_SECRET")
    if not secret:
        raise SystemExit("set TRACES_JWT_SECRET (the same secret as the API's)")
    uvicorn.run(create_app(args.db, secret), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
