"""Server-to-client events: each reaches its room once, with the guide's fields, and nobody else.

Typing and presence events live in test_presence_typing.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from tests.factories import quiet
from tests.realtime.helpers import MESSAGE_KEYS, expect_refusal, make_scene, names


async def test_visitor_message_reaches_the_visitor_and_joined_agents_once_with_the_guide_fields(
    factory,
):
    s = await make_scene(factory)
    # A second agent of the org in the room, by claiming it (claiming joins conv:{id}).
    claimer = await factory.client(s.colleague)
    await factory.visitor_send(s.visitor, s.conv, "first")
    claim = await claimer.call("claim_conversation", {"conversation_id": s.conv["id"]})
    assert claim["assigned_agent_id"] == s.colleague.user_id
    await quiet(0.2)
    s.clear()
    claimer.clear()

    ack = await factory.visitor_send(s.visitor, s.conv, "Hello, I need help")
    assert "error" not in ack, ack

    for rec in (s.visitor, s.inbox, claimer):
        (got,) = await rec.wait_for("message_received", lambda m: m["seq"] == 2)
        assert set(got) == MESSAGE_KEYS
        assert got == ack
        assert got["conversation_id"] == s.conv["id"]
        assert got["sender_type"] == "end_user" and got["sender_id"] == s.external_id
        assert got["content_type"] == "text" and got["content"] == "Hello, I need help"
        assert got["rich_media"] is None
        uuid.UUID(got["id"])
        uuid.UUID(got["session_id"])
        datetime.fromisoformat(got["created_at"])
    await quiet()
    for rec in (s.visitor, s.inbox, claimer):
        assert len(rec.of("message_received")) == 1, rec.events
    for rec in s.strangers:
        assert rec.of("message_received") == [], rec.events


async def test_agent_message_reaches_the_visitor_with_the_agent_as_sender(factory):
    s = await make_scene(factory)
    ack = await factory.agent_send(s.inbox, s.conv, "Hi! How can I help you today?")
    assert "error" not in ack, ack
    assert set(ack) == MESSAGE_KEYS

    for rec in (s.visitor, s.inbox):
        (got,) = await rec.wait_for("message_received")
        assert got == ack
        assert got["sender_type"] == "agent" and got["sender_id"] == s.agent.user_id
    await quiet()
    assert len(s.visitor.of("message_received")) == 1
    assert len(s.inbox.of("message_received")) == 1
    for rec in s.strangers:
        assert rec.of("message_received") == [], rec.events


async def test_an_agent_who_joined_and_claimed_still_gets_each_message_once(factory):
    s = await make_scene(factory)
    await factory.visitor_send(s.visitor, s.conv, "first")
    claim = await s.inbox.call("claim_conversation", {"conversation_id": s.conv["id"]})
    assert "error" not in claim, claim
    again = await s.inbox.call("join_conversation", {"conversation_id": s.conv["id"]})
    assert again["last_seq"] == 1
    s.clear()

    await factory.visitor_send(s.visitor, s.conv, "second")
    await s.inbox.wait_for("message_received")
    await quiet()
    assert [m["content"] for m in s.inbox.of("message_received")] == ["second"]


async def test_conversation_updated_reaches_only_the_org_queue(factory):
    s = await make_scene(factory)
    # An agent of the org in the conversation room but not in the queue must not get it.
    in_room_only = await factory.client(s.colleague)
    await in_room_only.call("join_conversation", {"conversation_id": s.conv["id"]})
    queue_only = await factory.client(await factory.agent(s.org))
    await queue_only.call("join_queue")
    await quiet(0.2)
    s.clear()
    in_room_only.clear()
    queue_only.clear()

    await factory.visitor_send(s.visitor, s.conv, "Where is my order?")

    expected = {
        "conversation_id": s.conv["id"],
        "sender_type": "end_user",
        "content_type": "text",
        "content": "Where is my order?",
    }
    for rec in (s.inbox, queue_only):
        (got,) = await rec.wait_for("conversation_updated")
        assert got == expected
    await in_room_only.wait_for("message_received")
    await quiet()
    assert len(s.inbox.of("conversation_updated")) == 1
    assert len(queue_only.of("conversation_updated")) == 1
    for rec in (s.visitor, in_room_only, *s.strangers):
        assert rec.of("conversation_updated") == [], rec.events


async def test_agent_reply_also_updates_the_org_queue(factory):
    s = await make_scene(factory)
    await factory.agent_send(s.inbox, s.conv, "We are on it")
    (got,) = await s.inbox.wait_for("conversation_updated")
    assert got == {
        "conversation_id": s.conv["id"],
        "sender_type": "agent",
        "content_type": "text",
        "content": "We are on it",
    }
    await quiet()
    assert len(s.inbox.of("conversation_updated")) == 1
    for rec in (s.visitor, *s.strangers):
        assert rec.of("conversation_updated") == [], rec.events


async def test_conversation_assigned_reaches_only_the_org_queue_once(factory):
    s = await make_scene(factory)
    colleague_queue = await factory.client(s.colleague)
    await colleague_queue.call("join_queue")
    await factory.visitor_send(s.visitor, s.conv, "help")
    await quiet(0.2)
    s.clear()
    colleague_queue.clear()

    claim = await s.inbox.call("claim_conversation", {"conversation_id": s.conv["id"]})
    assert claim["id"] == s.conv["id"] and claim["assigned_agent_id"] == s.agent.user_id

    for rec in (s.inbox, colleague_queue):
        (got,) = await rec.wait_for("conversation_assigned")
        assert got == {"conversation_id": s.conv["id"], "assigned_to": s.agent.user_id}
    await quiet()
    assert len(s.inbox.of("conversation_assigned")) == 1
    assert len(colleague_queue.of("conversation_assigned")) == 1
    # The visitor is in conv:{id} only; assignment is news for the queue.
    for rec in (s.visitor, *s.strangers):
        assert rec.of("conversation_assigned") == [], rec.events

    # Claiming one's own again is a no-op: no second event.
    again = await s.inbox.call("claim_conversation", {"conversation_id": s.conv["id"]})
    assert again["assigned_agent_id"] == s.agent.user_id
    await quiet()
    assert len(s.inbox.of("conversation_assigned")) == 1


async def test_rest_assign_emits_the_same_conversation_assigned_event(factory):
    s = await make_scene(factory)
    await factory.visitor_send(s.visitor, s.conv, "help")
    await quiet(0.2)
    s.clear()

    status, body = await factory.post(f"/api/conversations/{s.conv['id']}/assign", s.agent)
    assert status == 200, body
    (got,) = await s.inbox.wait_for("conversation_assigned")
    assert got == {"conversation_id": s.conv["id"], "assigned_to": s.agent.user_id}
    await quiet()
    assert len(s.inbox.of("conversation_assigned")) == 1
    for rec in (s.visitor, *s.strangers):
        assert rec.of("conversation_assigned") == [], rec.events


async def test_claim_by_a_second_agent_conflicts_and_emits_nothing(factory):
    s = await make_scene(factory)
    await factory.visitor_send(s.visitor, s.conv, "help")
    await s.inbox.call("claim_conversation", {"conversation_id": s.conv["id"]})
    await quiet(0.2)
    s.clear()

    ack = await s.lurker.call("claim_conversation", {"conversation_id": s.conv["id"]})
    await expect_refusal(s.lurker, ack, "conflict")
    await quiet()
    assert s.inbox.of("conversation_assigned") == []
    assert names(s.lurker) == ["error"]
    # A refused claim does not join the room.
    await factory.visitor_send(s.visitor, s.conv, "still there?")
    await s.inbox.wait_for("message_received")
    await quiet()
    assert s.lurker.of("message_received") == []


async def test_conversation_resolved_reaches_queue_and_room_once_each(factory):
    s = await make_scene(factory)
    first = await factory.visitor_send(s.visitor, s.conv, "help")
    await quiet(0.2)
    s.clear()

    status, body = await factory.post(
        f"/api/conversations/{s.conv['id']}/resolve", s.agent, json={"tags": ["billing"]}
    )
    assert status == 200, body

    # The agent is in both the queue and the room: one copy.
    for rec in (s.inbox, s.visitor):
        (got,) = await rec.wait_for("conversation_resolved")
        assert set(got) == {"conversation_id", "session_id", "tags", "resolved_at"}
        assert got["conversation_id"] == s.conv["id"]
        assert got["session_id"] == first["session_id"]
        assert got["tags"] == ["billing"]
        assert got["resolved_at"] == body["resolved_at"]
    await quiet()
    assert len(s.inbox.of("conversation_resolved")) == 1
    assert len(s.visitor.of("conversation_resolved")) == 1
    for rec in s.strangers:
        assert rec.of("conversation_resolved") == [], rec.events


async def test_messages_read_reaches_the_room_and_read_by_shows_in_history(factory):
    s = await make_scene(factory)
    sent = await factory.visitor_send(s.visitor, s.conv, "please read me")
    mine = await factory.agent_send(s.inbox, s.conv, "read")
    await quiet(0.2)
    s.clear()

    # The agent reads the visitor's message; its own message is skipped.
    ack = await s.inbox.call(
        "mark_read", {"conversation_id": s.conv["id"], "message_ids": [sent["id"], mine["id"]]}
    )
    assert ack == {"conversation_id": s.conv["id"], "message_ids": [sent["id"]]}

    for rec in (s.inbox, s.visitor):
        (got,) = await rec.wait_for("messages_read")
        assert set(got) == {"conversation_id", "message_ids", "reader_type", "reader_id", "read_at"}
        assert got["conversation_id"] == s.conv["id"]
        assert got["message_ids"] == [sent["id"]]
        assert got["reader_type"] == "agent" and got["reader_id"] == s.agent.user_id
        datetime.fromisoformat(got["read_at"])
    await quiet()
    assert len(s.inbox.of("messages_read")) == 1
    assert len(s.visitor.of("messages_read")) == 1
    for rec in s.strangers:
        assert rec.of("messages_read") == [], rec.events

    status, history = await factory.get(f"/api/conversations/{s.conv['id']}/messages", s.agent)
    assert status == 200
    by_id = {m["id"]: m for m in history}
    assert by_id[sent["id"]]["read_by"] == {s.agent.user_id: got["read_at"]}
    assert by_id[mine["id"]]["read_by"] == {}

    # Reading again changes nothing and emits nothing.
    s.clear()
    again = await s.inbox.call(
        "mark_read", {"conversation_id": s.conv["id"], "message_ids": [sent["id"]]}
    )
    assert again == {"conversation_id": s.conv["id"], "message_ids": []}
    await quiet()
    assert s.inbox.of("messages_read") == [] and s.visitor.of("messages_read") == []


async def test_visitor_reading_an_agent_message_is_recorded_under_its_external_id(factory):
    s = await make_scene(factory)
    reply = await factory.agent_send(s.inbox, s.conv, "Anything else?")
    await quiet(0.2)
    s.clear()

    ack = await s.visitor.call(
        "mark_read", {"conversation_id": s.conv["id"], "message_ids": [reply["id"]]}
    )
    assert ack == {"conversation_id": s.conv["id"], "message_ids": [reply["id"]]}
    (got,) = await s.inbox.wait_for("messages_read")
    assert got["reader_type"] == "end_user" and got["reader_id"] == s.external_id
    await quiet()
    assert len(s.inbox.of("messages_read")) == 1
    for rec in s.strangers:
        assert rec.of("messages_read") == [], rec.events
    status, history = await factory.get(f"/api/conversations/{s.conv['id']}/messages", s.agent)
    assert history[0]["read_by"] == {s.external_id: got["read_at"]}


async def test_error_event_reaches_only_the_sender(factory):
    s = await make_scene(factory)
    missing = str(uuid.uuid4())
    ack = await factory.agent_send(s.inbox, {"id": missing}, "into the void")
    await expect_refusal(s.inbox, ack, "not_found")
    await quiet()
    assert names(s.inbox) == ["error"]
    for rec in (s.visitor, *s.strangers):
        assert rec.events == [], rec.events


async def test_leave_conversation_stops_delivery(factory):
    s = await make_scene(factory)
    ack = await s.inbox.call("leave_conversation", {"conversation_id": s.conv["id"]})
    assert ack == {"conversation_id": s.conv["id"]}

    await factory.visitor_send(s.visitor, s.conv, "anyone?")
    await s.visitor.wait_for("message_received")
    await s.inbox.wait_for("conversation_updated")  # still in the queue
    await quiet()
    assert s.inbox.of("message_received") == []

    # The visitor leaves too: its own messages no longer come back to it.
    s.clear()
    await s.visitor.call("leave_conversation", {"conversation_id": s.conv["id"]})
    await factory.agent_send(s.lurker, s.conv, "hello?")
    await quiet()
    assert s.visitor.of("message_received") == []
    assert await factory.message_count(s.conv["id"]) == 2


async def test_join_queue_refuses_a_visitor_socket(factory):
    s = await make_scene(factory)
    ack = await s.visitor.call("join_queue")
    await expect_refusal(s.visitor, ack, "not_authenticated")
    await factory.visitor_send(s.other_visitor, s.other_conv, "new conversation")
    await s.inbox.wait_for("conversation_updated")
    await quiet()
    assert s.visitor.of("conversation_updated") == []
    assert names(s.visitor) == ["error"]


async def test_join_queue_and_org_presence_refuse_a_socket_with_a_forged_session_cookie(factory):
    s = await make_scene(factory)
    forged = await factory.client(headers={"Cookie": "session=not-a-real-session"})
    for event in ("join_org_presence", "join_queue"):
        ack = await forged.call(event)
        await expect_refusal(forged, ack, "not_authenticated")
        forged.clear()
    await factory.client(await factory.agent(s.org))  # goes online
    await s.inbox.wait_for("agent_status_changed")
    await quiet()
    assert forged.events == []


async def test_join_conversation_with_a_wrong_external_id_is_not_found_and_hears_nothing(
    factory,
):
    s = await make_scene(factory)
    intruder = await factory.client()
    ack = await intruder.call(
        "join_conversation", {"conversation_id": s.conv["id"], "external_id": "guessed-id"}
    )
    await expect_refusal(intruder, ack, "not_found")
    # Another visitor's real external_id does not open this conversation either.
    intruder.clear()
    ack = await intruder.call(
        "join_conversation",
        {"conversation_id": s.conv["id"], "external_id": s.other_conv["end_user"]["external_id"]},
    )
    await expect_refusal(intruder, ack, "not_found")

    intruder.clear()
    await factory.visitor_send(s.visitor, s.conv, "private")
    await factory.agent_send(s.inbox, s.conv, "private reply")
    await s.visitor.wait_for("message_received", count=2)
    await quiet()
    assert intruder.events == []


async def test_an_agent_of_another_org_cannot_reach_the_conversation(factory):
    s = await make_scene(factory)
    await factory.visitor_send(s.visitor, s.conv, "hello")
    await quiet(0.2)
    s.clear()
    conv_id = s.conv["id"]
    fi = s.foreign_inbox

    for event, payload in (
        ("join_conversation", {"conversation_id": conv_id}),
        ("claim_conversation", {"conversation_id": conv_id}),
        ("send_message", {"conversation_id": conv_id, "content": "hi", "sender_type": "agent"}),
        ("user_typing", {"conversation_id": conv_id}),
        ("mark_read", {"conversation_id": conv_id, "message_ids": [str(uuid.uuid4())]}),
    ):
        ack = await fi.call(event, payload)
        await expect_refusal(fi, ack, "not_found")
        fi.clear()

    assert await factory.message_count(conv_id) == 1
    await factory.visitor_send(s.visitor, s.conv, "are you there?")
    await s.inbox.wait_for("message_received")
    await quiet()
    assert fi.events == []
    # No assignment, no typing, no message from the foreign agent reached the room.
    assert names(s.inbox) == ["message_received", "conversation_updated"]
    status, conv = await factory.get(f"/api/conversations/{conv_id}", s.agent)
    assert conv["active_session"]["assigned_agent_id"] is None
