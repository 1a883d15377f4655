"""A flow bot in real headless Chromium: the visitor talks to it in the widget on a host page
(greeting, a quick button, an email collected, a hand-off asked for in plain words) while an
agent's inbox follows it from the Bot filter to Unassigned, claims it and answers; the bot
says nothing more. An agent hands a conversation back to the bot, and moderation's flag shows
in the inbox, live and from the history.

The bot is created and attached through the admin REST API, as the console does.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from playwright.async_api import expect

from tests.e2e.browser.test_inbox import signed_in
from tests.factories import Agent, Factory, Org
from tests.uploads import png

BOT_NAME = "Shop assistant"
GREETING = "Hi! I'm the shop's assistant. What can I do for you?"
PRICING = "Plans start at $10 a month."
ASK_EMAIL = "What email address should we write to?"
BAD_EMAIL = "That is not an email address. Please try again."
THANKS = "Thanks! You'll hear from us."
HANDOFF = "Connecting you with a person. Someone will reply here soon."
FRIENDLY = "Let's keep it friendly."

FLOW = {
    "greeting": [
        {
            "content": GREETING,
            "content_type": "quick_button",
            "rich_media": {
                "buttons": [
                    {"label": "Get updates", "value": "updates"},
                    {"label": "Talk to a person", "value": "/agent"},
                ]
            },
        }
    ],
    "intents": [
        {"name": "pricing", "keywords": ["price", "plans"], "replies": [PRICING]},
        {
            "name": "updates",
            "values": ["updates"],
            "keywords": ["newsletter"],
            "collect": {
                "field": "email",
                "type": "email",
                "prompt": [ASK_EMAIL],
                "invalid": [BAD_EMAIL],
                "done": [THANKS],
            },
        },
    ],
    "fallback": ["Sorry, I didn't get that."],
    "handoff_after": 3,
    "handoff_message": [HANDOFF],
    "moderation": {"keywords": ["stupid"], "reply": [FRIENDLY]},
}
COMMANDS = [{"command": "/pricing", "description": "Our plans", "intent": "pricing"}]


@pytest.fixture
async def avatar_url(aiohttp_server) -> str:
    """The bot's avatar, a real PNG on another site."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=png(64, 64), content_type="image/png")

    app = web.Application()
    app.router.add_get("/avatar.png", serve)
    srv = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{srv.port}/avatar.png"


async def attach_flow_bot(factory: Factory, org: Org, avatar_url: str | None = None) -> dict:
    """The owner creates the flow bot and attaches it to the org's embed token; the bots'
    refresh loop picks it up within about a second."""
    owner = await factory.owner(org)
    body = {"name": BOT_NAME, "kind": "flow", "flow": FLOW, "commands": COMMANDS}
    if avatar_url:
        body["avatar_url"] = avatar_url
    status, bot = await factory.post("/api/admin/bots", owner, json=body)
    assert status == 201, bot
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200
    (token,) = [t for t in tokens if org.embed_token.startswith(t["token_prefix"])]
    async with factory.http.put(
        f"{factory.url}/api/admin/embed-tokens/{token['id']}/bot",
        headers=owner.headers,
        json={"bot_id": bot["id"]},
    ) as resp:
        assert resp.status == 200, await resp.text()
    await asyncio.sleep(1.5)
    return bot


async def history(factory: Factory, agent: Agent, conv_id: str) -> list[dict]:
    status, messages = await factory.get(f"/api/conversations/{conv_id}/messages", agent)
    assert status == 200, messages
    return messages


