"""Grants that end and services that fail, against real `chatd serve` processes on a private
PostgreSQL and Redis that the tests stop and start.

- A connection attempt always ends in `connect` or `connect_error`: while the database or
  Redis is down an agent's socket is refused with `unavailable`, and connects once it is back.
- A logout on one process cuts the session's socket on the other within seconds.
- Revoking an embed token on one process cuts its visitors' sockets on the other, and they
  can neither rejoin nor send.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from tests.e2e.procs import ServerProcess
from tests.e2e.test_two_processes import Clients, add_agent, bootstrap, open_conversation
from tests.factories import Recorder, uid

CUT_WITHIN = 5.0


@pytest.fixture
def env(single_pass, private_pg, private_redis) -> dict[str, str]:
    return {
        "DATABASE_URL": private_pg.create_database(),
        "REDIS_URL": private_redis.url,
        "CHATD_DEMO": "false",
        "CHATD_PRESENCE_TTL_SECONDS": "3",
    }


@pytest.fixture
async def clients():
    c = Clients()
    yield c
    await c.close()


async def start(env: dict[str, str], tmp_path, count: int) -> list[ServerProcess]:
    procs = [ServerProcess(env, tmp_path / f"server-{i}.log") for i in range(count)]
    await asyncio.gather(*(p.wait_healthy() for p in procs))
    return procs


@pytest.fixture
async def procs():
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.stop()


async def attempt(
    url: str, *, cookie: str | None = None, auth: Any = None
) -> tuple[socketio.AsyncClient, list[Any]]:
    """One connection attempt; returns the client and the connect_error data it got."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []

    async def on_connect_error(data=None):
        errors.append(data)

    sio.on("connect_error", on_connect_error)
    headers = {"Cookie": f"session={cookie}"} if cookie else {}
    try:
        await sio.connect(
            url, headers=headers, auth=auth, transports=["websocket"], wait_timeout=20
        )
    except socketio.exceptions.ConnectionError:
        pass
    return sio, errors


async def refused(url: str, **kwargs) -> dict:
    sio, errors = await attempt(url, **kwargs)
    assert not sio.connected
    assert len(errors) == 1, f"no connect_error, the attempt went unanswered: {errors}"
    return errors[0]


