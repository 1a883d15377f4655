"""Verified identity of end users, tried the way an attacker would: with only the public embed
token (or mobile channel id) and a guessed external_id such as 'user_42'.

On a channel that verifies identity, every way into a conversation refuses a missing proof
(401 identity_required) and a wrong one (403 identity_invalid), and changes nothing: opening
it (widget call, widget page, mobile call), its history, uploads, and each Socket.IO event.
The proof is an HMAC of the external_id, or a JWT (HS256 with the channel's secret, or RS256
/ ES256 from the identity provider's JWKS). Channels that do not verify keep anonymous
visitors working.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from models import Conversation, EndUser, Message
from server.actors import EndUserActor
from server.identity import user_hash
from server.services.conversations import NewMessage
from tests.factories import Factory, Org, Recorder, uid
from tests.realtime.helpers import assert_error_ack
from tests.rest.helpers import assert_conversation_shape, assert_error, fetch

OPEN = "/chat-widget/conversations"
MOBILE_OPEN = "/api/mobile/conversations"


# ---- helpers ------------------------------------------------------------------------------


async def set_identity(factory: Factory, org: Org, channel_id: str, **body: Any) -> dict:
    owner = await factory.owner(org)
    status, settings = await put_identity(factory, owner, channel_id, body)
    assert status == 200, settings
    return settings


async def put_identity(factory: Factory, owner, channel_id: str, body: Any):
    async with factory.http.put(
        factory.url + f"/api/admin/channels/{channel_id}/identity",
        headers=owner.headers,
        json=body,
    ) as resp:
        return resp.status, await resp.json()


async def hmac_channel(factory: Factory) -> tuple[Org, str]:
    """An organization whose web chat verifies users by HMAC; returns it and the secret."""
    org = await factory.org()
    owner = await factory.owner(org)
    status, settings = await put_identity(factory, owner, org.channel_id, {"mode": "hmac"})
    assert status == 200, settings
    assert settings["mode"] == "hmac" and settings["secret"].startswith("ids_")
    return org, settings["secret"]


async def counts(factory: Factory) -> tuple[int, int, int]:
    async with factory.services.db.read() as s:
        found = []
        for table in (EndUser, Conversation, Message):
            found.append((await s.execute(select(func.count()).select_from(table))).scalar_one())
    return tuple(found)


async def socket(factory: Factory, auth: Any = None) -> Recorder:
    sio = socketio.AsyncClient(reconnection=False)
    rec = Recorder(sio)
    await sio.connect(factory.url, auth=auth, transports=["websocket"], wait_timeout=10)
    factory._clients.append(sio)
    return rec


def send_payload(conv: dict, external_id: str, **extra: Any) -> dict:
    return {
        "conversation_id": conv["id"],
        "content": "let me in",
        "content_type": "text",
        "sender_type": "end_user",
        "external_id": external_id,
        "client_message_id": str(uuid.uuid4()),
        **extra,
    }


async def victim_with_history(factory: Factory, org: Org, secret: str) -> dict:
    """'user_<n>' has a conversation with a message in it, opened with the right proof."""
    external_id = uid("user_")
    reply = await fetch(
        factory,
        "POST",
        OPEN,
        json={
            "embed_token": org.embed_token,
            "external_id": external_id,
            "user_hash": user_hash(secret, external_id),
        },
    )
    assert reply.status == 201, reply.body
    conv = reply.body
    await factory.services.conversations.send_message(
        EndUserActor(external_id), NewMessage(conv["id"], "my private order 1234")
    )
    return conv


# ---- the exploit, refused ------------------------------------------------------------------


async def test_opening_a_verified_users_conversation_needs_the_right_hash(factory):
    org, secret = await hmac_channel(factory)
    external_id = uid("user_")
    body = {"embed_token": org.embed_token, "external_id": external_id, "customer_name": "Eve"}
    before = await counts(factory)

    missing = await fetch(factory, "POST", OPEN, json=body)
    wrong = await fetch(factory, "POST", OPEN, json={**body, "user_hash": "0" * 64})
    other_users = await fetch(
        factory, "POST", OPEN, json={**body, "user_hash": user_hash(secret, "user_other")}
    )

    assert missing.status == 401
    assert_error(missing.body, "identity_required")
    for reply in (wrong, other_users):
        assert reply.status == 403
        assert_error(reply.body, "identity_invalid")
    assert await counts(factory) == before  # nothing created

    ok = await fetch(
        factory, "POST", OPEN, json={**body, "user_hash": user_hash(secret, external_id)}
    )
    assert ok.status == 201, ok.body
    assert_conversation_shape(ok.body)
    assert ok.body["end_user"]["external_id"] == external_id


async def test_the_guessed_id_exploit_is_refused_on_page_history_and_upload(factory):
    org, secret = await hmac_channel(factory)
    conv = await victim_with_history(factory, org, secret)
    ext = conv["end_user"]["external_id"]
    good = user_hash(secret, ext)

    page = await fetch(
        factory, "GET", f"/chat-widget?embed_token={org.embed_token}&session_id={ext}"
    )
    assert page.status == 401
    assert "could not verify who you are" in page.body
    assert "my private order" not in page.body and conv["id"] not in page.body
    wrong_page = await fetch(
        factory,
        "GET",
        f"/chat-widget?embed_token={org.embed_token}&session_id={ext}&user_hash={'a' * 64}",
    )
    assert wrong_page.status == 403 and conv["id"] not in wrong_page.body

    history = f"/chat-widget/history/{conv['id']}?external_id={ext}"
    no_proof = await fetch(factory, "GET", history)
    assert no_proof.status == 401
    assert_error(no_proof.body, "identity_required")
    bad_proof = await fetch(factory, "GET", history + "&user_hash=" + "b" * 64)
    assert bad_proof.status == 403
    assert_error(bad_proof.body, "identity_invalid")
    ok = await fetch(factory, "GET", history + "&user_hash=" + good)
    assert ok.status == 200 and [m["content"] for m in ok.body] == ["my private order 1234"]

    owned = await fetch(
        factory,
        "GET",
        f"/chat-widget?embed_token={org.embed_token}&session_id={ext}&user_hash={good}",
    )
    assert owned.status == 200 and conv["id"] in owned.body
    assert f'data-user-hash="{good}"' in owned.body  # the widget carries it to its calls

    form = aiohttp.FormData()
    for name, value in (
        ("embed_token", org.embed_token),
        ("external_id", ext),
        ("conversation_id", conv["id"]),
    ):
        form.add_field(name, value)
    form.add_field("file", b"%PDF-1.4 x", filename="a.pdf", content_type="application/pdf")
    upload = await fetch(factory, "POST", "/chat-widget/uploads", data=form)
    assert upload.status == 401
    assert_error(upload.body, "identity_required")


async def test_every_socket_event_refuses_a_missing_or_wrong_proof(factory):
    org, secret = await hmac_channel(factory)
    conv = await victim_with_history(factory, org, secret)
    ext = conv["end_user"]["external_id"]
    agent = await factory.agent(org)
    (message,) = (
        await factory.services.conversations.history(EndUserActor(ext), conv["id"], 10, 0)
    )[:1]
    before = await counts(factory)

    # Native-style: no handshake auth, the guessed id in every event.
    thief = await socket(factory)
    join = await thief.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert_error_ack(join, "identity_required")
    sent = await thief.call("send_message", send_payload(conv, ext))
    assert_error_ack(sent, "identity_required")
    typing = await thief.call(
        "user_typing",
        {"conversation_id": conv["id"], "external_id": ext, "sender_type": "end_user"},
    )
    assert_error_ack(typing, "identity_required")
    read = await thief.call(
        "mark_read",
        {"conversation_id": conv["id"], "external_id": ext, "message_ids": [message["id"]]},
    )
    assert_error_ack(read, "identity_required")
    wrong = await thief.call(
        "join_conversation",
        {"conversation_id": conv["id"], "external_id": ext, "user_hash": "c" * 64},
    )
    assert_error_ack(wrong, "identity_invalid")

    # A real proof for the thief's own id does not open the victim's conversation.
    mine = uid("user_")
    own = await thief.call(
        "send_message", send_payload(conv, mine, user_hash=user_hash(secret, mine))
    )
    assert own["error"]["code"] in ("not_found", "identity_invalid"), own
    # The widget's way: the proof in the handshake, wrong.
    wrong_handshake = await socket(factory, {"embed_token": org.embed_token, "user_hash": "d" * 64})
    join = await wrong_handshake.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert_error_ack(join, "identity_invalid")
    assert await counts(factory) == before  # nothing was written, nothing marked read
    async with factory.services.db.read() as s:
        read_by = (
            await s.execute(select(Message.read_by).where(Message.id == message["id"]))
        ).one()
    assert not read_by[0]

    # The owner's socket (proof in the handshake) works, and hears the agent.
    owner_socket = await socket(
        factory, {"embed_token": org.embed_token, "user_hash": user_hash(secret, ext)}
    )
    joined = await owner_socket.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert "error" not in joined, joined
    assert "error" not in await owner_socket.call("send_message", send_payload(conv, ext))
    agent_rec = await factory.client(agent)
    assert "error" not in await factory.agent_send(agent_rec, conv, "Hello, verified user")
    await owner_socket.wait_for(
        "message_received", lambda m: m["content"] == "Hello, verified user"
    )
    assert thief.of("message_received") == []


async def test_anonymous_visitors_keep_working_where_identity_is_off(factory):
    org = await factory.org()
    conv = await factory.conversation(org, external_id=uid("anon-"))
    rec = await factory.visitor(conv)
    assert "error" not in await factory.visitor_send(rec, conv, "anonymous hello")
    # A proof sent to a channel that does not ask for one is ignored, not refused.
    again = await fetch(
        factory,
        "POST",
        OPEN,
        json={
            "embed_token": org.embed_token,
            "external_id": conv["end_user"]["external_id"],
            "user_hash": "e" * 64,
        },
    )
    assert again.status == 200


# ---- JWT ----------------------------------------------------------------------------------


def token(key: Any, algorithm: str, sub: str, exp_in: float | None = 300, **headers: Any) -> str:
    claims: dict[str, Any] = {"sub": sub, "iat": int(time.time())}
    if exp_in is not None:
        claims["exp"] = int(time.time() + exp_in)
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers or None)


async def test_hs256_identity_tokens_are_checked_for_signature_exp_and_sub(factory):
    org = await factory.org()
    settings = await set_identity(factory, org, org.channel_id, mode="jwt", jwt_algorithm="HS256")
    secret = settings["secret"]
    ext = uid("user_")
    body = {"embed_token": org.embed_token, "external_id": ext}

    cases = {
        "expired": token(secret, "HS256", ext, exp_in=-120),
        "no exp": token(secret, "HS256", ext, exp_in=None),
        "another user": token(secret, "HS256", "user_someone_else"),
        "another key": token("not-the-channel-secret-at-all-000", "HS256", ext),
        "unsigned": jwt.encode({"sub": ext, "exp": int(time.time()) + 60}, None, algorithm="none"),
        "garbage": "not.a.jwt",
    }
    before = await counts(factory)
    for name, bad in cases.items():
        reply = await fetch(factory, "POST", OPEN, json={**body, "identity_token": bad})
        assert reply.status == 403, (name, reply.body)
        assert_error(reply.body, "identity_invalid")
    hashed = await fetch(factory, "POST", OPEN, json={**body, "user_hash": user_hash(secret, ext)})
    assert hashed.status == 401, "an HMAC is not a proof on a JWT channel"
    assert await counts(factory) == before

    ok = await fetch(
        factory, "POST", OPEN, json={**body, "identity_token": token(secret, "HS256", ext)}
    )
    assert ok.status == 201, ok.body


@pytest.fixture
async def jwks_server(aiohttp_server):
    """An identity provider's JWKS endpoint on a real port, with an RSA and an EC key."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, key, alg in (("rsa-1", rsa_key, "RS256"), ("ec-1", ec_key, "ES256")):
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = algo.to_jwk(key.public_key(), as_dict=True)
        keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    hits = []

    async def jwks(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"keys": keys})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    srv = await aiohttp_server(app)
    return {
        "url": str(srv.make_url("/.well-known/jwks.json")),
        "rsa": rsa_key,
        "ec": ec_key,
        "hits": hits,
    }