async def test_visitor_talks_to_the_bot_until_it_hands_off_and_an_agent_takes_over(
    browser, factory, host_site, artifacts, avatar_url
):
    org = await factory.org(allowed_origins=[host_site.origin])
    agent = await factory.agent(org)
    await attach_flow_bot(factory, org, avatar_url)
    site = host_site.page(
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>"
        f'<script src="{factory.url}/chat-widget/embed.js" '
        f'data-embed-token="{org.embed_token}"></script></body></html>'
    )

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        visitor_context = await browser.new_context(viewport={"width": 1100, "height": 760})
        try:
            shop = await visitor_context.new_page()
            shop_errors: list[str] = []
            shop.on("pageerror", lambda exc: shop_errors.append(str(exc)))
            await shop.goto(site)
            await shop.click('[data-chat-widget="launcher"]')
            widget = shop.frame_locator('[data-chat-widget="frame"]')
            await expect(widget.locator("body")).to_have_attribute("data-connection", "online")
            field = widget.locator(".cw-input")
            from_bot = widget.locator('.cw-msg[data-sender="bot"]')
            mine = widget.locator(".cw-mine .rm-text")

            async def say(text: str) -> None:
                await field.fill(text)
                await field.press("Enter")

            # The bot's commands are offered while a message starts with "/".
            await field.fill("/")
            await expect(widget.locator(".cw-cmds .cw-cmd b")).to_have_text(
                ["/help", "/agent", "/pricing"]
            )
            await field.fill("/p")
            await expect(widget.locator(".cw-cmds .cw-cmd b")).to_have_text(["/pricing"])
            await field.fill("")
            await expect(widget.locator(".cw-cmds")).to_be_hidden()

            # What the typing line says, each time it changes.
            frame = next(f for f in shop.frames if "/chat-widget?" in f.url)
            await frame.evaluate(
                """() => {
                  window.typingSeen = [];
                  const em = document.querySelector(".cw-typing em");
                  new MutationObserver(() => window.typingSeen.push(em.textContent))
                    .observe(em, {childList: true, characterData: true, subtree: true});
                }"""
            )

            # The greeting, with its buttons, under the bot's name.
            await say("hi")
            await expect(from_bot).to_have_count(1)
            greeting = from_bot.first
            await expect(greeting.locator(".cw-name")).to_have_text(BOT_NAME)
            avatar = greeting.locator("img.cw-avatar")
            await expect(avatar).to_have_attribute("src", avatar_url)
            await expect(avatar).to_have_js_property("naturalWidth", 64)
            await expect(greeting.locator(".rm-text")).to_have_text(GREETING)
            await expect(greeting.locator(".rm-choice")).to_have_text(
                ["Get updates", "Talk to a person"]
            )

            assert await frame.evaluate("window.typingSeen") == [f"{BOT_NAME} is typing…"]

            # The inbox: with the bot, so under Bot and not under Unassigned.
            await inbox.filter("bot")
            item = page.locator("#conversation-list .conv-item")
            await expect(item).to_have_count(1)
            await expect(item.locator(".conv-status")).to_have_text("With the bot")
            conv_id = await item.get_attribute("data-id")
            await inbox.filter("unassigned")
            await expect(page.locator("#list-empty")).to_be_visible()
            await expect(item).to_have_count(0)

            # A quick button: its label in the transcript, then the matching intent's prompt.
            await greeting.locator(".rm-choice", has_text="Get updates").click()
            await expect(mine.last).to_have_text("Get updates")
            await expect(from_bot.last.locator(".rm-text")).to_have_text(ASK_EMAIL)
            await expect(from_bot.last.locator(".cw-name")).to_have_text(BOT_NAME)

            # An email that is not one, then one that is.
            await say("ada at example")
            await expect(from_bot.last.locator(".rm-text")).to_have_text(BAD_EMAIL)
            await say("Ada@Example.com")
            await expect(from_bot.last.locator(".rm-text")).to_have_text(THANKS)
            await expect(inbox.item({"id": conv_id})).to_have_count(0)

            # Asked for in plain words, the hand-off; the inbox shows it waiting, live.
            await say("talk to a person")
            await expect(from_bot.last.locator(".rm-text")).to_have_text(HANDOFF)
            item = inbox.item({"id": conv_id})
            await expect(item.locator(".conv-status")).to_have_text("Waiting for a person")
            status, conv = await factory.get(f"/api/conversations/{conv_id}", agent)
            assert status == 200
            assert conv["active_session"]["handled_by"] == "queue"
            assert conv["end_user"]["attributes"] == {"email": "ada@example.com"}
            await shop.screenshot(path=artifacts / "bot-handoff-visitor.png")

            # The agent claims it; the header shows what the bot collected.
            bot_messages = len(await from_bot.all())
            await item.locator(".conv-claim").click()
            await expect(page.locator("#conv-meta")).to_contain_text("Assigned to you")
            await expect(page.locator("#conv-attributes .conv-attr")).to_have_text(
                ["email: ada@example.com"]
            )
            agent_view = page.locator("#message-list .msg.from-bot")
            await expect(agent_view).to_have_count(bot_messages)
            await expect(agent_view.locator(".msg-sender").first).to_have_text(BOT_NAME)
            await expect(page.locator("#hand-back")).to_be_visible()

            # The visitor writes again: the agent sees it, and the bot stays quiet.
            await say("Are you there?")
            await expect(inbox.messages().last.locator(".rm-text")).to_have_text("Are you there?")
            await page.fill("#composer-text", "Yes, I'm here. How can I help?")
            await page.press("#composer-text", "Enter")
            agent_reply = widget.locator('.cw-msg[data-sender="agent"] .rm-text')
            await expect(agent_reply).to_have_text(["Yes, I'm here. How can I help?"])
            await asyncio.sleep(2)
            await expect(from_bot).to_have_count(bot_messages)
            messages = await history(factory, agent, conv_id)
            senders = [(m["sender_type"], m["content"]) for m in messages]
            handoff_at = senders.index(("bot", HANDOFF))
            assert senders[handoff_at + 1 :] == [
                ("end_user", "Are you there?"),
                ("agent", "Yes, I'm here. How can I help?"),
            ], senders
            assert sum(1 for who, _ in senders if who == "bot") == bot_messages
            await page.screenshot(path=artifacts / "bot-handoff-inbox.png")
            assert shop_errors == []
        finally:
            await visitor_context.close()


