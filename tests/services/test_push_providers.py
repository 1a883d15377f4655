"""The push clients against local fakes of FCM and APNs over real loopback connections
(HTTP/1.1 for Google, HTTP/2 over TLS for Apple): tokens, payloads, the outcome of every
answer a provider gives, credential validation and sealing."""

from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.push import providers
from server.push.providers import (
    ApnsClient,
    CredentialsInvalid,
    FcmClient,
    PushMessage,
    validate_apns_credentials,
    validate_fcm_credentials,
)
from server.push.sealed import SealBroken, Sealer
from tests.e2e.fake_push import FakeApns, FakeFcm, make_apns_key, make_service_account
from tests.e2e.procs import free_port

DEVICE = "a1" * 32


def message(**changes: object) -> PushMessage:
    fields: dict = {
        "token": DEVICE,
        "title": "Ada (Support)",
        "body": "Is the order on its way?",
        "data": {"conversation_id": "c-42", "seq": "12"},
        "badge": 3,
        "collapse_key": "conversation-c-42",
    }
    fields.update(changes)
    return PushMessage(**fields)


@pytest.fixture
async def fcm():
    async with FakeFcm() as fake:
        yield fake


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def apns():
    async with FakeApns() as fake:
        yield fake


@pytest.fixture
async def apns_http(apns: FakeApns):
    async with httpx.AsyncClient(http2=True, verify=apns.ssl_context()) as client:
        yield client


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clients' token clock, moved by hand: clock[0] seconds are added to the real one."""
    offset = [0.0]
    real = providers._monotonic
    monkeypatch.setattr(providers, "_monotonic", lambda: real() + offset[0])
    return offset


# --- FCM ------------------------------------------------------------------------------


async def test_fcm_client_signs_an_assertion_the_fake_verifies_and_delivers_the_message(
    fcm: FakeFcm, http: httpx.AsyncClient
):
    account = fcm.new_service_account()
    client = FcmClient(account, http=http, api_base=fcm.base_url)

    result = await client.send(message())

    assert (result.outcome, result.status) == ("delivered", 200)
    assert result.detail.startswith("projects/chatd-push-test/messages/")
    assert fcm.tokens_issued == 1
    [assertion] = fcm.assertions
    assert assertion["header"]["alg"] == "RS256"
    assert assertion["header"]["kid"] == account["private_key_id"]
    claims = assertion["claims"]
    assert claims["iss"] == account["client_email"]
    assert claims["aud"] == fcm.token_uri
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["exp"] - claims["iat"] == 3600
    assert fcm.received == [
        {
            "token": DEVICE,
            "notification": {"title": "Ada (Support)", "body": "Is the order on its way?"},
            "data": {"conversation_id": "c-42", "seq": "12"},
            "android": {
                "collapse_key": "conversation-c-42",
                "priority": "high",
                "notification": {"notification_count": 3},
            },
            "apns": {
                "headers": {"apns-collapse-id": "conversation-c-42"},
                "payload": {"aps": {"badge": 3}},
            },
        }
    ]


async def test_fcm_message_without_body_or_badge_leaves_them_out_and_cuts_the_collapse_id(
    fcm: FakeFcm, http: httpx.AsyncClient
):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)

    result = await client.send(message(body=None, badge=None, collapse_key="é" * 40))

    assert result.outcome == "delivered"
    [sent] = fcm.received
    assert sent["notification"] == {"title": "Ada (Support)"}
    assert sent["android"] == {"collapse_key": "é" * 40, "priority": "high"}
    assert sent["apns"] == {"headers": {"apns-collapse-id": "é" * 32}}


async def test_fcm_access_token_is_reused_between_sends(fcm: FakeFcm, http: httpx.AsyncClient):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)

    for _ in range(3):
        assert (await client.send(message())).outcome == "delivered"

    assert fcm.tokens_issued == 1
    assert fcm.answers == [200, 200, 200]


async def test_fcm_token_expiring_within_a_minute_is_fetched_again(http: httpx.AsyncClient):
    async with FakeFcm(token_lifetime_s=45) as fcm:
        client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)
        for _ in range(2):
            assert (await client.send(message())).outcome == "delivered"

    assert fcm.tokens_issued == 2
    assert fcm.answers == [200, 200]


async def test_fcm_revoked_access_token_is_refreshed_and_the_send_still_succeeds(
    fcm: FakeFcm, http: httpx.AsyncClient
):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)
    assert (await client.send(message())).outcome == "delivered"
    assert fcm.tokens_issued == 1

    fcm.expire_all_tokens()
    result = await client.send(message(body="second"))

    assert result.outcome == "delivered"
    assert fcm.tokens_issued == 2
    assert fcm.answers == [200, 401, 200]
    assert [m["notification"].get("body") for m in fcm.received][-1] == "second"


