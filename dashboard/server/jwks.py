"""The public keys a Supabase project signs its users' tokens with (its JWKS: ES256 or RS256), for
checking those tokens without a shared secret.

Keys are fetched with PyJWT's ``PyJWKClient`` on a worker thread (it uses blocking urllib), kept by key
id, and fetched again when a token names a key id not seen yet, so a rotated key works without a
restart. A fetch happens at most once per ``cooldown`` seconds: tokens with made-up key ids cannot turn
the API into a client that hammers the project's endpoint. Concurrent misses share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time

import jwt

log = logging.getLogger(__name__)
ACCEPTED = {"EC": "ES256", "RSA": "RS256"}  # the one algorithm each kind of key may verify


class SigningKeys:
    def __init__(self, url: str, *, cooldown: float = 30.0, timeout: float = 5.0) -> None:
        self.url = url
        self.cooldown = cooldown
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The published key with this id, fetching the set again if it is new and the cooldown allows."""
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self.cooldown:
                await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            keys = await asyncio.to_thread(self._client.get_signing_keys, True)
        except jwt.PyJWKClientError as exc:  # unreachable, or no usable key: the keys known so far stay
            log.warning("could not fetch the signing keys from %s: %s", self.url, exc)
            return
        self._keys = {key.key_id: key for key in keys if key.key_id and ACCEPTED.get(key.key_type)}
