"""ConversationService and OrgService called directly, on the real database of the run.

These are the rules the edges rely on: one open session per conversation (held by the
database itself), gap-free seqs and single winners under concurrency, idempotent retries,
history paging, read receipts, tags, and the operator's bootstrap and add_user.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from models import Conversation, ConversationSession, EndUser, Message
from models.base import new_id, utcnow
from server.actors import AgentActor, EndUserActor
from server.errors import Conflict, InvalidInput
from server.services.conversations import NewMessage
from server.services.message_writer import MessageWriter
from tests.factories import PASSWORD, uid


@dataclass
class Scene:
    """One organization, one visitor's conversation, and the actors who act on it."""

    factory: object
    org_id: str
    channel_id: str
    embed_token: str
    conversation_id: str
    visitor: EndUserActor
    owner: AgentActor

    @property
    def conversations(self):
        return self.factory.services.conversations

    async def agent(self, role: str = "agent") -> AgentActor:
        created = await self.factory.services.orgs.add_user(
            self.org_id, f"{uid(role + '-')}@example.com", PASSWORD, role
        )
        return AgentActor(created["user_id"], self.org_id, role)

    async def say(self, actor, content: str = "Hello", **extra) -> dict:
        message, _created = await self.conversations.send_message(
            actor, NewMessage(self.conversation_id, content, **extra)
        )
        return message

    async def sessions(self) -> list:
        return await rows_of(self.factory, ConversationSession, self.conversation_id)

    async def messages(self) -> list:
        return await rows_of(self.factory, Message, self.conversation_id)


async def rows_of(factory, model, conversation_id: str) -> list:
    async with factory.services.db.read() as s:
        stmt = select(model.__table__).where(model.__table__.c.conversation_id == conversation_id)
        return list((await s.execute(stmt)).all())


async def open_scene(factory) -> Scene:
    org = await factory.org()
    external_id = uid("visitor-")
    conv, created = await factory.services.conversations.create_or_get_conversation(
        org.embed_token, external_id
    )
    assert created
    return Scene(
        factory,
        org.org_id,
        org.channel_id,
        org.embed_token,
        conv["id"],
        EndUserActor(external_id),
        AgentActor(org.owner_id, org.org_id, "owner"),
    )


@pytest.fixture
async def scene(factory) -> Scene:
    return await open_scene(factory)


# ---- sessions -----------------------------------------------------------------------------


async def test_database_refuses_a_second_open_session_for_one_conversation(scene, factory):
    first = await scene.say(scene.visitor)

    with pytest.raises(IntegrityError):
        async with factory.services.db.unit_of_work() as uow:
            await uow.conn.execute(
                insert(ConversationSession.__table__).values(
                    id=new_id(),
                    conversation_id=scene.conversation_id,
                    organization_id=scene.org_id,
                    status="open",
                    tags=[],
                    created_at=utcnow(),
                )
            )

    (only,) = await scene.sessions()
    assert only.id == first["session_id"] and only.status == "open"


async def test_next_end_user_message_after_resolve_opens_a_new_session(scene):
    first = await scene.say(scene.visitor, "Hello")
    agent = await scene.agent()
    await scene.conversations.assign_conversation(agent, scene.conversation_id)
    await scene.conversations.resolve(agent, scene.conversation_id, ["billing"])
    shown = await scene.conversations.get_conversation(scene.owner, scene.conversation_id)
    assert shown["active_session"] is None

    again = await scene.say(scene.visitor, "One more thing")

    assert again["session_id"] != first["session_id"] and again["seq"] == 2
    by_id = {s.id: s for s in await scene.sessions()}
    assert set(by_id) == {first["session_id"], again["session_id"]}
    old, new = by_id[first["session_id"]], by_id[again["session_id"]]
    assert old.status == "resolved" and old.resolved_at is not None and old.tags == ["billing"]
    assert new.status == "open" and new.assigned_agent_id is None and new.tags == []
    shown = await scene.conversations.get_conversation(scene.owner, scene.conversation_id)
    assert shown["active_session"] == {
        "id": again["session_id"],
        "status": "open",
        "assigned_agent_id": None,
        "tags": [],
        "handled_by": "queue",
        "bot_id": None,
        "handed_off_at": None,
    }


# ---- messages -----------------------------------------------------------------------------


async def test_concurrent_sends_from_visitor_and_agent_get_seqs_one_to_n(scene):
    agent = await scene.agent()
    n = 30
    sends = [
        scene.say(scene.visitor if i % 2 else agent, f"message {i}", client_message_id=f"c{i}")
        for i in range(n)
    ]

    acks = await asyncio.gather(*sends)

    assert sorted(a["seq"] for a in acks) == list(range(1, n + 1))
    stored = await scene.messages()
    assert sorted(m.seq for m in stored) == list(range(1, n + 1))
    # Each ack names the row it stored.
    assert {m.client_message_id: m.seq for m in stored} == {
        f"c{i}": ack["seq"] for i, ack in enumerate(acks)
    }
    (session,) = await scene.sessions()
    assert {m.session_id for m in stored} == {session.id}
    async with scene.factory.services.db.read() as s:
        last_seq = (
            await s.execute(
                select(Conversation.last_seq).where(Conversation.id == scene.conversation_id)
            )
        ).scalar_one()
    assert last_seq == n


