"""The agent's conversation endpoints: list, get, message history, assign, resolve and tags,
in the integration guide's shapes, scoped to the agent's organization and role."""

from __future__ import annotations

import uuid

import pytest

from server.services.conversations import NewMessage
from tests.factories import quiet
from tests.rest.helpers import (
    HISTORY_ITEM_KEYS,
    actor,
    agent_says,
    assert_conversation_shape,
    assert_error,
    assert_iso,
    assigned_conversation,
    current,
    resolved_conversation,
    visitor_says,
    waiting_conversation,
)

# ---- list ---------------------------------------------------------------------------------


async def test_list_filters_select_conversations_by_the_state_of_their_session(factory):
    org = await factory.org()
    me = await factory.agent(org)
    colleague = await factory.agent(org)
    idle = await factory.conversation(org)
    waiting = await waiting_conversation(factory, org)
    mine = await assigned_conversation(factory, org, me)
    theirs = await assigned_conversation(factory, org, colleague)
    resolved = await resolved_conversation(factory, org, me)
    stranger = await factory.org()
    await waiting_conversation(factory, stranger)

    async def ids(query: str) -> set[str]:
        status, body = await factory.get("/api/conversations/" + query, me)
        assert status == 200, body
        for conv in body:
            assert_conversation_shape(conv)
        return {c["id"] for c in body}

    assert await ids("?filter=unassigned") == {waiting["id"]}
    assert await ids("") == {waiting["id"]}
    assert await ids("?filter=mine") == {mine["id"]}
    everything = {idle["id"], waiting["id"], mine["id"], theirs["id"], resolved["id"]}
    assert await ids("?filter=all") == everything

    status, listed = await factory.get("/api/conversations?filter=all", me)
    by_id = {c["id"]: c for c in listed}
    assert by_id[resolved["id"]]["active_session"] is None
    assert by_id[idle["id"]]["active_session"] is None
    assert by_id[theirs["id"]]["active_session"]["assigned_agent_id"] == colleague.user_id
    assert by_id[mine["id"]]["active_session"]["assigned_agent_id"] == me.user_id
    assert by_id[waiting["id"]]["active_session"]["assigned_agent_id"] is None


async def test_list_shows_the_most_recently_updated_first_and_pages_with_limit_and_offset(
    factory,
):
    org = await factory.org()
    agent = await factory.agent(org)
    convs = [await factory.conversation(org) for _ in range(5)]
    # Activity in a known order: the last to hear from its visitor is the newest.
    for conv in (convs[2], convs[0], convs[4], convs[1], convs[3]):
        await visitor_says(factory, conv)
    newest_first = [c["id"] for c in (convs[3], convs[1], convs[4], convs[0], convs[2])]

    status, everything = await factory.get("/api/conversations/?filter=all", agent)
    _, first = await factory.get("/api/conversations/?filter=all&limit=2", agent)
    _, second = await factory.get("/api/conversations/?filter=all&limit=2&offset=2", agent)
    _, last = await factory.get("/api/conversations/?filter=all&limit=2&offset=4", agent)
    _, beyond = await factory.get("/api/conversations/?filter=all&offset=5", agent)

    assert status == 200
    assert [c["id"] for c in everything] == newest_first
    assert [c["id"] for c in first] == newest_first[:2]
    assert [c["id"] for c in second] == newest_first[2:4]
    assert [c["id"] for c in last] == newest_first[4:]
    assert beyond == []


BAD_LIST_QUERIES = [
    "filter=closed",
    "filter=",
    "filter=ALL",
    "limit=0",
    "limit=501",
    "limit=ten",
    "limit=2.5",
    "offset=-1",
    "offset=x",
    "page=2",
    "filter=all&filter=mine",
]


