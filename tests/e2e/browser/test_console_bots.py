"""The console's Bots page in a real browser: an owner builds a flow bot from the example (a
flow that is not JSON is refused before anything is sent, a broken pattern by the server with
its path), tries the flow in the test chat as it is in the editor, attaches the bot to the web
chat's embed token and turns it off; a webhook bot's secret and key are shown once; agents
have no Bots page."""

from __future__ import annotations

import copy
import json
import re

import pytest
from playwright.async_api import expect

from tests.e2e.browser.test_console_mobile import expected_error, panel_screenshot
from tests.e2e.browser.test_inbox import signed_in


@pytest.fixture
def settings(base_settings):
    # The webhook bot's address is on 127.0.0.1.
    return base_settings.with_overrides(webhook_allow_private_targets=True)


async def send(page, text: str) -> None:
    await page.fill("#bot-test-text", text)
    await page.press("#bot-test-text", "Enter")


async def test_an_owner_builds_a_flow_bot_tries_it_and_attaches_it_to_the_web_chat(
    browser, factory, artifacts
):
    org = await factory.org()
    owner = await factory.owner(org)

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        posts: list[str] = []

        def record(request) -> None:
            if request.method == "POST" and "/api/admin/bots" in request.url:
                posts.append(request.url)

        page.on("request", record)
        await page.click('.console-nav a[data-nav="bots"]')
        await expect(page.locator("#bot-empty")).to_be_visible()
        await expect(page.locator("#bot-editor-title")).to_have_text("New bot")
        flow_box = page.locator("#bot-flow")
        example = json.loads(await flow_box.input_value())
        assert [i["name"] for i in example["intents"]] == ["pricing", "updates"]
        assert example["handoff_after"] == 2
        await page.fill('#bot-form input[name="name"]', "Shop assistant")

        # Not JSON: said at once, and nothing is sent.
        await flow_box.fill('{"greeting": [')
        await expect(page.locator("#bot-flow-status")).to_contain_text("not valid JSON")
        await page.click("#bot-submit")
        await expect(page.locator("#bot-form-error")).to_contain_text("Flow: not valid JSON")
        assert posts == []

        # A pattern that is not a regular expression: the server names where it is.
        broken = copy.deepcopy(example)
        broken["intents"][0]["patterns"].append("(")
        await flow_box.fill(json.dumps(broken, indent=2))
        await expect(page.locator("#bot-flow-status")).to_be_empty()
        await page.click("#bot-submit")
        await expect(page.locator("#bot-form-error")).to_contain_text(
            "flow.intents[0].patterns[1]: Not a valid regular expression"
        )
        expected_error(inbox, "/api/admin/bots")
        await expect(page.locator("#bot-table tbody tr")).to_have_count(0)

        # Fixed, it is created; the editor goes on with it.
        await flow_box.fill(json.dumps(example, indent=2))
        await page.click("#bot-submit")
        row = page.locator("#bot-table tbody tr", has_text="Shop assistant")
        await expect(row).to_have_count(1)
        await expect(page.locator("#bot-form-error")).to_be_hidden()
        await expect(page.locator("#bot-editor-title")).to_have_text("Edit Shop assistant")
        await expect(page.locator("#new-bot-secrets")).to_be_hidden()
        await expect(row.locator(".bot-places")).to_have_text("nowhere yet")
        bot_id = await row.get_attribute("data-bot-id")
        status, bot = await factory.get(f"/api/admin/bots/{bot_id}", owner)
        assert status == 200 and bot["kind"] == "flow" and bot["enabled"] is True
        assert [i["name"] for i in bot["flow"]["intents"]] == ["pricing", "updates"]
        assert bot["commands"] == [
            {"command": "/pricing", "description": "Our plans", "intent": "pricing"}
        ]

        # The test chat: the greeting with its buttons, and a button's pick.
        transcript = page.locator("#bot-test-transcript")
        await send(page, "hi")
        greeting = transcript.locator(".msg.from-bot").first
        await expect(greeting.locator(".rm-text")).to_contain_text("What can I do for you?")
        await expect(greeting.locator("button.rm-choice")).to_have_text(
            ["Pricing", "Talk to a person"]
        )
        await greeting.locator("button.rm-choice", has_text="Pricing").click()
        await expect(transcript.locator(".msg.from-tester").last).to_have_text("Pricing")
        await expect(transcript.locator(".msg.from-bot").last).to_contain_text(
            "Plans start at $10 a month"
        )

        # A field collected.
        await send(page, "Sign me up for the newsletter")
        await expect(transcript.locator(".msg.from-bot").last).to_have_text(
            "What email address should we write to?"
        )
        await send(page, "Ada@Example.com")
        await expect(transcript.locator(".system-line")).to_have_text(
            ["collected email=ada@example.com"]
        )
        await expect(transcript.locator(".msg.from-bot").last).to_have_text(
            "Thanks! You'll hear from us."
        )

        # The flow as it is in the editor, not as saved.
        edited = copy.deepcopy(example)
        edited["intents"][0]["replies"] = ["Plans start at $12 a month."]
        await flow_box.fill(json.dumps(edited, indent=2))
        await send(page, "How much is it?")
        await expect(transcript.locator(".msg.from-bot").last).to_have_text(
            "Plans start at $12 a month."
        )
        await page.screenshot(path=artifacts / "console-bots-test-chat.png")

        # A hand-off ends the bot's part until a restart.
        await send(page, "/agent")
        await expect(transcript.locator(".system-line").nth(1)).to_have_text(
            "→ handed to a person (requested)"
        )
        await expect(page.locator("#bot-test-text")).to_be_disabled()
        await page.click("#bot-test-restart")
        await expect(transcript.locator("li")).to_have_count(0)
        await send(page, "hi")
        await expect(transcript.locator(".msg.from-bot button.rm-choice")).to_have_count(2)

        # Attached to the web chat's embed token.
        token_row = page.locator("#bot-token-table tbody tr")
        await expect(token_row).to_have_count(1)
        await token_row.locator("select").select_option(label="Shop assistant")
        await expect(row.locator(".bot-places")).to_have_text("Default (embed token)")
        status, tokens = await factory.get("/api/admin/embed-tokens", owner)
        assert status == 200 and [t["bot_id"] for t in tokens] == [bot_id]
        status, channels = await factory.get("/api/admin/channels", owner)
        assert [c["bot_id"] for c in channels] == [None]

        # Turned off.
        await row.locator(".bot-enabled input").click()
        await expect(row).to_have_attribute("data-enabled", "false")
        status, bot = await factory.get(f"/api/admin/bots/{bot_id}", owner)
        assert status == 200 and bot["enabled"] is False
        await expect(token_row.locator("select option:checked")).to_have_text(
            "Shop assistant (turned off)"
        )
        await panel_screenshot(
            page, '.console-page[data-page="bots"]', artifacts / "console-bots.png"
        )


