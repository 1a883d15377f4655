"""Access that ends with its grant, and who may open a visitor socket.

A logout cuts the session's open sockets; revoking an embed token cuts its visitors' sockets
and refuses them afterwards, whether they presented the token (the widget) or not (native
apps, held to the token that opened their conversation). A visitor socket honours its token's
allowed origins. The send limit is per organization and end user, and per socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from tests.factories import Agent, Factory, Org, Recorder, quiet, uid
from tests.realtime.helpers import assert_error_ack, expect_refusal

# Revocation reaches open sockets within the access sweep (1 s by default), plus slack.
CUT_WITHIN = 5.0
EVIL = "https://evil.example"
SHOP = "https://shop.example"


async def connect(
    factory: Factory,
    *,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    agent: Agent | None = None,
) -> Recorder:
    sio = socketio.AsyncClient(reconnection=False)
    rec = Recorder(sio)
    hdrs = dict(headers or {})
    if agent is not None:
        hdrs["Cookie"] = f"session={agent.cookie}"
    await sio.connect(
        factory.url, headers=hdrs, auth=auth, transports=["websocket"], wait_timeout=10
    )
    factory._clients.append(sio)
    return rec


async def refused(
    factory: Factory, *, auth: Any = None, headers: dict[str, str] | None = None
) -> dict:
    """Connect, expect connect_error, and return its data."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []

    async def on_connect_error(data=None):
        errors.append(data)

    sio.on("connect_error", on_connect_error)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            factory.url, headers=headers or {}, auth=auth, transports=["websocket"], wait_timeout=10
        )
    assert len(errors) == 1, errors
    return errors[0]


def assert_refusal(data: Any, code: str) -> None:
    """connect_error data in Socket.IO's shape: {"message", "data": {"code", "message"}}."""
    assert isinstance(data, dict) and isinstance(data.get("message"), str), data
    assert data["data"]["code"] == code, data
    assert data["data"]["message"] == data["message"], data


async def wait_disconnected(rec: Recorder, timeout: float = CUT_WITHIN) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while rec.client.connected:
        if loop.time() - start > timeout:
            raise AssertionError(f"still connected after {timeout} s")
        await asyncio.sleep(0.05)
    return loop.time() - start


def join_payload(conv: dict) -> dict:
    return {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]}


async def token_id_of(factory: Factory, owner: Agent, org: Org) -> str:
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200, tokens
    (token,) = [t for t in tokens if org.embed_token.startswith(t["token_prefix"])]
    return token["id"]


async def revoke(factory: Factory, owner: Agent, org: Org) -> None:
    token_id = await token_id_of(factory, owner, org)
    status, body = await factory.post(f"/api/admin/embed-tokens/{token_id}/revoke", owner)
    assert status == 200 and body["revoked_at"], body


# ---- logout ------------------------------------------------------------------------------


