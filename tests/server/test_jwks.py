"""Tokens signed with a project's published keys (ES256 and RS256, as Supabase's signing keys issue
them), checked against a JWKS served on loopback: rotation without a restart, unknown key ids that
cannot hammer the endpoint, keys never published, ``alg: none`` and algorithm confusion."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from dashboard.server.auth import Authenticator, AuthError
from dashboard.server.jwks import SigningKeys

SECRET = "unit-secret-0123456789abcdef0123456789"
ISSUER = "https://project.supabase.co/auth/v1"


class Key:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        self.private = ec.generate_private_key(ec.SECP256R1()) if kind == "ES256" else rsa.generate_private_key(65537, 2048)

    def jwk(self) -> dict:
        algorithm = ECAlgorithm if self.kind == "ES256" else RSAAlgorithm
        return algorithm.to_jwk(self.private.public_key(), as_dict=True) | {"kid": self.kid, "alg": self.kind, "use": "sig"}

    def token(self, sub: str = "alice", *, kid: str | None = None, iss: str = ISSUER, algorithm: str | None = None) -> str:
        claims = {"sub": sub, "aud": "authenticated", "role": "authenticated", "iss": iss, "exp": int(time.time()) + 60}
        return jwt.encode(claims, self.private, algorithm=algorithm or self.kind, headers={"kid": kid or self.kid})


class JwksServer:
    """The project's ``/auth/v1/.well-known/jwks.json`` on loopback; ``keys`` is what it publishes now."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                body = json.dumps({"keys": [key.jwk() for key in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"


@pytest.fixture
def jwks():
    server = JwksServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def checker(jwks: JwksServer, cooldown: float = 0.0) -> Authenticator:
    return Authenticator(SECRET, SigningKeys(jwks.url, cooldown=cooldown), issuer=ISSUER)


@pytest.mark.parametrize("kind", ["ES256", "RS256"])
async def test_a_token_signed_with_a_published_key_names_its_user(jwks, kind):
    key = Key(kind)
    jwks.keys = [key]
    assert (await checker(jwks).verify_token(key.token("0b5e-user"))).user_id == "0b5e-user"


async def test_a_rotated_in_key_works_without_a_restart_and_the_secret_still_does(jwks):
    old, new = Key("ES256"), Key("ES256")
    jwks.keys = [old]
    auth = checker(jwks)
    assert (await auth.verify_token(old.token())).user_id == "alice"
    jwks.keys = [old, new]  # the project rotates: the new key is published, then used
    assert (await auth.verify_token(new.token("bob"))).user_id == "bob"
    legacy = jwt.encode({"sub": "carol", "aud": "authenticated", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert (await auth.verify_token(legacy)).user_id == "carol"


async def test_unknown_key_ids_cannot_make_the_api_hammer_the_endpoint(jwks):
    key = Key("ES256")
    jwks.keys = [key]
    auth = checker(jwks, cooldown=60)
    await auth.verify_token(key.token())
    for _ in range(50):
        with pytest.raises(AuthError, match="does not know"):
            await auth.verify_token(key.token(kid=f"made-up-{uuid.uuid4().hex}"))
    assert jwks.requests == 1  # the first fetch only: the cooldown holds back the rest


async def test_a_key_that_signs_but_was_never_published_is_refused(jwks):
    published, unpublished = Key("ES256"), Key("ES256")
    jwks.keys = [published]
    auth = checker(jwks)
    with pytest.raises(AuthError, match="does not know"):
        await auth.verify_token(unpublished.token())
    with pytest.raises(AuthError, match="signature"):  # claiming a published key's id does not help
        await auth.verify_token(unpublished.token(kid=published.kid))


async def test_alg_none_and_algorithm_confusion_are_refused(jwks):
    es, rs = Key("ES256"), Key("RS256")
    jwks.keys = [es, rs]
    auth = checker(jwks)
    claims = {"sub": "mallory", "aud": "authenticated", "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    public_pem = rs.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    def hs256_with(secret: bytes) -> str:  # PyJWT refuses to sign HS256 with a PEM key: done by hand, as an attacker would
        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rs.kid}).encode())
        payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
        signature = jwt.utils.base64url_encode(hmac.new(secret, header + b"." + payload, hashlib.sha256).digest())
        return (header + b"." + payload + b"." + signature).decode()

    for token in (unsigned, hs256_with(public_pem), rs.token(kid=es.kid)):
        with pytest.raises(AuthError):
            await auth.verify_token(token)
    with pytest.raises(AuthError, match="does not match its key"):  # an ES256 header on the RSA key's id
        await auth.verify_token(es.token(kid=rs.kid))


async def test_a_token_of_another_project_is_refused(jwks):
    key = Key("ES256")
    jwks.keys = [key]
    with pytest.raises(AuthError, match="another project"):
        await checker(jwks).verify_token(key.token(iss="https://elsewhere.supabase.co/auth/v1"))


async def test_through_the_api_a_signing_key_token_reads_and_an_unreachable_jwks_is_a_401(make_app_api, jwks):
    key = Key("ES256")
    jwks.keys = [key]
    api = await make_app_api(jwks_url=jwks.url, supabase_url="https://project.supabase.co")
    async with api.client() as client:
        response = await client.get("/api/analytics/traces", headers={"Authorization": f"Bearer {key.token('dora')}"})
        assert response.status_code == 200, response.text
    down = await make_app_api(jwks_url="http://127.0.0.1:9/unreachable", supabase_url="https://project.supabase.co")
    async with down.client() as client:
        response = await client.get("/api/analytics/traces", headers={"Authorization": f"Bearer {key.token('dora')}"})
        assert response.status_code == 401 and "does not know" in response.json()["error"]["message"]
