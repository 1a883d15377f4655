"""Who may touch what, tried systematically over REST and Socket.IO.

Two organizations: A with visitors V1 and V2 (each with an open conversation), B with one
visitor, and agents of every role in each. Every cross access is refused with the same answer
as for a conversation that does not exist, leaves the conversation exactly as it was, and
delivers nothing to A's clients. Inside one organization, the role rules hold: an agent may
not act on a colleague's conversation, admins and owners may; only admins and owners reach
/api/admin/*.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from server.actors import AgentActor, EndUserActor
from server.services.conversations import NewMessage
from tests.factories import PASSWORD, Agent, Factory, Org, Recorder, quiet, uid

ROLES = ("owner", "admin", "agent")
LIST_FILTERS = ("unassigned", "mine", "all")


@dataclass
class World:
    f: Factory
    a: Org
    b: Org
    v1: dict
    v2: dict
    vb: dict
    v1_socket: Recorder
    v2_socket: Recorder
    v1_first: dict
    holder: Agent | None = None
    _agents: dict[tuple[str, str], Agent] = field(default_factory=dict)

    @property
    def svc(self):
        return self.f.services

    async def agent(self, org: Org, role: str) -> Agent:
        """The logged-in agent of that role in that org (one per role, made on first use)."""
        key = (org.org_id, role)
        if key not in self._agents:
            if role == "owner":
                self._agents[key] = await self.f.owner(org)
            else:
                self._agents[key] = await self.f.agent(org, role)
        return self._agents[key]

    @staticmethod
    def owner_actor(org: Org) -> AgentActor:
        return AgentActor(org.owner_id, org.org_id, "owner")

    async def state(self, org: Org, conv: dict) -> tuple[dict, list[dict]]:
        """Everything an owner can see of a conversation: session, tags, messages, reads."""
        owner = self.owner_actor(org)
        shown = await self.svc.conversations.get_conversation(owner, conv["id"])
        history = await self.svc.conversations.history(owner, conv["id"], limit=500)
        return shown, history

    async def a_observers(self) -> list[Recorder]:
        """A's clients that could overhear: an admin inbox in A's queue and both
        conversation rooms, and V1's widget. Cleared, so they start empty."""
        watcher = await self.f.client(await self.agent(self.a, "admin"))
        await watcher.call("join_queue")
        for conv in (self.v1, self.v2):
            ack = await watcher.call("join_conversation", {"conversation_id": conv["id"]})
            assert "error" not in ack, ack
        observers = [watcher, self.v1_socket]
        await quiet(0.2)
        for rec in observers:
            rec.clear()
        return observers

    async def request(self, agent: Agent | None, method: str, path: str, body=None):
        if method == "GET":
            return await self.f.get(path, agent)
        return await self.f.post(path, agent, json=body)


async def build_world(f: Factory) -> World:
    a, b = await f.org(), await f.org()
    v1 = await f.conversation(a, name="V1")
    v2 = await f.conversation(a, name="V2")
    vb = await f.conversation(b, name="VB")
    v1_socket, v2_socket, vb_socket = [await f.visitor(c) for c in (v1, v2, vb)]
    v1_first = await f.visitor_send(v1_socket, v1, "V1 needs help")
    await f.visitor_send(v2_socket, v2, "V2 needs help")
    await f.visitor_send(vb_socket, vb, "VB needs help")
    return World(f, a, b, v1, v2, vb, v1_socket, v2_socket, v1_first)


@pytest.fixture
async def world(factory) -> World:
    return await build_world(factory)


async def assert_nothing_arrived(*recorders: Recorder) -> None:
    await quiet()
    for rec in recorders:
        assert rec.events == [], rec.events


def ids(conversations: list[dict]) -> set[str]:
    return {c["id"] for c in conversations}


# ---- an agent of B on A's conversation --------------------------------------------------

CONVERSATION_REQUESTS = [
    pytest.param("GET", "", None, id="get"),
    pytest.param("GET", "/messages", None, id="messages"),
    pytest.param("POST", "/assign", None, id="assign"),
    pytest.param("POST", "/resolve", {"tags": ["stolen"]}, id="resolve"),
    pytest.param("POST", "/tags", {"tags": ["stolen"]}, id="tags"),
]


@pytest.mark.parametrize(("method", "suffix", "body"), CONVERSATION_REQUESTS)
@pytest.mark.parametrize("role", ROLES)
async def test_agent_of_another_org_gets_404_on_a_conversation_and_changes_nothing(
    world, role, method, suffix, body
):
    intruder = await world.agent(world.b, role)
    observers = await world.a_observers()
    before = await world.state(world.a, world.v1)

    answer = await world.request(
        intruder, method, f"/api/conversations/{world.v1['id']}{suffix}", body
    )
    missing = await world.request(
        intruder, method, f"/api/conversations/{uuid.uuid4()}{suffix}", body
    )

    status, payload = answer
    assert status == 404 and payload["error"]["code"] == "not_found"
    assert answer == missing, "not yours and does not exist must be the same 404"
    assert await world.state(world.a, world.v1) == before
    await assert_nothing_arrived(*observers)