async def test_concurrent_claims_by_two_agents_have_exactly_one_winner(scene):
    await scene.say(scene.visitor)
    first, second = await scene.agent(), await scene.agent()

    results = await asyncio.gather(
        scene.conversations.assign_conversation(first, scene.conversation_id),
        scene.conversations.assign_conversation(second, scene.conversation_id),
        return_exceptions=True,
    )

    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], Conflict), losses[0]
    winner = wins[0]["assigned_agent_id"]
    assert winner in (first.user_id, second.user_id)
    (session,) = await scene.sessions()
    assert session.assigned_agent_id == winner


async def test_retried_send_with_same_client_message_id_returns_the_stored_message(scene):
    original, created = await scene.conversations.send_message(
        scene.visitor, NewMessage(scene.conversation_id, "Hello", client_message_id="m-1")
    )
    assert created

    retry, created = await scene.conversations.send_message(
        scene.visitor, NewMessage(scene.conversation_id, "Hello again?", client_message_id="m-1")
    )

    assert created is False and retry == original
    assert [m.content for m in await scene.messages()] == ["Hello"]


async def test_same_client_message_id_from_another_sender_is_a_new_message(scene):
    agent = await scene.agent()
    mine, _ = await scene.conversations.send_message(
        scene.visitor, NewMessage(scene.conversation_id, "from visitor", client_message_id="x")
    )

    theirs, created = await scene.conversations.send_message(
        agent, NewMessage(scene.conversation_id, "from agent", client_message_id="x")
    )

    assert created and theirs["id"] != mine["id"] and theirs["seq"] == 2
    assert sorted((m.sender_type, m.client_message_id) for m in await scene.messages()) == [
        ("agent", "x"),
        ("end_user", "x"),
    ]


HISTORY_PAGES = [
    pytest.param({"limit": 50}, list(range(1, 11)), id="everything-oldest-first"),
    pytest.param({"limit": 3}, [8, 9, 10], id="newest-limit-oldest-first"),
    pytest.param({"limit": 3, "offset": 2}, [6, 7, 8], id="offset-skips-newest"),
    pytest.param({"limit": 3, "offset": 8}, [1, 2], id="offset-near-the-start"),
    pytest.param({"limit": 3, "offset": 10}, [], id="offset-past-the-start"),
    pytest.param({"limit": 3, "after_seq": 4}, [5, 6, 7], id="first-limit-after-seq"),
    pytest.param({"limit": 3, "after_seq": 8}, [9, 10], id="after-seq-near-the-end"),
    pytest.param({"limit": 3, "after_seq": 10}, [], id="after-the-last-seq"),
    pytest.param({"limit": 2, "after_seq": 0, "offset": 1}, [2, 3], id="after-seq-with-offset"),
]


@pytest.mark.parametrize(("page", "seqs"), HISTORY_PAGES)
async def test_history_pages_by_seq(scene, page, seqs):
    for i in range(10):
        await scene.say(scene.visitor, f"m{i + 1}")

    history = await scene.conversations.history(scene.owner, scene.conversation_id, **page)

    assert [m["seq"] for m in history] == seqs
    assert [m["content"] for m in history] == [f"m{s}" for s in seqs]


async def test_widget_history_returns_the_visitors_messages_without_internal_fields(scene):
    for i in range(4):
        await scene.say(scene.visitor, f"m{i + 1}")

    history = await scene.conversations.widget_history(
        scene.visitor.external_id, scene.conversation_id, after_seq=2
    )

    assert [m["seq"] for m in history] == [3, 4]
    assert all("session_id" not in m and "read_by" not in m for m in history)


# ---- read receipts ------------------------------------------------------------------------


async def test_mark_read_rejects_ids_of_another_conversation_and_changes_nothing(scene, factory):
    other = await open_scene(factory)
    mine = await scene.say(scene.visitor, "mine")
    foreign = await other.say(other.visitor, "foreign")
    agent = await scene.agent()

    for ids in ([foreign["id"]], [mine["id"], foreign["id"]], [mine["id"], new_id()]):
        with pytest.raises(InvalidInput):
            await scene.conversations.mark_read(agent, scene.conversation_id, ids)

    assert [m.read_by for m in await scene.messages()] == [{}]
    assert [m.read_by for m in await other.messages()] == [{}]
    changed = await scene.conversations.mark_read(agent, scene.conversation_id, [mine["id"]])
    assert changed == [mine["id"]]
    assert list((await scene.messages())[0].read_by) == [agent.user_id]