async def test_a_webhook_bots_secret_and_key_are_shown_once_and_agents_have_no_bots_page(
    browser, factory
):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        await page.click('.console-nav a[data-nav="bots"]')
        await page.fill('#bot-form input[name="name"]', "Order status")
        await page.select_option("#bot-kind", "webhook")
        await expect(page.locator("#bot-flow-fields")).to_be_hidden()
        await expect(page.locator("#bot-test")).to_be_hidden()
        await page.fill('#bot-form input[name="webhook_url"]', "http://127.0.0.1:9/bot")
        await page.fill('#bot-form input[name="timeout_seconds"]', "5")
        await page.fill("#bot-commands", '[{"command": "/order", "description": "Track it"}]')
        await page.click("#bot-submit")
        await expect(page.locator("#new-bot-secret")).to_have_text(re.compile(r"^whsec_"))
        await expect(page.locator("#new-bot-api-key")).to_have_text(re.compile(r"^ck_"))
        row = page.locator("#bot-table tbody tr", has_text="Order status")
        await expect(row).to_contain_text("Webhook")
        status, (bot,) = await factory.get("/api/admin/bots", owner)
        assert bot["webhook_url"] == "http://127.0.0.1:9/bot" and bot["timeout_seconds"] == 5
        assert [c["command"] for c in bot["all_commands"]] == ["/help", "/agent", "/order"]
        first = await page.locator("#new-bot-secret").text_content()

        # Gone after a reload; a new secret is shown once too, without the key.
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(row).to_have_count(1)
        await expect(page.locator("#new-bot-secrets")).to_be_hidden()
        page.once("dialog", lambda dialog: dialog.accept())
        await row.locator("button", has_text="New secret").click()
        await expect(page.locator("#new-bot-secret")).to_have_text(re.compile(r"^whsec_"))
        assert await page.locator("#new-bot-secret").text_content() != first
        await expect(page.locator("#new-bot-api-key-line")).to_be_hidden()

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await expect(page.locator('.console-nav a[data-nav="bots"]')).to_be_hidden()
        await page.goto(factory.url + "/inbox#bots")
        await expect(page.locator("body")).to_have_attribute("data-page", "inbox")
        await expect(page.locator('.console-page[data-page="bots"]')).to_be_hidden()
