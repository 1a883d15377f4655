"""The integration API with real API keys over HTTP: keys (create, scopes, revoke), the
lifecycle of a conversation driven by a server, and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.rest.helpers import assert_conversation_shape, assert_error

V1 = "/api/v1/conversations"
# What the integration API's conversation adds to the guide's shape.
V1_EXTRA = {"metadata", "last_seq"}


async def call(factory, method: str, path: str, key: str | None = None, json=None, headers=None):
    hdrs = dict(headers or {})
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    async with factory.http.request(method, factory.url + path, json=json, headers=hdrs) as resp:
        body = await resp.json(content_type=None) if resp.content_length != 0 else None
        return resp.status, body, resp.headers


async def new_key(factory, owner, scopes=None, name="CRM sync") -> dict:
    body = {"name": name} if scopes is None else {"name": name, "scopes": scopes}
    status, created = await factory.post("/api/admin/api-keys", owner, json=body)
    assert status == 201, created
    return created


async def test_an_owner_creates_a_key_shown_once_and_lists_it_without_the_secret(factory):
    org = await factory.org()
    owner = await factory.owner(org)

    created = await new_key(factory, owner, ["conversations:read"])

    assert created["key"].startswith("ck_") and len(created["key"]) > 40
    assert created["key"].startswith(created["key_prefix"])
    assert created["scopes"] == ["conversations:read"] and created["revoked_at"] is None
    status, listed = await factory.get("/api/admin/api-keys", owner)
    assert status == 200 and [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and created["key"] not in str(listed)
    async with factory.services.db.read() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    assert all(created["key"] not in str(tuple(row)) for row in stored)


async def test_agents_cannot_manage_keys_and_bad_scopes_are_refused(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    owner = await factory.owner(org)

    status, body = await factory.post("/api/admin/api-keys", agent, json={"name": "x"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await factory.get("/api/admin/api-keys", agent)
    assert status == 403
    status, body = await factory.post(
        "/api/admin/api-keys", owner, json={"name": "x", "scopes": ["admin:everything"]}
    )
    assert status == 400 and body["error"]["code"] == "invalid_input"
    no_scopes = {"name": "x", "scopes": []}
    status, body = await factory.post("/api/admin/api-keys", owner, json=no_scopes)
    assert status == 400
    status, listed = await factory.get("/api/admin/api-keys", owner)
    assert listed == []


async def test_a_server_runs_a_conversation_through_v1_and_people_see_it_live(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    key = (await new_key(factory, owner))["key"]
    inbox = await factory.client(agent)
    await inbox.call("join_queue")

    # Create (201), then get the same conversation again (200).
    opened = {"channel_id": org.channel_id, "external_id": "player-42", "display_name": "Ada"}
    status, conv, _ = await call(factory, "POST", V1, key, opened)
    assert status == 201, conv
    assert_conversation_shape({k: v for k, v in conv.items() if k not in V1_EXTRA})
    assert conv["metadata"] is None and conv["last_seq"] == 0
    assert conv["end_user"]["external_id"] == "player-42"
    assert conv["end_user"]["display_name"] == "Ada"
    status, again, _ = await call(factory, "POST", V1, key, opened)
    assert status == 200 and again["id"] == conv["id"]

    # The player's app is connected as the end user.
    visitor = await factory.visitor(conv)

    # The server sends as a bot: stored with seq 1, delivered live like a socket's send.
    body = {"content": "Welcome back, Ada!", "client_message_id": "welcome-1"}
    status, sent, _ = await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, body)
    assert status == 201, sent
    assert sent["seq"] == 1 and sent["sender_type"] == "bot" and sent["content"] == body["content"]
    (live,) = await visitor.wait_for("message_received", lambda m: m["seq"] == 1)
    assert live["sender_type"] == "bot" and live["id"] == sent["id"] and "read_by" not in live
    (queued,) = await inbox.wait_for("conversation_updated")
    assert queued["sender_type"] == "bot"
    # A retry with the same client_message_id stores nothing new.
    status, retried, _ = await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, body)
    assert status == 200 and retried["id"] == sent["id"]
    assert await factory.message_count(conv["id"]) == 1

    # Rich media, checked as a socket's is.
    buttons = {
        "content": "Pick one",
        "content_type": "quick_button",
        "rich_media": {"buttons": [{"label": "Billing", "value": "billing"}]},
    }
    status, rich, _ = await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, buttons)
    assert status == 201 and rich["seq"] == 2 and rich["rich_media"] == buttons["rich_media"]
    bad = {**buttons, "rich_media": {"buttons": []}}
    status, refused, _ = await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, bad)
    assert status == 400 and refused["error"]["code"] == "invalid_input"

    # The player answers; an agent claims and answers in the inbox.
    await factory.visitor_send(visitor, conv, "I lost my sword")
    await inbox.call("claim_conversation", {"conversation_id": conv["id"]})
    await factory.agent_send(inbox, conv, "Let me look into it")
    marker = datetime.now(UTC) - timedelta(seconds=1)

    # The integration reads: everything after a seq, only the agent's, and since a time.
    status, page, _ = await call(factory, "GET", f"{V1}/{conv['id']}/messages?after_seq=1", key)
    assert status == 200 and [m["seq"] for m in page["messages"]] == [2, 3, 4]
    assert page["next_after_seq"] is None
    status, page, _ = await call(
        factory, "GET", f"{V1}/{conv['id']}/messages?sender_type=agent", key
    )
    assert [m["content"] for m in page["messages"]] == ["Let me look into it"]
    status, page, _ = await call(
        factory, "GET", f"{V1}/{conv['id']}/messages?limit=2", key
    )
    assert [m["seq"] for m in page["messages"]] == [1, 2] and page["next_after_seq"] == 2
    since = (marker - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    status, page, _ = await call(factory, "GET", f"{V1}/{conv['id']}/messages?since={since}", key)
    assert status == 200 and len(page["messages"]) == 4
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with factory.http.get(
        factory.url + f"{V1}/{conv['id']}/messages",
        params={"since": future},
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 200 and (await resp.json())["messages"] == []

    # Finish: the session is resolved, the visitor sees it.
    status, resolved, _ = await call(
        factory, "POST", f"{V1}/{conv['id']}/resolve", key, {"tags": ["game"]}
    )
    assert status == 200 and resolved["status"] == "resolved" and resolved["tags"] == ["game"]
    (done,) = await visitor.wait_for("conversation_resolved")
    assert done["conversation_id"] == conv["id"]
    status, got, _ = await call(factory, "GET", f"{V1}/{conv['id']}", key)
    assert status == 200 and got["active_session"] is None


async def test_missing_wrong_and_revoked_keys_get_the_same_401(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    created = await new_key(factory, owner)
    key = created["key"]
    conv = await factory.conversation(org)
    path = f"{V1}/{conv['id']}"

    status, _, _ = await call(factory, "GET", path, key)
    assert status == 200
    answers = [
        await call(factory, "GET", path),
        await call(factory, "GET", path, key[:-1] + ("A" if key[-1] != "A" else "B")),
        await call(factory, "GET", path, "ew_" + key[3:]),
        await call(factory, "GET", path, headers={"Authorization": f"Basic {key}"}),
    ]
    status, revoked = await factory.post(f"/api/admin/api-keys/{created['id']}/revoke", owner)
    assert status == 200 and revoked["revoked_at"] is not None
    answers.append(await call(factory, "GET", path, key))  # the very next request
    for status, body, _ in answers:
        assert status == 401
        assert body == {
            "error": {
                "code": "not_authenticated",
                "message": "A valid API key is required (Authorization: Bearer <key>).",
            }
        }


async def test_scopes_and_organizations_bound_what_a_key_reaches(factory):
    org, other = await factory.org(), await factory.org()
    owner = await factory.owner(org)
    reader = (await new_key(factory, owner, ["conversations:read"]))["key"]
    writer = (await new_key(factory, owner, ["conversations:write"]))["key"]
    mine = await factory.conversation(org)
    theirs = await factory.conversation(other)

    status, body, _ = await call(
        factory, "POST", f"{V1}/{mine['id']}/messages", reader, {"content": "hi"}
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body, _ = await call(factory, "GET", f"{V1}/{mine['id']}", writer)
    assert status == 403
    assert await factory.message_count(mine["id"]) == 0

    # Another organization's conversation and channel do not exist for this key.
    full = (await new_key(factory, owner, ["conversations:read", "conversations:write"]))["key"]
    for method, path, body in [
        ("GET", f"{V1}/{theirs['id']}", None),
        ("GET", f"{V1}/{theirs['id']}/messages", None),
        ("POST", f"{V1}/{theirs['id']}/messages", {"content": "hi"}),
        ("POST", f"{V1}/{theirs['id']}/resolve", {}),
        ("POST", V1, {"channel_id": theirs["channel_id"], "external_id": "x"}),
    ]:
        status, answer, _ = await call(factory, method, path, full, body)
        assert status == 404, (method, path, answer)
        assert_error(answer, "not_found")
    assert await factory.message_count(theirs["id"]) == 0


async def test_a_session_cookie_does_not_open_v1_and_a_key_does_not_open_the_agent_api(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    key = (await new_key(factory, owner))["key"]
    conv = await factory.conversation(org)

    status, body = await factory.get(f"{V1}/{conv['id']}", owner)
    assert status == 401 and body["error"]["code"] == "not_authenticated"
    status, body, _ = await call(factory, "GET", f"/api/conversations/{conv['id']}", key)
    assert status == 401


@pytest.fixture
def settings(base_settings, request):
    return base_settings.with_overrides(**getattr(request, "param", {}))


@pytest.mark.parametrize("settings", [{"api_requests_per_key": 3}], indirect=True)
async def test_a_busy_key_gets_429_with_retry_after_and_other_keys_do_not(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    busy = (await new_key(factory, owner, name="busy"))["key"]
    calm = (await new_key(factory, owner, name="calm"))["key"]
    conv = await factory.conversation(org)
    path = f"{V1}/{conv['id']}"

    statuses = [(await call(factory, "GET", path, busy))[0] for _ in range(3)]
    status, body, headers = await call(factory, "GET", path, busy)

    assert statuses == [200, 200, 200]
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1 and body["error"]["retry_after_ms"] > 0
    assert (await call(factory, "GET", path, calm))[0] == 200


async def test_last_used_is_recorded(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    created = await new_key(factory, owner)
    conv = await factory.conversation(org)
    assert created["last_used_at"] is None

    await call(factory, "GET", f"{V1}/{conv['id']}", created["key"])

    status, listed = await factory.get("/api/admin/api-keys", owner)
    assert listed[0]["last_used_at"] is not None


async def test_conversations_are_listed_filtered_paged_updated_and_routed(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    key = (await new_key(factory, owner))["key"]
    inbox = await factory.client(agent)
    await inbox.call("join_queue")
    convs = []
    for i in range(3):
        opened = {"channel_id": org.channel_id, "external_id": f"user-{i}"}
        if i == 0:
            opened["metadata"] = {"plan": "gold", "level": 7}
        status, conv, _ = await call(factory, "POST", V1, key, opened)
        assert status == 201
        convs.append(conv)
    assert convs[0]["metadata"] == {"plan": "gold", "level": 7} and convs[1]["metadata"] is None
    # Two of them get an open session.
    for conv in convs[:2]:
        await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, {"content": "hello"})

    # Paging: two pages of 2 and 1, in update order, nothing twice, nothing missed.
    status, first, _ = await call(factory, "GET", V1 + "?limit=2", key)
    assert status == 200 and len(first["conversations"]) == 2 and first["next_cursor"]
    nxt = f"{V1}?limit=2&cursor={first['next_cursor']}"
    status, second, _ = await call(factory, "GET", nxt, key)
    assert status == 200 and second["next_cursor"] is None
    seen = [c["id"] for c in first["conversations"] + second["conversations"]]
    assert sorted(seen) == sorted(c["id"] for c in convs)
    assert [c["id"] for c in second["conversations"]] == [convs[1]["id"]]  # updated last

    status, page, _ = await call(factory, "GET", V1 + "?status=open", key)
    assert {c["id"] for c in page["conversations"]} == {convs[0]["id"], convs[1]["id"]}
    status, page, _ = await call(factory, "GET", V1 + "?status=resolved", key)
    assert [c["id"] for c in page["conversations"]] == [convs[2]["id"]]
    status, page, _ = await call(factory, "GET", V1 + "?assignee=none", key)
    assert len(page["conversations"]) == 2

    # Route one to the agent: the queue hears conversation_assigned.
    status, routed, _ = await call(
        factory, "POST", f"{V1}/{convs[0]['id']}/assign", key, {"agent_id": agent.user_id}
    )
    assert status == 200 and routed["active_session"]["assigned_agent_id"] == agent.user_id
    (assigned,) = await inbox.wait_for("conversation_assigned")
    assert assigned == {"conversation_id": convs[0]["id"], "assigned_to": agent.user_id}
    status, page, _ = await call(factory, "GET", f"{V1}?assignee={agent.user_id}", key)
    assert [c["id"] for c in page["conversations"]] == [convs[0]["id"]]
    status, refused, _ = await call(
        factory, "POST", f"{V1}/{convs[2]['id']}/assign", key, {"agent_id": agent.user_id}
    )
    assert status == 409  # no open session
    other = await factory.org()
    stranger = await factory.agent(other, login=False)
    status, refused, _ = await call(
        factory, "POST", f"{V1}/{convs[1]['id']}/assign", key, {"agent_id": stranger.user_id}
    )
    assert status == 404  # not an agent of this organization

    # Update: name, metadata and tags; only what is given changes.
    patch = {"display_name": "Grace", "tags": ["vip", "vip", " billing "]}
    bearer = {"Authorization": f"Bearer {key}"}
    async with factory.http.patch(
        f"{factory.url}{V1}/{convs[0]['id']}", json=patch, headers=bearer
    ) as resp:
        assert resp.status == 200
        updated = await resp.json()
    assert updated["end_user"]["display_name"] == "Grace"
    assert updated["active_session"]["tags"] == ["vip", "billing"]
    assert updated["metadata"] == {"plan": "gold", "level": 7}
    async with factory.http.patch(
        f"{factory.url}{V1}/{convs[2]['id']}", json={"tags": ["x"]}, headers=bearer
    ) as resp:
        assert resp.status == 409

    # Bad filters and cursors are refused, not guessed.
    for query in ("status=closed", "assignee=bob", "cursor=bm90LWEtY3Vyc29y", "limit=0"):
        status, body, _ = await call(factory, "GET", f"{V1}?{query}", key)
        assert status == 400 and body["error"]["code"] == "invalid_input", query