async def test_list_with_a_bad_query_parameter_is_a_bad_request(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    for query in BAD_LIST_QUERIES:
        status, body = await factory.get("/api/conversations/?" + query, agent)

        assert status == 400, (query, body)
        assert_error(body, "invalid_input")


# ---- get ----------------------------------------------------------------------------------


async def test_get_conversation_answers_the_guides_shape(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org, name="John Doe")
    await factory.services.conversations.assign_conversation(actor(agent), conv["id"])
    await factory.services.conversations.set_tags(actor(agent), conv["id"], ["billing"])

    status, body = await factory.get(f"/api/conversations/{conv['id']}", agent)

    assert status == 200
    assert_conversation_shape(body)
    session = body["active_session"]
    assert body["id"] == conv["id"]
    assert body["end_user"] == {
        "id": conv["end_user"]["id"],
        "display_name": "John Doe",
        "external_id": conv["end_user"]["external_id"],
        "attributes": {},
    }
    assert body["channel_id"] == org.channel_id
    assert session["status"] == "open" and session["assigned_agent_id"] == agent.user_id
    assert session["tags"] == ["billing"]
    uuid.UUID(session["id"])
    assert body["updated_at"] >= body["created_at"]


async def test_get_conversation_without_a_session_has_no_active_session(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)

    status, body = await factory.get(f"/api/conversations/{conv['id']}", agent)

    assert status == 200
    assert_conversation_shape(body)
    assert body["active_session"] is None
    assert body == conv


async def test_get_conversation_accepts_the_id_in_upper_case(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org)

    status, body = await factory.get(f"/api/conversations/{conv['id'].upper()}", agent)

    assert status == 200 and body["id"] == conv["id"]


# ---- message history ----------------------------------------------------------------------


async def seven_messages(factory, org, agent) -> dict:
    conv = await factory.conversation(org)
    for n in range(1, 8):
        if n % 2:
            await visitor_says(factory, conv, f"m{n}")
        else:
            await agent_says(factory, agent, conv, f"m{n}")
    return conv


HISTORY_PAGES = [
    ("", [1, 2, 3, 4, 5, 6, 7]),
    ("?limit=3", [5, 6, 7]),
    ("?limit=3&offset=2", [3, 4, 5]),
    ("?limit=3&offset=6", [1]),
    ("?offset=7", []),
    ("?after_seq=4", [5, 6, 7]),
    ("?after_seq=2&limit=2", [3, 4]),
    ("?after_seq=2&limit=2&offset=1", [4, 5]),
    ("?after_seq=0", [1, 2, 3, 4, 5, 6, 7]),
    ("?after_seq=7", []),
]


async def test_message_history_pages_from_the_newest_and_lists_oldest_first(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await seven_messages(factory, org, agent)

    for query, seqs in HISTORY_PAGES:
        status, body = await factory.get(f"/api/conversations/{conv['id']}/messages{query}", agent)

        assert status == 200, (query, body)
        assert [m["seq"] for m in body] == seqs, query
        assert [m["content"] for m in body] == [f"m{s}" for s in seqs], query


async def test_message_history_defaults_to_the_newest_fifty(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    for n in range(55):
        await visitor_says(factory, conv, f"m{n + 1}")

    status, body = await factory.get(f"/api/conversations/{conv['id']}/messages", agent)

    assert status == 200
    assert [m["seq"] for m in body] == list(range(6, 56))


async def test_message_history_items_carry_seq_session_and_read_by(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    question = await visitor_says(factory, conv, "Can you see this?")
    photo = {"url": "https://example.com/photo.jpg", "alt": "A scenic view"}
    await factory.services.conversations.send_message(
        actor(agent), NewMessage(conv["id"], "Like this", "image", photo)
    )
    await factory.services.conversations.mark_read(actor(agent), conv["id"], [question["id"]])
    session_id = (await current(factory, agent, conv))["active_session"]["id"]

    status, body = await factory.get(f"/api/conversations/{conv['id']}/messages", agent)

    assert status == 200
    first, second = body
    for item in body:
        assert set(item) == HISTORY_ITEM_KEYS
        assert item["conversation_id"] == conv["id"] and item["session_id"] == session_id
        assert_iso(item["created_at"])
    assert first["id"] == question["id"] and first["seq"] == 1
    assert (first["sender_type"], first["sender_id"]) == (
        "end_user",
        conv["end_user"]["external_id"],
    )
    assert (first["content_type"], first["content"], first["rich_media"]) == (
        "text",
        "Can you see this?",
        None,
    )
    assert set(first["read_by"]) == {agent.user_id}
    assert_iso(first["read_by"][agent.user_id])
    assert second["seq"] == 2
    assert (second["sender_type"], second["sender_id"]) == ("agent", agent.user_id)
    assert (second["content_type"], second["rich_media"]) == ("image", photo)
    assert second["read_by"] == {}


async def test_message_history_spans_sessions(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await resolved_conversation(factory, org, agent)
    later = await visitor_says(factory, conv, "Me again")

    status, body = await factory.get(f"/api/conversations/{conv['id']}/messages", agent)

    assert status == 200
    assert [m["seq"] for m in body] == [1, 2]
    assert body[0]["session_id"] != body[1]["session_id"] == later["session_id"]


BAD_HISTORY_QUERIES = [
    "limit=0",
    "limit=201",
    "limit=x",
    "offset=-1",
    "after_seq=-1",
    "after_seq=abc",
    "before_seq=3",
    "limit=1&limit=2",
]


async def test_message_history_with_a_bad_query_parameter_is_a_bad_request(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org)

    for query in BAD_HISTORY_QUERIES:
        status, body = await factory.get(f"/api/conversations/{conv['id']}/messages?{query}", agent)

        assert status == 400, (query, body)
        assert_error(body, "invalid_input")


# ---- assign -------------------------------------------------------------------------------


async def test_assign_answers_the_assignment_and_tells_the_org_queue_once(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    colleague = await factory.agent(org)
    outsider = await factory.agent(await factory.org())
    conv = await waiting_conversation(factory, org)
    inbox = await factory.client(agent)
    other_inbox = await factory.client(colleague)
    foreign_inbox = await factory.client(outsider)
    for rec in (inbox, other_inbox, foreign_inbox):
        ack = await rec.call("join_queue")
        assert "error" not in ack, ack

    status, body = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)

    assert status == 200
    assert set(body) == {"id", "assigned_agent_id", "assigned_at"}
    assert body["id"] == conv["id"] and body["assigned_agent_id"] == agent.user_id
    assert_iso(body["assigned_at"])
    expected = {"conversation_id": conv["id"], "assigned_to": agent.user_id}
    for rec in (inbox, other_inbox):
        assert await rec.wait_for("conversation_assigned") == [expected]
    await quiet()
    assert inbox.of("conversation_assigned") == [expected]
    assert other_inbox.of("conversation_assigned") == [expected]
    assert foreign_inbox.of("conversation_assigned") == []
    after = await current(factory, agent, conv)
    assert after["active_session"]["assigned_agent_id"] == agent.user_id


async def test_assign_own_conversation_again_changes_nothing_and_tells_no_one(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org)
    _, first = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)
    inbox = await factory.client(agent)
    await inbox.call("join_queue")

    status, again = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)

    assert status == 200 and again == first
    await quiet()
    assert inbox.of("conversation_assigned") == []


async def test_assign_conversation_held_by_another_agent_conflicts(factory):
    org = await factory.org()
    holder = await factory.agent(org)
    agent = await factory.agent(org, role="admin")
    conv = await assigned_conversation(factory, org, holder)
    inbox = await factory.client(agent)
    await inbox.call("join_queue")

    status, body = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)

    assert status == 409
    assert_error(body, "conflict")
    assert (await current(factory, agent, conv))["active_session"]["assigned_agent_id"] == (
        holder.user_id
    )
    await quiet()
    assert inbox.of("conversation_assigned") == []


@pytest.mark.parametrize("state", ["never_written", "resolved"])
async def test_assign_conversation_without_an_open_session_conflicts(factory, state):
    org = await factory.org()
    agent = await factory.agent(org)
    if state == "never_written":
        conv = await factory.conversation(org)
    else:
        conv = await resolved_conversation(factory, org, agent)

    status, body = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)

    assert status == 409
    assert_error(body, "conflict")
    assert (await current(factory, agent, conv))["active_session"] is None


# ---- resolve ------------------------------------------------------------------------------


async def test_resolve_with_tags_closes_the_session_and_answers_the_guides_shape(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)
    session_id = (await current(factory, agent, conv))["active_session"]["id"]

    status, body = await factory.post(
        f"/api/conversations/{conv['id']}/resolve",
        agent,
        json={"tags": ["billing", "resolved-no-action"]},
    )

    assert status == 200
    assert set(body) == {"id", "session_id", "status", "tags", "resolved_at"}
    assert body["id"] == conv["id"] and body["session_id"] == session_id
    assert body["status"] == "resolved"
    assert body["tags"] == ["billing", "resolved-no-action"]
    assert_iso(body["resolved_at"])
    assert (await current(factory, agent, conv))["active_session"] is None
    _, mine = await factory.get("/api/conversations/?filter=mine", agent)
    assert mine == []


async def test_resolve_without_a_body_applies_no_tags(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)

    status, body = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent)

    assert status == 200 and body["status"] == "resolved" and body["tags"] == []