# ---- tags ---------------------------------------------------------------------------------


async def test_resolve_merges_tags_and_normalizes_duplicates_and_whitespace(scene):
    await scene.say(scene.visitor)
    admin = await scene.agent("admin")
    shown = await scene.conversations.set_tags(
        admin, scene.conversation_id, [" billing ", "vip", "billing", "  "]
    )
    assert shown["active_session"]["tags"] == ["billing", "vip"]

    resolved = await scene.conversations.resolve(
        admin, scene.conversation_id, ["vip", "  refund", "refund ", "billing", ""]
    )

    assert resolved["tags"] == ["billing", "vip", "refund"]
    (session,) = await scene.sessions()
    assert session.status == "resolved" and session.tags == ["billing", "vip", "refund"]


# ---- opening conversations ----------------------------------------------------------------


async def test_create_or_get_conversation_is_idempotent_under_concurrency(factory):
    org = await factory.org()
    external_id = uid("visitor-")
    conversations = factory.services.conversations

    results = await asyncio.gather(
        *(conversations.create_or_get_conversation(org.embed_token, external_id) for _ in range(5))
    )

    assert len({conv["id"] for conv, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with factory.services.db.read() as s:
        users = (
            await s.execute(
                select(func.count())
                .select_from(EndUser)
                .where(EndUser.channel_id == org.channel_id, EndUser.external_id == external_id)
            )
        ).scalar_one()
        convs = (
            await s.execute(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.organization_id == org.org_id)
            )
        ).scalar_one()
    assert (users, convs) == (1, 1)


# ---- organizations and agents -------------------------------------------------------------


async def test_bootstrap_reuses_org_and_owner_and_issues_a_new_token_each_call(factory):
    orgs, conversations = factory.services.orgs, factory.services.conversations
    name, email = uid("Org "), f"{uid('owner-')}@example.com"

    first = await orgs.bootstrap(name, email, PASSWORD)
    second = await orgs.bootstrap(name, email.upper(), PASSWORD)

    assert {k: second[k] for k in ("org_id", "user_id", "channel_id")} == {
        k: first[k] for k in ("org_id", "user_id", "channel_id")
    }
    assert second["embed_token"] != first["embed_token"]
    owner = AgentActor(first["user_id"], first["org_id"], "owner")
    assert len(await orgs.list_embed_tokens(owner)) == 2
    assert [u["email"] for u in await orgs.list_users(owner)] == [email]
    # Both tokens are live and lead the same visitor to the same conversation.
    external_id = uid("visitor-")
    via_first, _ = await conversations.create_or_get_conversation(first["embed_token"], external_id)
    via_second, created = await conversations.create_or_get_conversation(
        second["embed_token"], external_id
    )
    assert via_second["id"] == via_first["id"] and not created
    assert via_first["channel_id"] == first["channel_id"]


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda e: e, id="same"),
        pytest.param(lambda e: e.upper(), id="upper-case"),
        pytest.param(lambda e: f"  {e} ", id="padded"),
    ],
)
async def test_add_user_with_an_existing_email_conflicts(factory, spelling):
    org, other = await factory.org(), await factory.org()
    orgs = factory.services.orgs
    email = f"{uid('agent-')}@example.com"
    await orgs.add_user(org.org_id, email, PASSWORD, "agent")
    owner = AgentActor(org.owner_id, org.org_id, "owner")
    before = await orgs.list_users(owner)

    for org_id in (org.org_id, other.org_id):
        with pytest.raises(Conflict):
            await orgs.add_user(org_id, spelling(email), PASSWORD, "admin")
    with pytest.raises(Conflict):
        await orgs.add_user(org.org_id, spelling(org.owner_email), PASSWORD, "agent")

    assert await orgs.list_users(owner) == before


async def test_a_retry_racing_its_original_on_another_writer_is_stored_once(scene):
    """Two processes' writers: each looks for the retry before its transaction, neither sees
    the other's uncommitted row, and the unique constraint refuses the second insert. The
    loser must answer with the winner's message, not an error, and store nothing."""
    db = scene.factory.services.db
    writers = [MessageWriter(db), MessageWriter(db)]
    for w in writers:
        await w.start()
    try:
        for round_ in range(5):
            cmid = f"raced-{round_}"
            results = await asyncio.gather(
                *(
                    w.send(
                        scene.visitor,
                        NewMessage(scene.conversation_id, "once", client_message_id=cmid),
                    )
                    for w in writers
                )
            )
            (a, a_new), (b, b_new) = results
            assert a["id"] == b["id"] and a["seq"] == b["seq"]
            assert sorted([a_new, b_new]) == [False, True]
        stored = await scene.messages()
        assert sorted(m.client_message_id for m in stored) == [f"raced-{i}" for i in range(5)]
        assert sorted(m.seq for m in stored) == [1, 2, 3, 4, 5]
    finally:
        for w in writers:
            await w.stop()