async def connects_eventually(clients: Clients, url: str, timeout: float = 30.0, **kwargs):
    """After an outage: refusals say `unavailable` until the service answers, then connect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        sio, errors = await attempt(url, **kwargs)
        if sio.connected:
            clients.all.append(sio)
            return Recorder(sio)
        assert errors and errors[0]["data"]["code"] == "unavailable", errors
        assert loop.time() < deadline, "still refused after the service came back"
        await asyncio.sleep(errors[0]["data"]["retry_after_ms"] / 1000)


async def wait_disconnected(rec: Recorder, timeout: float = CUT_WITHIN) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while rec.client.connected:
        assert loop.time() < deadline, f"still connected after {timeout} s"
        await asyncio.sleep(0.05)


def assert_unavailable(data: Any) -> None:
    assert isinstance(data, dict) and data["data"]["code"] == "unavailable", data
    assert isinstance(data["message"], str) and data["message"], data
    assert isinstance(data["data"]["retry_after_ms"], int) and data["data"]["retry_after_ms"] > 0


async def message_count(clients: Clients, url: str, cookie: str, conv_id: str) -> int:
    async with clients.http.get(
        f"{url}/api/conversations/{conv_id}/messages",
        params={"limit": "100"},
        headers={"Cookie": f"session={cookie}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return len(await resp.json())


# ---- the connect path -----------------------------------------------------------------------


async def test_agent_connecting_while_the_database_is_down_is_refused_then_connects(
    env, private_pg, procs, clients, tmp_path
):
    org = bootstrap(env)
    procs.extend(await start(env, tmp_path, 1))
    (server,) = procs
    cookie, _csrf = await clients.login(server.url, org["email"])
    # The private cluster commits asynchronously (synchronous_commit=off) and the stop is a
    # crash: give the WAL writer time to make the login durable.
    await asyncio.sleep(1.0)

    private_pg.stop()
    try:
        assert_unavailable(await refused(server.url, cookie=cookie))
    finally:
        private_pg.start()

    inbox = await connects_eventually(clients, server.url, cookie=cookie)
    assert await inbox.call("join_queue") == {"organization_id": org["org_id"]}


async def test_agent_connecting_while_redis_is_down_is_refused_then_connects(
    env, private_redis, procs, clients, tmp_path
):
    org = bootstrap(env)
    procs.extend(await start(env, tmp_path, 1))
    (server,) = procs
    cookie, _csrf = await clients.login(server.url, org["email"])

    private_redis.stop()
    try:
        assert_unavailable(await refused(server.url, cookie=cookie))
    finally:
        private_redis.start()

    inbox = await connects_eventually(clients, server.url, cookie=cookie)
    assert await inbox.call("join_queue") == {"organization_id": org["org_id"]}


async def test_widget_connecting_while_the_database_is_down_is_accepted_and_checked_later(
    env, private_pg, procs, clients, tmp_path
):
    # A browser never retries a socket the server refused: the widget's handshake does not
    # fail for an outage; its token is checked before its first event instead.
    org = bootstrap(env)
    procs.extend(await start(env, tmp_path, 1))
    (server,) = procs
    owner_cookie, owner_csrf = await clients.login(server.url, org["email"])
    owner = {"Cookie": f"session={owner_cookie}", "X-CSRFToken": owner_csrf}
    body = {"channel_id": org["channel_id"], "name": "old site", "allowed_origins": []}
    async with clients.http.post(
        server.url + "/api/admin/embed-tokens", json=body, headers=owner
    ) as resp:
        assert resp.status == 201, await resp.text()
        old = await resp.json()
    live_conv = await open_conversation(clients, server.url, org["embed_token"])
    old_conv = await open_conversation(clients, server.url, old["token"])
    async with clients.http.post(
        f"{server.url}/api/admin/embed-tokens/{old['id']}/revoke", headers=owner
    ) as resp:
        assert resp.status == 200, await resp.text()
    await asyncio.sleep(1.0)  # durable before the crash (see above)

    private_pg.stop()
    try:
        sockets = []
        for token in (org["embed_token"], old["token"]):
            sio, errors = await attempt(server.url, auth={"embed_token": token})
            assert sio.connected and errors == [], errors
            clients.all.append(sio)
            sockets.append(Recorder(sio))
    finally:
        private_pg.start()

    live, revoked = sockets
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        ack = await live.call("join_conversation", join_payload(live_conv))
        if "error" not in ack:
            break
        assert ack["error"]["code"] in ("unavailable", "internal_error"), ack
        assert loop.time() < deadline, ack
        await asyncio.sleep(0.5)
    ack = await revoked.call("join_conversation", join_payload(old_conv))
    assert ack["error"]["code"] == "forbidden", ack


def join_payload(conv: dict) -> dict:
    return {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]}


# ---- revocation across processes -------------------------------------------------------------


async def test_logout_on_one_process_cuts_the_sessions_socket_on_the_other(
    env, procs, clients, tmp_path
):
    org = bootstrap(env)
    agent_email = add_agent(env, org["org_id"])
    procs.extend(await start(env, tmp_path, 2))
    a, b = procs
    conv = await open_conversation(clients, a.url, org["embed_token"])
    cookie, csrf = await clients.login(a.url, agent_email)
    owner_cookie, _ = await clients.login(a.url, org["email"])
    inbox = await clients.connect(b.url, cookie)
    assert "error" not in await inbox.call("join_conversation", {"conversation_id": conv["id"]})
    before = await message_count(clients, a.url, owner_cookie, conv["id"])

    async with clients.http.post(
        a.url + "/auth/logout", headers={"Cookie": f"session={cookie}", "X-CSRFToken": csrf}
    ) as resp:
        assert resp.status == 200, await resp.text()

    await wait_disconnected(inbox)
    again = await clients.connect(b.url, cookie)
    ack = await again.call(
        "send_message",
        {"conversation_id": conv["id"], "content": "after logout", "sender_type": "agent"},
    )
    assert ack["error"]["code"] == "not_authenticated", ack
    assert await message_count(clients, a.url, owner_cookie, conv["id"]) == before


async def test_revoking_a_token_on_one_process_cuts_its_visitors_on_the_other(
    env, procs, clients, tmp_path
):
    org = bootstrap(env)
    procs.extend(await start(env, tmp_path, 2))
    a, b = procs
    owner_cookie, owner_csrf = await clients.login(a.url, org["email"])
    owner = {"Cookie": f"session={owner_cookie}", "X-CSRFToken": owner_csrf}
    widget_conv = await open_conversation(clients, a.url, org["embed_token"])
    native_conv = await open_conversation(clients, a.url, org["embed_token"])
    widget = Recorder(socketio.AsyncClient(reconnection=False))
    await widget.client.connect(
        b.url, auth={"embed_token": org["embed_token"]}, transports=["websocket"]
    )
    clients.all.append(widget.client)
    native = await clients.connect(b.url)
    for rec, conv in ((widget, widget_conv), (native, native_conv)):
        join = {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]}
        assert "error" not in await rec.call("join_conversation", join)
    async with clients.http.get(a.url + "/api/admin/embed-tokens", headers=owner) as resp:
        (token,) = await resp.json()

    async with clients.http.post(
        f"{a.url}/api/admin/embed-tokens/{token['id']}/revoke", headers=owner
    ) as resp:
        assert resp.status == 200, await resp.text()

    await wait_disconnected(widget)
    await wait_disconnected(native)
    data = await refused(b.url, auth={"embed_token": org["embed_token"]})
    assert data["data"]["code"] == "forbidden", data
    for conv in (widget_conv, native_conv):
        before = await message_count(clients, a.url, owner_cookie, conv["id"])
        rec = await clients.connect(b.url)
        ext = conv["end_user"]["external_id"]
        join = {"conversation_id": conv["id"], "external_id": ext}
        assert (await rec.call("join_conversation", join))["error"]["code"] == "forbidden"
        send = {
            "conversation_id": conv["id"],
            "content": uid("after revoke "),
            "sender_type": "end_user",
            "external_id": ext,
        }
        assert (await rec.call("send_message", send))["error"]["code"] == "forbidden"
        assert await message_count(clients, a.url, owner_cookie, conv["id"]) == before
