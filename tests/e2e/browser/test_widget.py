"""The web embed in real headless Chromium: the guide's snippet on a host page of another
origin, a visitor in the widget, an agent on a real Socket.IO client.

The host site is http://localhost:<port>; the chat server is http://127.0.0.1:<port>.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re

import aiohttp
from playwright.async_api import Frame, FrameLocator, Page, expect

from chatd.app import create_app
from chatd.wiring import build_services
from rest.keys import SIO
from server import rooms
from server.actors import AgentActor
from server.services.conversations import NewMessage
from tests.factories import Agent, Factory, Org, Recorder
from tests.uploads import PDF, png

WAIT_MS = 15_000
FRAME = 'iframe[data-chat-widget="frame"]'
LAUNCHER = 'button[data-chat-widget="launcher"]'
BADGE = '[data-chat-widget="badge"]'
XSS = '<img src=x onerror="document.body.dataset.pwned=1">'


def host_html(server_url: str, token: str, extra_attrs: str = "") -> str:
    """A customer's page with the guide's snippet just before </body>. It records what the
    widget posts to it, and which globals existed before the loader ran."""
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Acme Outdoor – Tents</title><link rel="icon" href="data:,">
<style>
body {{ font: 16px/1.5 Georgia, serif; margin: 0; color: #222; background: #faf7f2; }}
header {{ background: #2f4f3a; color: #fff; padding: 18px 40px; font-size: 22px; }}
main {{ padding: 30px 40px; max-width: 640px; }}
.product {{ background: #fff; border: 1px solid #e5dfd3; border-radius: 8px; padding: 16px;
            margin: 0 0 16px; }}
</style></head>
<body>
<header>Acme Outdoor</header>
<main>
<h1>Tents for every season</h1>
<div class="product"><h2>Summit 2</h2><p>Two-person, 1.6 kg, three seasons.</p></div>
<div class="product"><h2>Basecamp 4</h2><p>Four-person, 4.2 kg, storm rated.</p></div>
<p>Questions? Our team answers in the chat.</p>
</main>
<script>
  window.cwEvents = [];
  window.addEventListener("message", function (e) {{
    if (e.data && e.data.source === "chat-widget") window.cwEvents.push(e.data);
  }});
  document.documentElement.setAttribute(
    "data-globals-before", JSON.stringify(Object.getOwnPropertyNames(window)));
</script>
<!-- Chat widget loader -->
<script
  src="{server_url}/chat-widget/embed.js"
  data-embed-token="{token}"{extra_attrs}
></script>
</body>
</html>"""


class Visitor:
    """The host page in the browser and the widget inside it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.widget: FrameLocator = page.frame_locator(FRAME)

    async def open(self) -> None:
        await self.page.click(LAUNCHER)
        await expect(self.page.locator(FRAME)).to_be_visible(timeout=WAIT_MS)
        await self.wait_event("opened")
        await expect(self.widget.locator("body[data-connection=online]")).to_have_count(
            1, timeout=WAIT_MS
        )

    async def frame(self) -> Frame:
        handle = await self.page.wait_for_selector(FRAME, state="attached")
        frame = await handle.content_frame()
        assert frame is not None
        return frame

    async def write(self, text: str) -> None:
        await self.widget.locator(".cw-input").fill(text)
        await self.widget.locator(".cw-input").press("Enter")
        bubble = self.widget.locator(".cw-mine[data-seq] .rm-text", has_text=text)
        await expect(bubble).to_have_count(1, timeout=WAIT_MS)

    def message(self, content_type: str, text: str | None = None):
        loc = self.widget.locator(f'.cw-theirs[data-type="{content_type}"]')
        return loc.filter(has_text=text) if text else loc

    async def events(self) -> list[dict]:
        return await self.page.evaluate("window.cwEvents")

    async def wait_event(self, type_: str, nth: int = 1, **fields) -> dict:
        """Wait until the host page heard `nth` events of this type (with these fields)."""
        await self.page.wait_for_function(
            """([type, nth, fields]) => window.cwEvents.filter(e => e.type === type &&
                 Object.entries(fields).every(([k, v]) => e[k] === v)).length >= nth""",
            arg=[type_, nth, fields],
            timeout=WAIT_MS,
        )
        matching = [
            e
            for e in await self.events()
            if e["type"] == type_ and all(e.get(k) == v for k, v in fields.items())
        ]
        return matching[-1]


async def new_visitor(browser, url: str, errors: list[str] | None = None) -> Visitor:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
    await page.goto(url)
    await expect(page.locator(LAUNCHER)).to_be_visible()
    return Visitor(page)


async def agent_inbox(factory: Factory, org: Org) -> tuple[Agent, Recorder]:
    agent = await factory.agent(org)
    inbox = await factory.client(agent)
    assert await inbox.call("join_queue") == {"organization_id": org.org_id}
    return agent, inbox


async def claim_first(inbox: Recorder, content: str) -> str:
    """The agent sees the visitor's first message in the queue and claims the conversation."""
    (update,) = await inbox.wait_for(
        "conversation_updated", lambda d: d["content"] == content, timeout=10
    )
    cid = update["conversation_id"]
    ack = await inbox.call("claim_conversation", {"conversation_id": cid})
    assert "error" not in ack, ack
    return cid


