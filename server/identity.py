"""Verified identity of end users: what proves that a client is the user of an external_id.

A channel chooses its mode (models.orgs.IDENTITY_MODES):
- "off": anonymous ids, as the widget makes them; whoever holds an id is its user;
- "hmac": the customer's server computes user_hash = hex(HMAC-SHA256(identity secret,
  external_id)) and gives it to its page or app with the id;
- "jwt": the customer's server (or its identity provider) signs a token whose `sub` is the
  external_id and which carries `exp`: HS256 with the identity secret, or RS256/ES256 with a
  key of the JWKS URL configured on the channel. The algorithm is pinned per channel.

The identity secret is never stored: it is derived from CHATD_SECRET_KEY and the channel's
salt (as webhook secrets are), so a new salt is a new secret and changing CHATD_SECRET_KEY
changes every channel's secret (docs/identity.md).

Every way an end user reaches a conversation (opening it, the widget page and history, uploads,
each Socket.IO event, device registration) goes through IdentityVerifier.verify.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any, Protocol

import jwt

from server.actors import IdentityProof
from server.errors import IdentityRefused, IdentityRequired, Unavailable

SECRET_PREFIX = "ids_"
# Seconds of clock difference tolerated on exp/iat/nbf of identity tokens.
JWT_LEEWAY_SECONDS = 30
# How long the keys of a JWKS URL are kept before they are fetched again (a token with an
# unknown kid fetches them at once, at most once per JWKS_MIN_REFETCH_SECONDS).
JWKS_CACHE_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5


class ChannelIdentity(Protocol):
    """The identity columns of a channel (a row of models.Channel)."""

    id: str
    identity_mode: str
    identity_salt: str | None
    identity_jwt_algorithm: str | None
    identity_jwks_url: str | None


def user_hash(secret: str, external_id: str) -> str:
    """What the customer's server computes for HMAC mode (the snippets in docs/identity.md)."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


class IdentityVerifier:
    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key.encode()
        # PyJWKClient (PyJWT's JWKS cache) per URL; it fetches with urllib, so in a thread.
        self._jwks: dict[str, jwt.PyJWKClient] = {}

    def secret_for(self, channel_id: str, salt: str) -> str:
        raw = hmac.new(
            self._secret_key, f"identity-secret:{channel_id}:{salt}".encode(), hashlib.sha256
        ).digest()
        return SECRET_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    async def verify(
        self, channel: ChannelIdentity, external_id: str, proof: IdentityProof | None
    ) -> None:
        """Raise IdentityRequired (no proof) or IdentityRefused (a proof that does not verify
        for external_id) when the channel verifies its end users; return on success or when
        it does not. Unavailable when the identity provider's keys cannot be fetched."""
        mode = channel.identity_mode or "off"
        if mode == "off":
            return
        if not channel.identity_salt:
            raise IdentityRefused("This chat's identity secret is not set up.")
        if mode == "hmac":
            given = proof.user_hash if proof is not None else None
            if not given:
                raise IdentityRequired("This chat requires a verified user: user_hash missing.")
            expected = user_hash(self.secret_for(channel.id, channel.identity_salt), external_id)
            if not hmac.compare_digest(expected, given.strip().lower()):
                raise IdentityRefused("user_hash does not match external_id.")
            return
        token = proof.identity_token if proof is not None else None
        if not token:
            raise IdentityRequired("This chat requires a verified user: identity_token missing.")
        claims = await self._decode(channel, token)
        if claims.get("sub") != external_id:
            raise IdentityRefused("identity_token's sub is not external_id.")

    async def _decode(self, channel: ChannelIdentity, token: str) -> dict[str, Any]:
        algorithm = channel.identity_jwt_algorithm or "HS256"
        try:
            if algorithm == "HS256":
                key: Any = self.secret_for(channel.id, channel.identity_salt or "")
            else:
                key = await self._jwks_key(channel.identity_jwks_url, token)
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={"require": ["exp", "sub"], "verify_aud": False},
                leeway=JWT_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise IdentityRefused("identity_token has expired.") from None
        except jwt.PyJWKClientConnectionError:
            raise Unavailable("The identity provider's keys cannot be fetched.") from None
        except jwt.PyJWTError as exc:
            raise IdentityRefused(f"identity_token refused: {exc}") from None

    async def _jwks_key(self, url: str | None, token: str):
        if not url:
            raise IdentityRefused("This chat's identity provider (JWKS URL) is not set up.")
        client = self._jwks.get(url)
        if client is None:
            client = jwt.PyJWKClient(
                url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS
            )
            self._jwks[url] = client
        signing_key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
        return signing_key.key
