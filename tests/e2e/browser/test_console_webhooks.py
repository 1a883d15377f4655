"""The console's webhook pages in a real browser: an owner creates an API key and a webhook,
sends a test event, sees it delivered in the log (to a real receiver that verifies the
signature), redelivers it, turns the webhook off and deletes it."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.e2e.browser.test_inbox import signed_in
from tests.e2e.test_webhooks import Receiver


@pytest.fixture
def settings(base_settings):
    # The receiver listens on 127.0.0.1.
    return base_settings.with_overrides(
        webhook_allow_private_targets=True, webhook_backoff_base_seconds=0.2
    )


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_an_owner_creates_a_key_and_a_webhook_and_sees_a_delivery_in_the_log(
    browser, factory, receiver
):
    org = await factory.org()
    owner = await factory.owner(org)

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        await page.click('.console-nav a[data-nav="integrations"]')
        await page.fill('#api-key-form input[name="name"]', "CRM sync")
        await page.check('#api-key-form input[value="webhooks:manage"]')
        await page.click('#api-key-form button[type="submit"]')
        await expect(page.locator("#new-api-key-value")).to_have_text(re.compile(r"^ck_"))

        await page.fill('#webhook-form input[name="url"]', receiver.url)
        await page.fill('#webhook-form input[name="description"]', "Orders service")
        await page.uncheck('#webhook-form input[value="messages.read"]')
        await page.click("#webhook-submit")
        secret = page.locator("#new-webhook-secret")
        await expect(secret).to_have_text(re.compile(r"^whsec_"))
        receiver.secret = await secret.text_content()
        row = page.locator("#webhook-table tbody tr", has_text=receiver.url)
        await expect(row).to_contain_text("Orders service")
        await expect(row).to_contain_text("message.created")
        await expect(row).not_to_contain_text("messages.read")
        await expect(row.locator(".webhook-state")).to_have_text("Enabled")

        # A test event: delivered, signed, and in the log with its answer.
        await row.locator("button", has_text="Send test").click()
        (delivered,) = await receiver.wait_accepted(1)
        assert delivered["type"] == "webhook.test" and receiver.bad_signatures == 0
        log = page.locator("#webhook-log-table tbody tr")
        await expect(page.locator("#webhook-log-url")).to_have_text(receiver.url)
        for _ in range(50):
            await page.click("#webhook-log-refresh")
            status = await log.first.locator(".delivery-status").text_content()
            if status == "delivered":
                break
            await page.wait_for_timeout(100)
        await expect(log.first).to_contain_text("webhook.test")
        await expect(log.first.locator(".delivery-status")).to_have_text("delivered")
        await expect(log.first).to_contain_text("204")
        await expect(log.first).to_contain_text(" ms")

        # A conversation's message reaches it too, and shows in the log.
        conv = await factory.conversation(org)
        visitor = await factory.visitor(conv)
        await factory.visitor_send(visitor, conv, "Hello from the widget")
        await receiver.wait_accepted(3)  # conversation.created, message.created
        await page.click("#webhook-log-refresh")
        await expect(
            page.locator("#webhook-log-table tbody tr", has_text="message.created")
        ).to_have_count(1)

        # Redeliver the test event: the same webhook-id arrives again.
        await (
            log.filter(has_text="webhook.test")
            .first.locator("button", has_text="Redeliver")
            .click()
        )
        await receiver.wait_accepted(4)
        assert receiver.accepted[3]["id"] == delivered["id"]

        # Edit: the events change; turn it off; delete it.
        await row.locator("button", has_text="Edit").click()
        await page.uncheck('#webhook-form input[value="conversation.created"]')
        await page.click("#webhook-submit")
        await expect(row).not_to_contain_text("conversation.created")
        await row.locator("button", has_text="Turn off").click()
        await expect(row.locator(".webhook-state")).to_have_text("Off")
        page.once("dialog", lambda dialog: dialog.accept())
        await row.locator("button", has_text="Delete").click()
        await expect(page.locator("#webhook-table tbody tr")).to_have_count(0)
        await expect(page.locator("#webhook-log")).to_be_hidden()
