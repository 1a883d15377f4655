"""Local stand-ins for the push providers, speaking their real protocols over loopback, so
that the push clients are tested through the network and not through mocks.

    async with FakeFcm() as fcm:              # OAuth token endpoint + FCM HTTP v1
        account = fcm.new_service_account()   # its public key is trusted by the fake
        client = FcmClient(account, http=http, api_base=fcm.base_url)

    async with FakeApns() as apns:            # HTTP/2 over TLS, like api.push.apple.com
        http = httpx.AsyncClient(http2=True, verify=apns.ssl_context())
        client = ApnsClient(apns.credentials, http=http, base_url=apns.base_url)
        await apns.stop(); await apns.start()  # an outage, same port

Both check what the real services check (signatures, claims, topic, token expiry) and have
knobs for the answers a client must handle: `unregistered_tokens`, `fail_with`,
`retry_after`, `expire_all_tokens()` / `expire_provider_tokens()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
import secrets
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.e2e.services import restartable_port

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_APNS_REASON = {
    400: "BadRequest",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
_DEVICE_PATH = re.compile(r"/3/device/([^/]+)")
_HEX_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2}){8,100}")


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def make_service_account(
    token_uri: str, project_id: str = "chatd-push-test"
) -> tuple[dict, rsa.RSAPublicKey]:
    """A Firebase service-account JSON with a fresh RSA key, and the key's public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": _pem(key),
        "client_email": f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri,
    }
    return account, key.public_key()


def make_apns_key() -> tuple[str, ec.EllipticCurvePublicKey]:
    """An APNs auth key as Apple's .p8 file holds it (PKCS#8 PEM, P-256), and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _pem(key), key.public_key()


def _google_error(status: int, message: str, error_code: str | None = None) -> web.Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _GOOGLE_STATUS.get(status, "UNKNOWN"),
    }
    if error_code is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }
        ]
    return web.json_response({"error": error}, status=status)


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


class FakeFcm:
    """Google's OAuth2 token endpoint (`POST /token`) and the FCM HTTP v1 send endpoint on one
    plain-HTTP aiohttp server.

    received: the messages accepted (the `message` object of each 200).
    answers: the status of every send, in order (401s included).
    assertions: header and claims of every JWT-bearer assertion the token endpoint accepted.
    """

    def __init__(self, *, token_lifetime_s: float = 3600, port: int | None = None) -> None:
        self.port = port or restartable_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token_uri = f"{self.base_url}/token"
        self.token_lifetime_s = token_lifetime_s
        self.unregistered_tokens: set[str] = set()
        self.fail_with: int | None = None
        self.retry_after: str | None = None
        self.received: list[dict] = []
        self.answers: list[int] = []
        self.assertions: list[dict] = []
        self.tokens_issued = 0
        # client_email -> (project_id, private_key_id, public key)
        self._accounts: dict[str, tuple[str, str | None, rsa.RSAPublicKey]] = {}
        # access token -> (client_email, monotonic expiry)
        self._access: dict[str, tuple[str, float]] = {}
        self._runner: web.AppRunner | None = None

    def trust(self, service_account: dict, public_key: rsa.RSAPublicKey) -> None:
        self._accounts[service_account["client_email"]] = (
            service_account["project_id"],
            service_account.get("private_key_id"),
            public_key,
        )

    def new_service_account(self, project_id: str = "chatd-push-test") -> dict:
        account, public_key = make_service_account(self.token_uri, project_id)
        self.trust(account, public_key)
        return account

    def expire_all_tokens(self) -> None:
        """Every access token issued so far is refused from now on (Google revoked it early)."""
        self._access = {token: (email, 0.0) for token, (email, _) in self._access.items()}

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeFcm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return _oauth_error("invalid_grant", "Invalid JWT.")
        account = self._accounts.get(issuer) if isinstance(issuer, str) else None
        if account is None:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        _, key_id, public_key = account
        if key_id is not None and header.get("kid") != key_id:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=issuer,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidTokenError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {exc}")
        if FCM_SCOPE not in str(claims["scope"]).split():
            return _oauth_error("invalid_scope", "Scope does not allow FCM")
        if claims["exp"] - claims["iat"] > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: expiration too far in the future")
        self.assertions.append({"header": header, "claims": claims})
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self._access[token] = (issuer, time.monotonic() + self.token_lifetime_s)
        self.tokens_issued += 1
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        )

    async def _send(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        self.answers.append(response.status)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        email, expires = self._access.get(token, ("", 0.0))
        if time.monotonic() >= expires:
            return _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        project = request.match_info["project"]
        if self._accounts[email][0] != project:
            return _google_error(403, f"Permission denied on project {project}.")
        try:
            body = await request.json()
        except ValueError:
            return _google_error(400, "Invalid JSON payload received.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            return _google_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return _google_error(400, "Invalid value at 'message.data'", "INVALID_ARGUMENT")
        if message["token"] in self.unregistered_tokens:
            return _google_error(404, "Requested entity was not found.", "UNREGISTERED")
        if self.fail_with is not None:
            response = _google_error(self.fail_with, "The service is currently unavailable.")
            if self.retry_after is not None:
                response.headers["Retry-After"] = self.retry_after
            return response
        self.received.append(message)
        return web.json_response(
            {"name": f"projects/{project}/messages/{len(self.received)}:{uuid.uuid4().hex}"}
        )


@dataclass(frozen=True, slots=True)
class ApnsRequest:
    token: str
    headers: dict[str, str]
    body: dict | None
    http_version: str
    status: int
    reason: str | None


def _self_signed_tls() -> tuple[bytes, bytes, bytes]:
    """A throw-away CA and a certificate it signs for 127.0.0.1: (ca, cert, key) as PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatd test push CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        ca.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        _pem(key).encode(),
    )


