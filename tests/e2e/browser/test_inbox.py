"""The agent inbox in real headless Chromium against a real server.

Agents sign in through the real login form; visitors are python-socketio clients (or, in the
full-flow test, the real widget in another browser context). Everything the page shows is
asserted with Playwright's auto-waiting expectations.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from server.actors import EndUserActor
from server.services.conversations import NewMessage
from tests.factories import PASSWORD, Agent, Factory
from tests.uploads import PDF, png


class InboxPage:
    """One signed-in agent's inbox tab, with the page's JavaScript errors recorded."""

    def __init__(self, context: BrowserContext, page: Page, agent: Agent) -> None:
        self.context = context
        self.page = page
        self.agent = agent
        self.errors: list[str] = []
        self.websockets: list[str] = []
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        page.on("websocket", lambda ws: self.websockets.append(ws.url))
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        self.cut = False
        page.on("console", self._console)

    # Chromium logs this when a send races a close; after cut_websockets it is the dropped
    # network speaking, not the inbox.
    CUT_NOISE = "WebSocket is already in CLOSING or CLOSED state."

    def _console(self, msg) -> None:
        if msg.type != "error" or (self.cut and msg.text == self.CUT_NOISE):
            return
        self.errors.append(f"console: {msg.text}")

    async def route_websocket(self, route: WebSocketRoute) -> None:
        self.routes.append((route, route.connect_to_server()))

    async def cut_websockets(self) -> None:
        """Close both ends of every open websocket, as a dropped network would."""
        routes, self.routes = self.routes, []
        assert routes, "no websocket to cut"
        self.cut = True
        for to_page, to_server in routes:
            await to_server.close()
            await to_page.close(code=1001, reason="cut by the test")

    def item(self, conv: dict):
        return self.page.locator(f'#conversation-list .conv-item[data-id="{conv["id"]}"]')

    def messages(self):
        return self.page.locator("#message-list .msg")

    async def filter(self, name: str) -> None:
        await self.page.click(f'.filters [data-filter="{name}"]')
        await expect(self.page.locator(f'.filters [data-filter="{name}"]')).to_have_attribute(
            "aria-selected", "true"
        )

    async def open(self, conv: dict) -> None:
        await self.item(conv).locator(".conv-open").click()
        await expect(self.page.locator("#conversation-view")).to_be_visible()
        await expect(self.page.locator("#conv-title")).not_to_be_empty()

    async def csrf_meta(self) -> str:
        return await self.page.locator('meta[name="csrf-token"]').get_attribute("content")

    def assert_no_errors(self) -> None:
        assert self.errors == [], self.errors


@asynccontextmanager
async def signed_in(browser: Browser, factory: Factory, agent: Agent, routed: bool = False):
    """A new browser context in which `agent` signs in through the real /auth/login form.

    With `routed`, the page's websockets run through Playwright (to the real server), so a
    test can cut them as a network failure would (InboxPage.cut_websockets).
    """
    context = await browser.new_context(viewport={"width": 1360, "height": 860})
    try:
        page = await context.new_page()
        inbox = InboxPage(context, page, agent)
        if routed:
            await context.route_web_socket(re.compile(r"/socket\.io/"), inbox.route_websocket)
        await page.goto(factory.url + "/inbox")
        # Without a session /inbox sends the browser to the form, which comes back here.
        await expect(page).to_have_url(re.compile(r"/auth/login\?next=/inbox$"))
        await page.fill("#email", agent.email)
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/inbox$"))
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        try:
            yield inbox
        except BaseException as exc:
            exc.add_note(f"{agent.email}'s page reported: {inbox.errors}")
            raise
        # Every test also asserts that the page had no script error, failed request or
        # CSP refusal.
        inbox.assert_no_errors()
    finally:
        await context.close()


async def visitor_writes(factory: Factory, org, text: str = "Hello", name: str | None = None):
    """A visitor (python-socketio client) opens a conversation and writes into it."""
    conv = await factory.conversation(org, name=name)
    visitor = await factory.visitor(conv)
    ack = await factory.visitor_send(visitor, conv, text)
    assert "error" not in ack, ack
    return conv, visitor


async def stored_visitor_messages(factory: Factory, conv: dict, texts: list[str]) -> None:
    """Many messages at once, through the service (the socket path is rate limited)."""
    actor = EndUserActor(conv["end_user"]["external_id"])
    for text in texts:
        await factory.services.conversations.send_message(actor, NewMessage(conv["id"], text))


# ---- signing in, the live list, claiming ---------------------------------------------------


async def test_agent_signs_in_and_new_conversations_appear_in_unassigned_without_reload(
    browser, factory, artifacts
):
    org = await factory.org()
    agent = await factory.agent(org)

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await expect(page.locator("#list-empty")).to_be_visible()
        await expect(page).to_have_title("Inbox")

        first, _ = await visitor_writes(factory, org, "My order never arrived", name="Ada")
        item = inbox.item(first)
        await expect(item.locator(".conv-name")).to_have_text("Ada")
        await expect(item.locator(".conv-preview")).to_have_text("My order never arrived")
        await expect(item.locator(".conv-status")).to_have_text("Unassigned")
        await expect(page).to_have_title("(1) Inbox")
        second, _ = await visitor_writes(factory, org, "Do you ship to Norway?", name="Bo")
        await expect(inbox.item(second)).to_be_visible()
        await expect(page).to_have_title("(2) Inbox")
        # Newest activity first.
        await expect(page.locator("#conversation-list .conv-name")).to_have_text(["Bo", "Ada"])
        await page.screenshot(path=artifacts / "inbox-unassigned.png")

        await inbox.open(first)
        await expect(inbox.messages()).to_have_count(1)
        await expect(inbox.messages().locator(".rm-text")).to_have_text("My order never arrived")
        await expect(page).to_have_title("(1) Inbox")
        assert inbox.websockets, "the Socket.IO client should upgrade to a websocket"


async def test_claiming_takes_the_conversation_out_of_every_agents_unassigned_list(
    browser, factory, artifacts
):
    org = await factory.org()
    agent = await factory.agent(org)
    colleague = await factory.agent(org)

    async with (
        signed_in(browser, factory, agent) as mine,
        signed_in(browser, factory, colleague) as theirs,
    ):
        conv, _ = await visitor_writes(factory, org, "Anyone there?", name="Cy")
        for inbox in (mine, theirs):
            await expect(inbox.item(conv)).to_be_visible()

        await mine.item(conv).locator(".conv-claim").click()

        await expect(theirs.item(conv)).to_have_count(0)
        await expect(mine.item(conv)).to_have_count(0)
        await expect(mine.page.locator("#conv-meta")).to_contain_text("Assigned to you")
        await mine.filter("mine")
        await expect(mine.item(conv).locator(".conv-status")).to_have_text("Assigned to you")
        await theirs.filter("mine")
        await expect(theirs.page.locator("#list-empty")).to_be_visible()
        await theirs.filter("all")
        await expect(theirs.item(conv).locator(".conv-status")).to_have_text(
            f"Assigned to {display_name(agent)}"
        )
        # The colleague may look, not write into another agent's conversation.
        await theirs.open(conv)
        await expect(theirs.page.locator("#claim")).to_be_hidden()
        await expect(theirs.page.locator("#send")).to_be_disabled()
        await expect(theirs.page.locator("#composer-note")).to_have_text(
            f"Assigned to {display_name(agent)}."
        )
        await theirs.page.screenshot(path=artifacts / "inbox-claimed-by-colleague.png")

        status, body = await factory.get(f"/api/conversations/{conv['id']}", agent)
        assert status == 200 and body["active_session"]["assigned_agent_id"] == agent.user_id


# ---- answering -------------------------------------------------------------------------------


async def fill_rows(page: Page, rows_root: str, rows: list[tuple[str, str]]) -> None:
    """Fill label/value rows of a rich editor, adding rows as needed."""
    editor = page.locator(rows_root)
    while await editor.locator(".row").count() < len(rows):
        await editor.locator(".add-row").first.click()
    for n, (label, value) in enumerate(rows):
        row = editor.locator(".row").nth(n)
        await row.locator(".row-label").fill(label)
        await row.locator(".row-value").fill(value)


async def test_agent_answers_with_text_and_every_rich_type_and_the_visitor_receives_them(
    browser, factory, artifacts, image_host
):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "Which plan fits me?", name="Ada")

    def from_agent(content_type):
        return lambda m: m["sender_type"] == "agent" and m["content_type"] == content_type

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await inbox.open(conv)
        await page.click("#claim")
        await expect(page.locator("#claim")).to_be_hidden()
        await expect(page.locator("#conv-meta")).to_contain_text("Assigned to you")

        await page.fill("#composer-text", "Happy to help!\nA few options:")
        await page.press("#composer-text", "Enter")
        (text,) = await visitor.wait_for("message_received", from_agent("text"))
        assert (text["content"], text["rich_media"]) == ("Happy to help!\nA few options:", None)
        assert text["sender_id"] == agent.user_id
        await expect(page.locator("#composer-text")).to_have_value("")

        await page.select_option("#composer-type", "quick_button")
        await page.fill("#composer-text", "Choose an option:")
        await fill_rows(page, "#rich-editor", [("Yes", "yes"), ("No", "no")])
        await page.click("#send")
        await expect(page.locator("#composer-type")).to_have_value("text")  # acked
        (quick,) = await visitor.wait_for("message_received", from_agent("quick_button"))
        assert quick["content"] == "Choose an option:"
        assert quick["rich_media"] == {
            "buttons": [{"label": "Yes", "value": "yes"}, {"label": "No", "value": "no"}]
        }

        await page.select_option("#composer-type", "dropdown")
        await page.fill("#composer-text", "Select your region:")
        await page.fill("#dropdown-placeholder", "-- pick one --")
        await fill_rows(
            page, "#rich-editor", [("Asia Pacific", "apac"), ("Europe", "eu"), ("Americas", "")]
        )
        await page.click("#send")
        await expect(page.locator("#composer-type")).to_have_value("text")  # acked
        (dropdown,) = await visitor.wait_for("message_received", from_agent("dropdown"))
        assert dropdown["rich_media"] == {
            "placeholder": "-- pick one --",
            "options": [
                {"label": "Asia Pacific", "value": "apac"},
                {"label": "Europe", "value": "eu"},
                {"label": "Americas", "value": "Americas"},  # the value defaults to the label
            ],
        }

        await page.select_option("#composer-type", "carousel")
        await page.click("#add-card")
        cards = page.locator("#rich-editor .card-editor")
        await cards.nth(0).locator(".card-title-input").fill("Starter")
        await cards.nth(0).locator(".card-subtitle-input").fill("For small teams")
        await cards.nth(0).locator(".card-image-input").fill(f"{image_host}/starter.png")
        await fill_rows(page, "#rich-editor .card-editor >> nth=0", [("Choose Starter", "starter")])
        await cards.nth(1).locator(".card-title-input").fill("Business")
        await fill_rows(page, "#rich-editor .card-editor >> nth=1", [("Choose Business", "biz")])
        await page.click("#send")
        await expect(page.locator("#composer-type")).to_have_value("text")  # acked
        (carousel,) = await visitor.wait_for("message_received", from_agent("carousel"))
        assert carousel["content"] == ""
        assert carousel["rich_media"] == {
            "cards": [
                {
                    "title": "Starter",
                    "subtitle": "For small teams",
                    "image_url": f"{image_host}/starter.png",
                    "buttons": [{"label": "Choose Starter", "value": "starter"}],
                },
                {"title": "Business", "buttons": [{"label": "Choose Business", "value": "biz"}]},
            ]
        }

        # The agent's own view renders each type readably, as read-only chips and cards.
        shown = inbox.messages()
        await expect(shown).to_have_count(5)
        await expect(shown.nth(1).locator(".rm-text")).to_have_text(
            "Happy to help!\nA few options:"
        )
        await expect(shown.nth(2).locator(".rm-choice")).to_have_text(["Yes", "No"])
        await expect(shown.nth(3).locator(".rm-placeholder")).to_have_text("-- pick one --")
        await expect(shown.nth(3).locator(".rm-choice")).to_have_text(
            ["Asia Pacific", "Europe", "Americas"]
        )
        await expect(shown.nth(4).locator(".rm-card-title")).to_have_text(["Starter", "Business"])
        await expect(shown.nth(4).locator(".rm-card-img")).to_have_js_property("naturalWidth", 160)
        # The visitor got each reply once, in order; the inbox showed each once although it
        # had it twice (the send's ack and the room's message_received), by seq.
        replies = [m for m in visitor.of("message_received") if m["sender_type"] == "agent"]
        assert [m["seq"] for m in replies] == [2, 3, 4, 5]
        seqs = await shown.evaluate_all("els => els.map(e => +e.dataset.seq)")
        assert seqs == [1, 2, 3, 4, 5]
        await inbox.filter("mine")
        await expect(inbox.item(conv)).to_be_visible()
        await page.screenshot(path=artifacts / "inbox-conversation.png")


async def test_agent_sends_an_uploaded_image_and_file_and_the_visitor_receives_them(
    browser, factory, artifacts
):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "Here is my problem", name="Ada")

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await inbox.open(conv)
        await page.click("#claim")
        await expect(page.locator("#claim")).to_be_hidden()

        await page.fill("#composer-text", "This screen")
        await page.set_input_files(
            "#file-input",
            files=[{"name": "screen.png", "mimeType": "image/png", "buffer": png(200, 120)}],
        )
        (image,) = await visitor.wait_for(
            "message_received", lambda m: m["content_type"] == "image"
        )
        assert image["content"] == "This screen"
        assert image["rich_media"]["alt"] == "This screen"
        assert re.fullmatch(r"/uploads/[^/]+/screen\.png", image["rich_media"]["url"])

        await page.set_input_files(
            "#file-input",
            files=[{"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": PDF}],
        )
        (file,) = await visitor.wait_for("message_received", lambda m: m["content_type"] == "file")
        media = file["rich_media"]
        assert file["content"] == "invoice.pdf"
        assert (media["filename"], media["size"], media["mime_type"]) == (
            "invoice.pdf",
            len(PDF),
            "application/pdf",
        )
        assert re.fullmatch(r"/uploads/[^/]+/invoice\.pdf", media["url"])
        async with factory.http.get(factory.url + media["url"]) as resp:
            assert resp.status == 200 and await resp.read() == PDF

        shown = inbox.messages()
        await expect(shown.nth(1).locator(".rm-image img")).to_have_js_property("naturalWidth", 200)
        link = shown.nth(2).locator("a.rm-filecard")
        await expect(link.locator(".rm-filename")).to_have_text("invoice.pdf")
        await expect(link.locator(".rm-filesize")).to_have_text(f"{len(PDF)} B · Download")
        await expect(link).to_have_attribute("href", media["url"])
        await page.screenshot(path=artifacts / "inbox-uploads.png")


# ---- typing, presence ------------------------------------------------------------------------


async def test_typing_indicators_go_both_ways(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "Hi", name="Ada")
    typing = {
        "conversation_id": conv["id"],
        "sender_type": "end_user",
        "external_id": conv["end_user"]["external_id"],
    }

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await inbox.open(conv)
        await page.click("#claim")
        await expect(page.locator("#claim")).to_be_hidden()
        indicator = page.locator("#typing")
        await expect(indicator).to_be_hidden()

        # The visitor keeps typing until the inbox shows it, then stops: the server's
        # typing_cleared (after the typing timeout) hides it again.
        stop = asyncio.Event()

        async def keep_typing() -> None:
            while not stop.is_set():
                await visitor.emit("user_typing", typing)
                await asyncio.sleep(0.2)

        typist = asyncio.create_task(keep_typing())
        try:
            await expect(indicator).to_have_text("Ada is typing…")
        finally:
            stop.set()
            await typist
        await expect(indicator).to_be_hidden()

        await page.locator("#composer-text").press_sequentially("On it")
        (shown,) = await visitor.wait_for("typing_indicator")
        assert shown == {"conversation_id": conv["id"], "sender_type": "agent"}
        await page.press("#composer-text", "Enter")
        await visitor.wait_for("message_received", lambda m: m["content"] == "On it")
        await visitor.wait_for("typing_cleared")


async def test_the_team_list_shows_colleagues_come_online_and_go_offline(
    browser, factory, artifacts
):
    org = await factory.org()
    agent = await factory.agent(org)
    colleague = await factory.agent(org)

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page

        def member(who: Agent):
            return page.locator(f'#team-list .member[data-agent-id="{who.user_id}"]')

        await expect(member(agent)).to_have_attribute("data-status", "online")
        await expect(member(agent).locator(".member-you")).to_have_text("(you)")
        await expect(member(colleague)).to_have_attribute("data-status", "offline")
        await expect(member(colleague).locator(".member-name")).to_have_text(
            display_name(colleague)
        )

        async with signed_in(browser, factory, colleague):
            await expect(member(colleague)).to_have_attribute("data-status", "online")
            await page.screenshot(path=artifacts / "inbox-presence.png")
        await expect(member(colleague)).to_have_attribute("data-status", "offline")

        # Someone who joined the team after the page loaded is named, not shown as an id.
        newcomer = await factory.agent(org, role="admin")
        await factory.client(newcomer)
        await expect(member(newcomer)).to_have_attribute("data-status", "online")
        await expect(member(newcomer).locator(".member-name")).to_have_text(display_name(newcomer))
        await expect(member(newcomer).locator(".member-role")).to_have_text("admin")


# ---- resolving, CSRF, signing out ------------------------------------------------------------


async def test_resolving_with_tags_sends_the_csrf_token_and_closes_the_session(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "Refund please", name="Ada")

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await inbox.open(conv)
        await page.click("#claim")
        await expect(page.locator("#resolve-form")).to_be_visible()
        await page.fill("#resolve-tags", "billing, refund ,")

        async with page.expect_response(lambda r: r.url.endswith("/resolve")) as answered:
            await page.click("#resolve")
        response = await answered.value
        assert response.request.headers["x-csrftoken"] == await inbox.csrf_meta()
        assert response.status == 200
        body = await response.json()
        assert (body["status"], body["tags"]) == ("resolved", ["billing", "refund"])

        (event,) = await visitor.wait_for("conversation_resolved")
        assert event["tags"] == ["billing", "refund"]
        status, now = await factory.get(f"/api/conversations/{conv['id']}", agent)
        assert status == 200 and now["active_session"] is None
        await expect(page.locator("#conv-meta")).to_have_text(
            re.compile(r"^Resolved · tags: billing, refund")
        )
        await expect(page.locator("#resolve-form")).to_be_hidden()
        await expect(page.locator("#message-list .system-line")).to_have_text(
            "Resolved with tags: billing, refund"
        )
        await inbox.filter("mine")
        await expect(inbox.item(conv)).to_have_count(0)
        await inbox.filter("all")
        await expect(inbox.item(conv).locator(".conv-status")).to_have_text("Resolved")

        # The visitor writes again: a new session, back in Unassigned.
        await factory.visitor_send(visitor, conv, "One more thing")
        await inbox.filter("unassigned")
        await expect(inbox.item(conv).locator(".conv-status")).to_have_text("Unassigned")


async def test_signing_out_posts_the_csrf_token_and_ends_the_session(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        (cookie,) = [c for c in await inbox.context.cookies() if c["name"] == "session"]
        async with page.expect_request(lambda r: r.url.endswith("/auth/logout")) as sent:
            await page.click("#sign-out")
        request = await sent.value
        assert request.method == "POST"
        assert request.headers["x-csrftoken"] == await csrf_of(factory, cookie["value"])
        await expect(page).to_have_url(re.compile(r"/auth/login$"))

        async with factory.http.get(
            factory.url + "/api/me", headers={"Cookie": f"session={cookie['value']}"}
        ) as resp:
            assert resp.status == 401
        await page.goto(factory.url + "/inbox")
        await expect(page).to_have_url(re.compile(r"/auth/login\?next=/inbox$"))


async def csrf_of(factory: Factory, session: str) -> str:
    """The CSRF token the server derives for a session (what the page's meta carries)."""
    return factory.services.auth.csrf_token(session)


# ---- history, reconnects, hostile content ----------------------------------------------------


async def test_history_pages_back_with_load_older(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await factory.conversation(org, name="Ada")
    await stored_visitor_messages(factory, conv, [f"message {n:03}" for n in range(1, 121)])

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await inbox.open(conv)
        texts = inbox.messages().locator(".rm-text")
        await expect(texts).to_have_count(50)
        await expect(texts.first).to_have_text("message 071")
        await expect(texts.last).to_have_text("message 120")

        await page.click("#load-older")
        await expect(texts).to_have_count(100)
        await expect(texts.first).to_have_text("message 021")
        await page.click("#load-older")
        await expect(texts).to_have_count(120)
        await expect(texts.first).to_have_text("message 001")
        await expect(page.locator("#load-older")).to_be_hidden()
        seqs = await inbox.messages().evaluate_all("els => els.map(e => +e.dataset.seq)")
        assert seqs == list(range(1, 121))

        visitor = await factory.visitor(conv)
        await factory.visitor_send(visitor, conv, "and a live one")
        await expect(texts).to_have_count(121)
        await expect(texts.last).to_have_text("and a live one")


async def test_after_a_dropped_connection_the_inbox_rejoins_and_shows_what_it_missed(
    browser, factory
):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "before", name="Ada")

    async with signed_in(browser, factory, agent, routed=True) as inbox:
        page = inbox.page
        await inbox.open(conv)
        await expect(inbox.messages()).to_have_count(1)
        await expect(page.locator("body")).to_have_attribute("data-connections", "1")

        await inbox.cut_websockets()
        await stored_visitor_messages(factory, conv, ["while away 1", "while away 2"])

        await expect(page.locator("body")).to_have_attribute("data-connections", "2")
        texts = inbox.messages().locator(".rm-text")
        await expect(texts).to_have_text(["before", "while away 1", "while away 2"])
        # Back in the room: live messages arrive again.
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await factory.visitor_send(visitor, conv, "after")
        await expect(texts).to_have_text(["before", "while away 1", "while away 2", "after"])


async def test_message_text_and_names_are_shown_as_text_never_as_html(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    attack = '<img src=x onerror="document.body.dataset.pwned=1">'
    name = "<b onmouseover=alert(1)>Eve</b>"
    conv, visitor = await visitor_writes(factory, org, attack, name=name)
    await factory.visitor_send(
        visitor,
        conv,
        "<script>document.body.dataset.pwned=2</script>",
        content_type="quick_button",
        rich_media={"buttons": [{"label": attack, "value": "<i>v</i>"}]},
    )

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        item = inbox.item(conv)
        await expect(item.locator(".conv-name")).to_have_text(name)
        await inbox.open(conv)
        shown = inbox.messages()
        await expect(shown.nth(0).locator(".rm-text")).to_have_text(attack)
        await expect(shown.nth(0).locator(".msg-sender")).to_have_text(name)
        await expect(shown.nth(1).locator(".rm-text")).to_have_text(
            "<script>document.body.dataset.pwned=2</script>"
        )
        await expect(shown.nth(1).locator(".rm-choice")).to_have_text(attack)
        await factory.visitor_send(visitor, conv, attack + " again")
        await expect(shown.nth(2).locator(".rm-text")).to_have_text(attack + " again")
        await expect(item.locator(".conv-preview")).to_have_text(attack + " again")

        for selector in ("#message-list img", "#message-list script", "#message-list b"):
            assert await page.locator(selector).count() == 0, selector
        assert await page.locator("#conversation-list b, #conversation-list img").count() == 0
        assert await page.evaluate("document.body.dataset.pwned") is None


# ---- the whole flow: the visitor in the real widget, the agent in the inbox -------------------


async def test_visitor_in_widget_and_agent_in_inbox_full_flow(
    browser, factory, host_site, artifacts, image_host
):
    org = await factory.org(allowed_origins=[host_site.origin])
    agent = await factory.agent(org)
    snippet = (
        f'<script src="{factory.url}/chat-widget/embed.js" '
        f'data-embed-token="{org.embed_token}"></script>'
    )
    site = host_site.page(
        f"<!doctype html><html><head><title>Shop</title></head>"
        f"<body><h1>Our shop</h1>{snippet}</body></html>"
    )

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        visitor_context = await browser.new_context(viewport={"width": 1100, "height": 760})
        try:
            shop = await visitor_context.new_page()
            await shop.goto(site)
            await shop.click('[data-chat-widget="launcher"]')
            widget = shop.frame_locator('[data-chat-widget="frame"]')
            await expect(widget.locator("body")).to_have_attribute("data-connection", "online")

            # The visitor writes; the conversation appears in Unassigned, live.
            await widget.locator(".cw-input").fill("Hi, I was charged twice")
            await widget.locator(".cw-input").press("Enter")
            item = page.locator("#conversation-list .conv-item")
            await expect(item).to_have_count(1)
            await expect(item.locator(".conv-preview")).to_have_text("Hi, I was charged twice")
            await expect(page).to_have_title("(1) Inbox")
            conv_id = await item.get_attribute("data-id")

            # The agent claims it and opens it.
            await item.locator(".conv-claim").click()
            await expect(page.locator("#conv-meta")).to_contain_text("Assigned to you")
            await expect(inbox.messages().locator(".rm-text")).to_have_text(
                ["Hi, I was charged twice"]
            )

            # Typing, both ways.
            # The widget throttles its typing events: keep typing until the inbox shows it.
            async with typing_in(widget.locator(".cw-input")):
                await expect(page.locator("#typing")).to_be_visible()
            await widget.locator(".cw-input").fill("")
            await expect(page.locator("#typing")).to_be_hidden()
            async with typing_in(page.locator("#composer-text")):
                await expect(widget.locator(".cw-typing")).to_be_visible()
            await page.fill("#composer-text", "Sorry about that")
            await page.press("#composer-text", "Enter")
            theirs = widget.locator('.cw-msg[data-sender="agent"]')
            await expect(theirs.last.locator(".rm-text")).to_have_text("Sorry about that")

            # Quick buttons: the visitor's click is their reply.
            await page.select_option("#composer-type", "quick_button")
            await page.fill("#composer-text", "Was it the annual plan?")
            await fill_rows(page, "#rich-editor", [("Yes", "annual"), ("No", "monthly")])
            await page.click("#send")
            await expect(page.locator("#composer-type")).to_have_value("text")  # acked
            await widget.locator(".rm-choice", has_text="Yes").click()
            # The reply carries the value; both sides show the label that was picked.
            picked = inbox.messages().last.locator(".rm-text")
            await expect(picked).to_have_text("Yes")
            await expect(picked).to_have_attribute("data-value", "annual")
            await expect(widget.locator(".cw-mine .rm-text").last).to_have_text("Yes")

            # Dropdown: the visitor's choice is their reply.
            await page.select_option("#composer-type", "dropdown")
            await page.fill("#composer-text", "Which card?")
            await page.fill("#dropdown-placeholder", "-- pick one --")
            await fill_rows(page, "#rich-editor", [("Visa", "visa"), ("Mastercard", "mc")])
            await page.click("#send")
            await expect(page.locator("#composer-type")).to_have_value("text")  # acked
            await widget.locator(".rm-select").select_option("mc")
            picked = inbox.messages().last.locator(".rm-text")
            await expect(picked).to_have_text("Mastercard")
            await expect(picked).to_have_attribute("data-value", "mc")
            await expect(widget.locator(".cw-mine .rm-text").last).to_have_text("Mastercard")

            # Carousel: a card's button is a reply too.
            await page.select_option("#composer-type", "carousel")
            await page.fill("#composer-text", "Refund or credit?")
            card = page.locator("#rich-editor .card-editor").first
            await card.locator(".card-title-input").fill("Refund")
            await card.locator(".card-subtitle-input").fill("Back to your card in 3 days")
            await card.locator(".card-image-input").fill(f"{image_host}/refund.png")
            await fill_rows(page, "#rich-editor .card-editor >> nth=0", [("Refund me", "refund")])
            await page.click("#send")
            await expect(page.locator("#composer-type")).to_have_value("text")  # acked
            await widget.locator(".rm-card .rm-choice", has_text="Refund me").click()
            picked = inbox.messages().last.locator(".rm-text")
            await expect(picked).to_have_text("Refund me")
            await expect(picked).to_have_attribute("data-value", "refund")
            await expect(widget.locator(".cw-mine .rm-text").last).to_have_text("Refund me")

            # An uploaded image, shown in the widget.
            await page.set_input_files(
                "#file-input",
                files=[{"name": "receipt.png", "mimeType": "image/png", "buffer": png(240, 140)}],
            )
            shown = widget.locator('.cw-msg[data-sender="agent"][data-type="image"] img')
            await expect(shown).to_have_js_property("naturalWidth", 240)

            # Resolved with tags, in the REST state as well.
            await page.fill("#resolve-tags", "billing, refund")
            await page.click("#resolve")
            await expect(page.locator("#conv-meta")).to_have_text(
                re.compile(r"^Resolved · tags: billing, refund")
            )
            status, now = await factory.get(f"/api/conversations/{conv_id}", agent)
            assert status == 200 and now["active_session"] is None
            contents = [
                (m["sender_type"], m["content_type"], m["content"])
                for m in (await factory.get(f"/api/conversations/{conv_id}/messages", agent))[1]
            ]
            assert contents == [
                ("end_user", "text", "Hi, I was charged twice"),
                ("agent", "text", "Sorry about that"),
                ("agent", "quick_button", "Was it the annual plan?"),
                ("end_user", "text", "annual"),
                ("agent", "dropdown", "Which card?"),
                ("end_user", "text", "mc"),
                ("agent", "carousel", "Refund or credit?"),
                ("end_user", "text", "refund"),
                ("agent", "image", ""),
            ]
            await page.screenshot(path=artifacts / "inbox-full-flow-agent.png")
            await shop.screenshot(path=artifacts / "inbox-full-flow-visitor.png")
        finally:
            await visitor_context.close()


# ---- helpers -----------------------------------------------------------------------------


@asynccontextmanager
async def typing_in(field):
    """Keep typing into a field (a key every 0.2 s) while the body runs."""
    stop = asyncio.Event()

    async def typist() -> None:
        while not stop.is_set():
            await field.press("x")
            await asyncio.sleep(0.2)

    task = asyncio.create_task(typist())
    try:
        yield
    finally:
        stop.set()
        await task


def display_name(agent: Agent) -> str:
    return agent.email.split("@")[0]


@pytest.fixture
async def image_host(aiohttp_server):
    """Another site serving real PNGs, for carousel cards that point at external images."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=png(160, 100), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    srv = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{srv.port}"


# ---- what the agent reads: names, states, picked choices --------------------------------------


async def test_a_conversation_opened_but_never_written_in_is_new_not_resolved(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    untouched = await factory.conversation(org)  # the widget opened it; nobody wrote
    resolved, _visitor = await visitor_writes(factory, org, "Thanks, all good")
    owner = await factory.owner(org)
    status, _ = await factory.post(f"/api/conversations/{resolved['id']}/resolve", owner)
    assert status == 200

    async with signed_in(browser, factory, agent) as inbox:
        await inbox.filter("all")
        await expect(inbox.item(untouched).locator(".conv-status")).to_have_text(
            "New · no messages yet"
        )
        await expect(inbox.item(untouched)).to_have_attribute("data-state", "new")
        await expect(inbox.item(resolved).locator(".conv-status")).to_have_text("Resolved")


async def test_an_unnamed_visitor_is_visitor_and_hex_with_the_full_id_in_the_header(
    browser, factory
):
    org = await factory.org()
    agent = await factory.agent(org)
    session_id = "9f2c4e1ab37d4c0e8a5b6c7d8e9f0a1b"  # as the widget's loader makes them
    conv = await factory.conversation(org, external_id=session_id)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "Anyone there?")
    # An app's own id, not hex: shown by the hex of its bytes ("app-user-7" -> 6170702d…).
    app_conv = await factory.conversation(org, external_id="app-user-7")
    app_visitor = await factory.visitor(app_conv)
    await factory.visitor_send(app_visitor, app_conv, "Hello from the app")

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await expect(inbox.item(conv).locator(".conv-name")).to_have_text("Visitor 9f2c4e1a")
        await expect(inbox.item(app_conv).locator(".conv-name")).to_have_text("Visitor 6170702d")
        await inbox.open(conv)
        await expect(page.locator("#conv-title")).to_have_text("Visitor 9f2c4e1a")
        await expect(page.locator("#conv-meta")).to_contain_text(f"visitor id {session_id}")
        await expect(inbox.messages().last.locator(".msg-sender")).to_have_text("Visitor 9f2c4e1a")
        # The visitor keeps typing until it shows (as in the typing test above): one event
        # sent before the opened conversation's room was joined would be missed, as typing is.
        stop = asyncio.Event()

        async def keep_typing() -> None:
            while not stop.is_set():
                await visitor.emit(
                    "user_typing",
                    {
                        "conversation_id": conv["id"],
                        "sender_type": "end_user",
                        "external_id": session_id,
                    },
                )
                await asyncio.sleep(0.2)

        typist = asyncio.create_task(keep_typing())
        try:
            await expect(page.locator("#typing")).to_have_text("Visitor 9f2c4e1a is typing…")
        finally:
            stop.set()
            await typist

        await inbox.open(app_conv)
        await expect(page.locator("#conv-title")).to_have_text("Visitor 6170702d")
        await expect(page.locator("#conv-meta")).to_contain_text(
            "visitor id " + b"app-user-7".hex()
        )
        await expect(inbox.messages().last.locator(".msg-sender")).to_have_text("Visitor 6170702d")


async def test_a_visitors_picked_choice_reads_as_its_label_in_the_inbox(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv, visitor = await visitor_writes(factory, org, "Which colours?", name="Ada")
    agent_client = await factory.client(agent)
    ack = await factory.agent_send(
        agent_client,
        conv,
        "Pick a colour:",
        content_type="quick_button",
        rich_media={
            "buttons": [
                {"label": "Sky blue", "value": "colour-blue"},
                {"label": "Red", "value": "colour-red"},
            ]
        },
    )
    assert "error" not in ack, ack
    # The widget sends the value as the visitor's reply (the contract).
    await factory.visitor_send(visitor, conv, "colour-blue")

    async with signed_in(browser, factory, agent) as inbox:
        await inbox.filter("all")
        await inbox.open(conv)
        reply = inbox.messages().last
        await expect(reply.locator(".rm-text")).to_have_text("Sky blue")
        await expect(reply.locator(".rm-text")).to_have_attribute("data-value", "colour-blue")


# ---- the console around the inbox ---------------------------------------------------------------


async def test_an_admin_creates_an_embed_token_and_sees_its_snippet_once(
    browser, factory, artifacts
):
    org = await factory.org()
    owner = await factory.owner(org)

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        await page.click('.console-nav a[data-nav="integrations"]')
        await expect(page).to_have_url(re.compile(r"/inbox#integrations$"))
        await expect(page.locator("#channel-table tbody tr")).not_to_have_count(0)
        await page.fill('#token-form input[name="name"]', "Shop")
        await page.fill('#token-form input[name="allowed_origins"]', "https://shop.example")
        await page.click('#token-form button[type="submit"]')
        token = page.locator("#new-token-value")
        await expect(token).not_to_be_empty()
        value = await token.text_content()
        await expect(page.locator("#new-token-snippet")).to_contain_text(
            f'data-embed-token="{value}"'
        )
        row = page.locator("#token-table tbody tr", has_text=value[:8])
        await expect(row).to_contain_text("https://shop.example")
        await page.screenshot(path=artifacts / "console-integrations.png")
        await row.locator("button", has_text="Revoke").click()
        await expect(row).to_contain_text("Revoked")

        await page.click('.console-nav a[data-nav="team"]')
        await page.fill('#user-form input[name="display_name"]', "Grace")
        await page.fill('#user-form input[name="email"]', f"grace-{value[:6]}@example.com")
        await page.fill('#user-form input[name="password"]', "correct horse battery")
        await page.click('#user-form button[type="submit"]')
        await expect(page.locator("#team-table tbody")).to_contain_text("Grace")

        await page.click('.console-nav a[data-nav="settings"]')
        await expect(page.locator("#profile-email")).to_have_text(owner.email)
        await page.click('.console-nav a[data-nav="inbox"]')
        await expect(page.locator(".filters")).to_be_visible()


async def test_an_admin_creates_an_api_key_that_works_until_revoked_in_the_console(
    browser, factory
):
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await factory.conversation(org)

    async def v1_status(key: str) -> int:
        async with factory.http.get(
            f"{factory.url}/api/v1/conversations/{conv['id']}",
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            return resp.status

    async with signed_in(browser, factory, owner) as inbox:
        page = inbox.page
        await page.click('.console-nav a[data-nav="integrations"]')
        await page.fill('#api-key-form input[name="name"]', "Game backend")
        await page.uncheck('#api-key-form input[value="conversations:write"]')
        await page.click('#api-key-form button[type="submit"]')
        shown = page.locator("#new-api-key-value")
        await expect(shown).to_have_text(re.compile(r"^ck_"))
        key = await shown.text_content()
        row = page.locator("#api-key-table tbody tr", has_text="Game backend")
        await expect(row).to_contain_text("conversations:read")
        await expect(row).not_to_contain_text("conversations:write")
        await expect(row).to_contain_text(key[:9])
        assert key not in await page.locator("#api-key-table").inner_text()

        assert await v1_status(key) == 200
        await page.reload()  # the key is not shown again, only its prefix
        await expect(page.locator("#new-api-key")).to_be_hidden()
        await expect(row).to_contain_text("Active")
        await row.locator("button", has_text="Revoke").click()
        await expect(row).to_contain_text("Revoked")
        assert await v1_status(key) == 401


async def test_an_agent_sees_no_admin_pages_or_controls(browser, factory):
    org = await factory.org()
    agent = await factory.agent(org)

    async with signed_in(browser, factory, agent) as inbox:
        page = inbox.page
        await expect(page.locator('.console-nav a[data-nav="integrations"]')).to_be_hidden()
        await page.click('.console-nav a[data-nav="team"]')
        mine = page.locator(f'#team-table tbody tr[data-user-id="{agent.user_id}"]')
        await expect(mine).to_contain_text("(you)")
        await expect(mine.locator(".presence")).to_have_attribute("data-status", "online")
        # A colleague comes online: the row follows, without a reload.
        owner = await factory.owner(org)
        theirs = page.locator(f'#team-table tbody tr[data-user-id="{owner.user_id}"]')
        await expect(theirs.locator(".presence")).to_have_attribute("data-status", "offline")
        colleague = await factory.client(owner)
        await expect(theirs.locator(".presence")).to_have_attribute("data-status", "online")
        await colleague.client.disconnect()
        await expect(page.locator("#user-form")).to_be_hidden()
        await page.goto(factory.url + "/inbox#integrations")
        await expect(page.locator('[data-page="integrations"]')).to_be_hidden()
        await page.click('.console-nav a[data-nav="settings"]')
        await page.click("#settings-sign-out")
        await expect(page).to_have_url(re.compile(r"/auth/login"))