async def test_concurrent_fcm_sends_fetch_one_token(fcm: FakeFcm, http: httpx.AsyncClient):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)

    results = await asyncio.gather(*(client.send(message(token=f"t{i}")) for i in range(8)))

    assert [r.outcome for r in results] == ["delivered"] * 8
    assert fcm.tokens_issued == 1
    assert sorted(m["token"] for m in fcm.received) == [f"t{i}" for i in range(8)]


async def test_fcm_unregistered_token_is_reported_for_pruning(
    fcm: FakeFcm, http: httpx.AsyncClient
):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)
    fcm.unregistered_tokens.add("gone")

    result = await client.send(message(token="gone"))

    assert (result.outcome, result.status, result.detail) == ("unregistered", 404, "UNREGISTERED")
    assert fcm.received == []


@pytest.mark.parametrize(
    ("status", "retry_after", "outcome", "expected_after"),
    [
        (503, "7", "retry", 7.0),
        (429, None, "retry", None),
        (500, None, "retry", None),
        (400, None, "rejected", None),
        (403, None, "rejected", None),
    ],
)
async def test_fcm_failure_statuses_map_to_retry_or_rejected(
    fcm: FakeFcm,
    http: httpx.AsyncClient,
    status: int,
    retry_after: str | None,
    outcome: str,
    expected_after: float | None,
):
    client = FcmClient(fcm.new_service_account(), http=http, api_base=fcm.base_url)
    fcm.fail_with, fcm.retry_after = status, retry_after

    result = await client.send(message())

    assert (result.outcome, result.status, result.retry_after) == (
        outcome,
        status,
        expected_after,
    )


async def test_fcm_refused_connection_is_retry(fcm: FakeFcm, http: httpx.AsyncClient):
    dead = f"http://127.0.0.1:{free_port()}"
    send_refused = FcmClient(fcm.new_service_account(), http=http, api_base=dead)
    account, _ = make_service_account(f"{dead}/token")
    token_refused = FcmClient(account, http=http, api_base=fcm.base_url)

    for client in (send_refused, token_refused):
        result = await client.send(message())
        assert (result.outcome, result.status) == ("retry", None)
        assert "ConnectError" in result.detail


async def test_fcm_assertion_signed_with_another_key_is_rejected(
    fcm: FakeFcm, http: httpx.AsyncClient
):
    genuine = fcm.new_service_account()
    impostor, _ = make_service_account(fcm.token_uri)
    impostor["client_email"] = genuine["client_email"]
    impostor["private_key_id"] = genuine["private_key_id"]

    result = await FcmClient(impostor, http=http, api_base=fcm.base_url).send(message())

    assert (result.outcome, result.status) == ("rejected", 400)
    assert "invalid_grant" in result.detail
    assert fcm.tokens_issued == 0


# --- APNs -----------------------------------------------------------------------------


async def test_apns_delivers_over_http2_with_a_provider_token_the_fake_verifies(
    apns: FakeApns, apns_http: httpx.AsyncClient
):
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)

    result = await client.send(message())

    assert (result.outcome, result.status) == ("delivered", 200)
    [request] = apns.requests
    assert request.http_version == "2"
    assert request.token == DEVICE
    assert request.headers["apns-topic"] == "com.example.chatd"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == "conversation-c-42"
    assert request.body == {
        "aps": {
            "alert": {"title": "Ada (Support)", "body": "Is the order on its way?"},
            "badge": 3,
            "sound": "default",
        },
        "conversation_id": "c-42",
        "seq": "12",
    }
    scheme, provider_token = request.headers["authorization"].split(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(provider_token) == {"alg": "ES256", "kid": "KEY1234567"}
    claims = jwt.decode(provider_token, apns.public_key, algorithms=["ES256"])
    assert claims["iss"] == "TEAM123456"


async def test_apns_collapse_id_is_cut_to_64_bytes_on_a_character_boundary(
    apns: FakeApns, apns_http: httpx.AsyncClient
):
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)

    result = await client.send(message(collapse_key="é" * 40, badge=None, body=None))

    assert result.outcome == "delivered"
    [request] = apns.requests
    assert request.headers["apns-collapse-id"] == "é" * 32
    assert request.body["aps"] == {"alert": {"title": "Ada (Support)"}, "sound": "default"}


async def test_apns_is_refused_over_http1(apns: FakeApns):
    async with httpx.AsyncClient(verify=apns.ssl_context()) as http1:
        client = ApnsClient(apns.credentials, http=http1, base_url=apns.base_url)
        result = await client.send(message())

    assert (result.outcome, result.status) == ("rejected", 505)
    assert apns.requests[0].http_version == "1.1"


