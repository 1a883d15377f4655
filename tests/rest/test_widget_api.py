"""The widget's public endpoints: opening a conversation with an embed token, the visitor's
history by external_id, origin checks and CORS. No session cookie is involved."""

from __future__ import annotations

import uuid

import pytest

from server.services.conversations import NewMessage
from tests.factories import uid
from tests.rest.helpers import (
    WIDGET_HISTORY_ITEM_KEYS,
    actor,
    assert_conversation_shape,
    assert_error,
    assert_iso,
    fetch,
    visitor_says,
)

OPEN = "/chat-widget/conversations"


# ---- opening a conversation ---------------------------------------------------------------


async def test_open_conversation_creates_it_once_per_visitor(factory):
    org = await factory.org()
    external_id = uid("browser-session-")
    body = {"embed_token": org.embed_token, "external_id": external_id, "customer_name": "John"}

    created = await fetch(factory, "POST", OPEN, json=body)
    again = await fetch(factory, "POST", OPEN, json=body)

    assert created.status == 201
    conv = created.body
    assert_conversation_shape(conv)
    assert conv["end_user"]["external_id"] == external_id
    assert conv["end_user"]["display_name"] == "John"
    assert conv["channel_id"] == org.channel_id
    assert conv["active_session"] is None
    assert again.status == 200
    assert again.body == conv


async def test_open_conversation_updates_the_display_name_from_customer_name(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    external_id = uid("visitor-")
    first = await fetch(
        factory, "POST", OPEN, json={"embed_token": org.embed_token, "external_id": external_id}
    )
    assert first.status == 201 and first.body["end_user"]["display_name"] is None

    named = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": org.embed_token, "external_id": external_id, "customer_name": "Jo"},
    )
    renamed = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": org.embed_token, "external_id": external_id, "customer_name": "Jane"},
    )
    # Without a name the one already known stays.
    unnamed = await fetch(
        factory, "POST", OPEN, json={"embed_token": org.embed_token, "external_id": external_id}
    )

    assert named.status == renamed.status == unnamed.status == 200
    assert named.body["id"] == renamed.body["id"] == unnamed.body["id"] == first.body["id"]
    assert named.body["end_user"]["display_name"] == "Jo"
    assert renamed.body["end_user"]["display_name"] == "Jane"
    assert unnamed.body["end_user"]["display_name"] == "Jane"
    status, seen = await factory.get(f"/api/conversations/{first.body['id']}", agent)
    assert status == 200 and seen["end_user"]["display_name"] == "Jane"


async def test_open_conversation_shows_the_open_session_once_the_visitor_wrote(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    await visitor_says(factory, conv, "Hello")

    reply = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": org.embed_token, "external_id": conv["end_user"]["external_id"]},
    )

    assert reply.status == 200
    session = reply.body["active_session"]
    assert session is not None
    assert (session["status"], session["assigned_agent_id"], session["tags"]) == (
        "open",
        None,
        [],
    )


async def test_the_same_external_id_on_two_organizations_is_two_visitors(factory):
    first_org = await factory.org()
    second_org = await factory.org()
    external_id = uid("shared-")

    a = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": first_org.embed_token, "external_id": external_id},
    )
    b = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": second_org.embed_token, "external_id": external_id},
    )

    assert a.status == b.status == 201
    assert a.body["id"] != b.body["id"]
    assert (a.body["channel_id"], b.body["channel_id"]) == (
        first_org.channel_id,
        second_org.channel_id,
    )


async def test_open_conversation_with_an_unknown_token_is_forbidden(factory):
    reply = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": "ew_" + uuid.uuid4().hex, "external_id": uid("visitor-")},
    )

    assert reply.status == 403
    assert_error(reply.body, "forbidden")