@pytest.mark.parametrize(
    ("algorithm", "kid", "key_name"), [("RS256", "rsa-1", "rsa"), ("ES256", "ec-1", "ec")]
)
async def test_identity_provider_tokens_are_verified_against_its_jwks(
    factory, jwks_server, algorithm, kid, key_name
):
    org = await factory.org()
    settings = await set_identity(
        factory,
        org,
        org.channel_id,
        mode="jwt",
        jwt_algorithm=algorithm,
        jwks_url=jwks_server["url"],
    )
    assert settings["secret"] is None  # the provider signs; the platform holds no secret
    ext = uid("idp-user-")
    body = {"embed_token": org.embed_token, "external_id": ext}
    key = jwks_server[key_name]

    ok = await fetch(
        factory, "POST", OPEN, json={**body, "identity_token": token(key, algorithm, ext, kid=kid)}
    )
    assert ok.status == 201, ok.body
    assert jwks_server["hits"], "the keys came from the provider"

    forged_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if key_name == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    forged = await fetch(
        factory,
        "POST",
        OPEN,
        json={**body, "identity_token": token(forged_key, algorithm, ext, kid=kid)},
    )
    assert forged.status == 403
    # The algorithm is pinned: an HS256 token (signed with anything) is refused.
    confused = await fetch(
        factory,
        "POST",
        OPEN,
        json={**body, "identity_token": token("x" * 32, "HS256", ext, kid=kid)},
    )
    assert confused.status == 403