async def agent_says(inbox: Recorder, cid: str, content: str, content_type="text", media=None):
    payload = {
        "conversation_id": cid,
        "content": content,
        "content_type": content_type,
        "sender_type": "agent",
    }
    if media is not None:
        payload["rich_media"] = media
    ack = await inbox.call("send_message", payload)
    assert "error" not in ack, ack
    return ack


async def visitor_reply(inbox: Recorder, content: str, content_type: str = "text") -> dict:
    (msg,) = await inbox.wait_for(
        "message_received",
        lambda d: (
            d["sender_type"] == "end_user"
            and d["content_type"] == content_type
            and (content_type != "text" or d["content"] == content)
        ),
        timeout=10,
    )
    return msg


async def agent_upload(factory: Factory, agent: Agent, data: bytes, name: str, ctype: str):
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type=ctype)
    async with factory.http.post(
        factory.url + "/api/uploads", headers=agent.headers, data=form
    ) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


# ---- the whole flow --------------------------------------------------------------------------


async def test_visitor_and_agent_chat_with_every_message_type(
    browser, host_site, factory, artifacts
):
    org = await factory.org(allowed_origins=[host_site.origin])
    agent, inbox = await agent_inbox(factory, org)
    errors: list[str] = []
    visitor = await new_visitor(
        browser, host_site.page(host_html(factory.url, org.embed_token)), errors
    )
    page = visitor.page

    # The loader adds a launcher and nothing else: no iframe, no globals.
    assert await page.locator(FRAME).count() == 0
    before = json.loads(await page.get_attribute("html", "data-globals-before"))
    after = await page.evaluate("Object.getOwnPropertyNames(window)")
    assert sorted(set(after) - set(before)) == []
    sid = await page.evaluate(f"localStorage.getItem('cw_sid_{org.embed_token}')")
    assert re.fullmatch(r"[0-9a-f]{32}", sid)

    await visitor.open()
    ready = await visitor.wait_event("ready")
    src = await page.get_attribute(FRAME, "src")
    assert src.startswith(factory.url + "/chat-widget?embed_token=")
    assert f"session_id={sid}" in src
    box = await page.locator(FRAME).bounding_box()
    assert (box["width"], box["height"]) == (380, 560)
    assert box["x"] + box["width"] == 1280 - 20  # bottom-right

    await visitor.write("Hello from the widget")
    cid = await claim_first(inbox, "Hello from the widget")
    assert cid == ready["conversation_id"]
    status, conv = await factory.get(f"/api/conversations/{cid}", agent)
    assert status == 200 and conv["end_user"]["external_id"] == sid

    # Typing, both ways.
    await inbox.emit("user_typing", {"conversation_id": cid, "sender_type": "agent"})
    await expect(visitor.widget.locator(".cw-typing")).to_be_visible(timeout=WAIT_MS)
    await agent_says(inbox, cid, "Hi! How can I help you today?")
    await expect(visitor.message("text", "How can I help you today?")).to_have_count(1)
    await expect(visitor.widget.locator(".cw-typing")).to_be_hidden()
    await visitor.widget.locator(".cw-input").press_sequentially("Do you ship")
    (typing,) = await inbox.wait_for(
        "typing_indicator", lambda d: d["sender_type"] == "end_user", timeout=10
    )
    assert typing == {"conversation_id": cid, "sender_type": "end_user"}
    await visitor.widget.locator(".cw-input").fill("")

    # Text is text, never HTML.
    await agent_says(inbox, cid, XSS)
    bubble = visitor.message("text", "onerror")
    await expect(bubble).to_have_count(1, timeout=WAIT_MS)
    assert await bubble.locator(".rm-text").text_content() == XSS
    assert await bubble.locator("img").count() == 0

    # Quick buttons: a click sends the button's value.
    await agent_says(
        inbox,
        cid,
        "Is this about an order?",
        "quick_button",
        {"buttons": [{"label": "Yes", "value": "yes"}, {"label": XSS, "value": "no"}]},
    )
    buttons = visitor.message("quick_button", "Is this about an order?")
    await expect(buttons.locator("button.rm-choice")).to_have_count(2, timeout=WAIT_MS)
    assert await buttons.locator("button.rm-choice").nth(1).text_content() == XSS
    await buttons.locator("button.rm-choice", has_text="Yes").click()
    await visitor_reply(inbox, "yes")

    # Dropdown: placeholder, options; a choice sends its value.
    await agent_says(
        inbox,
        cid,
        "Select your region:",
        "dropdown",
        {
            "placeholder": "-- pick one --",
            "options": [
                {"label": "Asia Pacific", "value": "apac"},
                {"label": "Europe", "value": "eu"},
            ],
        },
    )
    select = visitor.message("dropdown", "Select your region:").locator("select")
    await expect(select).to_have_count(1, timeout=WAIT_MS)
    assert await select.locator("option").all_text_contents() == [
        "-- pick one --",
        "Asia Pacific",
        "Europe",
    ]
    await select.select_option("eu")
    await visitor_reply(inbox, "eu")

    # Image and file, uploaded by the agent.
    photo = await agent_upload(factory, agent, png(320, 180), "summit-2.png", "image/png")
    manual = await agent_upload(factory, agent, PDF, "Summit 2 manual.pdf", "application/pdf")
    await agent_says(
        inbox, cid, "The Summit 2 pitched", "image", {"url": photo["url"], "alt": "Summit 2"}
    )
    await agent_says(
        inbox,
        cid,
        manual["filename"],
        "file",
        {
            "url": manual["url"],
            "filename": manual["filename"],
            "size": manual["size"],
            "mime_type": manual["mime_type"],
        },
    )
    image = visitor.message("image").locator("img")
    await expect(image).to_have_count(1, timeout=WAIT_MS)
    await expect(image).to_have_attribute("src", photo["url"])
    await expect(image).to_have_attribute("alt", "Summit 2")
    frame = await visitor.frame()
    await frame.wait_for_function(
        "() => [...document.querySelectorAll('.cw-theirs[data-type=image] img')]"
        ".every(img => img.complete && img.naturalWidth === 320)"
    )
    file_link = visitor.message("file").locator("a.rm-filecard")
    await expect(file_link).to_have_attribute("href", manual["url"], timeout=WAIT_MS)
    await expect(file_link).to_have_attribute("download", "Summit_2_manual.pdf")
    await expect(file_link.locator(".rm-filename")).to_have_text("Summit_2_manual.pdf")
    await expect(file_link.locator(".rm-filesize")).to_have_text(f"{len(PDF)} B · Download")

    # Carousel: cards with image, title, subtitle and buttons that send their value.
    await agent_says(
        inbox,
        cid,
        "",
        "carousel",
        {
            "cards": [
                {
                    "image_url": photo["url"],
                    "title": "Summit 2",
                    "subtitle": "1.6 kg, three seasons",
                    "buttons": [{"label": "Buy now", "value": "buy_summit"}],
                },
                {
                    "image_url": photo["url"],
                    "title": "Basecamp 4",
                    "subtitle": "Storm rated",
                    "buttons": [{"label": "Buy now", "value": "buy_basecamp"}],
                },
            ]
        },
    )
    cards = visitor.message("carousel").locator(".rm-card")
    await expect(cards).to_have_count(2, timeout=WAIT_MS)
    await expect(cards.nth(0).locator(".rm-card-title")).to_have_text("Summit 2")
    await expect(cards.nth(0).locator(".rm-card-sub")).to_have_text("1.6 kg, three seasons")
    await expect(cards.nth(0).locator("img")).to_have_attribute("src", photo["url"])
    await page.screenshot(path=artifacts / "widget-rich-messages.png")
    await page.locator(FRAME).screenshot(path=artifacts / "widget-frame-rich.png")
    await cards.nth(1).locator("button", has_text="Buy now").click()
    await visitor_reply(inbox, "buy_basecamp")

    # The visitor sends a file and an image.
    await visitor.widget.locator("input.cw-file").set_input_files(
        files=[{"name": "receipt.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    sent_file = await visitor_reply(inbox, "receipt.pdf", "file")
    assert sent_file["rich_media"]["filename"] == "receipt.pdf"
    assert sent_file["rich_media"]["mime_type"] == "application/pdf"
    assert sent_file["rich_media"]["size"] == len(PDF)
    async with factory.http.get(factory.url + sent_file["rich_media"]["url"]) as resp:
        assert resp.status == 200 and await resp.read() == PDF
    await visitor.widget.locator("input.cw-file").set_input_files(
        files=[{"name": "tent.png", "mimeType": "image/png", "buffer": png(64, 48)}]
    )
    sent_image = await visitor_reply(inbox, "", "image")
    assert sent_image["rich_media"]["url"].endswith("/tent.png")
    await expect(visitor.widget.locator(".cw-mine[data-type=image] img")).to_have_count(1)

    await agent_says(inbox, cid, "Thanks, we got both. Your tent ships today!")
    await expect(visitor.message("text", "ships today")).to_have_count(1, timeout=WAIT_MS)
    await page.screenshot(path=artifacts / "widget-open.png")

    # Nothing the agent sent ran as markup, and the page logged no error.
    assert await frame.evaluate("document.body.dataset.pwned") is None
    assert await frame.locator(".cw-failed").count() == 0
    assert errors == []


async def test_reloading_the_host_page_keeps_the_conversation(browser, host_site, factory):
    org = await factory.org()
    agent, inbox = await agent_inbox(factory, org)
    visitor = await new_visitor(browser, host_site.page(host_html(factory.url, org.embed_token)))
    await visitor.open()
    first_ready = await visitor.wait_event("ready")
    sid = await visitor.page.evaluate(f"localStorage.getItem('cw_sid_{org.embed_token}')")
    await visitor.write("Where is my order #1042?")
    cid = await claim_first(inbox, "Where is my order #1042?")
    await agent_says(inbox, cid, "It left the warehouse this morning.")
    await expect(visitor.message("text", "left the warehouse")).to_have_count(1, timeout=WAIT_MS)

    await visitor.page.reload()

    # Same visitor id, the chat opens again by itself (same tab), with its history.
    assert await visitor.page.evaluate(f"localStorage.getItem('cw_sid_{org.embed_token}')") == sid
    await visitor.wait_event("opened")
    ready = await visitor.wait_event("ready")
    assert ready["conversation_id"] == first_ready["conversation_id"] == cid
    widget = visitor.widget
    await expect(widget.locator(".cw-mine .rm-text")).to_have_text(["Where is my order #1042?"])
    await expect(widget.locator(".cw-theirs .rm-text")).to_have_text(
        ["It left the warehouse this morning."]
    )
    await visitor.write("Thanks!")
    await visitor_reply(inbox, "Thanks!")
    status, listed = await factory.get("/api/conversations/?filter=all", agent)
    assert status == 200 and [c["id"] for c in listed] == [cid]


async def test_widget_catches_up_after_the_server_restarts(
    browser, host_site, server, settings, aiohttp_server
):
    factory = Factory(server)
    try:
        org = await factory.org()
        agent, inbox = await agent_inbox(factory, org)
        visitor = await new_visitor(
            browser, host_site.page(host_html(factory.url, org.embed_token))
        )
        await visitor.open()
        await visitor.write("Is anyone there?")
        cid = await claim_first(inbox, "Is anyone there?")
        await agent_says(inbox, cid, "Yes, one moment.")
        await expect(visitor.message("text", "one moment")).to_have_count(1, timeout=WAIT_MS)
    finally:
        await factory.close()

    # The server goes away; the agent's replies are stored meanwhile (another process of the
    # platform writing to the same database, as behind the load balancer).
    port = server.port
    await server.close()
    await expect(visitor.widget.locator("body[data-connection=reconnecting]")).to_have_count(
        1, timeout=WAIT_MS
    )
    other = build_services(settings)
    await other.start()
    try:
        actor = AgentActor(agent.user_id, org.org_id, agent.role, agent.email)
        for text in ("Found your order.", "It ships tomorrow."):
            await other.conversations.send_message(actor, NewMessage(cid, text))
    finally:
        await other.close()

    # A new server on the same port: the widget reconnects, rejoins with last_seq, and shows
    # what it missed, once, in order.
    restarted = await aiohttp_server(create_app(settings), host="127.0.0.1", port=port)
    restarted.base_url = str(restarted.make_url("")).rstrip("/")
    factory = Factory(restarted)
    try:
        await expect(visitor.widget.locator("body[data-connection=online]")).to_have_count(
            1, timeout=WAIT_MS
        )
        await expect(visitor.widget.locator(".cw-theirs .rm-text")).to_have_text(
            ["Yes, one moment.", "Found your order.", "It ships tomorrow."], timeout=WAIT_MS
        )
        # And it is live again, both ways.
        inbox = await factory.client(agent)
        await inbox.call("join_conversation", {"conversation_id": cid})
        await agent_says(inbox, cid, "Anything else?")
        await expect(visitor.message("text", "Anything else?")).to_have_count(1, timeout=WAIT_MS)
        await visitor.write("No, thank you")
        await visitor_reply(inbox, "No, thank you")
        seqs = await visitor.widget.locator(".cw-msg[data-seq]").evaluate_all(
            "els => els.map(e => Number(e.dataset.seq))"
        )
        assert seqs == sorted(set(seqs)) and seqs == list(range(1, len(seqs) + 1))
    finally:
        await factory.close()


async def test_widget_rejoins_after_the_server_drops_its_socket(browser, host_site, factory):
    org = await factory.org()
    agent, inbox = await agent_inbox(factory, org)
    visitor = await new_visitor(browser, host_site.page(host_html(factory.url, org.embed_token)))
    await visitor.open()
    await visitor.write("Hello?")
    cid = await claim_first(inbox, "Hello?")
    sio = factory.server.app[SIO]
    agent_sid = inbox.client.get_sid("/")
    (visitor_sid,) = [
        sid
        for sid, _eio_sid in sio.manager.get_participants("/", rooms.conversation(cid))
        if sid != agent_sid
    ]

    await sio.disconnect(visitor_sid)
    await agent_says(inbox, cid, "Sent while you were away")

    await expect(visitor.message("text", "Sent while you were away")).to_have_count(
        1, timeout=WAIT_MS
    )
    await expect(visitor.widget.locator("body[data-connection=online]")).to_have_count(1)
    await visitor.write("Back again")
    await visitor_reply(inbox, "Back again")


# ---- framing --------------------------------------------------------------------------------


async def test_a_site_outside_the_tokens_allowed_origins_cannot_frame_the_widget(
    browser, host_site, factory
):
    allowed = await factory.org(allowed_origins=[host_site.origin])
    refused = await factory.org(allowed_origins=["https://shop.example"])

    ok = await new_visitor(
        browser, host_site.page(host_html(factory.url, allowed.embed_token), "ok.html")
    )
    await ok.open()
    await expect(ok.widget.locator(".cw-log")).to_have_count(1)

    errors: list[str] = []
    blocked = await new_visitor(
        browser, host_site.page(host_html(factory.url, refused.embed_token), "no.html"), errors
    )
    async with blocked.page.expect_response(re.compile(r"/chat-widget\?")) as response_info:
        await blocked.page.click(LAUNCHER)
    response = await response_info.value
    assert response.status == 200
    policy = await response.header_value("content-security-policy")
    assert "frame-ancestors https://shop.example" in policy
    assert await response.header_value("x-frame-options") is None
    frame = await blocked.frame()
    await frame.wait_for_load_state()
    # Chromium replaced the document: no widget in the frame, and the loader never heard
    # from it.
    assert not frame.url.startswith(factory.url), frame.url
    assert await frame.locator(".cw-log").count() == 0
    assert await blocked.events() == []
    assert any("frame-ancestors" in e for e in errors), errors


# ---- host page <-> widget -------------------------------------------------------------------


async def test_host_page_drives_the_widget_and_hears_its_events(
    browser, host_site, factory, artifacts
):
    org = await factory.org(allowed_origins=[host_site.origin])
    agent, inbox = await agent_inbox(factory, org)
    visitor = await new_visitor(browser, host_site.page(host_html(factory.url, org.embed_token)))
    page = visitor.page

    # The host names the visitor and opens the chat (before any iframe exists).
    await page.evaluate(
        """() => {
        window.postMessage({target: "chat-widget", type: "set_customer_name", name: "Alice"}, "*");
        window.postMessage({target: "chat-widget", type: "open"}, "*");
    }"""
    )
    ready = await visitor.wait_event("ready")
    await visitor.wait_event("opened")
    await expect(page.locator(FRAME)).to_be_visible()
    cid = ready["conversation_id"]
    status, conv = await factory.get(f"/api/conversations/{cid}", agent)
    assert status == 200 and conv["end_user"]["display_name"] == "Alice"

    # A name set while the widget runs reaches the conversation too.
    await page.evaluate(
        """() => window.postMessage(
            {target: "chat-widget", type: "set_customer_name", name: "Alice Smith"}, "*")"""
    )
    await visitor.write("Hi, Alice here")
    await claim_first(inbox, "Hi, Alice here")
    status, conv = await factory.get(f"/api/conversations/{cid}", agent)
    assert conv["end_user"]["display_name"] == "Alice Smith"

    # Closed by the host: agent messages count as unread, on the badge and to the host.
    await page.evaluate("() => window.postMessage({target: 'chat-widget', type: 'close'}, '*')")
    await visitor.wait_event("closed")
    await expect(page.locator(FRAME)).to_be_hidden()
    await agent_says(inbox, cid, "Your order is ready.")
    await visitor.wait_event("unread", count=1)
    await agent_says(inbox, cid, "Pick it up any time.")
    unread = await visitor.wait_event("unread", count=2)
    assert unread == {"source": "chat-widget", "type": "unread", "count": 2}
    await expect(page.locator(BADGE)).to_have_text("2")
    await expect(page.locator(BADGE)).to_be_visible()
    await page.screenshot(path=artifacts / "widget-closed-unread.png")

    # Opened from the launcher: read, badge gone.
    await page.click(LAUNCHER)
    await visitor.wait_event("opened", nth=2)
    await visitor.wait_event("unread", nth=2, count=0)
    await expect(page.locator(BADGE)).to_be_hidden()
    await expect(visitor.message("text", "Pick it up any time.")).to_have_count(1)

    # The widget's own close button closes it, and the host hears it.
    await visitor.widget.locator(".cw-close").click()
    await visitor.wait_event("closed", nth=2)
    await expect(page.locator(FRAME)).to_be_hidden()

    # Messages from other frames are not commands: a third-party iframe cannot open it. (The
    # probe it posts next is recorded by the page after the loader saw the command.)
    await page.evaluate(
        """() => {
        const f = document.createElement("iframe");
        f.srcdoc = "<script>parent.postMessage({target: 'chat-widget', type: 'open'}, '*');" +
          "parent.postMessage({source: 'chat-widget', type: 'probe'}, '*')<\\/script>";
        document.body.appendChild(f);
    }"""
    )
    await visitor.wait_event("probe")
    await expect(page.locator(FRAME)).to_be_hidden()
    # ... and widget events forged by the page itself do not reach the badge.
    await page.evaluate(
        "() => window.postMessage({source: 'chat-widget', type: 'unread', count: 7}, '*')"
    )
    await visitor.wait_event("unread", count=7)
    await expect(page.locator(BADGE)).to_be_hidden()

    # toggle opens it again.
    await page.evaluate("() => window.postMessage({target: 'chat-widget', type: 'toggle'}, '*')")
    await visitor.wait_event("opened", nth=3)
    await expect(page.locator(FRAME)).to_be_visible()


# ---- what the visitor reads after a pick or a send ------------------------------------------


async def test_a_picked_button_or_option_shows_its_label_and_sends_its_value(
    browser, host_site, factory
):
    org = await factory.org(allowed_origins=[host_site.origin])
    _agent, inbox = await agent_inbox(factory, org)
    url = host_site.page(host_html(factory.url, org.embed_token))
    visitor = await new_visitor(browser, url)
    await visitor.open()
    await visitor.write("Do you have other colours?")
    cid = await claim_first(inbox, "Do you have other colours?")

    await agent_says(
        inbox,
        cid,
        "Pick a colour:",
        "quick_button",
        {"buttons": [{"label": "Sky blue", "value": "colour-blue"}]},
    )
    await visitor.message("quick_button").locator(".rm-choice", has_text="Sky blue").click()
    sent = await visitor_reply(inbox, "colour-blue")
    assert sent["content"] == "colour-blue"
    mine = visitor.widget.locator(".cw-mine[data-seq] .rm-text")
    await expect(mine.last).to_have_text("Sky blue", timeout=WAIT_MS)

    await agent_says(
        inbox,
        cid,
        "Select your region:",
        "dropdown",
        {"options": [{"label": "Europe", "value": "region-eu"}]},
    )
    await visitor.message("dropdown").locator("select").select_option("region-eu")
    await visitor_reply(inbox, "region-eu")
    await expect(mine.last).to_have_text("Europe", timeout=WAIT_MS)

    # After a reload, from the history, the picks still read as what was picked.
    await visitor.page.reload()
    await expect(visitor.page.locator(FRAME)).to_be_visible(timeout=WAIT_MS)
    await expect(mine).to_have_text(
        ["Do you have other colours?", "Sky blue", "Europe"], timeout=WAIT_MS
    )


async def test_after_a_send_the_last_message_and_its_time_are_above_the_composer(
    browser, host_site, factory
):
    org = await factory.org(allowed_origins=[host_site.origin])
    _agent, inbox = await agent_inbox(factory, org)
    visitor = await new_visitor(browser, host_site.page(host_html(factory.url, org.embed_token)))
    await visitor.open()
    for n in range(12):  # more than the transcript can show: it scrolls
        await visitor.write(f"Line {n} of a long question")

    frame = await visitor.frame()
    last_time = visitor.widget.locator(".cw-mine[data-seq] .cw-time").last
    await expect(last_time).not_to_have_text("Sending…")
    gap = await frame.evaluate(
        """() => {
          const log = document.querySelector('.cw-log').getBoundingClientRect();
          const times = document.querySelectorAll('.cw-msg .cw-time');
          const last = times[times.length - 1].getBoundingClientRect();
          return log.bottom - last.bottom;
        }"""
    )
    assert gap >= 0, f"the last message's time is {-gap}px under the composer"
