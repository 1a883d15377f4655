"""Two `chatd serve` processes on one PostgreSQL and one Redis, clients spread across them."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import socketio

from tests.e2e.procs import run_cli
from tests.factories import PASSWORD, Recorder, quiet, uid

PRESENCE_TTL = 2.0


def multi_process_env(base_settings, **extra: str) -> dict[str, str]:
    """The environment of the `chatd serve` processes of a multi-process test (PostgreSQL and
    Redis only: the test is skipped otherwise), with `extra` settings."""
    if not (base_settings.database_url.startswith("postgresql") and base_settings.redis_url):
        pytest.skip("the multi-process test needs DATABASE_URL=PostgreSQL and REDIS_URL")
    return {
        "DATABASE_URL": base_settings.database_url,
        "REDIS_URL": base_settings.redis_url,
        "CHATD_PRESENCE_TTL_SECONDS": str(PRESENCE_TTL),
        "CHATD_DEMO": "false",
        **extra,
    }


@pytest.fixture
def cluster_env(base_settings):
    return multi_process_env(base_settings)


class Clients:
    def __init__(self) -> None:
        self.all: list[socketio.AsyncClient] = []
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def connect(self, url: str, cookie: str | None = None) -> Recorder:
        sio = socketio.AsyncClient(reconnection=False)
        rec = Recorder(sio)
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        await sio.connect(url, headers=headers, transports=["websocket"], wait_timeout=10)
        self.all.append(sio)
        return rec

    async def login(self, url: str, email: str) -> tuple[str, str]:
        async with self.http.post(
            url + "/auth/login", json={"email": email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return resp.cookies["session"].value, (await resp.json())["csrf_token"]

    async def close(self) -> None:
        for c in self.all:
            if c.connected:
                await c.disconnect()
        await self.http.close()


def bootstrap(env) -> dict:
    email = f"{uid('owner-')}@example.com"
    out = run_cli(
        "bootstrap",
        "--org",
        uid("Org "),
        "--email",
        email,
        "--password",
        PASSWORD,
        "--json",
        env=env,
    )
    data = json.loads(out.strip().splitlines()[-1])
    data["email"] = email
    return data


def add_agent(env, org_id: str) -> str:
    email = f"{uid('agent-')}@example.com"
    out = run_cli(
        "add-user",
        "--org-id",
        org_id,
        "--email",
        email,
        "--password",
        PASSWORD,
        "--role",
        "agent",
        "--json",
        env=env,
    )
    assert "user_id" in json.loads(out.strip().splitlines()[-1])
    return email


async def open_conversation(clients: Clients, url: str, token: str) -> dict:
    body = {"embed_token": token, "external_id": uid("visitor-")}
    async with clients.http.post(url + "/chat-widget/conversations", json=body) as resp:
        assert resp.status in (200, 201)
        return await resp.json()


async def test_guide_flow_across_two_processes(cluster, clients, cluster_env):
    a, b = cluster
    org = bootstrap(cluster_env)
    cookie, csrf = await clients.login(a.url, org["email"])
    agent_on_a = await clients.connect(a.url, cookie)
    await agent_on_a.call("join_queue")
    conv = await open_conversation(clients, b.url, org["embed_token"])
    ext = conv["end_user"]["external_id"]
    visitor_on_b = await clients.connect(b.url)
    await visitor_on_b.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )

    msg = {
        "conversation_id": conv["id"],
        "content": "Hello from B",
        "content_type": "text",
        "sender_type": "end_user",
        "external_id": ext,
    }
    ack = await visitor_on_b.call("send_message", msg)
    assert ack["seq"] == 1
    (update,) = await agent_on_a.wait_for("conversation_updated")
    assert update["content"] == "Hello from B"

    claim = await agent_on_a.call("claim_conversation", {"conversation_id": conv["id"]})
    assert "error" not in claim
    reply = await agent_on_a.call(
        "send_message",
        {
            "conversation_id": conv["id"],
            "content": "Hello from A",
            "content_type": "text",
            "sender_type": "agent",
        },
    )
    (got,) = await visitor_on_b.wait_for("message_received", lambda m: m["seq"] == 2)
    assert got["id"] == reply["id"] and got["content"] == "Hello from A"

    # The session made on A is good on B; resolving there reaches the agent on A.
    async with clients.http.post(
        f"{b.url}/api/conversations/{conv['id']}/resolve",
        json={"tags": ["done"]},
        headers={"Cookie": f"session={cookie}", "X-CSRFToken": csrf},
    ) as resp:
        assert resp.status == 200
    await agent_on_a.wait_for("conversation_resolved")


async def test_concurrent_senders_on_two_processes_get_gap_free_seq(cluster, clients, cluster_env):
    a, b = cluster
    org = bootstrap(cluster_env)
    cookie, _ = await clients.login(a.url, org["email"])
    conv = await open_conversation(clients, a.url, org["embed_token"])
    ext = conv["end_user"]["external_id"]
    senders = [
        await clients.connect(a.url, cookie),
        await clients.connect(b.url, cookie),
        await clients.connect(a.url, cookie),
        await clients.connect(b.url, cookie),
    ]
    watcher = await clients.connect(a.url)
    await watcher.call("join_conversation", {"conversation_id": conv["id"], "external_id": ext})

    def payload(i: int, n: int) -> dict:
        return {
            "conversation_id": conv["id"],
            "content": f"{n}-{i}",
            "content_type": "text",
            "sender_type": "agent",
        }

    acks = await asyncio.gather(
        *(s.call("send_message", payload(i, n)) for n, s in enumerate(senders) for i in range(20))
    )
    assert all("error" not in x for x in acks), acks
    assert sorted(x["seq"] for x in acks) == list(range(1, 81))
    got = await watcher.wait_for("message_received", count=80, timeout=15)
    assert sorted(m["seq"] for m in got) == list(range(1, 81))

    # A visitor who was away rejoins on the other process and gets exactly what it missed.
    back = await clients.connect(b.url)
    ack = await back.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext, "last_seq": 70}
    )
    assert ack["replayed"] == 10
    assert [m["seq"] for m in back.of("message_received")] == list(range(71, 81))


async def test_presence_counts_every_tab_on_every_process(cluster, clients, cluster_env):
    a, b = cluster
    org = bootstrap(cluster_env)
    watcher_cookie, _ = await clients.login(a.url, org["email"])
    watcher = await clients.connect(a.url, watcher_cookie)
    await watcher.call("join_org_presence")
    email = add_agent(cluster_env, org["org_id"])
    cookie, _ = await clients.login(b.url, email)

    tab_b = await clients.connect(b.url, cookie)
    (online,) = await watcher.wait_for("agent_status_changed", lambda e: e["status"] == "online")
    agent_id = online["agent_id"]
    tab_a = await clients.connect(a.url, cookie)
    ack = await watcher.call("join_org_presence")
    assert agent_id in ack["online"]

    await tab_b.client.disconnect()
    await quiet(0.5)
    assert [e for e in watcher.of("agent_status_changed") if e["agent_id"] == agent_id] == [online]

    await tab_a.client.disconnect()
    (offline,) = await watcher.wait_for(
        "agent_status_changed", lambda e: e["agent_id"] == agent_id and e["status"] == "offline"
    )
    assert offline == {"agent_id": agent_id, "status": "offline"}


async def test_killing_a_process_marks_its_agents_offline(cluster, clients, cluster_env):
    a, b = cluster
    org = bootstrap(cluster_env)
    watcher_cookie, _ = await clients.login(a.url, org["email"])
    watcher = await clients.connect(a.url, watcher_cookie)
    await watcher.call("join_org_presence")
    email = add_agent(cluster_env, org["org_id"])
    cookie, _ = await clients.login(b.url, email)
    await clients.connect(b.url, cookie)
    (online,) = await watcher.wait_for("agent_status_changed", lambda e: e["status"] == "online")

    b.kill()

    (offline,) = await watcher.wait_for(
        "agent_status_changed",
        lambda e: e["agent_id"] == online["agent_id"] and e["status"] == "offline",
        timeout=PRESENCE_TTL * 4 + 5,
    )
    assert offline["status"] == "offline"
    ack = await watcher.call("join_org_presence")
    assert online["agent_id"] not in ack["online"]


async def test_a_key_revoked_on_one_process_is_refused_by_the_other(cluster, clients, cluster_env):
    a, b = cluster
    org = bootstrap(cluster_env)
    cookie, csrf = await clients.login(a.url, org["email"])
    admin = {"Cookie": f"session={cookie}", "X-CSRFToken": csrf}
    async with clients.http.post(
        a.url + "/api/admin/api-keys", json={"name": "two"}, headers=admin
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    bearer = {"Authorization": f"Bearer {created['key']}"}
    conv = await open_conversation(clients, a.url, org["embed_token"])
    visitor = await clients.connect(b.url)
    joined = await visitor.call(
        "join_conversation",
        {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]},
    )
    assert "error" not in joined

    # Sent through process A's v1, delivered live to the visitor on process B.
    async with clients.http.post(
        f"{a.url}/api/v1/conversations/{conv['id']}/messages",
        json={"content": "From the game server"},
        headers=bearer,
    ) as resp:
        assert resp.status == 201
    (got,) = await visitor.wait_for("message_received")
    assert got["sender_type"] == "bot" and got["content"] == "From the game server"

    async with clients.http.get(
        f"{b.url}/api/v1/conversations/{conv['id']}", headers=bearer
    ) as resp:
        assert resp.status == 200
    async with clients.http.post(
        f"{a.url}/api/admin/api-keys/{created['id']}/revoke", headers=admin
    ) as resp:
        assert resp.status == 200
    async with clients.http.get(
        f"{b.url}/api/v1/conversations/{conv['id']}", headers=bearer
    ) as resp:
        assert resp.status == 401