def agent_payload(world: World, event: str) -> dict[str, Any]:
    conv_id = world.v1["id"]
    return {
        "join_conversation": {"conversation_id": conv_id},
        "claim_conversation": {"conversation_id": conv_id},
        "send_message": {
            "conversation_id": conv_id,
            "content": "intrusion",
            "content_type": "text",
            "sender_type": "agent",
        },
        "user_typing": {"conversation_id": conv_id, "sender_type": "agent"},
        "mark_read": {
            "conversation_id": conv_id,
            "message_ids": [world.v1_first["id"]],
            "sender_type": "agent",
        },
    }[event]


AGENT_SOCKET_EVENTS = (
    "join_conversation",
    "claim_conversation",
    "send_message",
    "user_typing",
    "mark_read",
)


@pytest.mark.parametrize("event", AGENT_SOCKET_EVENTS)
@pytest.mark.parametrize("role", ROLES)
async def test_agent_of_another_org_is_refused_on_socket_and_a_hears_nothing(world, role, event):
    intruder = await world.f.client(await world.agent(world.b, role))
    observers = await world.a_observers()
    before = await world.state(world.a, world.v1)

    ack = await intruder.call(event, agent_payload(world, event))

    assert ack["error"]["code"] == "not_found"
    (error,) = await intruder.wait_for("error")
    assert error["message"]
    assert await world.state(world.a, world.v1) == before
    await assert_nothing_arrived(*observers)

    # Refused means not in the room either: V1's next message reaches A, not the intruder.
    await world.f.visitor_send(world.v1_socket, world.v1, "still private")
    await observers[0].wait_for("message_received")
    await quiet()
    assert intruder.of("message_received") == []
    assert intruder.of("typing_indicator") == []


@pytest.mark.parametrize("filter", LIST_FILTERS)
@pytest.mark.parametrize("role", ROLES)
async def test_lists_of_another_org_never_contain_a_conversations(world, role, filter):
    conversations = world.svc.conversations
    # Something to tempt every filter in A: V1 unassigned, V2 assigned to an A agent.
    a_agent = await world.f.agent(world.a, "agent", login=False)
    await conversations.assign_conversation(
        AgentActor(a_agent.user_id, world.a.org_id, "agent"), world.v2["id"]
    )
    # And in B: VB unassigned, VB2 assigned to the agent who lists.
    lister = await world.agent(world.b, role)
    vb2 = await world.f.conversation(world.b)
    await conversations.send_message(
        EndUserActor(vb2["end_user"]["external_id"]), NewMessage(vb2["id"], "hello")
    )
    await conversations.assign_conversation(
        AgentActor(lister.user_id, world.b.org_id, role), vb2["id"]
    )

    status, listed = await world.f.get(f"/api/conversations/?filter={filter}", lister)

    assert status == 200
    expected = {
        "unassigned": {world.vb["id"]},
        "mine": {vb2["id"]},
        "all": {world.vb["id"], vb2["id"]},
    }[filter]
    assert ids(listed) == expected
    assert not ids(listed) & {world.v1["id"], world.v2["id"]}


# ---- visitor V2 with V1's conversation id -------------------------------------------------


def visitor_payload(world: World, event: str) -> dict[str, Any]:
    conv_id, own = world.v1["id"], world.v2["end_user"]["external_id"]
    return {
        "join_conversation": {"conversation_id": conv_id, "external_id": own},
        "send_message": {
            "conversation_id": conv_id,
            "content": "let me in",
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": own,
        },
        "user_typing": {"conversation_id": conv_id, "sender_type": "end_user", "external_id": own},
        "mark_read": {
            "conversation_id": conv_id,
            "message_ids": [world.v1_first["id"]],
            "sender_type": "end_user",
            "external_id": own,
        },
    }[event]


@pytest.mark.parametrize("event", ["join_conversation", "send_message", "user_typing", "mark_read"])
async def test_visitor_cannot_use_another_visitors_conversation_with_own_external_id(world, event):
    observers = await world.a_observers()
    before = await world.state(world.a, world.v1)

    ack = await world.v2_socket.call(event, visitor_payload(world, event))

    assert ack["error"]["code"] == "not_found"
    assert await world.state(world.a, world.v1) == before
    await assert_nothing_arrived(*observers)

    # V2 was not let into V1's room: V1's next message does not reach V2.
    world.v2_socket.clear()
    await world.f.visitor_send(world.v1_socket, world.v1, "only for my agent")
    await observers[0].wait_for("message_received")
    await quiet()
    assert world.v2_socket.of("message_received") == []