async def test_logout_cuts_the_sessions_open_sockets_and_nothing_more_is_stored(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    assert "error" not in await inbox.call("join_conversation", {"conversation_id": conv["id"]})
    # The same agent signed in elsewhere: another session, which stays.
    elsewhere = Agent(agent.user_id, agent.email, agent.role, agent.org_id)
    await factory.login(elsewhere)
    other_tab = await factory.client(elsewhere)
    assert "error" not in await factory.agent_send(inbox, conv, "before logout")
    before = await factory.message_count(conv["id"])

    status, body = await factory.post("/auth/logout", agent)
    assert status == 200, body

    await wait_disconnected(inbox)
    assert {"message": "Your session has ended; sign in again."} in inbox.of("error")
    with pytest.raises(socketio.exceptions.SocketIOError):
        await factory.agent_send(inbox, conv, "after logout")
    # The old cookie no longer makes an agent.
    again = await factory.client(agent)
    await expect_refusal(again, await factory.agent_send(again, conv, "again"), "not_authenticated")
    assert await factory.message_count(conv["id"]) == before
    # The other session is untouched.
    assert other_tab.client.connected
    assert "error" not in await factory.agent_send(other_tab, conv, "still here")


# ---- embed token revocation --------------------------------------------------------------


async def test_revoking_a_token_cuts_its_visitors_sockets_and_refuses_them_after(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    widget_conv = await factory.conversation(org)
    native_conv = await factory.conversation(org)
    other_org = await factory.org()
    bystander_conv = await factory.conversation(other_org)
    widget = await connect(factory, auth={"embed_token": org.embed_token})
    assert "error" not in await widget.call("join_conversation", join_payload(widget_conv))
    native = await factory.visitor(native_conv)  # no auth: held to the conversation's token
    bystander = await factory.visitor(bystander_conv)
    inbox = await factory.client(owner)

    await revoke(factory, owner, org)

    for rec in (widget, native):
        await wait_disconnected(rec)
        assert rec.of("error") == [{"message": "This chat is no longer available."}]
    assert bystander.client.connected and inbox.client.connected

    # The widget's token is refused at the handshake...
    assert_refusal(await refused(factory, auth={"embed_token": org.embed_token}), "forbidden")
    # ... and a client without auth is refused on every visitor event.
    counts = {c["id"]: await factory.message_count(c["id"]) for c in (widget_conv, native_conv)}
    for conv in (widget_conv, native_conv):
        rec = await factory.client()
        ext = conv["end_user"]["external_id"]
        ack = await rec.call("join_conversation", join_payload(conv))
        await expect_refusal(rec, ack, "forbidden")
        rec.clear()
        await expect_refusal(rec, await factory.visitor_send(rec, conv, "still?"), "forbidden")
        rec.clear()
        typing = {"conversation_id": conv["id"], "sender_type": "end_user", "external_id": ext}
        await expect_refusal(rec, await rec.call("user_typing", typing), "forbidden")
        rec.clear()
        read = {**typing, "message_ids": [uid("")[:8] + "-0000-4000-8000-000000000000"]}
        await expect_refusal(rec, await rec.call("mark_read", read), "forbidden")
    for conv_id, count in counts.items():
        assert await factory.message_count(conv_id) == count
    # The widget's history endpoint refuses the conversation too.
    status, body = await factory.get(
        f"/chat-widget/history/{native_conv['id']}",
        params={"external_id": native_conv["end_user"]["external_id"]},
    )
    assert status == 403, body
    # The other organization's visitor goes on.
    assert "error" not in await factory.visitor_send(bystander, bystander_conv, "fine")


async def test_a_live_token_of_another_channel_does_not_reach_a_conversation(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    other_org = await factory.org()
    rec = await connect(factory, auth={"embed_token": other_org.embed_token})

    ack = await rec.call("join_conversation", join_payload(conv))

    await expect_refusal(rec, ack, "not_found")
    rec.clear()
    before = await factory.message_count(conv["id"])
    await expect_refusal(rec, await factory.visitor_send(rec, conv, "hi"), "not_found")
    assert await factory.message_count(conv["id"]) == before


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        ({"embed_token": 5}, "invalid_input"),
        ({"embed_token": ""}, "invalid_input"),
        ({"embed_token": "ew_\x00"}, "invalid_input"),
        ("ew_not_an_object", "invalid_input"),
        ({"embed_token": "ew_" + "0" * 40}, "forbidden"),
    ],
)
async def test_a_handshake_with_a_bad_embed_token_is_refused(factory, auth, code):
    assert_refusal(await refused(factory, auth=auth), code)


async def test_the_widgets_handshake_is_a_visitor_even_with_an_agents_cookie(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    watcher = await factory.client(owner)
    await watcher.call("join_org_presence")
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    watcher.clear()

    widget = await connect(factory, auth={"embed_token": org.embed_token}, agent=agent)

    await expect_refusal(widget, await widget.call("join_queue"), "not_authenticated")
    assert "error" not in await widget.call("join_conversation", join_payload(conv))
    await quiet()
    assert watcher.of("agent_status_changed") == []


# ---- allowed origins ----------------------------------------------------------------------


async def test_a_widget_handshake_from_an_origin_the_token_does_not_allow_is_refused(factory):
    org = await factory.org(allowed_origins=[SHOP])
    conv = await factory.conversation(org)
    auth = {"embed_token": org.embed_token}

    data = await refused(factory, auth=auth, headers={"Origin": EVIL})

    assert_refusal(data, "forbidden")
    # The allowed origin, the widget page's own origin, and no Origin (native) connect.
    for headers in ({"Origin": SHOP}, {"Origin": factory.url}, {}):
        rec = await connect(factory, auth=auth, headers=headers)
        assert "error" not in await rec.call("join_conversation", join_payload(conv)), headers


async def test_a_socket_from_a_foreign_origin_cannot_use_a_conversation_of_a_restricted_token(
    factory,
):
    org = await factory.org(allowed_origins=[SHOP])
    conv = await factory.conversation(org)
    before = await factory.message_count(conv["id"])
    evil = await connect(factory, headers={"Origin": EVIL})

    ack = await evil.call("join_conversation", join_payload(conv))
    await expect_refusal(evil, ack, "forbidden")
    evil.clear()
    await expect_refusal(evil, await factory.visitor_send(evil, conv, "hi"), "forbidden")

    assert await factory.message_count(conv["id"]) == before
    native = await connect(factory)
    assert "error" not in await native.call("join_conversation", join_payload(conv))
    assert "error" not in await factory.visitor_send(native, conv, "from the app")


async def test_widget_history_from_an_origin_the_token_does_not_allow_is_refused(factory):
    org = await factory.org(allowed_origins=[SHOP])
    conv = await factory.conversation(org)
    ext = conv["end_user"]["external_id"]
    path = f"/chat-widget/history/{conv['id']}?external_id={ext}"

    async def get(origin: str | None) -> tuple[int, Any]:
        headers = {"Origin": origin} if origin else {}
        async with factory.http.get(factory.url + path, headers=headers) as resp:
            return resp.status, await resp.json()

    status, body = await get(EVIL)
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    # An allowed page, the widget page itself, and a native app (no Origin) read it.
    for origin in (SHOP, factory.url, None):
        status, body = await get(origin)
        assert status == 200, (origin, body)


# ---- send limits --------------------------------------------------------------------------


async def test_visitors_of_two_organizations_sharing_an_external_id_do_not_share_a_limit(
    factory,
):
    shared = uid("visitor-")
    first_org, second_org = await factory.org(), await factory.org()
    first = await factory.conversation(first_org, external_id=shared)
    second = await factory.conversation(second_org, external_id=shared)
    first_rec = await factory.visitor(first)
    second_rec = await factory.visitor(second)
    limit = factory.services.settings.rate_limit_messages
    for i in range(limit):
        assert "error" not in await factory.visitor_send(first_rec, first, f"m{i}"), i
    assert_error_ack(await factory.visitor_send(first_rec, first, "over"), "rate_limited")

    ack = await factory.visitor_send(second_rec, second, "my own bucket")

    assert "error" not in ack, ack
    assert await factory.message_count(second["id"]) == 1


class TestPerSocketLimit:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(socket_rate_limit_messages=5)

    async def test_rotating_external_ids_on_one_socket_does_not_escape_the_limit(self, factory):
        org = await factory.org()
        convs = [await factory.conversation(org) for _ in range(3)]
        rec = await factory.client()
        acks = []
        for conv in convs:
            for i in range(2):
                acks.append(await factory.visitor_send(rec, conv, f"m{i}"))

        assert all("error" not in a for a in acks[:5]), acks
        err = assert_error_ack(acks[5], "rate_limited")
        assert 0 < err["retry_after_ms"] <= 10_000
        assert await factory.message_count(convs[2]["id"]) == 1
        # Another socket of the same visitor has its own allowance.
        fresh = await factory.client()
        assert "error" not in await factory.visitor_send(fresh, convs[2], "from a new tab")
