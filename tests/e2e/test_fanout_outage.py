"""Live delivery after a fan-out outage: two `chatd serve` processes on a private PostgreSQL and
a private Redis that the test kills and starts again while messages flow.

What is sent on one process while Redis is down, and in the seconds after it returns, cannot
reach the other process's sockets through Redis. The promise: within a bounded time after Redis
is back, every process tells its own sockets the head seq of their conversations
(`conversation_head`), which covers everything committed before that moment; everything
committed after it arrives live. A client that fetches after its gap-free seq has it all.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from tests.e2e.procs import ServerProcess, run_cli
from tests.e2e.test_two_processes import Clients, bootstrap, open_conversation

# Redis back -> conversation_head on every socket of the other process, at most.
REPAIR_BOUND_SECONDS = 10.0


@pytest.fixture
async def outage_cluster(single_pass, private_pg, private_redis, tmp_path):
    env = {
        "DATABASE_URL": private_pg.create_database(),
        "REDIS_URL": private_redis.url,
        "CHATD_DEMO": "false",
        "CHATD_PRESENCE_TTL_SECONDS": "5",
    }
    run_cli("migrate", env=env)
    procs = [ServerProcess(env, tmp_path / f"server-{i}.log") for i in range(2)]
    clients = Clients()
    try:
        await asyncio.gather(*(p.wait_healthy() for p in procs))
        yield env, procs, clients
    finally:
        await clients.close()
        for p in procs:
            p.stop()


def live_seqs(rec, conversation_id: str) -> list[int]:
    return [m["seq"] for m in rec.of("message_received") if m["conversation_id"] == conversation_id]


async def test_messages_missed_during_a_redis_outage_are_announced_and_later_ones_arrive_live(
    outage_cluster, private_redis
):
    env, (a, b), clients = outage_cluster
    org = bootstrap(env)
    cookie, _ = await clients.login(a.url, org["email"])
    conv = await open_conversation(clients, a.url, org["embed_token"])
    cid, ext = conv["id"], conv["end_user"]["external_id"]

    sender = await clients.connect(a.url, cookie)
    visitor_on_b = await clients.connect(b.url)
    agent_on_b = await clients.connect(b.url, cookie)
    visitor_on_a = await clients.connect(a.url)
    for rec in (visitor_on_b, visitor_on_a):
        ack = await rec.call("join_conversation", {"conversation_id": cid, "external_id": ext})
        assert "error" not in ack, ack
    ack = await agent_on_b.call("join_conversation", {"conversation_id": cid})
    assert "error" not in ack, ack
    watchers = (visitor_on_b, agent_on_b, visitor_on_a)

    sent: list[int] = []

    async def send(text: str) -> int:
        ack = await sender.call(
            "send_message",
            {
                "conversation_id": cid,
                "content": text,
                "content_type": "text",
                "sender_type": "agent",
            },
        )
        assert "error" not in ack, ack
        sent.append(ack["seq"])
        return ack["seq"]

    for i in range(3):
        await send(f"before {i}")
    await visitor_on_b.wait_for("message_received", count=3, timeout=10)

    private_redis.stop()
    for i in range(6):
        await send(f"during {i}")
    committed_while_down = sent[-1]

    private_redis.start()
    back_at = time.monotonic()
    # Keep sending at a steady pace while the processes find Redis again: these land in the
    # window between Redis returning and the other process resubscribing.
    sending_until = back_at + 4.0
    while time.monotonic() < sending_until:
        await send(f"after {len(sent)}")
        await asyncio.sleep(0.1)

    heads = {}
    for rec in watchers:
        (head, *_) = await rec.wait_for(
            "conversation_head",
            lambda h: h["conversation_id"] == cid and h["last_seq"] >= committed_while_down,
            timeout=max(0.1, back_at + REPAIR_BOUND_SECONDS - time.monotonic()),
        )
        heads[rec] = head
    print(
        f"conversation_head on every socket {time.monotonic() - back_at:.2f} s after Redis "
        "returned (including the 4 s of sending)"
    )

    for i in range(5):
        await send(f"late {i}")
    total = sent[-1]
    assert sorted(sent) == list(range(1, total + 1))

    for rec in watchers:
        # Everything committed after the announcement's read arrives live ... (a socket may
        # also hear, from the sending process, the head of what it could not publish: lower)
        head = max(
            h["last_seq"] for h in rec.of("conversation_head") if h["conversation_id"] == cid
        )
        assert head <= total
        expected_live = set(range(head + 1, total + 1))
        await rec.wait_for(
            "message_received",
            lambda m, want=expected_live: m["conversation_id"] == cid and m["seq"] in want,
            count=len(expected_live),
            timeout=10,
        )
        live = live_seqs(rec, cid)
        assert expected_live <= set(live), sorted(expected_live - set(live))
        assert len(live) == len(set(live)), "a message was delivered twice"
        # ... and what the announcement covers is fetched after the gap-free seq.
        gap_free = 0
        while gap_free + 1 in set(live):
            gap_free += 1
        async with clients.http.get(
            f"{b.url}/chat-widget/history/{cid}",
            params={"external_id": ext, "after_seq": str(gap_free)},
        ) as resp:
            assert resp.status == 200
            fetched = [m["seq"] for m in await resp.json()]
        held = set(live) | set(fetched)
        assert held == set(range(1, total + 1)), sorted(set(range(1, total + 1)) - held)


async def test_messages_whose_publish_failed_are_announced_once_redis_takes_publishes_again(
    outage_cluster, private_redis
):
    """Redis stays up and every subscription with it, but refuses PUBLISH for a while (an ACL
    change): nobody resubscribes, so the sending process announces the heads it dropped."""
    env, (a, b), clients = outage_cluster
    org = bootstrap(env)
    cookie, _ = await clients.login(a.url, org["email"])
    conv = await open_conversation(clients, a.url, org["embed_token"])
    cid, ext = conv["id"], conv["end_user"]["external_id"]
    sender = await clients.connect(a.url, cookie)
    visitor_on_b = await clients.connect(b.url)
    ack = await visitor_on_b.call("join_conversation", {"conversation_id": cid, "external_id": ext})
    assert "error" not in ack, ack

    async def send(text: str) -> int:
        ack = await sender.call(
            "send_message",
            {
                "conversation_id": cid,
                "content": text,
                "content_type": "text",
                "sender_type": "agent",
            },
        )
        assert "error" not in ack, ack
        return ack["seq"]

    await send("first")
    await visitor_on_b.wait_for("message_received", timeout=10)

    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "default", "-publish")
        dropped = [await send(f"unpublished {i}") for i in range(3)]
        await asyncio.sleep(1.0)  # the sender gives up on them
        assert [m["seq"] for m in visitor_on_b.of("message_received")] == [1]
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        allowed_at = time.monotonic()
        # (B may have announced a head of 0 when its first socket came: python-socketio
        # starts a process's subscription on its first connection.)
        (head, *_) = await visitor_on_b.wait_for(
            "conversation_head",
            lambda h: h["conversation_id"] == cid and h["last_seq"] > 1,
            timeout=5,
        )
        print(f"conversation_head {time.monotonic() - allowed_at:.2f} s after PUBLISH returned")
        assert head["last_seq"] == dropped[-1]
    finally:
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        await admin.aclose()
    later = await send("later")
    (live,) = await visitor_on_b.wait_for("message_received", lambda m: m["seq"] == later)
    assert live["content"] == "later"
