"""Webhook bots end to end: a real server, real Socket.IO clients, and the organization's bot
as a real HTTP service on 127.0.0.1 that verifies every request's Standard Webhooks signature
with the `standardwebhooks` package.

The bot answers in the response body (sync), or later through /api/v1 with its own key
(async); when it fails (no answer within its timeout, an error status) the end user is told
and the conversation waits for people. A hanging bot slows nothing else: other
organizations' live chat and their bots go on meanwhile. The bot's service listens on
127.0.0.1, so these servers allow private targets; the refusal of such a URL is tested with
the default settings in test_ssrf_*.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from server.services.bots import BOT_FAILED_MESSAGE
from tests.e2e.test_bots import _send_json, bot_messages, history
from tests.factories import quiet
from tests.rest.test_api_v1 import call

Answer = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


@pytest.fixture
def settings(base_settings, request):
    return base_settings.with_overrides(
        **{"webhook_allow_private_targets": True, **getattr(request, "param", {})}
    )


class BotEndpoint:
    """One bot's URL on the BotServer: its signing secret (set once the bot is created), how
    it answers an end user's message (`answer`; other events get 204), and what it got."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.secret: str | None = None
        self.answer: Answer = accepted
        self.requests: list[dict[str, Any]] = []  # verified requests: payload, raw, headers
        self.refused: list[dict[str, Any]] = []  # requests whose signature did not verify
        self.changed = asyncio.Event()

    @property
    def bad_signatures(self) -> int:
        return len(self.refused)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["payload"]["event"] == event]

    async def wait_for(self, event: str, predicate=None, timeout: float = 5.0) -> dict[str, Any]:
        """The first verified request of `event` (matching predicate)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.of(event) if predicate is None or predicate(r["payload"])]
            if got:
                return got[0]
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {event!r} request within {timeout}s: {self.requests}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


class BotServer:
    """Webhook bots' HTTP service: POST /bot/{name}, one BotEndpoint per name."""

    def __init__(self) -> None:
        self.endpoints: dict[str, BotEndpoint] = {}
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot/{name}", self._handle)
        # A hanging answer is cut short at cleanup.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def endpoint(self, name: str, answer: Answer | None = None) -> BotEndpoint:
        ep = self.endpoints[name] = BotEndpoint(f"{self.base}/bot/{name}")
        if answer is not None:
            ep.answer = answer
        return ep

    @property
    def bad_signatures(self) -> int:
        return sum(ep.bad_signatures for ep in self.endpoints.values())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ep = self.endpoints.get(request.match_info["name"])
        if ep is None:
            return web.Response(status=404)
        raw = await request.read()
        headers = dict(request.headers)
        try:
            payload = Webhook(ep.secret).verify(raw, headers)
        except WebhookVerificationError:
            ep.refused.append({"raw": raw, "headers": headers})
            ep.changed.set()
            return web.Response(status=400, text="bad signature")
        ep.requests.append(
            {"payload": payload, "raw": raw, "headers": headers, "at": time.monotonic()}
        )
        ep.changed.set()
        if payload["event"] != "message.created":
            return web.Response(status=204)
        return await ep.answer(payload)


@pytest.fixture
async def bots():
    server = BotServer()
    await server.start()
    yield server
    await server.stop()


# ---- how the bot answers ----------------------------------------------------------------------


async def accepted(payload: dict[str, Any]) -> web.StreamResponse:
    """It will answer later through the integration API."""
    return web.Response(status=202)


def replies(*items: Any, handoff: bool = False, flag: bool = False) -> Answer:
    async def answer(payload: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"replies": list(items), "handoff": handoff, "flag": flag})

    return answer


def hangs(seconds: float) -> Answer:
    async def answer(payload: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"replies": ["Too late."]})

    return answer


async def fails(payload: dict[str, Any]) -> web.StreamResponse:
    return web.Response(status=500, text="down for maintenance")