@pytest.mark.parametrize(
    ("token", "knob", "outcome", "status", "detail"),
    [
        ("b2" * 32, "unregistered", "unregistered", 410, "Unregistered"),
        ("not-a-device-token", None, "unregistered", 400, "BadDeviceToken"),
        (DEVICE, 503, "retry", 503, "ServiceUnavailable"),
        (DEVICE, 429, "retry", 429, "TooManyRequests"),
        (DEVICE, 400, "rejected", 400, "BadRequest"),
    ],
)
async def test_apns_answers_map_to_outcomes(
    apns: FakeApns,
    apns_http: httpx.AsyncClient,
    token: str,
    knob: object,
    outcome: str,
    status: int,
    detail: str,
):
    if knob == "unregistered":
        apns.unregistered_tokens.add(token)
    elif knob is not None:
        apns.fail_with = knob
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)

    result = await client.send(message(token=token))

    assert (result.outcome, result.status, result.detail) == (outcome, status, detail)
    assert apns.received == []


async def test_apns_provider_token_signed_with_another_key_is_rejected(
    apns: FakeApns, apns_http: httpx.AsyncClient
):
    other_pem, _ = make_apns_key()
    credentials = {**apns.credentials, "private_key": other_pem}

    result = await ApnsClient(credentials, http=apns_http, base_url=apns.base_url).send(message())

    assert (result.outcome, result.status, result.detail) == (
        "rejected",
        403,
        "InvalidProviderToken",
    )


async def test_apns_provider_token_is_reused_for_50_minutes_then_signed_again(
    apns: FakeApns, apns_http: httpx.AsyncClient, clock: list[float]
):
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)

    await client.send(message())
    await client.send(message())
    clock[0] = 49 * 60
    await client.send(message())
    assert len(apns.provider_tokens) == 1
    assert len({r.headers["authorization"] for r in apns.requests}) == 1

    clock[0] = 50 * 60 + 1
    await client.send(message())
    await client.send(message())

    assert len(apns.provider_tokens) == 2
    assert [r.status for r in apns.requests] == [200] * 5
    assert apns.requests[-1].headers["authorization"] == f"bearer {apns.provider_tokens[1]}"


async def test_apns_expired_provider_token_is_signed_again_and_the_send_retried_once(
    apns: FakeApns, apns_http: httpx.AsyncClient
):
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)
    await client.send(message())

    apns.expire_provider_tokens()
    result = await client.send(message())

    assert result.outcome == "delivered"
    assert [(r.status, r.reason) for r in apns.requests] == [
        (200, None),
        (403, "ExpiredProviderToken"),
        (200, None),
    ]
    assert len(apns.provider_tokens) == 2


async def test_apns_outage_is_retry_and_the_client_delivers_after_the_restart(
    apns: FakeApns, apns_http: httpx.AsyncClient
):
    client = ApnsClient(apns.credentials, http=apns_http, base_url=apns.base_url)
    assert (await client.send(message())).outcome == "delivered"

    await apns.stop()
    down = await client.send(message())
    await apns.start()
    back = await client.send(message())

    assert (down.outcome, down.status) == ("retry", None)
    assert back.outcome == "delivered"
    assert [r.http_version for r in apns.received] == ["2", "2"]


# --- credential validation ------------------------------------------------------------


def _rsa_pem() -> str:
    account, _ = make_service_account("https://oauth2.googleapis.com/token")
    return account["private_key"]


def _assert_no_key_text(exc: pytest.ExceptionInfo, pem: str) -> None:
    text = str(exc.value)
    assert "PRIVATE KEY" not in text
    for line in pem.strip().splitlines()[1:-1]:
        assert line not in text


def test_valid_fcm_service_account_is_normalised_and_keeps_its_token_uri():
    account, _ = make_service_account("http://127.0.0.1:9/token")
    account.pop("client_id")

    stored = validate_fcm_credentials(account)

    assert stored == account

    del account["token_uri"]
    assert validate_fcm_credentials(account)["token_uri"] == "https://oauth2.googleapis.com/token"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "authorized_user"}, 'type must be "service_account"'),
        ({"project_id": ""}, "project_id is missing"),
        ({"client_email": None}, "client_email is missing"),
        ({"private_key": None}, "private_key is missing"),
        ({"token_uri": "ftp://example.com"}, "token_uri must be an http(s) URL"),
    ],
)
def test_fcm_service_account_with_a_bad_field_is_refused(change: dict, expected: str):
    account, _ = make_service_account("https://oauth2.googleapis.com/token")
    account.update(change)

    with pytest.raises(CredentialsInvalid, match=expected.replace("(", r"\(").replace(")", r"\)")):
        validate_fcm_credentials(account)


def test_fcm_service_account_that_is_not_an_object_is_refused():
    with pytest.raises(CredentialsInvalid, match="service-account JSON object"):
        validate_fcm_credentials("{}")  # type: ignore[arg-type]


