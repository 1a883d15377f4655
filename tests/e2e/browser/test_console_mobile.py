"""The console's channel settings in a real browser: an owner creates a mobile channel, turns
on verified users (HMAC) and gets server code with the channel's secret in it (run here: it
computes the proofs the server accepts), pastes APNs and FCM credentials (a broken service
account is refused before anything is stored), sends test pushes to the local fake APNs
(delivered, then an uninstalled app's token) and sees a reply's push in the delivery log.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import jwt
import pytest
from playwright.async_api import expect

from server.identity import user_hash
from tests.e2e.browser.test_inbox import signed_in
from tests.factories import uid

APNS_TOKEN = "ab" * 32
GONE_TOKEN = "cd" * 32
WAIT_MS = 15000


@pytest.fixture
def fakes(push_fakes):
    return push_fakes


@pytest.fixture
def factory(push_factory):
    return push_factory


def expected_error(inbox, path: str) -> None:
    """Take a 400 the test provoked on purpose out of the page's recorded errors: the
    response, and Chromium's console line about it."""
    response = [e for e in inbox.errors if e.startswith("400 ") and path in e]
    console = [e for e in inbox.errors if e.startswith("console:") and "status of 400" in e]
    assert len(response) == 1, inbox.errors
    for e in response + console[:1]:
        inbox.errors.remove(e)


async def panel_screenshot(page, selector: str, path) -> None:
    """A screenshot of a whole panel of the console (which scrolls inside the page): the
    window is made tall enough for it, without the toast."""
    await page.evaluate("document.querySelector('#toast').hidden = true")
    height = await page.evaluate(f"document.querySelector('{selector}').scrollHeight")
    size = page.viewport_size
    await page.set_viewport_size({"width": size["width"], "height": height + 200})
    await page.locator(selector).scroll_into_view_if_needed()
    await page.locator(selector).screenshot(path=str(path))
    await page.set_viewport_size(size)