async def test_resolve_already_resolved_conversation_conflicts(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)
    status, _ = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", agent, json={"tags": ["done"]}
    )
    assert status == 200

    status, body = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", agent, json={"tags": ["again"]}
    )

    assert status == 409
    assert_error(body, "conflict")


async def test_resolve_conversation_that_never_had_a_session_conflicts(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)

    status, body = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})

    assert status == 409
    assert_error(body, "conflict")


async def test_resolve_merges_the_final_tags_into_those_set_earlier(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)
    status, _ = await factory.post(
        f"/api/conversations/{conv['id']}/tags", agent, json={"tags": ["vip", "billing"]}
    )
    assert status == 200

    status, body = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", agent, json={"tags": ["billing", "refund"]}
    )

    assert status == 200
    assert body["tags"] == ["vip", "billing", "refund"]


# ---- tags ---------------------------------------------------------------------------------


async def test_set_tags_replaces_the_open_sessions_tags(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)
    path = f"/api/conversations/{conv['id']}/tags"

    status, first = await factory.post(path, agent, json={"tags": ["billing", "vip"]})
    assert status == 200
    assert_conversation_shape(first)
    assert first["active_session"]["tags"] == ["billing", "vip"]

    status, second = await factory.post(path, agent, json={"tags": ["refund"]})

    assert status == 200
    assert second["active_session"]["tags"] == ["refund"]
    assert (await current(factory, agent, conv))["active_session"]["tags"] == ["refund"]
    status, cleared = await factory.post(path, agent, json={"tags": []})
    assert status == 200 and cleared["active_session"]["tags"] == []


