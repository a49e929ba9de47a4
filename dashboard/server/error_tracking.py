"""Error tracking: with ``SENTRY_DSN`` set, the API's failures are reported to Sentry, never a credential.

Reported: whatever the API logs at ERROR (the hub losing the store, a request's store failure, a stream
ended by one, an unexpected exception with its traceback) and exceptions escaping a request. Client
mistakes (4xx), slow consumers and shutdowns are logged below ERROR, so they are at most breadcrumbs.
Every event passes ``scrub`` on its way out: the SDK keeps sensitive headers out by itself, but query
strings, log lines, exception messages and breadcrumbs are ours to clean.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import partial
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.utils import BadDsn

from ..config import ConfigError, Settings
from .auth import REDACTED, redact_text

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "apikey", "x-api-key"})
# the password in a URL's userinfo (a database URL in argv or an error message): scheme://user:password@
_URL_PASSWORD = re.compile(r"(?P<user>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*):[^@/?#\s]+@", re.IGNORECASE)
FLUSH_SECONDS = 2.0


def start_error_tracking(settings: Settings) -> bool:
    """Report this process's failures when ``SENTRY_DSN`` is set (once per process; the in-process test
    apps never call this); False, and nothing is ever sent, when it is not."""
    if not settings.sentry_dsn:
        return False
    if sentry_sdk.is_initialized():
        return True
    secrets = tuple(secret for secret in (settings.jwt_secret, settings.supabase_key) if secret)
    try:
        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            send_default_pii=False,
            include_local_variables=False,  # a frame's locals hold the settings, tokens and trace bodies
            max_request_body_size="never",  # request bodies are users' prompts and outputs
            traces_sample_rate=0,
            integrations=[StarletteIntegration(), FastApiIntegration(),
                          LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
            before_send=partial(scrub, secrets=secrets),
            before_send_transaction=partial(scrub, secrets=secrets),
        )
    except BadDsn as exc:
        raise ConfigError(f"SENTRY_DSN is not a Sentry DSN: {exc}") from None
    return True


def stop_error_tracking() -> None:
    """Send what is queued (for at most ``FLUSH_SECONDS``) and stop the SDK's sending thread; a no-op
    when tracking never started."""
    sentry_sdk.get_client().close(timeout=FLUSH_SECONDS)


def scrub(event: dict[str, Any], hint: Any = None, *, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The event with every credential taken out: secret headers and cookies dropped, and in every string
    anywhere in it, query credentials, JWT-shaped strings, URL passwords and ``secrets`` replaced."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {name: value for name, value in headers.items()
                                  if str(name).lower() not in SECRET_HEADERS}
        query = request.get("query_string")
        if isinstance(query, str):  # written without its "?", which redact_text needs to see a parameter
            request["query_string"] = redact_text(f"?{query}")[1:]
    return _clean(event, tuple(secrets))


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _clean_text(value, secrets)
    if isinstance(value, dict):
        return {_clean(key, secrets): _clean(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item, secrets) for item in value]
    return value


def _clean_text(text: str, secrets: tuple[str, ...]) -> str:
    text = _URL_PASSWORD.sub(rf"\g<user>:{REDACTED}@", redact_text(text))
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
