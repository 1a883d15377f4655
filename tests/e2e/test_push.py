"""Push notifications end to end: a real server, python-socketio's client standing in for the
native libraries (websocket only, as the guide's Kotlin, Swift and Flutter snippets), and local
fake FCM (HTTP v1 with the OAuth2 JWT-bearer grant) and APNs (HTTP/2 over TLS, ES256 provider
tokens) servers that verify what they are sent. Nothing reaches the internet.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import socketio

from server.identity import user_hash
from tests.e2e.fake_push import FakeApns, FakeFcm
from tests.factories import Factory, Org, Recorder, uid

WAIT = 15.0
FCM_TOKEN = "fcm-device-token-" + "a" * 140
APNS_TOKEN = "ab" * 32


@pytest.fixture
def fakes(push_fakes):
    return push_fakes


@pytest.fixture
def factory(push_factory):
    return push_factory


async def eventually(check, timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class App:
    """A mobile channel with verified identity and both providers' credentials."""

    def __init__(self, factory: Factory, org: Org, channel: dict, secret: str, owner) -> None:
        self.factory, self.org, self.channel, self.secret, self.owner = (
            factory,
            org,
            channel,
            secret,
            owner,
        )

    def path(self, tail: str = "") -> str:
        return f"/api/admin/channels/{self.channel['id']}/push{tail}"

    async def open(self, external_id: str) -> dict:
        status, conv = await self.factory.post(
            "/api/mobile/conversations",
            json={
                "channel_id": self.channel["id"],
                "external_id": external_id,
                "display_name": "Alice",
                "user_hash": user_hash(self.secret, external_id),
            },
        )
        assert status == 201, conv
        return conv

    async def socket(self, external_id: str) -> Recorder:
        sio = socketio.AsyncClient(reconnection=False)
        rec = Recorder(sio)
        await sio.connect(
            self.factory.url,
            transports=["websocket"],
            auth={"user_hash": user_hash(self.secret, external_id)},
            wait_timeout=10,
        )
        self.factory._clients.append(sio)
        return rec


async def admin_put(factory: Factory, owner, path: str, body: Any):
    async with factory.http.put(factory.url + path, headers=owner.headers, json=body) as resp:
        return resp.status, await resp.json()


async def mobile_app(factory: Factory, fcm: FakeFcm, apns: FakeApns) -> App:
    org = await factory.org()
    owner = await factory.owner(org)
    status, channel = await factory.post(
        "/api/admin/channels", owner, json={"type": "mobile_sdk", "name": "Shop app"}
    )
    assert status == 201, channel
    status, identity = await admin_put(
        factory, owner, f"/api/admin/channels/{channel['id']}/identity", {"mode": "hmac"}
    )
    assert status == 200, identity
    app = App(factory, org, channel, identity["secret"], owner)
    status, body = await admin_put(
        factory, owner, app.path("/fcm"), {"service_account": fcm.new_service_account()}
    )
    assert status == 200, body
    status, body = await admin_put(factory, owner, app.path("/apns"), apns.credentials)
    assert status == 200, body
    return app


async def agent_says(factory: Factory, agent_rec: Recorder, conv: dict, text: str) -> dict:
    ack = await factory.agent_send(agent_rec, conv, text, client_message_id=str(uuid.uuid4()))
    assert "error" not in ack, ack
    return ack