async def test_open_conversation_with_a_revoked_token_is_forbidden(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    external_id = uid("visitor-")
    body = {"embed_token": org.embed_token, "external_id": external_id}
    before = await fetch(factory, "POST", OPEN, json=body)
    assert before.status == 201
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200
    (token,) = [t for t in tokens if org.embed_token.startswith(t["token_prefix"])]

    status, revoked = await factory.post(f"/api/admin/embed-tokens/{token['id']}/revoke", owner)
    assert status == 200 and revoked["revoked_at"] is not None

    returning = await fetch(factory, "POST", OPEN, json=body)
    newcomer = await fetch(
        factory,
        "POST",
        OPEN,
        json={"embed_token": org.embed_token, "external_id": uid("visitor-")},
    )
    assert returning.status == newcomer.status == 403
    assert_error(returning.body, "forbidden")
    assert_error(newcomer.body, "forbidden")


async def test_token_with_allowed_origins_accepts_a_listed_origin(factory):
    org = await factory.org(allowed_origins=["https://shop.example"])

    reply = await fetch(
        factory,
        "POST",
        OPEN,
        headers={"Origin": "https://shop.example"},
        json={"embed_token": org.embed_token, "external_id": uid("visitor-")},
    )

    assert reply.status == 201
    assert reply.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Access-Control-Allow-Credentials" not in reply.headers


async def test_token_with_allowed_origins_refuses_another_origin_and_creates_nothing(factory):
    org = await factory.org(allowed_origins=["https://shop.example"])
    agent = await factory.agent(org)
    external_id = uid("visitor-")
    body = {"embed_token": org.embed_token, "external_id": external_id, "customer_name": "Eve"}

    refused = [
        await fetch(factory, "POST", OPEN, headers={"Origin": origin}, json=body)
        for origin in (
            "https://evil.example",
            "http://shop.example",
            "https://shop.example.evil.example",
            "null",
        )
    ]

    for reply in refused:
        assert reply.status == 403, reply.body
        assert_error(reply.body, "forbidden")
    status, listed = await factory.get("/api/conversations/?filter=all", agent)
    assert status == 200 and listed == []
    # The visitor does not exist yet: a request from the shop creates them now.
    allowed = await fetch(
        factory, "POST", OPEN, headers={"Origin": "https://shop.example"}, json=body
    )
    assert allowed.status == 201


@pytest.mark.parametrize("origin", [None, "own"], ids=["no_origin", "the_servers_own_origin"])
async def test_token_with_allowed_origins_accepts_apps_and_the_servers_own_widget_page(
    factory, origin
):
    # Native apps send no Origin; the /chat-widget iframe page is served from this server.
    org = await factory.org(allowed_origins=["https://shop.example"])
    headers = {"Origin": factory.url} if origin == "own" else {}

    reply = await fetch(
        factory,
        "POST",
        OPEN,
        headers=headers,
        json={"embed_token": org.embed_token, "external_id": uid("visitor-")},
    )

    assert reply.status == 201, reply.body


async def test_token_without_allowed_origins_accepts_any_origin(factory):
    org = await factory.org()

    reply = await fetch(
        factory,
        "POST",
        OPEN,
        headers={"Origin": "https://anywhere.example"},
        json={"embed_token": org.embed_token, "external_id": uid("visitor-")},
    )

    assert reply.status == 201
    assert reply.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"


async def test_open_conversation_with_missing_or_invalid_fields_is_a_bad_request(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    token = org.embed_token
    bodies = {
        "empty": {},
        "no_external_id": {"embed_token": token},
        "no_token": {"external_id": uid("visitor-")},
        "empty_external_id": {"embed_token": token, "external_id": ""},
        "external_id_not_a_string": {"embed_token": token, "external_id": 42},
        "external_id_too_long": {"embed_token": token, "external_id": "x" * 256},
        "name_not_a_string": {"embed_token": token, "external_id": uid("v-"), "customer_name": 7},
        "unknown_field": {"embed_token": token, "external_id": uid("v-"), "email": "a@b.c"},
    }

    for name, body in bodies.items():
        reply = await fetch(factory, "POST", OPEN, json=body)

        assert reply.status == 400, (name, reply.body)
        assert_error(reply.body, "invalid_input")
    for raw in (b"", b"{not json", b"[]"):
        reply = await fetch(
            factory, "POST", OPEN, data=raw, headers={"Content-Type": "application/json"}
        )

        assert reply.status == 400, (raw, reply.body)
        assert_error(reply.body, "invalid_input")
    status, listed = await factory.get("/api/conversations/?filter=all", agent)
    assert status == 200 and listed == []


@pytest.mark.parametrize("path", [OPEN, f"/chat-widget/history/{uuid.uuid4()}"])
async def test_cors_preflight_answers_no_content_with_the_allowed_origin(factory, path):
    reply = await fetch(
        factory,
        "OPTIONS",
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    assert "content-type" in reply.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in reply.headers
    assert "Origin" in reply.headers["Vary"]


# ---- the visitor's history ----------------------------------------------------------------


def history_path(conv: dict, external_id: str | None = None, **query) -> str:
    params = {
        "external_id": conv["end_user"]["external_id"] if external_id is None else external_id
    }
    params.update(query)
    return f"/chat-widget/history/{conv['id']}?" + "&".join(f"{k}={v}" for k, v in params.items())


async def conversation_with_105_messages(factory) -> tuple[dict, dict]:
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    await visitor_says(factory, conv, "m1")
    # The agent writes the rest: a visitor's socket would be rate limited long before 105.
    for n in range(2, 106):
        await factory.services.conversations.send_message(
            actor(agent), NewMessage(conv["id"], f"m{n}")
        )
    return conv, agent


async def test_widget_history_returns_the_last_hundred_messages_without_internal_fields(factory):
    conv, agent = await conversation_with_105_messages(factory)

    reply = await fetch(factory, "GET", history_path(conv))

    assert reply.status == 200
    assert [m["seq"] for m in reply.body] == list(range(6, 106))
    assert [m["content"] for m in reply.body] == [f"m{n}" for n in range(6, 106)]
    for item in reply.body:
        assert set(item) == WIDGET_HISTORY_ITEM_KEYS
        assert "session_id" not in item and "read_by" not in item
        assert item["conversation_id"] == conv["id"]
        assert (item["sender_type"], item["sender_id"]) == ("agent", agent.user_id)
        assert (item["content_type"], item["rich_media"]) == ("text", None)
        assert_iso(item["created_at"])


async def test_widget_history_after_seq_returns_what_followed(factory):
    conv, _ = await conversation_with_105_messages(factory)

    tail = await fetch(factory, "GET", history_path(conv, after_seq=100))
    from_start = await fetch(factory, "GET", history_path(conv, after_seq=0))
    nothing = await fetch(factory, "GET", history_path(conv, after_seq=105))

    assert tail.status == from_start.status == nothing.status == 200
    assert [m["seq"] for m in tail.body] == [101, 102, 103, 104, 105]
    assert [m["seq"] for m in from_start.body] == list(range(1, 101))
    assert from_start.body[0]["sender_type"] == "end_user"
    assert from_start.body[0]["sender_id"] == conv["end_user"]["external_id"]
    assert nothing.body == []


async def test_widget_history_with_a_wrong_external_id_is_not_found(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    neighbour = await factory.conversation(org)
    await visitor_says(factory, conv, "private")

    for external_id in ("someone-else", neighbour["end_user"]["external_id"]):
        reply = await fetch(factory, "GET", history_path(conv, external_id=external_id))

        assert reply.status == 404, (external_id, reply.body)
        assert_error(reply.body, "not_found")


async def test_widget_history_of_an_unknown_or_malformed_conversation_is_not_found(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    external_id = conv["end_user"]["external_id"]

    for conversation_id in (str(uuid.uuid4()), "not-a-uuid", conv["id"] + "0"):
        reply = await fetch(
            factory, "GET", f"/chat-widget/history/{conversation_id}?external_id={external_id}"
        )

        assert reply.status == 404, (conversation_id, reply.body)
        assert_error(reply.body, "not_found")


async def test_widget_history_with_missing_or_bad_parameters_is_a_bad_request(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    external_id = conv["end_user"]["external_id"]
    base = f"/chat-widget/history/{conv['id']}"

    for query in (
        "",
        "?external_id=",
        f"?external_id={external_id}&after_seq=-1",
        f"?external_id={external_id}&after_seq=x",
        f"?external_id={external_id}&limit=5",
        f"?external_id={external_id}&external_id=other",
    ):
        reply = await fetch(factory, "GET", base + query)

        assert reply.status == 400, (query, reply.body)
        assert_error(reply.body, "invalid_input")


async def test_widget_history_answers_a_cross_origin_request_with_its_origin(factory):
    org = await factory.org()
    conv = await factory.conversation(org)

    reply = await fetch(
        factory, "GET", history_path(conv), headers={"Origin": "https://shop.example"}
    )

    assert reply.status == 200 and reply.body == []
    assert reply.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Access-Control-Allow-Credentials" not in reply.headers
