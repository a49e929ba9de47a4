"""Who is calling: JWTs (HS256, Supabase-compatible), single-use stream tickets, and log redaction.

A browser's ``EventSource`` cannot send an ``Authorization`` header, which is why the audited stream
was never authorised. The fix is a ticket: a short-lived, single-use credential the page fetches with
its Bearer token and puts in the stream's URL. Tickets are signed like tokens (so any API process can
check them) and spent in the store (so each works once, across processes).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import unquote_plus

import jwt

from .jwks import ACCEPTED, SigningKeys

TOKEN_AUDIENCE = "authenticated"
TICKET_AUDIENCE = "traces-stream-ticket"
TICKET_TTL_SECONDS = 60
ALGORITHM = "HS256"
_JWT_SHAPE = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
# query names that carry a credential, decoded (``apikey``: Supabase Realtime's URL carries the service key)
CREDENTIAL_NAMES = frozenset({"token", "ticket", "access_token", "apikey"})
REDACTED = "REDACTED"
# a query parameter in a log line: after ? & or ; (a separator to some parsers), up to the next one or a space
_QUERY_PARAMETER = re.compile(r"(?P<before>[?&;])(?P<name>[^?&;=\s\"'<>#]*)=(?P<value>[^&;\s\"'<>#]*)")
# a credential as a JSON field in a logged message (Realtime's join sends ``"access_token": "<service key>"``)
_JSON_CREDENTIAL = re.compile(r'(?P<name>"(?:token|ticket|access_token|apikey)"\s*:\s*)"[^"]*"', re.IGNORECASE)


class AuthError(Exception):
    """A credential was missing or refused; ``message`` says which and why, in words a user acts on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user and when the credential behind it stops being valid."""

    user_id: str
    expires_at: float


@dataclass(frozen=True)
class Ticket:
    value: str
    ticket_id: str
    expires_at: float


class Authenticator:
    """Issues and checks tokens and tickets with one HS256 secret; with ``signing_keys``, also accepts
    ES256/RS256 tokens signed by a key the project publishes (its JWKS), as Supabase issues them now."""

    def __init__(self, secret: str, signing_keys: SigningKeys | None = None, issuer: str | None = None) -> None:
        if not secret:
            raise ValueError("the JWT secret must not be empty")
        self._secret = secret
        self.signing_keys = signing_keys
        self.issuer = issuer  # required of JWKS-signed tokens when set (Supabase: <SUPABASE_URL>/auth/v1)

    def issue_token(self, user_id: str, ttl_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "aud": TOKEN_AUDIENCE, "role": "authenticated", "iat": now, "exp": now + ttl_seconds}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    async def verify_token(self, token: str) -> Principal:
        """HS256 with the secret, or ES256/RS256 with a published key; ``alg: none`` and a token whose
        algorithm does not belong to its key (an HS256 token "signed" with a public key) are refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("invalid_token", "the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm == ALGORITHM:
            claims = self._decode(token, TOKEN_AUDIENCE, what="token")
        elif algorithm in ACCEPTED.values() and self.signing_keys is not None:
            kid = header.get("kid")
            key = await self.signing_keys.key(kid) if isinstance(kid, str) else None
            if key is None:
                raise AuthError("invalid_token", f"the token is signed with a key this server does not know (kid {kid!r})")
            if ACCEPTED[key.key_type] != algorithm:
                raise AuthError("invalid_token", f"the token's algorithm {algorithm} does not match its key")
            claims = self._decode(token, TOKEN_AUDIENCE, what="token", key=key.key, algorithm=algorithm, issuer=self.issuer)
        else:
            raise AuthError("invalid_token", f"tokens signed with {algorithm!r} are not accepted")
        return Principal(user_id=claims["sub"], expires_at=float(claims["exp"]))

    def issue_ticket(self, principal: Principal, ttl_seconds: int = TICKET_TTL_SECONDS) -> Ticket:
        """A ticket lives ``ttl_seconds``, and a stream opened with it no longer than the token behind it."""
        now = time.time()
        expires_at = min(now + ttl_seconds, principal.expires_at)
        ticket_id = uuid.uuid4().hex
        claims = {
            "sub": principal.user_id,
            "aud": TICKET_AUDIENCE,
            "jti": ticket_id,
            "exp": int(expires_at),
            "token_exp": principal.expires_at,
        }
        return Ticket(jwt.encode(claims, self._secret, algorithm=ALGORITHM), ticket_id, expires_at)

    def verify_ticket(self, ticket: str) -> tuple[Principal, str]:
        """The ticket's principal and its id; the caller must still spend the id once."""
        claims = self._decode(ticket, TICKET_AUDIENCE, what="ticket", required=("exp", "sub", "jti"))
        return Principal(claims["sub"], float(claims.get("token_exp", claims["exp"]))), claims["jti"]

    def _decode(self, value: str, audience: str, *, what: str, required: tuple[str, ...] = ("exp", "sub"),
                key: object = None, algorithm: str = ALGORITHM, issuer: str | None = None) -> dict:
        try:
            claims = jwt.decode(
                value,
                self._secret if key is None else key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                options={"require": list(required)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(f"{what}_expired", f"the {what} has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"invalid_{what}", f"the {what} is for another audience (expected {audience!r})") from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"invalid_{what}", f"the {what} was issued by another project (expected {issuer!r})") from None
        except jwt.InvalidSignatureError:
            raise AuthError(f"invalid_{what}", f"the {what}'s signature does not match this server's secret") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"invalid_{what}", f"the {what} lacks the {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError as exc:  # PyJWT says which claim only in its message
            because = ("not valid yet (nbf is in the future)" if "nbf" in str(exc)
                       else "from the future (its iat is in the future)")
            raise AuthError(f"invalid_{what}", f"the {what} is {because}; is one of the clocks wrong?") from None
        except jwt.InvalidIssuedAtError:
            raise AuthError(f"invalid_{what}", f"the {what}'s iat must be a whole number of seconds since 1970") from None
        except jwt.InvalidTokenError:
            raise AuthError(f"invalid_{what}", f"the {what} is not a well-formed JWT") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthError(f"invalid_{what}", f"the {what}'s subject must be a non-empty string")
        return claims


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer`` header; None when the header is absent."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid_authorization", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def redact_text(text: str) -> str:
    """Credentials in query strings replaced, however spelled, and anything shaped like a JWT.

    The server decodes a query's names and values before it looks for ``token`` or ``ticket``
    (``%74oken=%65yJ...`` is a credential), so parameters are compared decoded, never as written.
    """
    text = _JSON_CREDENTIAL.sub(rf'\g<name>"{REDACTED}"', text)
    return _JWT_SHAPE.sub(REDACTED, _QUERY_PARAMETER.sub(_redact_parameter, text))


def _redact_parameter(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    decoded_name, decoded_value = unquote_plus(name).strip().lower(), unquote_plus(value)
    if decoded_name in CREDENTIAL_NAMES or _JWT_SHAPE.search(decoded_value):
        return f"{match.group('before')}{name}={REDACTED}"
    return match.group(0)


class RedactingFilter(logging.Filter):
    """A logging filter that takes credentials out of every record before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):  # logging's other form: one mapping for %(name)s
            record.args = {key: _redact_arg(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def _redact_arg(arg: object) -> object:
    """A string redacted; any other object (httpx's ``URL``, a websockets frame) as its redacted text when
    that text holds a credential, else untouched (``%d`` still gets its number)."""
    if isinstance(arg, str):
        return redact_text(arg)
    if arg is None or isinstance(arg, (int, float)):
        return arg
    text = str(arg)
    redacted = redact_text(text)
    return arg if redacted == text else redacted
