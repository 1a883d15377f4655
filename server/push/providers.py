"""Clients for the two push providers an agent's phone listens to: Firebase Cloud Messaging
(HTTP v1) and Apple Push Notification service (token-based HTTP/2 API).

Pure network code, no database: the caller decides what to do with each `PushResult`
(prune an "unregistered" device, requeue a "retry", log a "rejected"). A send never raises for
a provider's answer or a network failure; those are outcomes.

The credentials an organization uploads are checked here (`validate_*_credentials`) so that a
pasted key that does not parse is refused when it is saved, not at the first notification.
Errors name the field that is wrong and never quote the private key: the message reaches the
admin's browser and the logs.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
APNS_HOSTS = {
    "sandbox": "https://api.sandbox.push.apple.com",
    "production": "https://api.push.apple.com",
}
REQUEST_TIMEOUT_S = 10.0
# A collapse id longer than this makes APNs refuse the whole notification (BadCollapseId).
APNS_COLLAPSE_ID_MAX_BYTES = 64

DELIVERED = "delivered"
UNREGISTERED = "unregistered"
RETRY = "retry"
REJECTED = "rejected"

_RETRYABLE_FCM = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_APNS = frozenset({429, 500, 503})
_APNS_GONE_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")
_BUNDLE_ID = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _monotonic() -> float:
    """The clock for token lifetimes; a module function so that tests can move it forward."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class PushMessage:
    token: str
    title: str
    body: str | None
    data: dict[str, str]
    badge: int | None
    collapse_key: str


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: str
    status: int | None
    detail: str
    retry_after: float | None = None


class CredentialsInvalid(ValueError):
    """Uploaded provider credentials that cannot work. The message is safe to show the admin."""


# --- validation -------------------------------------------------------------------------


def _required_str(source: dict, field: str, what: str) -> str:
    value = source.get(field)
    if not isinstance(value, str) or not value.strip():
        raise CredentialsInvalid(f"{what}: {field} is missing or empty")
    return value.strip()


def _load_private_key(pem: str, what: str) -> Any:
    try:
        return load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        # `from None`: the parser's message is not needed and the key must not travel on.
        raise CredentialsInvalid(
            f"{what}: private key is not an unencrypted PEM private key"
        ) from None


def validate_fcm_credentials(service_account: dict) -> dict:
    """Check a Firebase service-account JSON (already parsed) and return what is stored:
    the fields the client uses, nothing else."""
    what = "FCM service account"
    if not isinstance(service_account, dict):
        raise CredentialsInvalid(f"{what}: expected the service-account JSON object")
    if service_account.get("type") != "service_account":
        raise CredentialsInvalid(f'{what}: type must be "service_account"')
    project_id = _required_str(service_account, "project_id", what)
    client_email = _required_str(service_account, "client_email", what)
    if "@" not in client_email:
        raise CredentialsInvalid(f"{what}: client_email is not an email address")
    private_key = _required_str(service_account, "private_key", what)
    if not isinstance(_load_private_key(private_key, what), rsa.RSAPrivateKey):
        raise CredentialsInvalid(f"{what}: private_key must be an RSA key")
    token_uri = service_account.get("token_uri") or GOOGLE_TOKEN_URI
    if not isinstance(token_uri, str) or not token_uri.startswith(("https://", "http://")):
        raise CredentialsInvalid(f"{what}: token_uri must be an http(s) URL")
    normalised = {
        "type": "service_account",
        "project_id": project_id,
        "client_email": client_email,
        "private_key": private_key + "\n",
        "token_uri": token_uri,
    }
    key_id = service_account.get("private_key_id")
    if key_id is not None:
        if not isinstance(key_id, str):
            raise CredentialsInvalid(f"{what}: private_key_id must be a string")
        if key_id:
            normalised["private_key_id"] = key_id
    return normalised


def validate_apns_credentials(
    team_id: str, key_id: str, private_key_pem: str, bundle_id: str, environment: str
) -> dict:
    """Check an APNs auth key (.p8) and its identifiers and return the dict to store."""
    what = "APNs credentials"
    if not isinstance(team_id, str) or not _APPLE_ID.fullmatch(team_id):
        raise CredentialsInvalid(f"{what}: team_id must be 10 uppercase letters or digits")
    if not isinstance(key_id, str) or not _APPLE_ID.fullmatch(key_id):
        raise CredentialsInvalid(f"{what}: key_id must be 10 uppercase letters or digits")
    if not isinstance(private_key_pem, str) or not private_key_pem.strip():
        raise CredentialsInvalid(f"{what}: private key is missing")
    key = _load_private_key(private_key_pem.strip(), what)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialsInvalid(
            f"{what}: private key must be the EC P-256 key of an Apple .p8 file"
        )
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.fullmatch(bundle_id):
        raise CredentialsInvalid(f"{what}: bundle_id must look like com.example.app")
    if environment not in APNS_HOSTS:
        raise CredentialsInvalid(f'{what}: environment must be "sandbox" or "production"')
    return {
        "team_id": team_id,
        "key_id": key_id,
        "private_key": private_key_pem.strip() + "\n",
        "bundle_id": bundle_id,
        "environment": environment,
    }