async def test_an_owner_sets_up_a_mobile_channel_verified_users_and_push(
    browser, factory, fakes, artifacts
):
    fcm, apns = fakes
    org = await factory.org()
    owner = await factory.owner(org)

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        await inbox.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=factory.url
        )
        await page.click('.console-nav a[data-nav="integrations"]')
        await expect(page.locator("#mobile-empty")).to_be_visible()

        # A mobile channel: its id and public key, shown and copyable.
        await page.fill('#mobile-channel-form input[name="name"]', "Shop app")
        await page.click('#mobile-channel-form button[type="submit"]')
        row = page.locator("#mobile-channel-table tbody tr", has_text="Shop app")
        await expect(row).to_have_count(1)
        channel_id = await row.get_attribute("data-channel-id")
        status, channels = await factory.get("/api/admin/channels", owner)
        assert status == 200
        (channel,) = [c for c in channels if c["id"] == channel_id]
        assert channel["type"] == "mobile_sdk" and channel["public_key"].startswith("mc_")
        await expect(row.locator(".channel-id")).to_have_text(channel_id)
        await expect(row.locator(".public-key")).to_have_text(channel["public_key"])
        await row.locator("td", has=page.locator(".public-key")).locator("[data-copy]").click()
        assert await page.evaluate("navigator.clipboard.readText()") == channel["public_key"]
        await expect(row.locator(".identity-mode")).to_have_text("Off")
        # Made from here, it is the one whose push settings are shown, nothing set up yet.
        await expect(page.locator("#push-settings")).to_be_visible()
        await expect(page.locator("#push-channel-name")).to_have_text("Shop app")
        await expect(page.locator("#push-fcm")).to_have_attribute("data-configured", "false")
        await expect(page.locator("#push-apns")).to_have_attribute("data-configured", "false")
        await expect(page.locator("#push-fcm")).to_contain_text("HTTP v1")
        await expect(page.locator("#push-fcm")).to_contain_text("2024")
        # Mobile channels take no embed token.
        await expect(page.locator(f'#token-channel option[value="{channel_id}"]')).to_have_count(0)

        # Verified users: HMAC. Turning it on asks first.
        await row.locator("button", has_text="Verified users").click()
        await expect(page.locator("#identity-channel")).to_have_value(channel_id)
        await expect(page.locator("#identity-state")).to_have_attribute("data-mode", "off")
        await expect(page.locator("#identity-secret-box")).to_be_hidden()
        # A secret first, while verification is still off.
        await page.click("#identity-prepare")
        await expect(page.locator("#identity-secret")).to_have_text(re.compile(r"^ids_"))
        await expect(page.locator("#identity-state")).to_have_attribute("data-mode", "off")
        await expect(page.locator("#identity-prepare")).to_be_hidden()
        prepared = await page.locator("#identity-secret").text_content()
        status, early = await factory.get(f"/api/admin/channels/{channel_id}/identity", owner)
        assert status == 200 and early == {**early, "mode": "off", "secret": prepared}
        await page.select_option("#identity-mode", "hmac")
        dialogs: list[str] = []

        async def accept(dialog):
            dialogs.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await page.click("#identity-save")
        secret_node = page.locator("#identity-secret")
        await expect(secret_node).to_have_text(re.compile(r"^ids_"))
        assert dialogs and "refused" in dialogs[0]
        status, identity = await factory.get(f"/api/admin/channels/{channel_id}/identity", owner)
        assert status == 200 and identity["mode"] == "hmac"
        secret = identity["secret"]
        assert secret == prepared, "turning verification on keeps the prepared secret"
        assert await secret_node.text_content() == secret
        await expect(page.locator("#identity-state")).to_have_attribute("data-mode", "hmac")
        await expect(row.locator(".identity-mode")).to_have_text("HMAC user hash")
        await expect(page.locator("#identity-panel")).to_contain_text("server only")

        snippets = page.locator("#identity-snippets")
        for key in ("node-hmac", "python-hmac", "php-hmac", "ruby-hmac"):
            await expect(snippets.locator(f'[data-snippet="{key}"] pre')).to_contain_text(secret)
        await expect(snippets.locator('[data-snippet="node-hmac"]')).to_contain_text(
            'createHmac("sha256"'
        )
        await expect(snippets.locator('[data-snippet="php-hmac"]')).to_contain_text("hash_hmac(")
        await expect(snippets.locator('[data-snippet="ruby-hmac"]')).to_contain_text(
            "OpenSSL::HMAC.hexdigest"
        )
        # The app's side names the channel by its public key and sends user_hash.
        app_side = snippets.locator('[data-snippet="app"] pre')
        await expect(app_side).to_contain_text(channel["public_key"])
        await expect(app_side).to_contain_text('"user_hash": "USER_HASH"')
        # The Python snippet, run, computes the hash the server checks; Copy copies it whole.
        python = snippets.locator('[data-snippet="python-hmac"]')
        code = await python.locator("pre").text_content()
        namespace: dict = {}
        exec(compile(code, "python-hmac-snippet", "exec"), namespace)  # noqa: S102
        assert namespace["chat_user_hash"]("user_42") == user_hash(secret, "user_42")
        await python.locator("[data-copy]").click()
        assert await page.evaluate("navigator.clipboard.readText()") == code
        # ... and the hash is accepted: the app opens its user's conversation with it.
        ext = uid("user_")
        status, conv = await factory.post(
            "/api/mobile/conversations",
            json={
                "channel_key": channel["public_key"],
                "external_id": ext,
                "user_hash": namespace["chat_user_hash"](ext),
            },
        )
        assert status == 201, conv
        await panel_screenshot(page, "#identity-panel", artifacts / "console-identity.png")

        # JWT with HS256: the PyJWT snippet makes tokens the channel's secret verifies.
        await page.select_option("#identity-mode", "jwt")
        await expect(page.locator("#identity-algorithm")).to_be_visible()
        await expect(page.locator("#identity-jwks")).to_be_hidden()
        await page.click("#identity-save")
        await expect(page.locator("#identity-state")).to_have_attribute("data-mode", "jwt")
        token_code = await snippets.locator('[data-snippet="python-jwt"] pre').text_content()
        await expect(snippets.locator('[data-snippet="node-jwt"] pre')).to_contain_text(secret)
        namespace = {}
        exec(compile(token_code, "python-jwt-snippet", "exec"), namespace)  # noqa: S102
        claims = jwt.decode(
            namespace["chat_identity_token"]("user_42"), secret, algorithms=["HS256"]
        )
        assert claims["sub"] == "user_42" and claims["exp"] > time.time()
        # RS256 needs the identity provider's JWKS URL: the server's refusal is shown.
        await page.select_option("#identity-algorithm", "RS256")
        await expect(page.locator("#identity-jwks")).to_be_visible()
        await page.evaluate("document.querySelector('#identity-jwks').required = false")
        await page.click("#identity-save")
        await expect(page.locator("#identity-error")).to_contain_text("jwks_url")
        expected_error(inbox, f"/api/admin/channels/{channel_id}/identity")
        # Back to HMAC: the secret is the same one.
        await page.select_option("#identity-mode", "hmac")
        await page.click("#identity-save")
        await expect(page.locator("#identity-state")).to_have_attribute("data-mode", "hmac")
        await expect(page.locator("#identity-error")).to_be_hidden()
        await expect(secret_node).to_have_text(secret)

        # APNs: the .p8 key and its team, key id and app.
        await row.locator("button", has_text="Push settings").click()
        creds = apns.credentials
        form = page.locator("#apns-form")
        for name in ("team_id", "key_id", "bundle_id"):
            await form.locator(f'input[name="{name}"]').fill(creds[name])
        await form.locator('select[name="environment"]').select_option("sandbox")
        await form.locator('textarea[name="private_key"]').fill(creds["private_key"])
        await page.click("#apns-submit")
        await expect(page.locator("#push-apns")).to_have_attribute("data-configured", "true")
        summary = page.locator("#apns-summary")
        for value in (creds["team_id"], creds["key_id"], "com.example.shop", "sandbox"):
            await expect(summary).to_contain_text(value)
        await expect(form).to_be_hidden()
        await expect(page.locator("#apns-replace")).to_be_visible()
        await expect(form.locator("textarea")).to_have_value("")  # not kept in the page

        # FCM: what is not JSON is refused in the page, and nothing is stored.
        fcm_form = page.locator("#fcm-form")
        await fcm_form.locator("textarea").fill('{"type": "service_account", "project_id": ')
        await page.click("#fcm-submit")
        await expect(page.locator("#fcm-error")).to_be_visible()
        await expect(page.locator("#fcm-error")).to_contain_text("not valid JSON")
        status, settings = await factory.get(f"/api/admin/channels/{channel_id}/push", owner)
        assert status == 200 and settings["fcm"] is None, settings
        # JSON that is not a service account: the server says what is wrong.
        await fcm_form.locator("textarea").fill('{"type": "service_account"}')
        await page.click("#fcm-submit")
        await expect(page.locator("#fcm-error")).not_to_contain_text("not valid JSON")
        await expect(page.locator("#fcm-error")).not_to_be_empty()
        expected_error(inbox, f"/api/admin/channels/{channel_id}/push/fcm")
        status, settings = await factory.get(f"/api/admin/channels/{channel_id}/push", owner)
        assert settings["fcm"] is None, settings
        # The service-account file as Firebase gives it.
        account = fcm.new_service_account()
        await fcm_form.locator("textarea").fill(json.dumps(account, indent=2))
        await page.click("#fcm-submit")
        await expect(page.locator("#push-fcm")).to_have_attribute("data-configured", "true")
        await expect(page.locator("#fcm-error")).to_be_hidden()
        await expect(page.locator("#fcm-summary")).to_contain_text(account["project_id"])
        await expect(page.locator("#fcm-summary")).to_contain_text(account["client_email"])
        status, settings = await factory.get(f"/api/admin/channels/{channel_id}/push", owner)
        assert settings["fcm"]["project_id"] == account["project_id"], settings
        assert settings["apns"]["bundle_id"] == "com.example.shop", settings

        # Test pushes: the fake APNs delivers one, and says the other app was uninstalled.
        test_form = page.locator("#push-test-form")
        result = page.locator("#push-test-result")
        await test_form.locator('select[name="platform"]').select_option("apns")
        await test_form.locator('input[name="token"]').fill(APNS_TOKEN)
        await page.click("#push-test-submit")
        await expect(result).to_have_attribute("data-outcome", "delivered", timeout=WAIT_MS)
        await expect(result.locator(".push-outcome")).to_have_text("delivered")
        await expect(result.locator(".push-status")).to_have_text("200")
        (pushed,) = apns.received
        assert pushed.token == APNS_TOKEN
        assert pushed.headers["apns-topic"] == "com.example.shop"
        apns.unregistered_tokens.add(GONE_TOKEN)
        await test_form.locator('input[name="token"]').fill(GONE_TOKEN)
        await page.click("#push-test-submit")
        await expect(result).to_have_attribute("data-outcome", "unregistered", timeout=WAIT_MS)
        await expect(result.locator(".push-outcome")).to_have_text("unregistered")
        await expect(result.locator(".push-status")).to_have_text("410")
        await expect(result).to_contain_text("no longer valid")
        assert len(apns.received) == 1

        # The preview setting.
        await page.select_option("#push-preview", "generic")
        await expect(page.locator("#toast")).to_have_text("Saved.")
        status, settings = await factory.get(f"/api/admin/channels/{channel_id}/push", owner)
        assert settings["preview"] == "generic", settings

        # A reply to the app's user while the app is away: pushed, and in the delivery log.
        status, device = await factory.post(
            "/api/mobile/devices",
            json={
                "conversation_id": conv["id"],
                "external_id": ext,
                "platform": "apns",
                "token": APNS_TOKEN,
                "user_hash": user_hash(secret, ext),
            },
        )
        assert status == 201, device
        agent_rec = await factory.client(await factory.agent(org))
        ack = await factory.agent_send(
            agent_rec, conv, "Your order shipped", client_message_id=str(uuid.uuid4())
        )
        assert "error" not in ack, ack
        log = page.locator("#push-log-table tbody tr")
        for _ in range(100):
            await page.click("#push-log-refresh")
            if await log.count():
                break
            await page.wait_for_timeout(150)
        await expect(log).to_have_count(1)
        await expect(log.first).to_have_attribute("data-outcome", "delivered")
        await expect(log.first).to_contain_text("APNs")
        await expect(log.first).to_contain_text("200")
        assert apns.received[-1].body["aps"]["alert"]["body"] == "New message"  # generic
        await page.locator("#mobile-channel-table button", has_text="Push settings").click()
        await expect(page.locator("#push-devices")).to_contain_text("1 iOS")
        await expect(result).to_have_attribute("data-outcome", "unregistered")  # still shown
        await panel_screenshot(page, "#mobile-panel", artifacts / "console-mobile-sdk.png")

        # Remove FCM (asked first): the form to set it up again is back.
        page.once("dialog", accept)
        await page.click("#fcm-remove")
        await expect(page.locator("#push-fcm")).to_have_attribute("data-configured", "false")
        await expect(fcm_form).to_be_visible()
        status, settings = await factory.get(f"/api/admin/channels/{channel_id}/push", owner)
        assert settings["fcm"] is None and settings["apns"] is not None, settings