async def test_visitor_cannot_read_another_visitors_history_with_own_external_id(world):
    path = "/chat-widget/history/{}"
    own = {"external_id": world.v2["end_user"]["external_id"]}

    answer = await world.f.get(path.format(world.v1["id"]), params=own)
    missing = await world.f.get(path.format(uuid.uuid4()), params=own)

    status, payload = answer
    assert status == 404 and payload["error"]["code"] == "not_found"
    assert answer == missing
    status, history = await world.f.get(
        path.format(world.v1["id"]), params={"external_id": world.v1["end_user"]["external_id"]}
    )
    assert status == 200 and [m["id"] for m in history] == [world.v1_first["id"]]


# ---- a visitor socket without an agent cookie ----------------------------------------------

AGENT_ONLY_EVENTS = ("claim_conversation", "join_queue", "join_org_presence", "send_as_agent")


def agent_only_call(world: World, event: str) -> tuple[str, dict | None]:
    conv_id = world.v1["id"]
    if event == "send_as_agent":
        # Even on its own conversation, with its own external_id, a visitor is no agent.
        return "send_message", {
            "conversation_id": conv_id,
            "content": "I am the agent now",
            "content_type": "text",
            "sender_type": "agent",
            "external_id": world.v1["end_user"]["external_id"],
        }
    if event == "claim_conversation":
        return event, {"conversation_id": conv_id}
    return event, None


@pytest.mark.parametrize("event", AGENT_ONLY_EVENTS)
async def test_visitor_socket_without_agent_cookie_cannot_use_agent_events(world, event):
    observers = await world.a_observers()
    before = await world.state(world.a, world.v1)
    name, payload = agent_only_call(world, event)

    ack = await world.v1_socket.call(name, payload)

    assert ack["error"]["code"] == "not_authenticated"
    assert world.v1_socket.of("error")
    world.v1_socket.clear()
    assert await world.state(world.a, world.v1) == before
    await assert_nothing_arrived(*observers)

    # Not in the queue or presence rooms either: their next events pass the visitor by.
    await world.f.visitor_send(world.v2_socket, world.v2, "queue news")
    await observers[0].wait_for("conversation_updated")
    presence = await world.f.client(await world.agent(world.a, "owner"))
    await presence.call("join_org_presence")
    await world.f.client(await world.agent(world.a, "agent"))
    await presence.wait_for("agent_status_changed")
    await quiet()
    assert world.v1_socket.events == []


# ---- embed tokens ---------------------------------------------------------------------------


async def test_embed_token_of_another_org_opens_a_conversation_in_its_own_org(world):
    v1_external_id = world.v1["end_user"]["external_id"]

    opened = await world.f.conversation(world.b, external_id=v1_external_id)

    assert opened["id"] != world.v1["id"]
    assert opened["channel_id"] == world.b.channel_id != world.a.channel_id
    _, a_all = await world.f.get(
        "/api/conversations/?filter=all", await world.agent(world.a, "owner")
    )
    _, b_all = await world.f.get(
        "/api/conversations/?filter=all", await world.agent(world.b, "owner")
    )
    assert opened["id"] in ids(b_all) and opened["id"] not in ids(a_all)
    assert world.v1["id"] in ids(a_all) and world.v1["id"] not in ids(b_all)
    status, history = await world.f.get(
        f"/chat-widget/history/{opened['id']}", params={"external_id": v1_external_id}
    )
    assert status == 200 and history == []


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_admin_cannot_revoke_another_orgs_embed_token(world, role):
    b_tokens = await world.svc.orgs.list_embed_tokens(world.owner_actor(world.b))
    admin = await world.agent(world.a, role)

    answer = await world.f.post(f"/api/admin/embed-tokens/{b_tokens[0]['id']}/revoke", admin)
    missing = await world.f.post(f"/api/admin/embed-tokens/{uuid.uuid4()}/revoke", admin)

    status, payload = answer
    assert status == 404 and payload["error"]["code"] == "not_found"
    assert answer == missing
    assert await world.svc.orgs.list_embed_tokens(world.owner_actor(world.b)) == b_tokens
    assert b_tokens[0]["revoked_at"] is None
    await world.f.conversation(world.b)  # B's token still opens conversations


# ---- role rules inside one organization ---------------------------------------------------

ROLE_MAY_ACT = [
    pytest.param("agent", False, id="agent-refused"),
    pytest.param("admin", True, id="admin-allowed"),
    pytest.param("owner", True, id="owner-allowed"),
]


