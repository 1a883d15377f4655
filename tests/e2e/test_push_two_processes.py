"""Push across processes: two `chatd serve` on one PostgreSQL and one Redis. An app user's
socket on one process counts as connected for the agent writing on the other (no push); once
it is gone, exactly one push goes out, whichever process delivers the outbox row."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.fake_push import FakeFcm
from tests.e2e.test_two_processes import bootstrap, multi_process_env
from tests.factories import uid

TOKEN = "fcm-two-processes-" + "b" * 120


@pytest.fixture
async def fcm():
    async with FakeFcm() as fake:
        yield fake


@pytest.fixture
def cluster_env(base_settings, fcm):
    return multi_process_env(
        base_settings,
        CHATD_PUSH_FCM_API_BASE=fcm.base_url,
    )


async def test_a_user_connected_on_one_process_gets_no_push_from_the_other(
    cluster,
    clients,
    cluster_env,
    fcm,
):
    a, b = cluster
    org = bootstrap(cluster_env)
    cookie, csrf = await clients.login(a.url, org["email"])
    admin = {"Cookie": f"session={cookie}", "X-CSRFToken": csrf}
    async with clients.http.post(
        a.url + "/api/admin/channels", headers=admin, json={"type": "mobile_sdk", "name": "App"}
    ) as resp:
        assert resp.status == 201
        channel = await resp.json()
    async with clients.http.put(
        a.url + f"/api/admin/channels/{channel['id']}/push/fcm",
        headers=admin,
        json={"service_account": fcm.new_service_account()},
    ) as resp:
        assert resp.status == 200, await resp.text()
    ext = uid("user_")
    async with clients.http.post(
        b.url + "/api/mobile/conversations",
        json={"channel_key": channel["public_key"], "external_id": ext},
    ) as resp:
        assert resp.status == 201
        conv = await resp.json()

    app_on_b = await clients.connect(b.url)
    joined = await app_on_b.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert joined["conversation_id"] == conv["id"], joined
    device = await app_on_b.call(
        "register_device",
        {"conversation_id": conv["id"], "external_id": ext, "platform": "fcm", "token": TOKEN},
    )
    assert device["platform"] == "fcm", device
    agent_on_a = await clients.connect(a.url, cookie)
    await asyncio.sleep(1.5)  # b has read that the organization has credentials

    async def agent_says(text: str) -> None:
        ack = await agent_on_a.call(
            "send_message",
            {
                "conversation_id": conv["id"],
                "content": text,
                "content_type": "text",
                "sender_type": "agent",
            },
        )
        assert "error" not in ack, ack

    await agent_says("You are here, no push")
    await app_on_b.wait_for("message_received", lambda m: m["content"] == "You are here, no push")
    await asyncio.sleep(2.0)
    assert fcm.received == [], "connected on the other process: no push"

    await app_on_b.client.disconnect()
    await asyncio.sleep(0.5)
    await agent_says("Now you are away")
    deadline = time.monotonic() + 15
    while not fcm.received:
        assert time.monotonic() < deadline, "no push after the app left"
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    (pushed,) = fcm.received
    assert pushed["token"] == TOKEN and pushed["notification"]["body"] == "Now you are away"
    assert pushed["data"]["seq"] == "2"