# ---- settings -----------------------------------------------------------------------------


async def test_identity_settings_are_for_admins_and_refuse_bad_input(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    other = await factory.owner(await factory.org())
    path = f"/api/admin/channels/{org.channel_id}/identity"

    status, body = await factory.get(path, agent)
    assert status == 403
    status, body = await put_identity(factory, other, org.channel_id, {"mode": "hmac"})
    assert status == 404, "another organization's channel is not found"
    for bad in (
        {"mode": "sometimes"},
        {"mode": "jwt", "jwt_algorithm": "none"},
        {"mode": "jwt", "jwt_algorithm": "RS256"},  # needs a JWKS URL
        {"mode": "jwt", "jwt_algorithm": "RS256", "jwks_url": "file:///etc/passwd"},
        {"mode": "hmac", "secret": "mine"},
        [],
    ):
        status, body = await put_identity(factory, owner, org.channel_id, bad)
        assert status == 400, (bad, body)
    status, body = await factory.get(path, owner)
    assert status == 200 and body["mode"] == "off" and body["secret"] is None
    # A secret drawn before verification is on, for the customer's servers to get ready.
    status, prepared = await factory.post(path + "/rotate-secret", owner)
    assert status == 200 and prepared["mode"] == "off" and prepared["secret"].startswith("ids_")
    early = uid("user_")
    ready = {"embed_token": org.embed_token, "external_id": early, "user_hash": "f" * 64}
    assert (await fetch(factory, "POST", OPEN, json=ready)).status == 201, "off: not checked"

    status, first = await put_identity(factory, owner, org.channel_id, {"mode": "hmac"})
    assert status == 200 and first["secret"] == prepared["secret"], "the prepared secret"
    status, listed = await factory.get("/api/admin/channels", owner)
    (channel,) = [c for c in listed if c["id"] == org.channel_id]
    assert channel["identity"]["mode"] == "hmac" and "secret" not in str(channel)

    # Rotating the secret: hashes made with the old one are refused from then on.
    ext = uid("user_")
    old_hash = user_hash(first["secret"], ext)
    status, rotated = await factory.post(path + "/rotate-secret", owner)
    assert status == 200 and rotated["secret"] != first["secret"]
    body = {"embed_token": org.embed_token, "external_id": ext}
    assert (await fetch(factory, "POST", OPEN, json={**body, "user_hash": old_hash})).status == 403
    new_hash = user_hash(rotated["secret"], ext)
    assert (await fetch(factory, "POST", OPEN, json={**body, "user_hash": new_hash})).status == 201


# ---- native apps ----------------------------------------------------------------------------


async def mobile_channel(factory: Factory, org: Org) -> dict:
    owner = await factory.owner(org)
    status, channel = await factory.post(
        "/api/admin/channels", owner, json={"type": "mobile_sdk", "name": "iOS app"}
    )
    assert status == 201, channel
    assert channel["public_key"].startswith("mc_")
    return channel


async def test_the_native_flow_opens_by_channel_and_talks_over_websocket(factory):
    org = await factory.org()
    channel = await mobile_channel(factory, org)
    settings = await set_identity(factory, org, channel["id"], mode="hmac")
    ext = uid("mobile-user-")
    proof = user_hash(settings["secret"], ext)
    body = {"channel_id": channel["id"], "external_id": ext, "display_name": "Alice Smith"}

    missing = await fetch(factory, "POST", MOBILE_OPEN, json=body)
    assert missing.status == 401
    wrong = await fetch(factory, "POST", MOBILE_OPEN, json={**body, "user_hash": "f" * 64})
    assert wrong.status == 403
    opened = await fetch(factory, "POST", MOBILE_OPEN, json={**body, "user_hash": proof})
    assert opened.status == 201, opened.body
    conv = opened.body
    assert_conversation_shape(conv)
    assert conv["channel_id"] == channel["id"] and conv["end_user"]["display_name"] == "Alice Smith"
    by_key = await fetch(
        factory,
        "POST",
        MOBILE_OPEN,
        json={"channel_key": channel["public_key"], "external_id": ext, "user_hash": proof},
    )
    assert by_key.status == 200 and by_key.body["id"] == conv["id"]

    # The guide's snippets: websocket only, join then send, external_id in each event.
    app = await socket(factory, {"user_hash": proof})
    joined = await app.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert joined["conversation_id"] == conv["id"], joined
    stored = await app.call("send_message", send_payload(conv, ext))
    assert stored["seq"] == 1, stored
    agent = await factory.agent(org)
    agent_rec = await factory.client(agent)
    await factory.agent_send(agent_rec, conv, "Hi Alice")
    got = await app.wait_for("message_received", lambda m: m["content"] == "Hi Alice")
    assert got[-1]["sender_type"] == "agent"


async def test_the_mobile_call_refuses_web_channels_unknown_keys_and_bad_bodies(factory):
    org = await factory.org()
    channel = await mobile_channel(factory, org)
    before = await counts(factory)
    for body, status in (
        ({"channel_id": org.channel_id, "external_id": "u1"}, 404),  # a web chat channel
        ({"channel_id": str(uuid.uuid4()), "external_id": "u1"}, 404),
        ({"channel_key": "mc_nope-nope", "external_id": "u1"}, 404),
        ({"external_id": "u1"}, 400),
        (
            {"channel_id": channel["id"], "channel_key": channel["public_key"], "external_id": "u"},
            400,
        ),
        ({"channel_id": channel["id"]}, 400),
        ({"channel_id": channel["id"], "external_id": ""}, 400),
        ({"channel_id": channel["id"], "external_id": "u1", "extra": 1}, 400),
    ):
        reply = await fetch(factory, "POST", MOBILE_OPEN, json=body)
        assert reply.status == status, (body, reply.body)
    assert await counts(factory) == before
    anon = await fetch(
        factory, "POST", MOBILE_OPEN, json={"channel_id": channel["id"], "external_id": "anon-1"}
    )
    assert anon.status == 201, "a channel without verification takes anonymous app users"
