"""A signed-in user of the customer's site in the widget, in real headless Chromium: the loader
takes data-user-id and data-user-hash (computed by the site's server), the same user on a new
device (another browser profile) finds the conversation and its history, and a page with a
wrong hash gets a clear refusal inside the widget instead of somebody's conversation.
"""

from __future__ import annotations

from playwright.async_api import expect

from server.identity import user_hash
from tests.e2e.browser.test_widget import (
    FRAME,
    WAIT_MS,
    agent_inbox,
    agent_says,
    claim_first,
    host_html,
    new_visitor,
)
from tests.factories import uid


async def test_a_known_user_finds_its_conversation_on_a_new_device_and_a_wrong_hash_is_refused(
    browser, host_site, factory, artifacts
):
    org = await factory.org()
    owner = await factory.owner(org)
    async with factory.http.put(
        factory.url + f"/api/admin/channels/{org.channel_id}/identity",
        headers=owner.headers,
        json={"mode": "hmac"},
    ) as resp:
        assert resp.status == 200
        secret = (await resp.json())["secret"]
    agent, inbox = await agent_inbox(factory, org)
    user_id = uid("user_")
    signed = f' data-user-id="{user_id}" data-user-hash="{user_hash(secret, user_id)}"'
    url = host_site.page(host_html(factory.url, org.embed_token, signed), "account.html")

    laptop = await new_visitor(browser, url)
    await laptop.open()
    await laptop.write("My parcel never arrived")
    cid = await claim_first(inbox, "My parcel never arrived")
    await agent_says(inbox, cid, "Sorry about that, a new one is on its way.")
    await expect(laptop.message("text", "a new one is on its way")).to_have_count(
        1, timeout=WAIT_MS
    )

    # The same user on a phone: a new browser profile, nothing in its storage.
    phone = await new_visitor(browser, url)
    await phone.open()
    ready = await phone.wait_event("ready")
    assert ready["conversation_id"] == cid
    await expect(phone.widget.locator(".cw-mine .rm-text")).to_have_text(
        ["My parcel never arrived"], timeout=WAIT_MS
    )
    await expect(phone.widget.locator(".cw-theirs .rm-text")).to_have_text(
        ["Sorry about that, a new one is on its way."]
    )
    await phone.write("Thanks, from my phone")
    await inbox.wait_for(
        "message_received", lambda m: m["content"] == "Thanks, from my phone", timeout=10
    )
    await phone.page.screenshot(path=str(artifacts / "widget-identity-new-device.png"))

    # Somebody who knows the id but not the site's secret.
    forged = f' data-user-id="{user_id}" data-user-hash="{"0" * 64}"'
    bad_url = host_site.page(host_html(factory.url, org.embed_token, forged), "forged.html")
    intruder = await new_visitor(browser, bad_url)
    await intruder.page.click('button[data-chat-widget="launcher"]')
    await expect(intruder.page.locator(FRAME)).to_be_visible(timeout=WAIT_MS)
    frame = intruder.page.frame_locator(FRAME)
    await expect(frame.locator("body")).to_contain_text(
        "could not verify who you are", timeout=WAIT_MS
    )
    await expect(frame.locator("body")).not_to_contain_text("parcel")
    await intruder.page.screenshot(path=str(artifacts / "widget-identity-refused.png"))
