"""The bus: a subscriber registered in one line hears every domain event of the guide's
assignment flow once, in order, and only after its transaction committed."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from models import ConversationSession, Message
from server.domain_events import (
    ConversationAssigned,
    ConversationCreated,
    ConversationResolved,
    DomainEvent,
    MessageCreated,
    MessagesRead,
    TypingStarted,
    TypingStopped,
)
from tests.factories import quiet

_M = Message.__table__
_S = ConversationSession.__table__


class Recorder:
    """An after-commit subscriber that checks, from another connection, that what each event
    says is already stored (so it was published after the commit, not before)."""

    def __init__(self, db) -> None:
        self.db = db
        self.events: list[DomainEvent] = []
        self.not_yet_stored: list[DomainEvent] = []

    async def __call__(self, ev: DomainEvent) -> None:
        self.events.append(ev)
        if not await self._stored(ev):
            self.not_yet_stored.append(ev)

    async def _stored(self, ev: DomainEvent) -> bool:
        async with self.db.read() as conn:
            if isinstance(ev, MessageCreated):
                row = (await conn.execute(select(_M.c.seq).where(_M.c.id == ev.message["id"])))
                return row.first() is not None
            if isinstance(ev, ConversationAssigned):
                row = await conn.execute(
                    select(_S.c.assigned_agent_id).where(_S.c.id == ev.session_id)
                )
                return row.scalar() == ev.agent_id
            if isinstance(ev, ConversationResolved):
                row = await conn.execute(select(_S.c.status).where(_S.c.id == ev.session_id))
                return row.scalar() == "resolved"
            if isinstance(ev, MessagesRead):
                row = await conn.execute(select(_M.c.read_by).where(_M.c.id == ev.message_ids[0]))
                return ev.reader_id in (row.scalar() or {})
        return True

    def about(self, conversation_id: str) -> list[DomainEvent]:
        return [e for e in self.events if e.conversation_id == conversation_id]


def _summary(events: list[DomainEvent]) -> list[tuple]:
    out = []
    for ev in events:
        if isinstance(ev, MessageCreated):
            out.append((ev.name, ev.message["seq"], ev.message["sender_type"]))
        elif isinstance(ev, ConversationAssigned | ConversationResolved):
            out.append((ev.name, ev.session_id))
        else:
            out.append((ev.name,))
    return out


async def test_a_subscriber_hears_the_assignment_flow_once_in_order_after_commit(factory):
    recorder = Recorder(factory.services.db)
    factory.services.bus.subscribe(recorder)  # the whole registration

    org = await factory.org()
    agent = await factory.agent(org)
    inbox = await factory.client(agent)
    await inbox.call("join_queue")
    conv = await factory.conversation(org, name="Jane Visitor")
    visitor = await factory.visitor(conv)

    first = await factory.visitor_send(visitor, conv, "Hello, I need help")
    await inbox.call("claim_conversation", {"conversation_id": conv["id"]})
    # A second claim of the same session is refused and must raise nothing.
    again = await inbox.call("claim_conversation", {"conversation_id": conv["id"]})
    assert "error" not in again  # claiming one's own is a no-op
    reply = await factory.agent_send(inbox, conv, "Hi! How can I help you today?")
    external_id = conv["end_user"]["external_id"]
    read = {"conversation_id": conv["id"], "message_ids": [reply["id"]], "external_id": external_id}
    await visitor.call("mark_read", read)
    await factory.visitor_send(visitor, conv, "My invoice is wrong")
    status, _ = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", agent, json={"tags": ["billing"]}
    )
    assert status == 200
    status, _ = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})
    assert status == 409  # rolled back: no second ConversationResolved

    await _settle(lambda: any(isinstance(e, ConversationResolved) for e in recorder.events))
    await quiet(0.2)
    session = first["session_id"]
    assert _summary(recorder.about(conv["id"])) == [
        ("conversation.created",),
        ("message.created", 1, "end_user"),
        ("conversation.assigned", session),
        ("message.created", 2, "agent"),
        ("messages.read",),
        ("message.created", 3, "end_user"),
        ("conversation.resolved", session),
    ]
    assert recorder.not_yet_stored == []

    created, *_ = recorder.about(conv["id"])
    assert isinstance(created, ConversationCreated)
    assert created.organization_id == org.org_id and created.channel_id == conv["channel_id"]
    assert created.end_user["external_id"] == conv["end_user"]["external_id"]
    resolved = recorder.about(conv["id"])[-1]
    assert resolved.tags == ["billing"]
    assert resolved.resolved_by == {"type": "agent", "id": agent.user_id}
    # Facts carry the organization and the conversation, never rooms or sockets.
    for ev in recorder.about(conv["id"]):
        assert ev.organization_id == org.org_id
        assert not any("room" in k or "sid" in k for k in ev.to_dict())


async def test_an_agent_reopening_a_conversation_raises_assigned_before_the_message(factory):
    recorder = Recorder(factory.services.db)
    factory.services.bus.subscribe(recorder)
    org = await factory.org()
    agent = await factory.agent(org)
    inbox = await factory.client(agent)
    conv = await factory.conversation(org)
    await inbox.call("join_conversation", {"conversation_id": conv["id"]})

    ack = await factory.agent_send(inbox, conv, "Following up on your order")

    await _settle(lambda: len(recorder.about(conv["id"])) >= 3)
    assert _summary(recorder.about(conv["id"])) == [
        ("conversation.created",),
        ("conversation.assigned", ack["session_id"]),
        ("message.created", 1, "agent"),
    ]


async def test_typing_facts_name_the_typist_and_it_does_not_see_its_own_indicator(factory):
    recorder = Recorder(factory.services.db)
    factory.services.bus.subscribe(recorder)
    org = await factory.org()
    agent = await factory.agent(org)
    inbox = await factory.client(agent)
    second_tab = await factory.client(agent)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    for tab in (inbox, second_tab):
        await tab.call("join_conversation", {"conversation_id": conv["id"]})

    await inbox.call("user_typing", {"conversation_id": conv["id"], "sender_type": "agent"})

    (shown,) = await visitor.wait_for("typing_indicator")
    assert shown == {"conversation_id": conv["id"], "sender_type": "agent"}
    await quiet(0.3)
    assert inbox.of("typing_indicator") == [] and second_tab.of("typing_indicator") == []
    started = [e for e in recorder.about(conv["id"]) if isinstance(e, TypingStarted)]
    assert started == [TypingStarted(org.org_id, conv["id"], "agent", agent.user_id)]
    await visitor.wait_for("typing_cleared", timeout=3)  # the typing timeout (0.6 s here)
    assert any(isinstance(e, TypingStopped) for e in recorder.about(conv["id"]))


async def test_a_failing_subscriber_fails_neither_the_send_nor_the_next_subscriber(factory):
    seen: list[str] = []

    async def broken(ev: DomainEvent) -> None:
        raise RuntimeError("subscriber bug")

    async def after(ev: DomainEvent) -> None:
        seen.append(ev.name)

    factory.services.bus.subscribe(broken)
    factory.services.bus.subscribe(after)
    org = await factory.org()
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)

    ack = await factory.visitor_send(visitor, conv, "still works")

    assert ack["seq"] == 1
    (live,) = await visitor.wait_for("message_received", lambda m: m["seq"] == 1)
    assert live["content"] == "still works"
    await _settle(lambda: "message.created" in seen)


async def _settle(done, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "the subscriber heard nothing"
        await asyncio.sleep(0.02)


async def test_a_rolled_back_unit_of_work_publishes_nothing(factory):
    heard: list[DomainEvent] = []

    async def subscriber(ev: DomainEvent) -> None:
        heard.append(ev)

    factory.services.bus.subscribe(subscriber)
    db = factory.services.db
    lost = MessagesRead("org-1", "conv-lost", ["m-1"], "agent", "a-1", "2026-01-01T00:00:00.000000")
    kept = MessagesRead("org-1", "conv-kept", ["m-2"], "agent", "a-1", "2026-01-01T00:00:00.000000")

    try:
        async with db.unit_of_work() as uow:
            uow.raise_event(lost)
            raise RuntimeError("the use case failed after raising its event")
    except RuntimeError:
        pass
    async with db.unit_of_work() as uow:
        uow.raise_event(kept)

    await _settle(lambda: kept in heard)
    assert heard == [kept]