def _server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only; they live as long as this call.
    with tempfile.TemporaryDirectory(prefix="fake-apns-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, ssl.SSLError, TimeoutError):
        # A client that does not answer the TLS close (an idle pooled connection) is cut off.
        writer.transport.abort()


class FakeApns:
    """APNs over TLS and HTTP/2 (the h2 library on an asyncio server).

    It checks the provider token (ES256 with the team's public key, kid, iss, iat within the
    hour), the topic, the push type, the collapse-id length and the device token's form, and
    answers as Apple does. A client that negotiates HTTP/1.1 is answered 505 (APNs speaks
    HTTP/2 only) and recorded with http_version "1.1". requests: every request with the
    answer given.

    `stop()` aborts the open connections, as a crashed host would: a graceful TLS close would
    wait for the client to answer on a pooled connection it is not reading.
    """

    def __init__(
        self,
        *,
        bundle_id: str = "com.example.chatd",
        team_id: str = "TEAM123456",
        key_id: str = "KEY1234567",
        port: int | None = None,
    ) -> None:
        self.port = port or restartable_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.bundle_id = bundle_id
        self.team_id = team_id
        self.key_id = key_id
        self.private_key_pem, self.public_key = make_apns_key()
        self.unregistered_tokens: set[str] = set()
        self.fail_with: int | None = None
        self.retry_after: str | None = None
        self.requests: list[ApnsRequest] = []
        self.provider_tokens: list[str] = []  # distinct JWTs, in the order first seen
        self._expired_jwts: set[str] = set()
        self._ca_pem, cert_pem, key_pem = _self_signed_tls()
        self._tls = _server_context(cert_pem, key_pem)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    @property
    def credentials(self) -> dict:
        """What validate_apns_credentials returns for this fake's team and key (sandbox)."""
        return {
            "team_id": self.team_id,
            "key_id": self.key_id,
            "private_key": self.private_key_pem,
            "bundle_id": self.bundle_id,
            "environment": "sandbox",
        }

    @property
    def received(self) -> list[ApnsRequest]:
        """The notifications accepted (answered 200)."""
        return [r for r in self.requests if r.status == 200]

    @property
    def ca_pem(self) -> bytes:
        """The certificate authority of this fake's TLS certificate (PEM), for a CA file."""
        return self._ca_pem

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this fake's certificate (and nothing else)."""
        return ssl.create_default_context(cadata=self._ca_pem.decode())

    def expire_provider_tokens(self) -> None:
        """Every provider token seen so far is answered 403 ExpiredProviderToken from now on."""
        self._expired_jwts.update(self.provider_tokens)

    async def start(self) -> None:
        """Listen (again) on the same port; returns once connections are accepted."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._connection, "127.0.0.1", self.port, ssl=self._tls, reuse_address=True
            )

    async def stop(self) -> None:
        """Close the listening socket and drop every open connection without a goodbye."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in self._connections.values():
            writer.transport.abort()
        await server.wait_closed()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> FakeApns:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the wire ---

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                await self._serve_h2(reader, writer)
            else:
                await self._serve_http1(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, h2.exceptions.H2Error):
            pass
        finally:
            del self._connections[task]
            await _close(writer)

    async def _serve_h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    streams[event.stream_id] = (dict(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    headers, body = streams.pop(event.stream_id)
                    self._respond_h2(conn, event.stream_id, headers, bytes(body))
                elif isinstance(event, h2.events.StreamReset):
                    streams.pop(event.stream_id, None)
            writer.write(conn.data_to_send())
            await writer.drain()
            if conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                return

    def _respond_h2(
        self, conn: h2.connection.H2Connection, stream_id: int, headers: dict[str, str], body: bytes
    ) -> None:
        status, payload, extra = self._handle(
            headers.get(":method", ""), headers.get(":path", ""), "2", headers, body
        )
        response = [(":status", str(status)), *extra, ("content-length", str(len(payload)))]
        conn.send_headers(stream_id, response, end_stream=not payload)
        if payload:
            conn.send_data(stream_id, payload, end_stream=True)

    async def _serve_http1(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status, payload, extra = self._handle(method, path, "1.1", headers, body)
        lines = [f"HTTP/1.1 {status} APNs", *(f"{k}: {v}" for k, v in extra)]
        lines += [f"content-length: {len(payload)}", "connection: close", "", ""]
        writer.write("\r\n".join(lines).encode() + payload)
        await writer.drain()

    def _handle(
        self, method: str, path: str, http_version: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = {k.lower(): v for k, v in headers.items() if not k.startswith(":")}
        match = _DEVICE_PATH.fullmatch(path)
        token = match.group(1) if match else ""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if method != "POST" or match is None:
            status, reason = (405, "MethodNotAllowed") if match else (404, "BadPath")
        else:
            status, reason = self._judge(http_version, headers, token, body)
        self.requests.append(ApnsRequest(token, headers, body, http_version, status, reason))
        response_headers = [("apns-id", headers.get("apns-id", str(uuid.uuid4())))]
        if status == 200:
            return status, b"", response_headers
        answer: dict[str, Any] = {"reason": reason}
        if status == 410:
            answer["timestamp"] = int(time.time() * 1000)
        response_headers.append(("content-type", "application/json"))
        if self.retry_after is not None and status in (429, 500, 503):
            response_headers.append(("retry-after", self.retry_after))
        return status, json.dumps(answer).encode(), response_headers

    def _judge(
        self, http_version: str, headers: dict[str, str], token: str, body: dict | None
    ) -> tuple[int, str | None]:
        if http_version != "2":
            return 505, "HttpVersionNotSupported"  # APNs serves HTTP/2 only
        refused = self._check_provider_token(headers.get("authorization", ""))
        if refused is not None:
            return 403, refused
        if "apns-topic" not in headers:
            return 400, "MissingTopic"
        if headers["apns-topic"] != self.bundle_id:
            return 400, "TopicDisallowed"
        if headers.get("apns-push-type") not in ("alert", "background", "voip"):
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("1", "5", "10"):
            return 400, "BadPriority"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        if not _HEX_TOKEN.fullmatch(token):
            return 400, "BadDeviceToken"
        if not isinstance(body, dict) or not isinstance(body.get("aps"), dict):
            return 400, "PayloadEmpty"
        if token in self.unregistered_tokens:
            return 410, "Unregistered"
        if self.fail_with is not None:
            return self.fail_with, _APNS_REASON.get(self.fail_with, "InternalServerError")
        return 200, None

    def _check_provider_token(self, authorization: str) -> str | None:
        """None when the provider token is good, else Apple's reason."""
        if not authorization:
            return "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "InvalidProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return "InvalidProviderToken"
        if token not in self.provider_tokens:
            self.provider_tokens.append(token)
        if token in self._expired_jwts or claims["iat"] < time.time() - 3600:
            return "ExpiredProviderToken"
        return None
