"""The client manager's own parts: the per-socket room index, local delivery and the
pipelined Redis publisher. Each is checked against what python-socketio's room table says
and what other processes receive, with real clients on a real server."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from socketio.async_manager import AsyncManager

from rest.keys import SIO


def brute_force_rooms(manager, sid: str) -> set:
    """A socket's rooms as python-socketio itself finds them: by testing every room."""
    return {name for name, members in manager.rooms.get("/", {}).items() if name and sid in members}


def sids_of(manager) -> list[str]:
    return list(manager.rooms.get("/", {}).get(None, {}))


async def test_room_index_follows_joins_leaves_and_disconnects(server, factory):
    manager = server.app[SIO].manager
    org = await factory.org()
    conv = await factory.conversation(org)
    other = await factory.conversation(org)
    agent = await factory.agent(org)
    visitor = await factory.visitor(conv)
    inbox = await factory.client(agent)
    assert "error" not in await inbox.call("join_queue", {})
    for c in (conv, other):
        assert "error" not in await inbox.call("join_conversation", {"conversation_id": c["id"]})

    sids = sids_of(manager)
    assert len(sids) == 2
    for sid in sids:
        assert set(manager.get_rooms(sid, "/")) == brute_force_rooms(manager, sid)
    agent_sid = next(s for s in sids if len(brute_force_rooms(manager, s)) == 4)  # own+queue+2

    assert "error" not in await inbox.call("leave_conversation", {"conversation_id": other["id"]})
    assert set(manager.get_rooms(agent_sid, "/")) == brute_force_rooms(manager, agent_sid)
    assert len(manager.get_rooms(agent_sid, "/")) == 3

    visitor_sid = next(s for s in sids if s != agent_sid)
    await visitor.client.disconnect()
    for _ in range(100):
        if visitor_sid not in sids_of(manager):
            break
        await asyncio.sleep(0.05)
    assert visitor_sid not in sids_of(manager)
    assert brute_force_rooms(manager, visitor_sid) == set()
    assert manager.get_rooms(visitor_sid, "/") == []
    assert not any(key[1] == visitor_sid for key in manager._rooms_of)

    # The agent still gets the conversation's messages after the visitor's socket is gone.
    inbox.clear()
    ack = await factory.agent_send(inbox, conv, "still here")
    assert "error" not in ack, ack
    await inbox.wait_for("conversation_updated", lambda d: d["content"] == "still here")


async def test_every_event_reaches_every_member_in_order(server, factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    agent = await factory.agent(org)
    visitor = await factory.visitor(conv)
    inbox = await factory.client(agent)
    assert "error" not in await inbox.call("join_conversation", {"conversation_id": conv["id"]})

    # Concurrent senders on both sides (within the default rate limit of 20 per window).
    acks = await asyncio.gather(
        *(factory.agent_send(inbox, conv, f"m{i}") for i in range(15)),
        *(factory.visitor_send(visitor, conv, f"v{i}") for i in range(15)),
    )
    assert all("error" not in a for a in acks), acks
    for rec in (visitor, inbox):
        got = await rec.wait_for("message_received", count=30, timeout=15)
        assert [m["seq"] for m in got] == list(range(1, 31))


async def test_every_emit_takes_the_encode_once_delivery(server, factory, monkeypatch):
    """One process and Redis alike: live events go through _deliver (encoded once, no task
    per recipient), never through python-socketio's stock per-recipient emit. AsyncServer.emit
    passes ignore_queue= to the manager, which once sent the single-process server the slow
    way."""
    manager = server.app[SIO].manager
    delivered: list[str] = []
    stock: list[str] = []
    deliver = manager._deliver

    async def counting_deliver(event, data, namespace, room, skip_sid):
        delivered.append(event)
        return await deliver(event, data, namespace, room, skip_sid)

    stock_emit = AsyncManager.emit

    async def counting_stock_emit(self, event, *args, **kwargs):
        stock.append(event)
        return await stock_emit(self, event, *args, **kwargs)

    monkeypatch.setattr(manager, "_deliver", counting_deliver)
    monkeypatch.setattr(AsyncManager, "emit", counting_stock_emit)

    org = await factory.org()
    conv = await factory.conversation(org)
    agent = await factory.agent(org)
    visitor = await factory.visitor(conv)
    inbox = await factory.client(agent)
    assert "error" not in await inbox.call("join_conversation", {"conversation_id": conv["id"]})
    ack = await factory.visitor_send(visitor, conv, "fast path")
    assert "error" not in ack, ack
    got = await inbox.wait_for("message_received", lambda d: d["content"] == "fast path")
    assert got
    assert "message_received" in delivered
    assert stock == []


async def test_pipelined_publishes_reach_redis_complete_and_in_order(server, factory, uses_redis):
    if not uses_redis:
        pytest.skip("the Redis manager runs only with REDIS_URL")
    sio = server.app[SIO]
    manager = sio.manager
    listener = aioredis.from_url(manager.redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(manager.channel)
    try:
        # Emits that no socket here receives still go to the other processes, in order.
        for i in range(300):
            await sio.emit("probe", {"i": i}, room="nobody-here")
        await manager.flush_published()
        got: list[int] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(got) < 300:
            assert asyncio.get_running_loop().time() < deadline, f"{len(got)} of 300 arrived"
            msg = await pubsub.get_message(timeout=1)
            if msg is None:
                continue
            data = orjson.loads(msg["data"])
            if data.get("method") == "emit" and data["event"] == "probe":
                got.append(data["data"][0]["i"])
        assert got == list(range(300))
    finally:
        await pubsub.aclose()
        await listener.aclose()
