"""Flow bots end to end: a real server, real Socket.IO clients, the console's REST API.

A bot answers an end user while no person holds the conversation; its replies are ordinary
messages (sender_type bot) with seq, live fan-out and history; it hands the conversation to
people, who see it arrive in the unassigned queue; once an agent claims it the bot is silent;
an agent can hand it back. Moderation flags a message for agents and the bot leaves it be.
"""

from __future__ import annotations

import asyncio

from tests.factories import quiet, uid

FLOW = {
    "greeting": [
        {
            "content": "Hi, I am Ada. What can I do for you?",
            "content_type": "quick_button",
            "rich_media": {
                "buttons": [
                    {"label": "Pricing", "value": "pricing"},
                    {"label": "Talk to a person", "value": "/agent"},
                ]
            },
        }
    ],
    "intents": [
        {
            "name": "pricing",
            "values": ["pricing"],
            "keywords": ["price"],
            "replies": ["From 9 EUR."],
        },
        {
            "name": "updates",
            "keywords": ["newsletter"],
            "collect": {"field": "email", "type": "email", "done": ["Subscribed."]},
        },
    ],
    "fallback": ["Sorry?"],
    "handoff_after": 2,
    "moderation": {"keywords": ["idiot"]},
}


async def _send_json(factory, method: str, path: str, agent, body=None):
    async with factory.http.request(
        method, factory.url + path, headers=agent.headers, json=body
    ) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


async def make_bot(factory, owner, org, flow=None, attach=True, **extra):
    status, bot = await _send_json(
        factory,
        "POST",
        "/api/admin/bots",
        owner,
        {"name": "Ada", "kind": "flow", "flow": flow or FLOW, **extra},
    )
    assert status == 201, bot
    if attach:
        status, channel = await _send_json(
            factory,
            "PUT",
            f"/api/admin/channels/{org.channel_id}/bot",
            owner,
            {"bot_id": bot["id"]},
        )
        assert status == 200 and channel["bot_id"] == bot["id"], channel
    return bot


async def bot_messages(rec, count: int, timeout: float = 10.0) -> list[dict]:
    return await rec.wait_for(
        "message_received",
        predicate=lambda m: m["sender_type"] == "bot",
        count=count,
        timeout=timeout,
    )


async def history(factory, agent, conv_id: str) -> list[dict]:
    status, items = await factory.get(f"/api/conversations/{conv_id}/messages?limit=200", agent)
    assert status == 200, items
    return items


async def test_a_flow_bot_greets_answers_collects_hands_off_and_stops_once_claimed(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    bot = await make_bot(factory, owner, org)
    agent = await factory.agent(org)
    queue = await factory.client(agent)
    assert "error" not in await queue.call("join_queue", {})

    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hello there")
    (greeting,) = await bot_messages(visitor, 1)
    assert greeting["sender_id"] == bot["id"] and greeting["content_type"] == "quick_button"
    # The bot showed it was working, and cleared it.
    typing = await visitor.wait_for("typing_indicator", lambda e: e["sender_type"] == "bot")
    assert typing[0]["conversation_id"] == conv["id"]
    await visitor.wait_for("typing_cleared")

    # A bot-handled conversation is under the bot filter, not waiting for an agent.
    status, listed = await factory.get("/api/conversations/?filter=bot", agent)
    assert conv["id"] in {c["id"] for c in listed}
    status, listed = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert conv["id"] not in {c["id"] for c in listed}
    status, got = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got["active_session"]["handled_by"] == "bot" and got["active_session"]["bot_id"]

    visitor.clear()
    await factory.visitor_send(visitor, conv, "pricing")  # the quick button's value
    (answer,) = await bot_messages(visitor, 1)
    assert answer["content"] == "From 9 EUR."

    visitor.clear()
    await factory.visitor_send(visitor, conv, "I want the newsletter")
    (prompt,) = await bot_messages(visitor, 1)
    assert "email" in prompt["content"].lower()
    visitor.clear()
    await factory.visitor_send(visitor, conv, "not-an-address")
    await bot_messages(visitor, 1)
    visitor.clear()
    await factory.visitor_send(visitor, conv, "Ada@Example.com")
    (thanks,) = await bot_messages(visitor, 1)
    assert thanks["content"] == "Subscribed."
    status, got = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got["end_user"]["attributes"] == {"email": "ada@example.com"}

    visitor.clear()
    queue.clear()
    await factory.visitor_send(visitor, conv, "can I talk to a person please")
    (handoff,) = await bot_messages(visitor, 1)
    assert "person" in handoff["content"].lower()
    updated = await queue.wait_for(
        "conversation_updated",
        lambda e: e["conversation_id"] == conv["id"] and e.get("handled_by") == "queue",
    )
    assert updated[0]["reason"] == "requested"
    status, listed = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert conv["id"] in {c["id"] for c in listed}
    status, got = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got["active_session"]["handled_by"] == "queue"
    assert got["active_session"]["handed_off_at"]

    # Handed off: the bot no longer answers, even before an agent claims.
    visitor.clear()
    await factory.visitor_send(visitor, conv, "hello?")
    await quiet(1.0)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]

    status, _ = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)
    assert status == 200
    before = len(await history(factory, agent, conv["id"]))
    await factory.visitor_send(visitor, conv, "pricing")
    await quiet(1.0)
    items = await history(factory, agent, conv["id"])
    assert len(items) == before + 1 and items[-1]["sender_type"] == "end_user"

    # Every bot message is in the agent's history and the widget's, as sender_type bot.
    bot_items = [m for m in items if m["sender_type"] == "bot"]
    assert len(bot_items) == 6 and all(m["sender_id"] == bot["id"] for m in bot_items)
    seqs = [m["seq"] for m in items]
    assert seqs == list(range(1, len(items) + 1))
    status, widget_items = await factory.get(
        f"/chat-widget/history/{conv['id']}?external_id={conv['end_user']['external_id']}"
    )
    assert status == 200
    assert [m["sender_type"] for m in widget_items] == [m["sender_type"] for m in items]


