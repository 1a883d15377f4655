"""Delivery guarantees: ack after commit, idempotent retries, gap-free seq, replay on rejoin."""

from __future__ import annotations

import asyncio

from tests.factories import quiet, uid


async def test_retried_send_with_same_client_message_id_is_stored_and_broadcast_once(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    await inbox.call("join_queue")
    await inbox.call("join_conversation", {"conversation_id": conv["id"]})
    visitor = await factory.visitor(conv)

    first = await factory.visitor_send(visitor, conv, "Hello", client_message_id="m-1")
    retry = await factory.visitor_send(visitor, conv, "Hello", client_message_id="m-1")

    assert retry == first
    assert await factory.message_count(conv["id"]) == 1
    await inbox.wait_for("message_received")
    await quiet()
    assert len(inbox.of("message_received")) == 1
    assert len(inbox.of("conversation_updated")) == 1


async def test_same_client_message_id_from_two_senders_are_two_messages(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    visitor = await factory.visitor(conv)

    a = await factory.visitor_send(visitor, conv, "from visitor", client_message_id="same")
    b = await factory.agent_send(inbox, conv, "from agent", client_message_id="same")

    assert a["id"] != b["id"] and (a["seq"], b["seq"]) == (1, 2)
    assert await factory.message_count(conv["id"]) == 2


async def test_concurrent_retries_of_one_message_store_it_once(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    clients = [await factory.visitor(conv) for _ in range(4)]

    acks = await asyncio.gather(
        *(factory.visitor_send(c, conv, "once", client_message_id="dup") for c in clients)
    )

    assert len({a["id"] for a in acks}) == 1
    assert await factory.message_count(conv["id"]) == 1


async def test_ack_arrives_only_for_a_stored_message(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)

    ack = await factory.visitor_send(visitor, conv, "persisted?")

    status, history = await factory.get(
        f"/chat-widget/history/{conv['id']}?external_id={conv['end_user']['external_id']}"
    )
    assert status == 200
    assert [(m["id"], m["seq"]) for m in history] == [(ack["id"], ack["seq"])]


async def test_concurrent_senders_get_gap_free_increasing_seq(factory):
    org = await factory.org()
    agents = [await factory.agent(org, role="admin") for _ in range(3)]
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    inboxes = [await factory.client(a) for a in agents]
    for inbox in inboxes:
        await inbox.call("join_conversation", {"conversation_id": conv["id"]})

    sends = [factory.visitor_send(visitor, conv, f"v{i}") for i in range(15)]
    for n, inbox in enumerate(inboxes):
        sends += [factory.agent_send(inbox, conv, f"a{n}-{i}") for i in range(15)]
    acks = await asyncio.gather(*sends)

    assert all("error" not in a for a in acks), acks
    assert sorted(a["seq"] for a in acks) == list(range(1, 61))
    got = await visitor.wait_for("message_received", count=60)
    assert [m["seq"] for m in got] == list(range(1, 61))


async def test_rejoin_with_last_seq_replays_exactly_what_was_missed_in_order(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    visitor = await factory.visitor(conv)
    for i in range(3):
        await factory.visitor_send(visitor, conv, f"before {i}")
    seen = await visitor.wait_for("message_received", count=3)
    last_seq = seen[-1]["seq"]
    await visitor.client.disconnect()

    for i in range(5):
        await factory.agent_send(inbox, conv, f"while away {i}")

    back = await factory.client()
    ack = await back.call(
        "join_conversation",
        {
            "conversation_id": conv["id"],
            "external_id": conv["end_user"]["external_id"],
            "last_seq": last_seq,
        },
    )
    assert ack["replayed"] == 5 and ack["last_seq"] == 8
    replayed = back.of("message_received")
    assert [m["seq"] for m in replayed] == [4, 5, 6, 7, 8]
    assert [m["content"] for m in replayed] == [f"while away {i}" for i in range(5)]

    live = await factory.agent_send(inbox, conv, "live again")
    got = await back.wait_for("message_received", count=6)
    assert [m["seq"] for m in got] == [4, 5, 6, 7, 8, 9] and got[-1]["id"] == live["id"]


async def test_replay_while_others_keep_sending_misses_nothing_and_duplicates_nothing(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    for i in range(40):
        await factory.agent_send(inbox, conv, f"old {i}")

    async def keep_sending():
        for i in range(40):
            await factory.agent_send(inbox, conv, f"new {i}")

    rejoiners = [await factory.client() for _ in range(5)]
    payload = {
        "conversation_id": conv["id"],
        "external_id": conv["end_user"]["external_id"],
        "last_seq": 10,
    }
    sender = asyncio.create_task(keep_sending())
    await asyncio.gather(*(r.call("join_conversation", payload) for r in rejoiners))
    await sender

    for r in rejoiners:
        await r.wait_for("message_received", count=70)
        await quiet(0.2)
        seqs = [m["seq"] for m in r.of("message_received")]
        assert seqs == list(range(11, 81)), seqs


async def test_rest_and_widget_history_accept_after_seq(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    for i in range(6):
        await factory.visitor_send(visitor, conv, f"m{i}", client_message_id=uid())

    status, agent_view = await factory.get(
        f"/api/conversations/{conv['id']}/messages?after_seq=4", agent
    )
    assert status == 200 and [m["seq"] for m in agent_view] == [5, 6]
    status, widget_view = await factory.get(
        f"/chat-widget/history/{conv['id']}?external_id={conv['end_user']['external_id']}"
        "&after_seq=2"
    )
    assert status == 200 and [m["seq"] for m in widget_view] == [3, 4, 5, 6]
    assert "session_id" not in widget_view[0] and "read_by" not in widget_view[0]