# --- shared helpers ---------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_or_empty(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _network_failure(exc: Exception) -> PushResult:
    text = str(exc)
    return PushResult(RETRY, None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _truncate_utf8(value: str, max_bytes: int) -> bytes:
    # Cut on a character boundary: half a character is an invalid header for the provider.
    return value.encode()[:max_bytes].decode(errors="ignore").encode()


class _TokenUnavailable(Exception):
    def __init__(self, result: PushResult) -> None:
        super().__init__(result.detail)
        self.result = result


# --- FCM --------------------------------------------------------------------------------


class FcmClient:
    """Sends through the FCM HTTP v1 API with a service account's OAuth2 access token.

    The token comes from the JWT-bearer grant and is kept until a minute before it expires;
    one lock makes concurrent sends share one fetch. A 401 means Google dropped it early: the
    client fetches a new one and sends once more.
    """

    TOKEN_LIFETIME_S = 3600
    TOKEN_MARGIN_S = 60

    def __init__(
        self,
        service_account: dict,
        *,
        http: httpx.AsyncClient,
        api_base: str = "https://fcm.googleapis.com",
    ) -> None:
        self._account = validate_fcm_credentials(service_account)
        self._key = load_pem_private_key(self._account["private_key"].encode(), password=None)
        self._http = http
        self._url = (
            f"{api_base.rstrip('/')}/v1/projects/{quote(self._account['project_id'], safe='')}"
            "/messages:send"
        )
        self._token: str | None = None
        self._token_good_until = 0.0
        self._lock = asyncio.Lock()

    async def send(self, msg: PushMessage) -> PushResult:
        payload = {"message": self._message(msg)}
        for attempt in range(2):
            try:
                token = await self._access_token()
            except _TokenUnavailable as exc:
                return exc.result
            try:
                response = await self._http.post(
                    self._url,
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=REQUEST_TIMEOUT_S,
                )
            except httpx.TransportError as exc:
                return _network_failure(exc)
            if response.status_code == 401 and attempt == 0:
                self._forget(token)
                continue
            return self._result(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _message(msg: PushMessage) -> dict:
        notification = {"title": msg.title}
        if msg.body is not None:
            notification["body"] = msg.body
        android: dict[str, Any] = {"collapse_key": msg.collapse_key, "priority": "high"}
        apns: dict[str, Any] = {
            "headers": {
                "apns-collapse-id": _truncate_utf8(
                    msg.collapse_key, APNS_COLLAPSE_ID_MAX_BYTES
                ).decode()
            }
        }
        if msg.badge is not None:
            android["notification"] = {"notification_count": msg.badge}
            apns["payload"] = {"aps": {"badge": msg.badge}}
        return {
            "token": msg.token,
            "notification": notification,
            "data": dict(msg.data),
            "android": android,
            "apns": apns,
        }

    @staticmethod
    def _result(response: httpx.Response) -> PushResult:
        status = response.status_code
        body = _json_or_empty(response)
        if status == 200:
            return PushResult(DELIVERED, status, str(body.get("name", "")))
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        codes = [
            d.get("errorCode")
            for d in error.get("details") or []
            if isinstance(d, dict) and d.get("errorCode")
        ]
        detail = (codes[0] if codes else None) or error.get("status") or f"HTTP {status}"
        if status == 404 or (status == 400 and "UNREGISTERED" in codes):
            return PushResult(UNREGISTERED, status, detail)
        if status in _RETRYABLE_FCM:
            return PushResult(RETRY, status, detail, _retry_after(response))
        return PushResult(REJECTED, status, detail)

    def _forget(self, token: str) -> None:
        # Only the token that was refused: a concurrent send may already have replaced it.
        if self._token == token:
            self._token = None

    async def _access_token(self) -> str:
        async with self._lock:
            if self._token is not None and _monotonic() < self._token_good_until:
                return self._token
            self._token = None
            started = _monotonic()
            token, expires_in = await self._fetch_token()
            self._token = token
            self._token_good_until = started + expires_in - self.TOKEN_MARGIN_S
            return token

    def _assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._account["client_email"],
            "scope": FCM_SCOPE,
            "aud": self._account["token_uri"],
            "iat": now,
            "exp": now + self.TOKEN_LIFETIME_S,
        }
        headers = {}
        if "private_key_id" in self._account:
            headers["kid"] = self._account["private_key_id"]
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers or None)

    async def _fetch_token(self) -> tuple[str, float]:
        try:
            response = await self._http.post(
                self._account["token_uri"],
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self._assertion(),
                },
                timeout=REQUEST_TIMEOUT_S,
            )
        except httpx.TransportError as exc:
            failed = _network_failure(exc)
            raise _TokenUnavailable(
                PushResult(RETRY, None, f"token endpoint: {failed.detail}")
            ) from None
        body = _json_or_empty(response)
        token = body.get("access_token")
        expires_in = body.get("expires_in", 3600)
        if response.status_code == 200 and isinstance(token, str) and token:
            try:
                return token, float(expires_in)
            except (TypeError, ValueError):
                return token, 3600.0
        reason = body.get("error") if isinstance(body.get("error"), str) else None
        detail = f"token endpoint: {reason or f'HTTP {response.status_code}'}"
        status = response.status_code
        # A 4xx here (invalid_grant, unauthorized_client) is the credentials' fault; anything
        # else, including a 200 without a token, is Google's trouble and may pass.
        outcome = REJECTED if 400 <= status < 500 and status != 429 else RETRY
        raise _TokenUnavailable(PushResult(outcome, status, detail, _retry_after(response)))