async def test_an_agent_hands_the_conversation_back_and_the_bot_answers_again(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    await make_bot(factory, owner, org)
    agent = await factory.agent(org)
    queue = await factory.client(agent)
    await queue.call("join_queue", {})
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    await bot_messages(visitor, 1)

    # An agent takes over a conversation the bot was answering: the bot stops at once.
    status, _ = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)
    assert status == 200
    visitor.clear()
    await factory.visitor_send(visitor, conv, "pricing")
    await quiet(1.0)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]

    # Another agent (role agent) may not hand back someone else's conversation.
    other = await factory.agent(org)
    status, body = await factory.post(f"/api/conversations/{conv['id']}/hand-to-bot", other)
    assert status == 403, body

    queue.clear()
    status, got = await factory.post(f"/api/conversations/{conv['id']}/hand-to-bot", agent)
    assert status == 200, got
    assert got["active_session"]["assigned_agent_id"] is None
    assert got["active_session"]["handled_by"] == "bot"
    assigned = await queue.wait_for(
        "conversation_assigned", lambda e: e["conversation_id"] == conv["id"]
    )
    assert assigned[0]["assigned_to"] is None
    await queue.wait_for(
        "conversation_updated",
        lambda e: e["conversation_id"] == conv["id"] and e.get("handled_by") == "bot",
    )

    visitor.clear()
    await factory.visitor_send(visitor, conv, "pricing")
    (answer,) = await bot_messages(visitor, 1)
    # Handed back, the bot starts afresh: greeting, then the answer.
    replies = await bot_messages(visitor, 2)
    assert [r["content"] for r in replies][-1] == "From 9 EUR."
    assert answer["content_type"] == "quick_button"


async def test_hand_back_needs_an_enabled_bot_and_a_bot_cannot_reopen_a_resolved_conversation(
    factory,
):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    await factory.post(f"/api/conversations/{conv['id']}/assign", agent)
    status, body = await factory.post(f"/api/conversations/{conv['id']}/hand-to-bot", agent)
    assert status == 409 and body["error"]["code"] == "conflict", body

    bot = await make_bot(factory, owner, org)
    status, _ = await _send_json(
        factory, "PATCH", f"/api/admin/bots/{bot['id']}", owner, {"enabled": False}
    )
    assert status == 200
    status, body = await factory.post(f"/api/conversations/{conv['id']}/hand-to-bot", agent)
    assert status == 409, body

    # The service refuses a bot's message into a conversation without an open session.
    from server.actors import BotActor
    from server.errors import Conflict
    from server.services.message_writer import NewMessage

    await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})
    try:
        await factory.services.conversations.send_message(
            BotActor(bot["id"], org.org_id), NewMessage(conv["id"], "Still there?")
        )
    except Conflict:
        pass
    else:
        raise AssertionError("a bot reopened a resolved conversation")


