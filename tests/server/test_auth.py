"""Tokens and tickets without a server: each way a credential fails says why."""

import time
from urllib.parse import unquote_plus

import jwt
import pytest

from dashboard.server.auth import Authenticator, AuthError, Principal, RedactingFilter, bearer_token, redact_text

SECRET = "unit-secret-0123456789abcdef0123456789"


async def test_token_round_trip_names_the_user():
    auth = Authenticator(SECRET)
    issued_from = int(time.time())
    token = auth.issue_token("alice", 60)
    issued_by = int(time.time())
    principal = await auth.verify_token(token)
    assert principal.user_id == "alice"
    assert issued_from + 60 <= principal.expires_at <= issued_by + 60  # 60 s after issue, to the second


async def test_a_supabase_style_token_is_accepted():
    claims = {"sub": "0b5e-uuid", "aud": "authenticated", "role": "authenticated", "exp": int(time.time()) + 60}
    assert (await Authenticator(SECRET).verify_token(jwt.encode(claims, SECRET, algorithm="HS256"))).user_id == "0b5e-uuid"


@pytest.mark.parametrize(
    ("claims", "key", "code", "words"),
    [
        ({"sub": "a", "aud": "authenticated", "exp": 1}, SECRET, "token_expired", "expired"),
        ({"sub": "a", "aud": "other", "exp": 2**31}, SECRET, "invalid_token", "audience"),
        ({"sub": "a", "aud": "authenticated", "exp": 2**31}, "another-secret-0123456789abcdef0123456789", "invalid_token",
         "signature"),
        ({"sub": "a", "aud": "authenticated"}, SECRET, "invalid_token", "'exp'"),
        ({"aud": "authenticated", "exp": 2**31}, SECRET, "invalid_token", "'sub'"),
        ({"sub": "a", "aud": "authenticated", "exp": 2**31, "nbf": 2**31 - 60}, SECRET, "invalid_token",
         "not valid yet (nbf is in the future)"),
        ({"sub": "a", "aud": "authenticated", "exp": 2**31, "iat": 2**31 - 60}, SECRET, "invalid_token",
         "iat is in the future"),
        ({"sub": "a", "aud": "authenticated", "exp": 2**31, "iat": "yesterday"}, SECRET, "invalid_token", "iat"),
    ],
)
async def test_each_bad_token_is_refused_with_its_reason(claims, key, code, words):
    with pytest.raises(AuthError) as caught:
        await Authenticator(SECRET).verify_token(jwt.encode(claims, key, algorithm="HS256"))
    assert caught.value.code == code
    assert words in caught.value.message


@pytest.mark.parametrize("store", ["sqlite"])  # the answer does not depend on the store
@pytest.mark.parametrize(("claim", "words"), [("nbf", "not valid yet"), ("iat", "iat is in the future")])
async def test_a_token_from_the_future_is_401_saying_so(app_api, claim, words):
    token = jwt.encode({"sub": "alice", "aud": "authenticated", "exp": 2**31, claim: 2**31 - 60}, app_api.settings.jwt_secret,
                       algorithm="HS256")
    async with app_api.client() as client:
        response = await client.get("/api/analytics/traces", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_token" and words in error["message"] and "well-formed" not in error["message"]


async def test_a_malformed_token_is_refused():
    with pytest.raises(AuthError, match="well-formed"):
        await Authenticator(SECRET).verify_token("not.a.jwt")


async def test_a_ticket_is_not_a_token_and_a_token_is_not_a_ticket():
    auth = Authenticator(SECRET)
    token = auth.issue_token("alice", 60)
    ticket = auth.issue_ticket(Principal("alice", time.time() + 60))
    with pytest.raises(AuthError):
        await auth.verify_token(ticket.value)
    with pytest.raises(AuthError):
        auth.verify_ticket(token)


def test_a_ticket_never_outlives_its_token():
    auth = Authenticator(SECRET)
    soon = time.time() + 5
    ticket = auth.issue_ticket(Principal("alice", soon))
    principal, ticket_id = auth.verify_ticket(ticket.value)
    assert ticket.expires_at <= soon
    assert principal.expires_at == pytest.approx(soon)
    assert ticket_id == ticket.ticket_id


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token"])
def test_a_malformed_authorization_header_is_refused(header):
    with pytest.raises(AuthError, match="Bearer"):
        bearer_token(header)


def test_redaction_removes_tokens_and_tickets_from_log_text():
    token = Authenticator(SECRET).issue_token("alice", 60)
    line = f'127.0.0.1 - "GET /api/analytics/traces/stream?model=gpt-4o&token={token}&ticket=abc HTTP/1.1" 200'
    redacted = redact_text(line)
    assert token not in redacted and "ticket=abc" not in redacted
    assert "model=gpt-4o" in redacted


def test_the_log_filter_redacts_record_arguments():
    import logging

    token = Authenticator(SECRET).issue_token("alice", 60)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("ip", "GET", f"/s?token={token}"), None)
    RedactingFilter().filter(record)
    assert token not in record.getMessage()


def _percent_encoded(text: str) -> str:
    return "".join(f"%{ord(char):02X}" for char in text)


@pytest.mark.parametrize("spelling", [
    "?%74oken={}", "?t%6Fken={}", "?%74oken={encoded}", "?%74icket={encoded}", "?TOKEN={}", "?%20token={encoded}",
    "?model=x;token={encoded}", "?token=junk&token={encoded}", "?access%5Ftoken={encoded}", "?anything={encoded}",
])
def test_redaction_compares_query_names_and_values_decoded(spelling):
    token = Authenticator(SECRET).issue_token("alice", 60)
    signature = token.rsplit(".", 1)[1]
    line = redact_text("GET /api/analytics/traces/stream" + spelling.format(token, encoded=_percent_encoded(token)) + " HTTP/1.1")
    assert signature not in line and signature not in unquote_plus(line)
    assert line.startswith("GET /api/analytics/traces/stream?") and line.endswith(" HTTP/1.1")


def test_redaction_leaves_ordinary_parameters_alone():
    line = "/api/analytics/traces?model=gpt-4o&status=error&cursor=abc%3D&limit=5"
    assert redact_text(line) == line
