"""The widget and the inbox in Chromium through a Redis outage, on two `chatd serve` processes
(a private PostgreSQL and a private Redis that the test kills and starts again).

The widget talks to process B, the inbox to process A. While Redis is down, what one process
stores never reaches the other's sockets live; neither page reconnects (their sockets do not
depend on Redis). Once Redis is back, each process announces its rooms' head seq
(conversation_head) and each page fetches what it lacks: afterwards both show every message
once, in seq order, without a reload. The recovery time (Redis back -> the last missing
message on screen in both pages) is printed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from playwright.async_api import Frame, Page, expect

from tests.e2e.procs import ServerProcess, run_cli
from tests.e2e.test_two_processes import Clients
from tests.factories import PASSWORD, uid

WAIT_MS = 15_000
# Redis back -> every message on screen in both pages, at most.
RECOVERY_BOUND_MS = 15_000
FRAME = 'iframe[data-chat-widget="frame"]'

# Whether the seqs on screen are exactly 1..n, once each, in document order.
SHOWS_ALL = """([selector, n]) => {
  const seqs = Array.from(document.querySelectorAll(selector))
    .map(e => Number(e.getAttribute("data-seq"))).filter(Number.isInteger);
  return seqs.length === n && seqs.every((s, i) => s === i + 1);
}"""
SEQS = """(selector) => Array.from(document.querySelectorAll(selector))
  .map(e => Number(e.getAttribute("data-seq"))).filter(Number.isInteger)"""
WIDGET_MSGS = ".cw-msg[data-seq]"
INBOX_MSGS = "#message-list .msg[data-seq]"


@pytest.fixture
async def outage_cluster(single_pass, private_pg, private_redis, host_site, tmp_path):
    env = {
        "DATABASE_URL": private_pg.create_database(),
        "REDIS_URL": private_redis.url,
        "CHATD_DEMO": "false",
        "CHATD_PRESENCE_TTL_SECONDS": "5",
    }
    run_cli("migrate", env=env)
    procs = [ServerProcess(env, tmp_path / f"server-{i}.log") for i in range(2)]
    clients = Clients()
    try:
        await asyncio.gather(*(p.wait_healthy() for p in procs))
        yield env, procs, clients
    finally:
        await clients.close()
        for p in procs:
            p.stop()


def bootstrap(env: dict, origin: str) -> dict:
    email = f"{uid('owner-')}@example.com"
    out = run_cli(
        "bootstrap",
        "--org",
        uid("Org "),
        "--email",
        email,
        "--password",
        PASSWORD,
        "--allowed-origin",
        origin,
        "--json",
        env=env,
    )
    data = json.loads(out.strip().splitlines()[-1])
    data["email"] = email
    return data


async def sign_in(page: Page, url: str, email: str) -> None:
    await page.goto(url + "/inbox")
    await expect(page).to_have_url(re.compile(r"/auth/login\?next=/inbox$"))
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/inbox$"))
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")


def record_errors(page: Page, errors: list[str]) -> None:
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)


async def widget_frame(page: Page) -> Frame:
    handle = await page.wait_for_selector(FRAME, state="attached")
    frame = await handle.content_frame()
    assert frame is not None
    return frame


async def shows_all(target, selector: str, n: int, since: float) -> float:
    """Wait until `target` (a page or frame) shows seqs 1..n once each, in order; return when."""
    try:
        await target.wait_for_function(
            SHOWS_ALL, arg=[selector, n], timeout=RECOVERY_BOUND_MS, polling=50
        )
    except Exception as exc:
        shown = await target.evaluate(SEQS, selector)
        missing = sorted(set(range(1, n + 1)) - set(shown))
        raise AssertionError(f"{selector}: missing {missing}, shown {shown}") from exc
    return time.monotonic() - since


async def test_widget_and_inbox_show_every_message_once_in_order_after_a_redis_outage(
    browser, host_site, outage_cluster, private_redis, artifacts
):
    env, (a, b), clients = outage_cluster
    org = bootstrap(env, host_site.origin)
    errors: list[str] = []

    # The agent's inbox on A.
    agent_context = await browser.new_context(viewport={"width": 1360, "height": 860})
    inbox = await agent_context.new_page()
    record_errors(inbox, errors)
    await sign_in(inbox, a.url, org["email"])

    # The visitor's widget on a customer's page, served by B.
    site = host_site.page(
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>"
        f'<script src="{b.url}/chat-widget/embed.js" '
        f'data-embed-token="{org["embed_token"]}"></script></body></html>'
    )
    visitor_context = await browser.new_context(viewport={"width": 1100, "height": 760})
    shop = await visitor_context.new_page()
    record_errors(shop, errors)
    try:
        await shop.goto(site)
        await shop.click('[data-chat-widget="launcher"]')
        widget = shop.frame_locator(FRAME)
        await expect(widget.locator("body")).to_have_attribute(
            "data-connection", "online", timeout=WAIT_MS
        )
        frame = await widget_frame(shop)
        # Every change of the widget's connection state, to show it never reconnected.
        await frame.evaluate(
            """() => { window.connStates = [];
              new MutationObserver(() => window.connStates.push(document.body.dataset.connection))
                .observe(document.body, {attributes: true, attributeFilter: ["data-connection"]});
            }"""
        )

        async def visitor_writes(text: str) -> None:
            await widget.locator(".cw-input").fill(text)
            await widget.locator(".cw-input").press("Enter")
            await expect(
                widget.locator(".cw-mine[data-seq] .rm-text", has_text=text)
            ).to_have_count(1, timeout=WAIT_MS)

        async def agent_writes(text: str) -> None:
            await inbox.fill("#composer-text", text)
            await inbox.press("#composer-text", "Enter")
            await expect(
                inbox.locator("#message-list .msg[data-seq] .rm-text", has_text=text)
            ).to_have_count(1, timeout=WAIT_MS)

        # Before: the visitor writes, the agent claims in the inbox and answers.
        await visitor_writes("Hello, my order has not arrived")
        item = inbox.locator("#conversation-list .conv-item")
        await expect(item).to_have_count(1, timeout=WAIT_MS)
        cid = await item.get_attribute("data-id")
        await item.locator(".conv-claim").click()
        await expect(inbox.locator("#conv-meta")).to_contain_text("Assigned to you")
        await agent_writes("Let me check that for you")
        await expect(widget.locator('.cw-msg[data-sender="agent"]')).to_have_count(1)

        # The same agent's other tabs, one on each process, for a steady flow of replies.
        cookie, _ = await clients.login(a.url, org["email"])
        tabs = [await clients.connect(a.url, cookie), await clients.connect(b.url, cookie)]

        async def tab_says(tab, text: str) -> None:
            ack = await tab.call(
                "send_message",
                {
                    "conversation_id": cid,
                    "content": text,
                    "content_type": "text",
                    "sender_type": "agent",
                },
            )
            assert "error" not in ack, ack

        async def stored_messages() -> list[dict]:
            async with clients.http.get(
                f"{a.url}/api/conversations/{cid}/messages",
                params={"after_seq": "0", "limit": "200"},
                headers={"Cookie": f"session={cookie}"},
            ) as resp:
                assert resp.status == 200
                stored = await resp.json()
            assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
            return stored

        # Two outages. In each, replies stored on A never reach the widget on B live, and
        # those stored on B never reach the inbox on A. After the first, nothing more is
        # sent: only the servers' conversation_head can tell the pages what they lack. After
        # the second, messages are sent at once, before the processes have found Redis again.
        recoveries = []
        for outage, write_at_once in ((1, False), (2, True)):
            private_redis.stop()
            for i in range(4):
                await tab_says(tabs[i % 2], f"Outage {outage}: still checking ({i})")
                await asyncio.sleep(0.2)
            await agent_writes(f"Outage {outage}: one more moment")
            private_redis.start()
            back = time.monotonic()
            if write_at_once:
                await visitor_writes("Thanks, I will wait")
                await tab_says(tabs[0], "It left our warehouse yesterday")
            total = len(await stored_messages())
            widget_done, inbox_done = await asyncio.gather(
                shows_all(frame, WIDGET_MSGS, total, back),
                shows_all(inbox, INBOX_MSGS, total, back),
            )
            recoveries.append(max(widget_done, inbox_done))
            line = (
                f"outage {outage}: Redis back -> every message shown: widget "
                f"{widget_done:.2f} s, inbox {inbox_done:.2f} s"
            )
            print("\n" + line)
            # Kept with the screenshots, so a passing run's figures can be read afterwards.
            with open(artifacts / "fault-redis-recovery.txt", "a") as out:  # noqa: ASYNC230
                out.write(line + "\n")
        await shop.screenshot(path=str(artifacts / "fault-redis-widget.png"))
        await inbox.screenshot(path=str(artifacts / "fault-redis-inbox.png"))

        # Live again, both ways; nothing twice, nothing out of order.
        await visitor_writes("Great, thank you!")
        await agent_writes("You're welcome")
        stored = await stored_messages()
        total = len(stored)
        await shows_all(frame, WIDGET_MSGS, total, back)
        await shows_all(inbox, INBOX_MSGS, total, back)
        texts = {m["seq"]: m["content"] for m in stored}
        shown = await frame.evaluate(
            """() => Array.from(document.querySelectorAll(".cw-msg[data-seq]"))
                 .map(e => [Number(e.dataset.seq), e.querySelector(".rm-text").textContent])"""
        )
        assert all(texts[seq] == text for seq, text in shown if seq in texts), shown
        shown = await inbox.evaluate(
            """() => Array.from(document.querySelectorAll("#message-list .msg[data-seq]"))
                 .map(e => [Number(e.dataset.seq), e.querySelector(".rm-text").textContent])"""
        )
        assert all(texts[seq] == text for seq, text in shown if seq in texts), shown

        # Neither page reloaded or reconnected to get there.
        assert await inbox.locator("body").get_attribute("data-connections") == "1"
        assert await frame.evaluate("window.connStates") == []
        assert errors == [], errors
    finally:
        await visitor_context.close()
        await agent_context.close()