async def test_a_disabled_or_detached_bot_leaves_conversations_to_people(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    bot = await make_bot(factory, owner, org)
    agent = await factory.agent(org)
    status, _ = await _send_json(
        factory, "PATCH", f"/api/admin/bots/{bot['id']}", owner, {"enabled": False}
    )
    assert status == 200
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    await quiet(1.2)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]
    status, listed = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert conv["id"] in {c["id"] for c in listed}

    # Enabled again: it answers the open session's next message.
    await _send_json(factory, "PATCH", f"/api/admin/bots/{bot['id']}", owner, {"enabled": True})
    await factory.visitor_send(visitor, conv, "pricing")
    replies = await bot_messages(visitor, 2)
    assert replies[-1]["content"] == "From 9 EUR."

    # Detached from the channel: silent again.
    await _send_json(
        factory, "PUT", f"/api/admin/channels/{org.channel_id}/bot", owner, {"bot_id": None}
    )
    visitor.clear()
    await factory.visitor_send(visitor, conv, "pricing")
    await quiet(1.2)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]


async def test_an_embed_tokens_bot_wins_over_its_channels(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    await make_bot(factory, owner, org)  # the channel's
    other_flow = {"greeting": ["I am the shop's bot."]}
    shop_bot = await make_bot(factory, owner, org, flow=other_flow, attach=False)
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    token_id = tokens[0]["id"]
    status, token = await _send_json(
        factory, "PUT", f"/api/admin/embed-tokens/{token_id}/bot", owner, {"bot_id": shop_bot["id"]}
    )
    assert status == 200 and token["bot_id"] == shop_bot["id"]
    status, body = await factory.get(f"/chat-widget/bot?embed_token={org.embed_token}")
    assert status == 200 and body["bot"]["id"] == shop_bot["id"]
    assert [c["command"] for c in body["bot"]["commands"]][:2] == ["/help", "/agent"]
    await asyncio.sleep(1.2)  # other processes' view of the attachments
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    (greeting,) = await bot_messages(visitor, 1)
    assert greeting["content"] == "I am the shop's bot." and greeting["sender_id"] == shop_bot["id"]


async def test_moderation_flags_a_message_for_agents_and_the_bot_does_not_answer_it(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    await make_bot(factory, owner, org)
    agent = await factory.agent(org)
    queue = await factory.client(agent)
    await queue.call("join_queue", {})
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    await bot_messages(visitor, 1)
    visitor.clear()
    ack = await factory.visitor_send(visitor, conv, "you idiot")
    flagged = await queue.wait_for("message_flagged", lambda e: e["conversation_id"] == conv["id"])
    assert flagged[0]["message_id"] == ack["id"] and flagged[0]["seq"] == ack["seq"]
    await quiet(0.8)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]
    items = await history(factory, agent, conv["id"])
    assert [m["flagged"] for m in items if m["id"] == ack["id"]] == [True]
    assert not any(m["flagged"] for m in items if m["id"] != ack["id"])
    # The widget's history keeps the sender's own message, without moderation's verdict.
    status, widget_items = await factory.get(
        f"/chat-widget/history/{conv['id']}?external_id={conv['end_user']['external_id']}"
    )
    assert status == 200 and all("flagged" not in m for m in widget_items)


async def test_bots_are_managed_by_owners_and_admins_and_stay_in_their_organization(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    bot = await make_bot(factory, owner, org, attach=False)
    status, body = await _send_json(
        factory, "POST", "/api/admin/bots", agent, {"name": "Mine", "kind": "flow"}
    )
    assert status == 403, body
    status, body = await _send_json(
        factory, "PATCH", f"/api/admin/bots/{bot['id']}", agent, {"enabled": False}
    )
    assert status == 403, body

    other = await factory.org()
    other_owner = await factory.owner(other)
    for method, path, body in (
        ("GET", f"/api/admin/bots/{bot['id']}", None),
        ("PATCH", f"/api/admin/bots/{bot['id']}", {"name": "Taken"}),
        ("DELETE", f"/api/admin/bots/{bot['id']}", None),
        ("PUT", f"/api/admin/channels/{other.channel_id}/bot", {"bot_id": bot["id"]}),
        ("PUT", f"/api/admin/channels/{org.channel_id}/bot", {"bot_id": None}),
    ):
        status, reply = await _send_json(factory, method, path, other_owner, body)
        assert status == 404, (method, path, reply)
    status, listed = await factory.get("/api/admin/bots", other_owner)
    assert status == 200 and listed == []

    # Bad flows are refused with the path of the problem, and nothing changes.
    status, reply = await _send_json(
        factory,
        "PATCH",
        f"/api/admin/bots/{bot['id']}",
        owner,
        {"flow": {"intents": [{"name": "x", "patterns": ["("], "replies": ["y"]}]}},
    )
    assert status == 400 and "flow.intents[0].patterns[0]" in reply["error"]["message"], reply
    status, same = await factory.get(f"/api/admin/bots/{bot['id']}", owner)
    assert same["flow"] == bot["flow"]
    for bad in (
        {"name": "", "kind": "flow"},
        {"name": "W", "kind": "webhook"},
        {"name": "W", "kind": "chat"},
        {"name": "W", "kind": "flow", "webhook_url": "https://example.com/bot"},
        {"name": "W", "kind": "flow", "commands": [{"command": "/help", "description": ""}]},
    ):
        status, reply = await _send_json(factory, "POST", "/api/admin/bots", owner, bad)
        assert status == 400, (bad, reply)

    status, _ = await _send_json(factory, "DELETE", f"/api/admin/bots/{bot['id']}", owner)
    assert status == 204
    status, _ = await factory.get(f"/api/admin/bots/{bot['id']}", owner)
    assert status == 404


async def test_the_test_chat_runs_a_flow_without_storing_anything(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    status, out = await _send_json(
        factory, "POST", "/api/admin/bots/test", owner, {"flow": FLOW, "text": "hi"}
    )
    assert status == 200, out
    assert out["replies"][0]["content_type"] == "quick_button" and out["handoff"] is None
    status, out = await _send_json(
        factory,
        "POST",
        "/api/admin/bots/test",
        owner,
        {"flow": FLOW, "text": "/agent", "state": out["state"]},
    )
    assert status == 200 and out["handoff"] == "requested"
    status, out = await _send_json(
        factory, "POST", "/api/admin/bots/test", owner, {"flow": {"nope": 1}, "text": "hi"}
    )
    assert status == 400, out


async def test_a_visitor_cannot_pose_as_the_bot(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    ack = await visitor.call(
        "send_message",
        {
            "conversation_id": conv["id"],
            "content": "I am the bot",
            "sender_type": "bot",
            "external_id": conv["end_user"]["external_id"],
        },
    )
    assert "error" in ack, ack
    assert await factory.message_count(conv["id"]) == 0
    status, body = await factory.get(f"/chat-widget/bot?embed_token={uid('ew_')}")
    assert status == 403, body


async def test_a_bot_is_chosen_when_an_embed_token_or_a_channel_is_created(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    bot = await make_bot(factory, owner, org, attach=False)
    status, token = await _send_json(
        factory,
        "POST",
        "/api/admin/embed-tokens",
        owner,
        {"channel_id": org.channel_id, "name": "Shop", "bot_id": bot["id"]},
    )
    assert status == 201 and token["bot_id"] == bot["id"], token
    status, channel = await _send_json(
        factory,
        "POST",
        "/api/admin/channels",
        owner,
        {"type": "mobile_sdk", "name": "App", "bot_id": bot["id"]},
    )
    assert status == 201 and channel["bot_id"] == bot["id"], channel
    status, body = await factory.get(f"/api/mobile/bot?channel_key={channel['public_key']}")
    assert status == 200 and body["bot"]["name"] == "Ada", body

    # Another organization's bot: refused, and nothing is created.
    other = await factory.org()
    other_owner = await factory.owner(other)
    status, before = await factory.get("/api/admin/embed-tokens", other_owner)
    status, reply = await _send_json(
        factory,
        "POST",
        "/api/admin/embed-tokens",
        other_owner,
        {"channel_id": other.channel_id, "bot_id": bot["id"]},
    )
    assert status == 404, reply
    status, after = await factory.get("/api/admin/embed-tokens", other_owner)
    assert after == before
    status, reply = await _send_json(
        factory,
        "POST",
        "/api/admin/channels",
        other_owner,
        {"type": "webchat", "name": "X", "bot_id": bot["id"]},
    )
    assert status == 404, reply
    status, channels = await factory.get("/api/admin/channels", other_owner)
    assert [c["name"] for c in channels if c["name"] == "X"] == []


async def test_a_mobile_channels_bot_answers_app_users(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    bot = await make_bot(factory, owner, org, attach=False)
    status, channel = await _send_json(
        factory,
        "POST",
        "/api/admin/channels",
        owner,
        {"type": "mobile_sdk", "name": "App", "bot_id": bot["id"]},
    )
    assert status == 201, channel
    status, conv = await factory.post(
        "/api/mobile/conversations",
        json={"channel_key": channel["public_key"], "external_id": uid("app-user-")},
    )
    assert status == 201, conv
    app_user = await factory.visitor(conv)
    await factory.visitor_send(app_user, conv, "pricing")
    replies = await bot_messages(app_user, 2)
    assert [r["content_type"] for r in replies] == ["quick_button", "text"]
    assert replies[-1]["content"] == "From 9 EUR." and replies[-1]["sender_id"] == bot["id"]