async def test_the_native_flow_with_a_push_while_the_app_is_away(factory, fakes):
    fcm, apns = fakes
    app = await mobile_app(factory, fcm, apns)
    ext = uid("user_")
    conv = await app.open(ext)
    agent = await factory.agent(app.org)
    agent_rec = await factory.client(agent)

    phone = await app.socket(ext)
    joined = await phone.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert joined["conversation_id"] == conv["id"], joined
    device = await phone.call(
        "register_device",
        {
            "conversation_id": conv["id"],
            "external_id": ext,
            "platform": "fcm",
            "token": FCM_TOKEN,
            "app_version": "3.2.1",
            "locale": "en-GB",
        },
    )
    assert device["platform"] == "fcm" and device["app_version"] == "3.2.1", device
    # The same user's iPhone, over REST.
    status, ios = await factory.post(
        "/api/mobile/devices",
        json={
            "conversation_id": conv["id"],
            "external_id": ext,
            "platform": "apns",
            "token": APNS_TOKEN,
            "user_hash": user_hash(app.secret, ext),
        },
    )
    assert status == 201, ios
    sent = await phone.call(
        "send_message",
        {
            "conversation_id": conv["id"],
            "content": "Where is my refund?",
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": ext,
        },
    )
    assert sent["seq"] == 1, sent

    await agent_says(factory, agent_rec, conv, "Looking into it now.")
    await phone.wait_for("message_received", lambda m: m["content"] == "Looking into it now.")
    await asyncio.sleep(1.0)
    assert fcm.received == [] and apns.received == [], "no push to a connected app"

    await phone.client.disconnect()
    await agent_says(factory, agent_rec, conv, "Your refund left today.")

    (pushed,) = await eventually(lambda: fcm.received, what="the FCM push")
    (ios_push,) = await eventually(lambda: apns.received, what="the APNs push")
    assert pushed["token"] == FCM_TOKEN
    assert pushed["notification"]["body"] == "Your refund left today."
    assert pushed["notification"]["title"]  # the agent's name
    assert pushed["data"] == {
        "conversation_id": conv["id"],
        "message_id": pushed["data"]["message_id"],
        "seq": "3",
    }
    assert pushed["android"]["collapse_key"] == conv["id"]
    assert pushed["android"]["notification"]["notification_count"] == 2  # both replies unread
    assert ios_push.token == APNS_TOKEN and ios_push.http_version == "2"
    assert ios_push.headers["apns-topic"] == "com.example.shop"
    assert ios_push.headers["apns-collapse-id"] == conv["id"]
    assert ios_push.body["aps"]["alert"]["body"] == "Your refund left today."
    assert ios_push.body["aps"]["badge"] == 2
    assert ios_push.body["seq"] == "3"
    # Both providers saw valid JWTs (they verify them with the public keys and refuse others).
    assert fcm.tokens_issued == 1 and fcm.assertions
    assert len(apns.provider_tokens) == 1

    await asyncio.sleep(1.0)
    assert len(fcm.received) == 1 and len(apns.received) == 1, "exactly one push each"

    # The app comes back and catches up from what it had.
    back = await app.socket(ext)
    rejoined = await back.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext, "last_seq": 2}
    )
    assert rejoined["replayed"] == 1 and rejoined["last_seq"] == 3, rejoined
    (replayed,) = back.of("message_received")
    assert replayed["content"] == "Your refund left today."

    status, log = await factory.get(app.path("/deliveries"), app.owner)
    assert status == 200
    assert sorted((d["platform"], d["outcome"]) for d in log["deliveries"]) == [
        ("apns", "delivered"),
        ("fcm", "delivered"),
    ]


async def test_providers_down_expired_tokens_and_uninstalled_apps(factory, fakes):
    fcm, apns = fakes
    app = await mobile_app(factory, fcm, apns)
    ext = uid("user_")
    conv = await app.open(ext)
    agent_rec = await factory.client(await factory.agent(app.org))
    proof = user_hash(app.secret, ext)
    for platform, token in (("fcm", FCM_TOKEN), ("apns", APNS_TOKEN)):
        status, body = await factory.post(
            "/api/mobile/devices",
            json={
                "conversation_id": conv["id"],
                "external_id": ext,
                "platform": platform,
                "token": token,
                "user_hash": proof,
            },
        )
        assert status == 201, body

    # Both providers down: chat goes on (the agent's send is acknowledged as always) ...
    fcm.fail_with = 503
    await apns.stop()
    await agent_says(factory, agent_rec, conv, "First, while they are down")
    await eventually(lambda: fcm.answers.count(503) >= 2, what="FCM retried")
    assert fcm.received == []
    # ... and the pushes arrive once they are back, once each.
    fcm.fail_with = None
    await apns.start()
    (pushed,) = await eventually(lambda: fcm.received, what="FCM after the outage")
    (ios,) = await eventually(lambda: apns.received, what="APNs after the outage")
    assert pushed["notification"]["body"] == ios.body["aps"]["alert"]["body"]
    await asyncio.sleep(1.0)
    assert len(fcm.received) == 1 and len(apns.received) == 1

    # Google drops the access token early: the client gets a new one.
    issued = fcm.tokens_issued
    fcm.expire_all_tokens()
    await agent_says(factory, agent_rec, conv, "Second")
    await eventually(lambda: len(fcm.received) == 2, what="FCM with a refreshed token")
    await eventually(lambda: len(apns.received) == 2, what="APNs, second")
    assert fcm.tokens_issued == issued + 1

    # The app was uninstalled: both providers say so, and the tokens are pruned.
    fcm.unregistered_tokens.add(FCM_TOKEN)
    apns.unregistered_tokens.add(APNS_TOKEN)
    await agent_says(factory, agent_rec, conv, "Third")

    async def devices() -> dict:
        status, settings = await factory.get(app.path(), app.owner)
        assert status == 200
        return settings["devices"]

    deadline = time.monotonic() + WAIT
    while await devices() != {"fcm": 0, "apns": 0}:
        assert time.monotonic() < deadline, await devices()
        await asyncio.sleep(0.1)
    status, log = await factory.get(app.path("/deliveries?limit=50"), app.owner)
    outcomes = [(d["platform"], d["outcome"]) for d in log["deliveries"]]
    assert ("fcm", "unregistered") in outcomes and ("apns", "unregistered") in outcomes
    assert ("fcm", "retry") in outcomes  # the outage is in the log too
    await agent_says(factory, agent_rec, conv, "Fourth")
    await asyncio.sleep(1.0)
    assert len(fcm.received) == 2 and len(apns.received) == 2, "nothing to pruned tokens"


