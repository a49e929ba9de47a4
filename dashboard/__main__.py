"""The command line: ``python -m dashboard api | token | demo``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import replace

from .config import ConfigError, Settings


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from .server import create_app
    from .server.error_tracking import start_error_tracking, stop_error_tracking
    from .server.factory import store_options
    from .server.runner import build_server
    from .server.stores import StoreError, open_backend

    if args.db:
        settings = replace(settings, db_url=args.db)
    settings.resolved_jwt_secret()  # a missing secret is a configuration error, said before starting
    try:
        backend = open_backend(settings.db_url, store_options(settings))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start_error_tracking(settings)  # per process, here: never in an app some test builds in-process
    app = create_app(settings, backend=backend)
    server = build_server(app, args.host, args.port, forwarded_allow_ips=args.forwarded_allow_ips,
                          access_log=not args.no_access_log)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn has already shut down cleanly; no traceback for Ctrl-C
        pass
    finally:
        stop_error_tracking()
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from .server.auth import Authenticator

    print(Authenticator(settings.resolved_jwt_secret()).issue_token(args.user, args.ttl))
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    async def until_signalled() -> None:
        # Ctrl-C and SIGTERM (what serve.sh and process managers send) both finish open calls cleanly.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_demo(args.api_url or settings.api_url, settings, rate=args.rate, users=args.users,
                       duration=args.duration, stop=stop)

    asyncio.run(until_signalled())
    return 0


def _supabase_sql(args: argparse.Namespace, settings: Settings) -> int:
    from .server.stores.supabase_sql import supabase_sql

    print(supabase_sql(), end="")
    return 0


def _positive(kind: type) -> callable:
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m dashboard", description="Live LLM traces.")
    commands = top.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="run the API server (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--db", help="database URL (default: TRACES_DB_URL or sqlite:///./data/traces.db)")
    api.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                     help="proxies whose X-Forwarded-* headers are trusted (comma-separated, or *)")
    api.add_argument("--no-access-log", action="store_true", help="do not log every request")
    api.set_defaults(run=_api)

    token = commands.add_parser("token", help="print a signed JWT for a user")
    token.add_argument("--user", required=True, help="the user id (the token's subject)")
    token.add_argument("--ttl", type=_positive(int), default=3600, help="seconds until it expires (default 3600)")
    token.set_defaults(run=_token)

    demo = commands.add_parser("demo", help="send synthetic LLM traffic to the API")
    demo.add_argument("--api-url", help="default: TRACES_API_URL or http://127.0.0.1:8000")
    demo.add_argument("--rate", type=_positive(float), default=2.0, help="new calls per second (default 2)")
    demo.add_argument("--users", type=_positive(int), default=3, help="users, 'demo' always among them (default 3)")
    demo.add_argument("--duration", type=_positive(float), help="stop after this many seconds (default: run until Ctrl-C)")
    demo.set_defaults(run=_demo)

    sql = commands.add_parser("supabase-sql", help="print the SQL to paste once into a Supabase project's SQL editor")
    sql.set_defaults(run=_supabase_sql)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args, Settings.from_env())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
