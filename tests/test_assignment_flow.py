"""The integration guide's Assignment Flow, end to end, over websocket and over polling."""

from __future__ import annotations

import pytest

from tests.factories import quiet


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_assignment_flow_from_first_message_to_resolve(factory, transport):
    org = await factory.org()
    agent = await factory.agent(org)
    other = await factory.agent(org)
    inbox = await factory.client(agent, transport)
    colleague = await factory.client(other, transport)
    await inbox.call("join_queue")
    await colleague.call("join_queue")

    conv = await factory.conversation(org, name="Jane Visitor")
    assert conv["active_session"] is None
    visitor = await factory.visitor(conv, transport)

    # 1. End user sends first message: a conversation session opens and the message is stored.
    ack = await factory.visitor_send(visitor, conv, "Hello, I need help")
    assert (
        ack["seq"] == 1
        and ack["sender_type"] == "end_user"
        and ack["content"] == "Hello, I need help"
    )

    # 2. Server broadcasts to the org queue.
    for rec in (inbox, colleague):
        (upd,) = await rec.wait_for("conversation_updated")
        assert upd == {
            "conversation_id": conv["id"],
            "sender_type": "end_user",
            "content_type": "text",
            "content": "Hello, I need help",
        }
    status, unassigned = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert status == 200 and [c["id"] for c in unassigned] == [conv["id"]]

    # 3. Agent claims; 4. all agents see conversation_assigned.
    claim = await inbox.call("claim_conversation", {"conversation_id": conv["id"]})
    assert claim["id"] == conv["id"] and claim["assigned_agent_id"] == agent.user_id
    for rec in (inbox, colleague):
        (assigned,) = await rec.wait_for("conversation_assigned")
        assert assigned == {"conversation_id": conv["id"], "assigned_to": agent.user_id}
    status, unassigned = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert unassigned == []
    status, mine = await factory.get("/api/conversations/?filter=mine", agent)
    assert [c["id"] for c in mine] == [conv["id"]]
    assert mine[0]["active_session"]["assigned_agent_id"] == agent.user_id

    # 5. They exchange messages in conv:{id}; the claiming agent was joined to the room.
    reply = await factory.agent_send(inbox, conv, "Hi! How can I help you today?")
    assert reply["seq"] == 2 and reply["sender_id"] == agent.user_id
    got = await visitor.wait_for("message_received", lambda m: m["seq"] == 2)
    assert got[0]["content"] == "Hi! How can I help you today?"
    assert set(got[0]) == {
        "id",
        "conversation_id",
        "session_id",
        "seq",
        "sender_type",
        "sender_id",
        "content_type",
        "content",
        "rich_media",
        "created_at",
    }
    await factory.visitor_send(visitor, conv, "My invoice is wrong")
    await inbox.wait_for("message_received", lambda m: m["seq"] == 3)

    # Resolve with tags over REST.
    status, resolved = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", agent, json={"tags": ["billing"]}
    )
    assert status == 200
    assert resolved["status"] == "resolved" and resolved["tags"] == ["billing"]
    assert resolved["id"] == conv["id"] and resolved["session_id"] == ack["session_id"]
    status, again = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})
    assert status == 409 and again["error"]["code"] == "conflict"

    status, history = await factory.get(f"/api/conversations/{conv['id']}/messages", agent)
    assert [m["seq"] for m in history] == [1, 2, 3]

    # The next end-user message opens a new, unassigned session.
    nxt = await factory.visitor_send(visitor, conv, "One more thing")
    assert nxt["session_id"] != ack["session_id"] and nxt["seq"] == 4
    status, unassigned = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert [c["id"] for c in unassigned] == [conv["id"]]
    await quiet(0.2)
    assert len(colleague.of("conversation_assigned")) == 1