# ---- helpers ----------------------------------------------------------------------------------


async def make_webhook_bot(
    factory, org, endpoint: BotEndpoint, timeout: float = 5.0, name: str = "Shopbot"
) -> dict:
    """A webhook bot of the organization calling `endpoint`, attached to its channel."""
    owner = await factory.owner(org)
    status, bot = await _send_json(
        factory,
        "POST",
        "/api/admin/bots",
        owner,
        {"name": name, "kind": "webhook", "webhook_url": endpoint.url, "timeout_seconds": timeout},
    )
    assert status == 201, bot
    assert bot["secret"].startswith("whsec_") and bot["api_key"].startswith("ck_"), bot
    endpoint.secret = bot["secret"]
    status, channel = await _send_json(
        factory,
        "PUT",
        f"/api/admin/channels/{org.channel_id}/bot",
        owner,
        {"bot_id": bot["id"]},
    )
    assert status == 200 and channel["bot_id"] == bot["id"], channel
    return bot


async def queue_of(factory, org):
    """An agent of the organization and their socket in its queue room."""
    agent = await factory.agent(org)
    queue = await factory.client(agent)
    assert "error" not in await queue.call("join_queue", {})
    return agent, queue


def handed_to_queue(conv_id: str):
    return lambda e: e["conversation_id"] == conv_id and e.get("handled_by") == "queue"


async def assert_waits_for_people(factory, agent, conv_id: str) -> None:
    status, got = await factory.get(f"/api/conversations/{conv_id}", agent)
    assert status == 200 and got["active_session"]["handled_by"] == "queue", got
    assert got["active_session"]["handed_off_at"]
    status, listed = await factory.get("/api/conversations/?filter=unassigned", agent)
    assert status == 200 and conv_id in {c["id"] for c in listed}
    status, listed = await factory.get("/api/conversations/?filter=bot", agent)
    assert status == 200 and conv_id not in {c["id"] for c in listed}


def other_secret(secret: str) -> str:
    """A well-formed signing secret that is not `secret`."""
    raw = bytearray(base64.b64decode(secret.removeprefix("whsec_")))
    raw[0] ^= 0xFF
    return "whsec_" + base64.b64encode(bytes(raw)).decode()


QUICK_BUTTONS = {
    "content": "What is it about?",
    "content_type": "quick_button",
    "rich_media": {
        "buttons": [
            {"label": "An order", "value": "order"},
            {"label": "A person", "value": "/agent"},
        ]
    },
}


# ---- sync answers -----------------------------------------------------------------------------


async def test_a_webhook_bots_sync_replies_follow_the_end_users_message_in_order(factory, bots):
    org = await factory.org()
    hook = bots.endpoint("sync", replies("Hello, I am the shop's bot.", QUICK_BUTTONS))
    bot = await make_webhook_bot(factory, org, hook)
    agent = await factory.agent(org)
    conv = await factory.conversation(org, name="Grace")
    visitor = await factory.visitor(conv)

    ack = await factory.visitor_send(visitor, conv, "Where is my parcel?")
    assert "error" not in ack, ack
    first, second = await bot_messages(visitor, 2)
    assert [first["seq"], second["seq"]] == [ack["seq"] + 1, ack["seq"] + 2]
    assert first["content"] == "Hello, I am the shop's bot." and first["content_type"] == "text"
    assert second["content_type"] == "quick_button"
    assert second["rich_media"] == QUICK_BUTTONS["rich_media"]
    assert all(m["sender_id"] == bot["id"] for m in (first, second))
    await visitor.wait_for("typing_cleared")

    items = await history(factory, agent, conv["id"])
    assert [(m["sender_type"], m["content"]) for m in items] == [
        ("end_user", "Where is my parcel?"),
        ("bot", "Hello, I am the shop's bot."),
        ("bot", "What is it about?"),
    ]
    assert [m["seq"] for m in items] == [1, 2, 3]
    assert items[2]["rich_media"] == QUICK_BUTTONS["rich_media"]
    status, got = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got["active_session"]["handled_by"] == "bot"
    assert len(hook.of("message.created")) == 1 and bots.bad_signatures == 0