# --- APNs -------------------------------------------------------------------------------


class ApnsClient:
    """Sends through APNs with a provider token (ES256 JWT signed with the team's .p8 key).

    APNs speaks only HTTP/2: the caller creates `http` as `httpx.AsyncClient(http2=True)`
    (the `h2` package is installed with `httpx[http2]`) and shares it, so that the
    connection stays open across notifications as Apple asks.

    The provider token is reused for 50 minutes: Apple rejects a token older than an hour
    and answers TooManyProviderTokenUpdates to one refreshed more often than every 20 minutes.
    """

    JWT_REUSE_S = 50 * 60

    def __init__(
        self, credentials: dict, *, http: httpx.AsyncClient, base_url: str | None = None
    ) -> None:
        try:
            self._creds = validate_apns_credentials(
                credentials["team_id"],
                credentials["key_id"],
                credentials["private_key"],
                credentials["bundle_id"],
                credentials["environment"],
            )
        except KeyError as exc:
            raise CredentialsInvalid(f"APNs credentials: {exc.args[0]} is missing") from None
        self._key = load_pem_private_key(self._creds["private_key"].encode(), password=None)
        self._http = http
        self._base = (base_url or APNS_HOSTS[self._creds["environment"]]).rstrip("/")
        self._jwt: str | None = None
        self._jwt_signed_at = 0.0

    async def send(self, msg: PushMessage) -> PushResult:
        url = f"{self._base}/3/device/{quote(msg.token, safe='')}"
        body = self._payload(msg)
        for attempt in range(2):
            token = self._provider_token()
            try:
                response = await self._http.post(
                    url, json=body, headers=self._headers(msg, token), timeout=REQUEST_TIMEOUT_S
                )
            except httpx.TransportError as exc:
                return _network_failure(exc)
            reason = str(_json_or_empty(response).get("reason") or "")
            if response.status_code == 403 and reason == "ExpiredProviderToken" and attempt == 0:
                self._forget(token)
                continue
            return self._result(response, reason)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _payload(msg: PushMessage) -> dict:
        alert = {"title": msg.title}
        if msg.body is not None:
            alert["body"] = msg.body
        aps: dict[str, Any] = {"alert": alert, "sound": "default"}
        if msg.badge is not None:
            aps["badge"] = msg.badge
        # Custom keys sit beside "aps"; a data key named "aps" must not replace it.
        return {**msg.data, "aps": aps}

    def _headers(self, msg: PushMessage, token: str) -> dict[str, str | bytes]:
        return {
            "authorization": f"bearer {token}",
            "apns-topic": self._creds["bundle_id"],
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-expiration": "0",
            "apns-collapse-id": _truncate_utf8(msg.collapse_key, APNS_COLLAPSE_ID_MAX_BYTES),
        }

    @staticmethod
    def _result(response: httpx.Response, reason: str) -> PushResult:
        status = response.status_code
        if status == 200:
            return PushResult(DELIVERED, status, response.headers.get("apns-id", ""))
        detail = reason or f"HTTP {status}"
        if status == 410 or (status == 400 and reason in _APNS_GONE_REASONS):
            return PushResult(UNREGISTERED, status, detail)
        if status in _RETRYABLE_APNS:
            return PushResult(RETRY, status, detail, _retry_after(response))
        return PushResult(REJECTED, status, detail)

    def _provider_token(self) -> str:
        now = _monotonic()
        if self._jwt is None or now - self._jwt_signed_at >= self.JWT_REUSE_S:
            self._jwt = jwt.encode(
                {"iss": self._creds["team_id"], "iat": int(time.time())},
                self._key,
                algorithm="ES256",
                headers={"kid": self._creds["key_id"], "typ": None},
            )
            self._jwt_signed_at = now
        return self._jwt

    def _forget(self, token: str) -> None:
        if self._jwt == token:
            self._jwt = None