async def test_devices_need_the_users_proof_and_a_mobile_conversation(factory, fakes):
    fcm, apns = fakes
    app = await mobile_app(factory, fcm, apns)
    ext = uid("user_")
    conv = await app.open(ext)
    body = {
        "conversation_id": conv["id"],
        "external_id": ext,
        "platform": "fcm",
        "token": FCM_TOKEN,
    }
    status, reply = await factory.post("/api/mobile/devices", json=body)
    assert status == 401 and reply["error"]["code"] == "identity_required"
    status, reply = await factory.post("/api/mobile/devices", json={**body, "user_hash": "0" * 64})
    assert status == 403 and reply["error"]["code"] == "identity_invalid"
    other = uid("user_")
    status, reply = await factory.post(
        "/api/mobile/devices",
        json={**body, "external_id": other, "user_hash": user_hash(app.secret, other)},
    )
    assert status == 404, "another user's conversation is not found"
    for bad in (
        {**body, "platform": "sms"},
        {**body, "token": "short"},
        {**body, "locale": "not a locale!"},
        {**body, "conversation_id": "nope"},
    ):
        status, reply = await factory.post(
            "/api/mobile/devices", json={**bad, "user_hash": user_hash(app.secret, ext)}
        )
        assert status == 400, (bad, reply)
    status, settings = await factory.get(app.path(), app.owner)
    assert settings["devices"] == {"fcm": 0, "apns": 0}

    # Web chat conversations have no push.
    web_conv = await factory.conversation(app.org)
    status, reply = await factory.post(
        "/api/mobile/devices",
        json={
            **body,
            "conversation_id": web_conv["id"],
            "external_id": web_conv["end_user"]["external_id"],
        },
    )
    assert status == 400, reply

    # Unregistering takes it away.
    proof = user_hash(app.secret, ext)
    status, _ = await factory.post("/api/mobile/devices", json={**body, "user_hash": proof})
    assert status == 201
    status, reply = await factory.post(
        "/api/mobile/devices/unregister", json={**body, "user_hash": proof}
    )
    assert status == 200 and reply == {"removed": True}
    status, settings = await factory.get(app.path(), app.owner)
    assert settings["devices"] == {"fcm": 0, "apns": 0}


async def test_credentials_are_validated_never_returned_and_tested(factory, fakes):
    fcm, apns = fakes
    app = await mobile_app(factory, fcm, apns)
    status, settings = await factory.get(app.path(), app.owner)
    assert status == 200
    assert settings["fcm"]["project_id"] == "chatd-push-test"
    assert settings["apns"]["bundle_id"] == "com.example.shop"
    assert "PRIVATE KEY" not in str(settings) and "private_key" not in str(settings)

    bad_bodies = [
        ("/fcm", {"service_account": {"type": "service_account"}}),
        ("/fcm", {"service_account": {**fcm.new_service_account(), "private_key": "nope"}}),
        ("/apns", {**apns.credentials, "private_key": "-----BEGIN PRIVATE KEY-----\nx\n"}),
        ("/apns", {**apns.credentials, "team_id": "short"}),
        ("/apns", {**apns.credentials, "environment": "staging"}),
    ]
    for tail, body in bad_bodies:
        status, reply = await admin_put(factory, app.owner, app.path(tail), body)
        assert status == 400, (tail, reply)
        assert "BEGIN" not in reply["error"]["message"]
    status, after = await factory.get(app.path(), app.owner)
    assert after == settings, "a refused change changes nothing"

    agent = await factory.agent(app.org)
    status, _ = await factory.get(app.path(), agent)
    assert status == 403
    status, _ = await factory.get(f"/api/admin/channels/{app.org.channel_id}/push", app.owner)
    assert status == 400, "web chat channels have no push settings"

    status, result = await factory.post(
        app.path("/test"), app.owner, json={"platform": "apns", "token": APNS_TOKEN}
    )
    assert status == 200 and result["outcome"] == "delivered", result
    apns.unregistered_tokens.add("cd" * 32)
    status, result = await factory.post(
        app.path("/test"), app.owner, json={"platform": "apns", "token": "cd" * 32}
    )
    assert result["outcome"] == "unregistered" and result["status_code"] == 410, result

    async with factory.http.patch(
        factory.url + app.path(), headers=app.owner.headers, json={"preview": "generic"}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["preview"] == "generic"