async def test_the_bot_gets_the_conversation_end_user_and_message_signed(factory, bots):
    org = await factory.org()
    hook = bots.endpoint("signed", replies("Noted."))
    bot = await make_webhook_bot(factory, org, hook, name="Signer")
    conv = await factory.conversation(org, name="Grace")
    visitor = await factory.visitor(conv)
    ack = await factory.visitor_send(visitor, conv, "Hi there")
    await bot_messages(visitor, 1)

    request = await hook.wait_for("message.created")
    payload, raw, headers = request["payload"], request["raw"], request["headers"]
    assert payload["bot"] == {"id": bot["id"], "name": "Signer"}
    assert payload["conversation"] == {
        "id": conv["id"],
        "channel_id": org.channel_id,
        "session_id": ack["session_id"],
        "end_user": conv["end_user"],
    }
    assert conv["end_user"]["display_name"] == "Grace"
    message = payload["message"]
    assert message["id"] == ack["id"] and message["seq"] == ack["seq"]
    assert message["content"] == "Hi there" and message["content_type"] == "text"
    assert message["sender_type"] == "end_user"
    assert message["sender_id"] == conv["end_user"]["external_id"] == ack["sender_id"]
    assert payload["created_at"] == ack["created_at"]
    assert "flagged" not in message and "read_by" not in message

    assert headers["webhook-id"] == f"botmsg_{ack['id']}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    # The signature is checked, not just present: the verifier that accepted this request
    # refuses it under another secret, and refuses a body changed by one character.
    assert Webhook(hook.secret).verify(raw, headers) == payload
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret(hook.secret)).verify(raw, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(hook.secret).verify(raw.replace(b"Hi there", b"Hi thera"), headers)
    assert hook.bad_signatures == 0

    # A rotated secret signs at once: the bot, still holding the old one, refuses the next
    # request, so it fails and people take over.
    owner = await factory.owner(org)
    status, rotated = await _send_json(
        factory, "POST", f"/api/admin/bots/{bot['id']}/rotate-secret", owner
    )
    assert status == 200 and rotated["secret"] != hook.secret, rotated
    visitor.clear()
    await factory.visitor_send(visitor, conv, "Still there?")
    (sorry,) = await bot_messages(visitor, 1)
    assert sorry["content"] == BOT_FAILED_MESSAGE
    assert len(hook.of("message.created")) == 1
    refused = hook.refused[0]
    assert json.loads(refused["raw"])["message"]["content"] == "Still there?"
    for request in hook.refused:  # the message, and maybe already the hand-off event
        Webhook(rotated["secret"]).verify(request["raw"], request["headers"])
        with pytest.raises(WebhookVerificationError):
            Webhook(hook.secret).verify(request["raw"], request["headers"])


# ---- async answers ----------------------------------------------------------------------------


async def test_an_async_bot_answers_through_the_api_until_an_agent_claims(factory, bots):
    org = await factory.org()
    hook = bots.endpoint("later", accepted)
    bot = await make_webhook_bot(factory, org, hook)
    agent = await factory.agent(org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    ack = await factory.visitor_send(visitor, conv, "Is my order shipped?")
    request = await hook.wait_for("message.created")
    assert request["payload"]["message"]["id"] == ack["id"]
    await visitor.wait_for("typing_cleared")
    # 202: no reply now, and no failure either.
    await quiet(0.3)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]

    path = f"/api/v1/conversations/{conv['id']}/messages"
    status, sent, _ = await call(
        factory, "POST", path, bot["api_key"], json={"content": "Yes, it left today."}
    )
    assert status == 201, sent
    (got,) = await bot_messages(visitor, 1)
    assert got["id"] == sent["id"] and got["content"] == "Yes, it left today."
    assert got["sender_type"] == "bot" and got["sender_id"] == bot["id"]
    assert got["seq"] == ack["seq"] + 1
    status, got_conv = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got_conv["active_session"]["handled_by"] == "bot"

    # Once a person holds the conversation, the bot's key may no longer write in it.
    status, _ = await factory.post(f"/api/conversations/{conv['id']}/assign", agent)
    assert status == 200
    before = await factory.message_count(conv["id"])
    visitor.clear()
    status, refused, _ = await call(
        factory, "POST", path, bot["api_key"], json={"content": "I can help too."}
    )
    assert status == 403 and refused["error"]["code"] == "forbidden", refused
    await quiet(0.3)
    assert await factory.message_count(conv["id"]) == before
    assert not visitor.of("message_received")
    items = await history(factory, agent, conv["id"])
    assert [m["content"] for m in items] == ["Is my order shipped?", "Yes, it left today."]
    assert bots.bad_signatures == 0


# ---- failures ---------------------------------------------------------------------------------


async def test_a_hanging_bot_hands_off_after_its_timeout_and_slows_nothing_else(factory, bots):
    timeout = 1.5
    # The hanging bot's organization, with an agent in its queue.
    org = await factory.org()
    hanging = bots.endpoint("hangs", hangs(timeout + 3))
    await make_webhook_bot(factory, org, hanging, timeout=timeout)
    agent, queue = await queue_of(factory, org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    # Another organization without a bot: a visitor and an agent chatting live.
    plain_org = await factory.org()
    plain_agent = await factory.agent(plain_org)
    plain_agent_rec = await factory.client(plain_agent)
    plain_conv = await factory.conversation(plain_org)
    joined = await plain_agent_rec.call("join_conversation", {"conversation_id": plain_conv["id"]})
    assert "error" not in joined, joined
    plain_visitor = await factory.visitor(plain_conv)
    # A third organization whose bot answers at once.
    prompt_org = await factory.org()
    prompt = bots.endpoint("prompt", replies("Right away."))
    await make_webhook_bot(factory, prompt_org, prompt)
    prompt_conv = await factory.conversation(prompt_org)
    prompt_visitor = await factory.visitor(prompt_conv)

    t0 = time.monotonic()
    ack = await factory.visitor_send(visitor, conv, "Anyone there?")
    assert "error" not in ack, ack
    await hanging.wait_for("message.created")  # the bot is hanging from here
    # The end user insists: that message waits behind the one the bot is answering.
    again = await factory.visitor_send(visitor, conv, "Hello??")
    assert again["seq"] == ack["seq"] + 1

    # Meanwhile another organization's bot answers as fast as ever...
    t = time.monotonic()
    await factory.visitor_send(prompt_visitor, prompt_conv, "Quick question")
    (answer,) = await bot_messages(prompt_visitor, 1, timeout=timeout)
    assert answer["content"] == "Right away."
    assert time.monotonic() - t < 1.0
    # ...and live chat without a bot is not slowed.
    latencies = []
    for i in range(3):
        t = time.monotonic()
        sent = await factory.visitor_send(plain_visitor, plain_conv, f"visitor {i}")
        assert "error" not in sent, sent
        latencies.append(("visitor's ack", time.monotonic() - t))
        await plain_agent_rec.wait_for(
            "message_received", lambda m, i=i: m["content"] == f"visitor {i}", timeout=2
        )
        latencies.append(("agent received", time.monotonic() - t))
        t = time.monotonic()
        sent = await factory.agent_send(plain_agent_rec, plain_conv, f"agent {i}")
        assert "error" not in sent, sent
        latencies.append(("agent's ack", time.monotonic() - t))
        await plain_visitor.wait_for(
            "message_received", lambda m, i=i: m["content"] == f"agent {i}", timeout=2
        )
        latencies.append(("visitor received", time.monotonic() - t))
    assert max(s for _, s in latencies) < 1.0, latencies
    # All of that happened while the bot hung: its conversation has no bot message yet.
    assert time.monotonic() - t0 < timeout
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]

    (sorry,) = await bot_messages(visitor, 1, timeout=timeout + 3)
    failed_after = time.monotonic() - t0
    assert sorry["content"] == BOT_FAILED_MESSAGE and sorry["seq"] == again["seq"] + 1
    assert timeout - 0.2 <= failed_after < timeout + 3, failed_after
    (updated,) = await queue.wait_for("conversation_updated", handed_to_queue(conv["id"]))
    assert updated["reason"] == "bot_failed"
    await assert_waits_for_people(factory, agent, conv["id"])
    # One failure message; the message that waited is not sent to the bot: it waits for a
    # person too.
    await quiet(0.5)
    items = await history(factory, agent, conv["id"])
    assert [m["content"] for m in items] == ["Anyone there?", "Hello??", BOT_FAILED_MESSAGE]
    assert len(hanging.of("message.created")) == 1
    assert bots.bad_signatures == 0


@pytest.mark.parametrize("failure", ["http_500", "not_an_answer"])
async def test_a_failing_bot_hands_off_at_once(factory, bots, failure):
    async def not_an_answer(payload):
        return web.json_response({"replies": [{"content_type": "image"}]})

    org = await factory.org()
    hook = bots.endpoint("fails", fails if failure == "http_500" else not_an_answer)
    bot = await make_webhook_bot(factory, org, hook, timeout=10)
    agent, queue = await queue_of(factory, org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)

    t0 = time.monotonic()
    ack = await factory.visitor_send(visitor, conv, "Hello?")
    (sorry,) = await bot_messages(visitor, 1, timeout=3)
    assert time.monotonic() - t0 < 2.0  # well before its 10 s timeout
    assert sorry["content"] == BOT_FAILED_MESSAGE and sorry["sender_id"] == bot["id"]
    assert sorry["seq"] == ack["seq"] + 1
    (updated,) = await queue.wait_for("conversation_updated", handed_to_queue(conv["id"]))
    assert updated["reason"] == "bot_failed"
    await assert_waits_for_people(factory, agent, conv["id"])

    # Handed off: the next message waits for a person and the bot is not asked.
    visitor.clear()
    await factory.visitor_send(visitor, conv, "Hello??")
    await quiet(0.8)
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]
    assert len(hook.of("message.created")) == 1
    assert bots.bad_signatures == 0


