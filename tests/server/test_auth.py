"""Tokens and tickets without a server: each way a credential fails says why."""

import time

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
    ],
)
async def test_each_bad_token_is_refused_with_its_reason(claims, key, code, words):
    with pytest.raises(AuthError) as caught:
        await Authenticator(SECRET).verify_token(jwt.encode(claims, key, algorithm="HS256"))
    assert caught.value.code == code
    assert words in caught.value.message


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