async def test_an_agent_hands_a_conversation_back_and_a_flagged_message_shows_in_the_inbox(
    browser, factory
):
    org = await factory.org()
    agent = await factory.agent(org)
    await attach_flow_bot(factory, org)

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        conv = await factory.conversation(org, name="Bea")
        visitor = await factory.visitor(conv)
        ack = await factory.visitor_send(visitor, conv, "hi")
        assert "error" not in ack, ack

        await inbox.filter("bot")
        await expect(inbox.item(conv).locator(".conv-status")).to_have_text("With the bot")
        await inbox.open(conv)
        await expect(page.locator("#message-list .msg.from-bot .msg-sender")).to_have_text(
            [BOT_NAME]
        )
        # An agent may take a conversation from the bot, and give it back.
        await expect(page.locator("#hand-back")).to_be_hidden()
        await page.click("#claim")
        await expect(page.locator("#conv-meta")).to_contain_text("Assigned to you")
        await page.click("#hand-back")
        await expect(page.locator("#conv-meta")).to_contain_text("With the bot")
        await expect(page.locator("#hand-back")).to_be_hidden()
        await expect(page.locator("#claim")).to_be_visible()
        await expect(inbox.item(conv).locator(".conv-status")).to_have_text("With the bot")
        status, now = await factory.get(f"/api/conversations/{conv['id']}", agent)
        assert status == 200 and now["active_session"]["handled_by"] == "bot"
        assert now["active_session"]["assigned_agent_id"] is None

        # The bot answers again; a message moderation flags is marked, live.
        ack = await factory.visitor_send(visitor, conv, "this is stupid")
        assert "error" not in ack, ack
        flagged = page.locator(f'#message-list .msg[data-seq="{ack["seq"]}"]')
        await expect(flagged.locator(".msg-flag")).to_have_text("Flagged")
        await expect(flagged).to_have_class("msg from-end_user flagged")
        await expect(page.locator("#message-list .msg.from-bot .rm-text").last).to_have_text(
            FRIENDLY
        )
        marks = {m["content"]: m["flagged"] for m in await history(factory, agent, conv["id"])}
        assert marks["this is stupid"] is True and marks["hi"] is False

        # And from the history, after a reload.
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(flagged.locator(".msg-flag")).to_have_text("Flagged")
        await expect(page.locator("#message-list .msg-flag")).to_have_count(1)