@pytest.fixture
async def held(world) -> World:
    """V1's conversation, claimed by an agent-role colleague."""
    holder = await world.f.agent(world.a, "agent")
    status, _ = await world.f.post(f"/api/conversations/{world.v1['id']}/assign", holder)
    assert status == 200
    world.holder = holder
    await quiet(0.2)
    world.v1_socket.clear()
    return world


@pytest.mark.parametrize(("role", "allowed"), ROLE_MAY_ACT)
async def test_resolving_a_colleagues_conversation_needs_admin_role(held, role, allowed):
    actor = await held.agent(held.a, role)
    before = await held.state(held.a, held.v1)

    status, body = await held.f.post(
        f"/api/conversations/{held.v1['id']}/resolve", actor, json={"tags": ["done"]}
    )

    if allowed:
        assert status == 200 and body["status"] == "resolved" and body["tags"] == ["done"]
        shown, _ = await held.state(held.a, held.v1)
        assert shown["active_session"] is None
        await held.v1_socket.wait_for("conversation_resolved")
    else:
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert await held.state(held.a, held.v1) == before
        await assert_nothing_arrived(held.v1_socket)


@pytest.mark.parametrize(("role", "allowed"), ROLE_MAY_ACT)
async def test_tagging_a_colleagues_conversation_needs_admin_role(held, role, allowed):
    actor = await held.agent(held.a, role)
    before = await held.state(held.a, held.v1)

    status, body = await held.f.post(
        f"/api/conversations/{held.v1['id']}/tags", actor, json={"tags": ["vip"]}
    )

    if allowed:
        assert status == 200 and body["active_session"]["tags"] == ["vip"]
        assert body["active_session"]["assigned_agent_id"] == held.holder.user_id
    else:
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert await held.state(held.a, held.v1) == before


@pytest.mark.parametrize(("role", "allowed"), ROLE_MAY_ACT)
async def test_writing_into_a_colleagues_conversation_needs_admin_role(held, role, allowed):
    inbox = await held.f.client(await held.agent(held.a, role))
    before = await held.state(held.a, held.v1)

    ack = await held.f.agent_send(inbox, held.v1, "Let me take over")

    if allowed:
        assert ack["seq"] == held.v1_first["seq"] + 1 and ack["sender_type"] == "agent"
        (got,) = await held.v1_socket.wait_for("message_received")
        assert got["id"] == ack["id"]
    else:
        assert ack["error"]["code"] == "forbidden"
        assert await held.state(held.a, held.v1) == before
        await assert_nothing_arrived(held.v1_socket)


ADMIN_REQUESTS = [
    pytest.param("GET", "/api/admin/users", id="list-users"),
    pytest.param("POST", "/api/admin/users", id="create-user"),
    pytest.param("GET", "/api/admin/channels", id="list-channels"),
    pytest.param("POST", "/api/admin/channels", id="create-channel"),
    pytest.param("GET", "/api/admin/embed-tokens", id="list-embed-tokens"),
    pytest.param("POST", "/api/admin/embed-tokens", id="create-embed-token"),
    pytest.param("POST", "/api/admin/embed-tokens/{token_id}/revoke", id="revoke-embed-token"),
]


async def admin_state(f: Factory, org: Org) -> tuple[list, list, list]:
    owner = World.owner_actor(org)
    return (
        await f.services.orgs.list_users(owner),
        await f.services.orgs.list_channels(owner),
        await f.services.orgs.list_embed_tokens(owner),
    )


@pytest.mark.parametrize(("method", "path"), ADMIN_REQUESTS)
async def test_agent_role_is_refused_on_admin_endpoints(factory, method, path):
    org = await factory.org()
    agent = await factory.agent(org, "agent")
    before = await admin_state(factory, org)
    token_id = before[2][0]["id"]
    body = {
        "/api/admin/users": {"email": f"{uid('new-')}@example.com", "password": PASSWORD},
        "/api/admin/channels": {"type": "webchat", "name": "Sneaky"},
        "/api/admin/embed-tokens": {"channel_id": org.channel_id, "name": "Sneaky"},
    }.get(path)
    url = path.format(token_id=token_id)

    status, payload = await (
        factory.get(url, agent) if method == "GET" else factory.post(url, agent, json=body)
    )

    assert status == 403 and payload["error"]["code"] == "forbidden"
    assert await admin_state(factory, org) == before


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_admin_and_owner_roles_reach_admin_endpoints(factory, role):
    org = await factory.org()
    admin = await (factory.owner(org) if role == "owner" else factory.agent(org, role))
    for path in ("/api/admin/users", "/api/admin/channels", "/api/admin/embed-tokens"):
        status, listed = await factory.get(path, admin)
        assert status == 200 and listed, path