async def test_set_tags_drops_duplicates_and_surrounding_spaces(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)

    status, body = await factory.post(
        f"/api/conversations/{conv['id']}/tags", agent, json={"tags": ["vip", " vip ", "x"]}
    )

    assert status == 200 and body["active_session"]["tags"] == ["vip", "x"]


@pytest.mark.parametrize("state", ["never_written", "resolved"])
async def test_set_tags_without_an_open_session_conflicts(factory, state):
    org = await factory.org()
    agent = await factory.agent(org)
    if state == "never_written":
        conv = await factory.conversation(org)
    else:
        conv = await resolved_conversation(factory, org, agent)

    status, body = await factory.post(
        f"/api/conversations/{conv['id']}/tags", agent, json={"tags": ["late"]}
    )

    assert status == 409
    assert_error(body, "conflict")
    assert (await current(factory, agent, conv))["active_session"] is None


# ---- malformed input ----------------------------------------------------------------------

ENDPOINTS = [
    ("GET", ""),
    ("GET", "/messages"),
    ("POST", "/assign"),
    ("POST", "/resolve"),
    ("POST", "/tags"),
]


BAD_IDS = [
    "not-a-uuid",
    "123",
    "3a2b1c",
    uuid.uuid4().hex,
    str(uuid.uuid4()) + "0",
    "00000000-0000-0000-0000-00000000000g",
    "%27%20OR%20%271%27=%271",
    "a" * 300,
    # Well formed, but names nothing.
    str(uuid.uuid4()),
]


async def request(factory, agent, method: str, path: str):
    if method == "GET":
        return await factory.get(path, agent)
    return await factory.post(path, agent, json={"tags": ["x"]})