@pytest.mark.parametrize("settings", [{"outbox_lease_seconds": 2.0}], indirect=True)
async def test_a_bot_timeout_longer_than_the_outbox_lease_still_hands_off(factory, bots):
    """An operator shortened the outbox lease (2 s) below the bot's timeout (2.5 s); a
    delivery is cancelled after 90% of its lease. The bot's call gets its share of the lease
    only: its failure still reaches the end user and people, and the bot is asked once."""
    timeout = 2.5
    org = await factory.org()
    hook = bots.endpoint("slow", hangs(10))
    await make_webhook_bot(factory, org, hook, timeout=timeout)
    agent, queue = await queue_of(factory, org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "Anyone there?")
    (sorry,) = await bot_messages(visitor, 1, timeout=timeout + 3)
    assert sorry["content"] == BOT_FAILED_MESSAGE
    (updated,) = await queue.wait_for("conversation_updated", handed_to_queue(conv["id"]))
    assert updated["reason"] == "bot_failed"
    await assert_waits_for_people(factory, agent, conv["id"])
    assert len(hook.of("message.created")) == 1


# ---- the bot's own decisions ------------------------------------------------------------------


async def test_the_bot_flags_hands_off_and_hears_of_hand_offs_and_hand_backs(factory, bots):
    async def decide(payload):
        content = payload["message"]["content"]
        if "stupid" in content:
            return web.json_response({"replies": [], "flag": True})
        if "person" in content:
            return web.json_response({"replies": ["A person will take over."], "handoff": True})
        return web.json_response({"replies": ["How can I help?"]})

    org = await factory.org()
    hook = bots.endpoint("decides", decide)
    bot = await make_webhook_bot(factory, org, hook)
    agent, queue = await queue_of(factory, org)
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    await factory.visitor_send(visitor, conv, "hi")
    await bot_messages(visitor, 1)

    visitor.clear()
    rude = await factory.visitor_send(visitor, conv, "this is stupid")
    (flagged,) = await queue.wait_for(
        "message_flagged", lambda e: e["conversation_id"] == conv["id"]
    )
    assert flagged["message_id"] == rude["id"] and flagged["seq"] == rude["seq"]
    await visitor.wait_for("typing_cleared")
    assert not [m for m in visitor.of("message_received") if m["sender_type"] == "bot"]
    items = await history(factory, agent, conv["id"])
    assert [m["id"] for m in items if m["flagged"]] == [rude["id"]]
    status, got = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert got["active_session"]["handled_by"] == "bot"  # flagged, not handed off

    visitor.clear()
    queue.clear()
    await factory.visitor_send(visitor, conv, "I want a person")
    (last,) = await bot_messages(visitor, 1)
    assert last["content"] == "A person will take over."
    (updated,) = await queue.wait_for("conversation_updated", handed_to_queue(conv["id"]))
    assert updated["reason"] == "bot"
    await assert_waits_for_people(factory, agent, conv["id"])

    # The bot's service hears of the hand-off (best effort: it may come a little later).
    told = await hook.wait_for("conversation.handed_off", timeout=5)
    payload = told["payload"]
    assert payload["bot"]["id"] == bot["id"] and payload["conversation"]["id"] == conv["id"]
    assert payload["conversation"]["end_user"] == conv["end_user"]
    assert payload["data"]["reason"] == "bot" and payload["data"]["bot_id"] == bot["id"]
    assert payload["data"]["session_id"] == got["active_session"]["id"]
    assert told["headers"]["webhook-id"].startswith("botevt_")
    assert [r["payload"]["message"]["content"] for r in hook.of("message.created")] == [
        "hi",
        "this is stupid",
        "I want a person",
    ]

    # An agent hands it back: the bot's service hears of that too, and answers again.
    status, back = await factory.post(f"/api/conversations/{conv['id']}/hand-to-bot", agent)
    assert status == 200 and back["active_session"]["handled_by"] == "bot", back
    told = await hook.wait_for("conversation.handed_to_bot", timeout=5)
    assert told["payload"]["data"]["agent_id"] == agent.user_id
    assert told["payload"]["conversation"]["id"] == conv["id"]
    visitor.clear()
    await factory.visitor_send(visitor, conv, "me again")
    (welcome,) = await bot_messages(visitor, 1)
    assert welcome["content"] == "How can I help?"
    assert bots.bad_signatures == 0


# ---- SSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"webhook_allow_private_targets": False}], indirect=True)
async def test_ssrf_a_webhook_bot_on_this_machine_or_a_private_address_is_refused(factory, bots):
    org = await factory.org()
    owner = await factory.owner(org)
    hook = bots.endpoint("local")
    for url in (
        hook.url,
        "http://localhost/bot",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/bot",
    ):
        status, body = await _send_json(
            factory,
            "POST",
            "/api/admin/bots",
            owner,
            {"name": "Local", "kind": "webhook", "webhook_url": url, "timeout_seconds": 2},
        )
        assert status == 400 and body["error"]["code"] == "invalid_input", (url, body)
    status, listed = await factory.get("/api/admin/bots", owner)
    assert status == 200 and listed == []
    assert hook.requests == []