def test_fcm_private_key_that_does_not_parse_is_refused_without_quoting_it():
    account, _ = make_service_account("https://oauth2.googleapis.com/token")
    lines = account["private_key"].splitlines()
    account["private_key"] = "\n".join([lines[0], lines[1][::-1], *lines[2:]])

    with pytest.raises(CredentialsInvalid, match="not an unencrypted PEM private key") as exc:
        validate_fcm_credentials(account)
    _assert_no_key_text(exc, account["private_key"])


def test_fcm_service_account_with_an_ec_key_is_refused_without_quoting_it():
    account, _ = make_service_account("https://oauth2.googleapis.com/token")
    account["private_key"], _ = make_apns_key()

    with pytest.raises(CredentialsInvalid, match="must be an RSA key") as exc:
        validate_fcm_credentials(account)
    _assert_no_key_text(exc, account["private_key"])


def test_valid_apns_credentials_are_returned_for_storage():
    pem, _ = make_apns_key()

    stored = validate_apns_credentials(
        "TEAM123456", "KEY1234567", pem, "com.example.app", "sandbox"
    )

    assert stored == {
        "team_id": "TEAM123456",
        "key_id": "KEY1234567",
        "private_key": pem,
        "bundle_id": "com.example.app",
        "environment": "sandbox",
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("team_id", "team123456", "team_id must be 10 uppercase"),
        ("team_id", "TEAM12345", "team_id must be 10 uppercase"),
        ("key_id", "", "key_id must be 10 uppercase"),
        ("bundle_id", "chatd", "bundle_id must look like com.example.app"),
        ("bundle_id", "", "bundle_id must look like com.example.app"),
        ("environment", "staging", 'environment must be "sandbox" or "production"'),
        ("private_key_pem", "", "private key is missing"),
    ],
)
def test_apns_credentials_with_a_bad_field_are_refused(field: str, value: str, expected: str):
    pem, _ = make_apns_key()
    args = {
        "team_id": "TEAM123456",
        "key_id": "KEY1234567",
        "private_key_pem": pem,
        "bundle_id": "com.example.app",
        "environment": "production",
    }
    args[field] = value

    with pytest.raises(CredentialsInvalid, match=expected):
        validate_apns_credentials(**args)


@pytest.mark.parametrize("kind", ["rsa", "p384", "garbage"])
def test_apns_key_that_is_not_a_p256_p8_is_refused_without_quoting_it(kind: str):
    if kind == "rsa":
        pem, expected = _rsa_pem(), "EC P-256 key"
    elif kind == "p384":
        pem = (
            ec.generate_private_key(ec.SECP384R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
        expected = "EC P-256 key"
    else:
        good, _ = make_apns_key()
        pem, expected = good.replace("A", "B").replace("M", "A"), "not an unencrypted PEM"

    with pytest.raises(CredentialsInvalid, match=expected) as exc:
        validate_apns_credentials("TEAM123456", "KEY1234567", pem, "com.example.app", "sandbox")
    _assert_no_key_text(exc, pem)


def test_apns_client_refuses_credentials_missing_a_field(apns_http: httpx.AsyncClient):
    pem, _ = make_apns_key()

    with pytest.raises(CredentialsInvalid, match="bundle_id is missing"):
        ApnsClient(
            {
                "team_id": "TEAM123456",
                "key_id": "KEY1234567",
                "private_key": pem,
                "environment": "sandbox",
            },
            http=apns_http,
        )


# --- sealing --------------------------------------------------------------------------


CREDENTIALS = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nabc"}


def test_sealed_credentials_open_with_the_same_secret_and_hide_their_content():
    sealer = Sealer("current-secret")

    sealed = sealer.seal(CREDENTIALS)

    assert "service_account" not in sealed and "PRIVATE" not in sealed
    assert sealer.open(sealed) == CREDENTIALS


def test_sealed_credentials_do_not_open_with_another_secret_or_when_altered():
    sealed = Sealer("current-secret").seal(CREDENTIALS)

    with pytest.raises(SealBroken):
        Sealer("another-secret").open(sealed)
    altered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SealBroken):
        Sealer("current-secret").open(altered)
    with pytest.raises(SealBroken):
        Sealer("current-secret").open("not a sealed value é")


def test_a_previous_secret_still_opens_and_rotate_reseals_under_the_current_one():
    old_sealed = Sealer("old-secret").seal(CREDENTIALS)
    sealer = Sealer("new-secret", previous_keys=["older-secret", "old-secret"])

    assert sealer.open(old_sealed) == CREDENTIALS
    new_only = Sealer("new-secret")
    with pytest.raises(SealBroken):
        new_only.open(old_sealed)

    rotated = sealer.rotate(old_sealed)

    assert new_only.open(rotated) == CREDENTIALS
    with pytest.raises(SealBroken):
        Sealer("old-secret").open(rotated)
    with pytest.raises(SealBroken):
        Sealer("other").rotate(old_sealed)