async def test_malformed_or_unknown_conversation_id_is_not_found(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    for bad_id in BAD_IDS:
        for method, suffix in ENDPOINTS:
            status, body = await request(
                factory, agent, method, f"/api/conversations/{bad_id}{suffix}"
            )

            assert status == 404, (bad_id, suffix, body)
            assert_error(body, "not_found")


BAD_BODIES = {
    "not_json": b"{not json",
    "not_utf8": b"\xff\xfe\x00",
    "array": b"[]",
    "string": b'"billing"',
    "tags_not_a_list": b'{"tags": "billing"}',
    "tag_not_a_string": b'{"tags": [1]}',
    "nested_list": b'{"tags": [["billing"]]}',
    "empty_tag": b'{"tags": [""]}',
    "tags_null": b'{"tags": null}',
    "unknown_field": b'{"tags": ["ok"], "note": "done"}',
    "tag_too_long": b'{"tags": ["' + b"x" * 51 + b'"]}',
    "too_many_tags": b'{"tags": [' + b",".join(b'"t%d"' % i for i in range(51)) + b"]}",
}


async def check_refused_bodies(factory, suffix: str, bodies: dict[str, bytes]) -> None:
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, agent)
    await factory.services.conversations.set_tags(actor(agent), conv["id"], ["before"])
    before = await current(factory, agent, conv)

    for name, body in bodies.items():
        status, reply = await factory.post(
            f"/api/conversations/{conv['id']}{suffix}",
            agent,
            data=body,
            headers={"Content-Type": "application/json"},
        )

        assert status == 400, (name, reply)
        assert_error(reply, "invalid_input")
        assert await current(factory, agent, conv) == before, name


async def test_resolve_with_a_malformed_body_is_a_bad_request_and_changes_nothing(factory):
    await check_refused_bodies(factory, "/resolve", BAD_BODIES)


async def test_set_tags_with_a_malformed_body_is_a_bad_request_and_changes_nothing(factory):
    await check_refused_bodies(factory, "/tags", {**BAD_BODIES, "no_body": b"", "no_tags": b"{}"})


# ---- organization and role scoping --------------------------------------------------------


async def test_another_organizations_conversation_is_not_found(factory):
    org = await factory.org()
    holder = await factory.agent(org)
    conv = await waiting_conversation(factory, org)
    await factory.services.conversations.set_tags(actor(holder), conv["id"], ["theirs"])
    before = await current(factory, holder, conv)
    outsider = await factory.agent(await factory.org(), role="owner")

    for method, suffix in ENDPOINTS:
        status, body = await request(
            factory, outsider, method, f"/api/conversations/{conv['id']}{suffix}"
        )

        assert status == 404, (suffix, body)
        assert_error(body, "not_found")
        # Not even whether it exists leaks: the words are those of an unknown id.
        assert body["error"]["message"] == "Conversation not found."
    assert await current(factory, holder, conv) == before


@pytest.mark.parametrize("action", ["resolve", "tags"])
async def test_agent_cannot_resolve_or_tag_a_conversation_assigned_to_another_agent(
    factory, action
):
    org = await factory.org()
    holder = await factory.agent(org)
    agent = await factory.agent(org)
    conv = await assigned_conversation(factory, org, holder)
    await factory.services.conversations.set_tags(actor(holder), conv["id"], ["holder"])
    before = await current(factory, holder, conv)

    status, reply = await factory.post(
        f"/api/conversations/{conv['id']}/{action}", agent, json={"tags": ["mine"]}
    )

    assert status == 403
    assert_error(reply, "forbidden")
    assert await current(factory, holder, conv) == before


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_admin_can_tag_and_resolve_a_conversation_assigned_to_another_agent(factory, role):
    org = await factory.org()
    holder = await factory.agent(org)
    admin = await factory.agent(org, role=role)
    conv = await assigned_conversation(factory, org, holder)

    status, tagged = await factory.post(
        f"/api/conversations/{conv['id']}/tags", admin, json={"tags": ["escalated"]}
    )
    assert status == 200 and tagged["active_session"]["tags"] == ["escalated"]
    assert tagged["active_session"]["assigned_agent_id"] == holder.user_id

    status, resolved = await factory.post(
        f"/api/conversations/{conv['id']}/resolve", admin, json={"tags": ["closed-by-admin"]}
    )

    assert status == 200
    assert resolved["status"] == "resolved"
    assert resolved["tags"] == ["escalated", "closed-by-admin"]


async def test_agent_can_resolve_an_unassigned_conversation(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org)

    status, body = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})

    assert status == 200 and body["status"] == "resolved"
