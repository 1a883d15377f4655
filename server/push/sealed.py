"""Push credentials sealed at rest: an organization's FCM service account and APNs key are
stored encrypted, so that a database dump or backup does not hand out the keys that can
notify its agents' phones.

Fernet (AES-CBC + HMAC) keys are derived from the server secret with HKDF, so the operator
manages one secret. Rotation: the operator sets a new CHATD_SECRET_KEY and lists the old ones
in CHATD_PREVIOUS_SECRET_KEYS; the current key seals, every listed key still opens, and
`rotate` re-seals a stored value under the current key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_HKDF_INFO = b"chatd push credentials v1"


class SealBroken(ValueError):
    """No configured key opens the sealed value (wrong secret, or the value was altered)."""


def _fernet(secret: str) -> Fernet:
    if not secret:
        raise ValueError("an empty secret cannot seal credentials")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class Sealer:
    """Seals JSON objects with the current secret; opens them with the current or a previous
    one."""

    def __init__(self, secret_key: str, previous_keys: Sequence[str] = ()) -> None:
        # MultiFernet encrypts with the first key and tries them all in order to decrypt.
        self._keys = MultiFernet([_fernet(secret_key), *(_fernet(k) for k in previous_keys)])

    def seal(self, obj: dict) -> str:
        return self._keys.encrypt(orjson.dumps(obj)).decode("ascii")

    def open(self, token: str) -> dict:
        try:
            plain = self._keys.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken(
                "sealed credentials cannot be opened with the configured keys"
            ) from None
        value = orjson.loads(plain)
        if not isinstance(value, dict):
            raise SealBroken("sealed credentials do not hold an object")
        return value

    def rotate(self, token: str) -> str:
        """The same value sealed under the current key (a no-op in meaning, not in bytes)."""
        try:
            return self._keys.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken(
                "sealed credentials cannot be opened with the configured keys"
            ) from None
