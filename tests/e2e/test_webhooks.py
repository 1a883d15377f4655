"""Signed webhooks, end to end: a real server, a real HTTP receiver on a real port that verifies
every signature with the `standardwebhooks` package, real Socket.IO clients and API keys.

The receiver listens on 127.0.0.1, so these servers allow private targets
(CHATD_WEBHOOK_ALLOW_PRIVATE_TARGETS); the refusal of such targets is tested with the default
settings in test_ssrf_*. Retries are fast here (backoff from 0.2 s, capped at 2 s)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.e2e.services import restartable_port
from tests.factories import uid
from tests.rest.test_api_v1 import call
from tests.rest.test_observability import sample, scrape

ALL_TYPES = [
    "conversation.created",
    "message.created",
    "conversation.assigned",
    "conversation.resolved",
    "messages.read",
]
FAST = {
    "webhook_allow_private_targets": True,
    "webhook_backoff_base_seconds": 0.2,
    "webhook_backoff_cap_seconds": 2.0,
    "webhook_max_attempts": 100,
    "webhook_timeout_seconds": 2.0,
    "outbox_poll_seconds": 0.2,
}


class Receiver:
    """An HTTP endpoint that records what it is sent. `mode`: "ok" (204), "fail" (500),
    "hang" (never answers); `fail_once(predicate)` answers 500 to the first matching
    request. Every request's signature is checked against `secret`."""

    def __init__(self) -> None:
        # The same port after a restart (a receiver that was down comes back where it was).
        self.port = restartable_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secret: str | None = None
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []  # every request, answered or not
        self.accepted: list[dict[str, Any]] = []  # the bodies answered 2xx
        self.bad_signatures = 0
        self._fail_once: list = []
        self._runner: web.AppRunner | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Down: the port refuses connections until start() again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_once(self, predicate) -> None:
        self._fail_once.append(predicate)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = dict(request.headers)
        try:
            payload = Webhook(self.secret).verify(raw, headers)
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        self.requests.append({"payload": payload, "headers": headers, "at": time.monotonic()})
        self.changed.set()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        for predicate in list(self._fail_once):
            if predicate(payload):
                self._fail_once.remove(predicate)
                return web.Response(status=500, text="not now")
        if self.mode == "fail":
            return web.Response(status=500, text="down for maintenance")
        self.accepted.append(payload)
        self.changed.set()
        return web.Response(status=204)

    async def wait_accepted(self, count: int, timeout: float = 20.0, where=None) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            got = [p for p in self.accepted if where is None or where(p)]
            if len(got) >= count:
                return got
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(got)} of {count} webhooks accepted: {got}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
def settings(base_settings, request):
    return base_settings.with_overrides(**{**FAST, **getattr(request, "param", {})})


@pytest.fixture(autouse=True)
async def _endpoints_off_afterwards(base_settings):
    """Every test server's sender delivers for every enabled endpoint in the (shared) test
    database: the endpoints of a finished test are turned off, as their receivers are gone."""
    yield
    from sqlalchemy import update

    from models import WebhookEndpoint
    from server.db import Database, create_engine

    db = Database(create_engine(base_settings.database_url), None)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(update(WebhookEndpoint).values(enabled=False))
    finally:
        await db.dispose()


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def _setup(factory, receiver, types=None, scopes=None):
    """An organization, its owner, a key (webhooks:manage + conversations) and an endpoint for
    the receiver, created over v1."""
    org = await factory.org()
    owner = await factory.owner(org)
    status, key = await factory.post(
        "/api/admin/api-keys",
        owner,
        json={
            "name": "hooks",
            "scopes": scopes or ["conversations:read", "conversations:write", "webhooks:manage"],
        },
    )
    assert status == 201, key
    status, endpoint, _ = await call(
        factory,
        "POST",
        "/api/v1/webhooks",
        key["key"],
        json={"url": receiver.url, "event_types": types or ALL_TYPES, "description": "CRM"},
    )
    assert status == 201, endpoint
    assert endpoint["secret"].startswith("whsec_")
    receiver.secret = endpoint["secret"]
    return org, owner, key["key"], endpoint


async def _settled_log(factory, key, endpoint_id, query="", timeout=10.0) -> dict:
    """The delivery log once nothing in it is pending (an outcome is recorded by the sender's
    next round, just after the receiver answered)."""
    deadline = time.monotonic() + timeout
    while True:
        status, log, _ = await call(
            factory, "GET", f"/api/v1/webhooks/{endpoint_id}/deliveries{query}", key
        )
        assert status == 200, log
        if all(d["status"] != "pending" for d in log["deliveries"]):
            return log
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)


def _of(conv_id: str):
    return lambda p: p.get("conversation_id") == conv_id


async def test_the_assignment_flow_arrives_signed_and_in_order_and_is_logged(factory, receiver):
    org, owner, key, endpoint = await _setup(factory, receiver)
    agent = await factory.agent(org)
    conv = await factory.conversation(org, name="Ada")
    visitor = await factory.visitor(conv)
    ack = await factory.visitor_send(visitor, conv, "Where is my order?")
    agent_rec = await factory.client(agent)
    claimed = await agent_rec.call("claim_conversation", {"conversation_id": conv["id"]})
    assert "error" not in claimed, claimed
    reply = await factory.agent_send(agent_rec, conv, "On its way.")
    read = await visitor.call(
        "mark_read", {"conversation_id": conv["id"], "message_ids": [reply["id"]]}
    )
    assert "error" not in read, read  # acknowledged before the resolve is sent
    status, _ = await factory.post(f"/api/conversations/{conv['id']}/resolve", agent, json={})
    assert status == 200

    got = await receiver.wait_accepted(6, where=_of(conv["id"]))
    assert [p["type"] for p in got] == [
        "conversation.created",
        "message.created",
        "conversation.assigned",
        "message.created",
        "messages.read",
        "conversation.resolved",
    ]
    assert receiver.bad_signatures == 0
    # webhook-id = the body's id, increasing in the conversation's order.
    ids = [int(p["id"].removeprefix("evt_")) for p in got]
    assert ids == sorted(ids) and len(set(ids)) == 6
    for request in receiver.requests:
        assert request["headers"]["webhook-id"] == request["payload"]["id"]
        assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    # The payloads: the same shapes as v1.
    first, assigned, read, resolved = got[1], got[2], got[4], got[5]
    assert first["organization_id"] == org.org_id and first["conversation_id"] == conv["id"]
    status, page, _ = await call(
        factory, "GET", f"/api/v1/conversations/{conv['id']}/messages", key
    )
    assert status == 200
    assert first["data"]["message"] == page["messages"][0] | {"read_by": {}}
    assert first["data"]["message"]["id"] == ack["id"]
    assert assigned["data"]["agent_id"] == agent.user_id
    assert read["data"]["message_ids"] == [reply["id"]]
    assert read["data"]["reader_type"] == "end_user"
    assert resolved["data"]["resolved_by"] == {"type": "agent", "id": agent.user_id}

    # The delivery log, over the API and for the console.
    log = await _settled_log(factory, key, endpoint["id"])
    mine = [d for d in log["deliveries"] if d["conversation_id"] == conv["id"]]
    assert len(mine) == 6
    for d in mine:
        assert d["status"] == "delivered" and d["response_code"] == 204
        assert d["attempts"] == 1 and d["latency_ms"] >= 0 and d["last_error"] is None
    status, same = await factory.get(f"/api/admin/webhooks/{endpoint['id']}/deliveries", owner)
    assert status == 200 and same["deliveries"] == log["deliveries"]


def _outcomes(metrics: str) -> dict[str, float]:
    """chatd_queue_deliveries_total of the webhooks queue, by outcome."""
    return {
        outcome: sample(
            metrics, "chatd_queue_deliveries_total", f'{{outcome="{outcome}",queue="webhooks"}}'
        )
        for outcome in ("delivered", "retried", "dead")
    }


async def test_a_failed_delivery_is_retried_and_later_events_wait_for_it(factory, receiver):
    _, _, key, endpoint = await _setup(factory, receiver, types=["message.created"])
    before = _outcomes(await scrape(factory))
    receiver.fail_once(lambda p: p["data"]["message"]["content"] == "two")
    other_org = await factory.org()  # another organization's traffic is not sent here
    other = await factory.conversation(other_org)
    other_visitor = await factory.visitor(other)
    await factory.visitor_send(other_visitor, other, "not yours")
    _, conv, _ = await _v1_conversation(factory, key)
    for content in ("one", "two", "three", "four"):
        status, _, _ = await call(
            factory,
            "POST",
            f"/api/v1/conversations/{conv['id']}/messages",
            key,
            json={"content": content, "content_type": "text"},
        )
        assert status == 201
    got = await receiver.wait_accepted(4)
    assert [p["data"]["message"]["content"] for p in got] == ["one", "two", "three", "four"]
    tries = [r["payload"]["data"]["message"]["content"] for r in receiver.requests]
    assert tries == ["one", "two", "two", "three", "four"]  # nothing overtook the retry
    assert all(r["payload"]["organization_id"] != other_org.org_id for r in receiver.requests)
    await _settled_log(factory, key, endpoint["id"])
    status, log, _ = await call(
        factory, "GET", f"/api/v1/webhooks/{endpoint['id']}/deliveries?status=delivered", key
    )
    assert status == 200 and len(log["deliveries"]) == 4
    by_content = {d["payload"]["data"]["message"]["content"]: d for d in log["deliveries"]}
    assert by_content["two"]["attempts"] == 2 and by_content["one"]["attempts"] == 1
    # /metrics counts the outcomes.
    after = _outcomes(await scrape(factory))
    assert after["delivered"] - before["delivered"] >= 4
    assert after["retried"] - before["retried"] >= 1


async def _v1_conversation(factory, key):
    """A conversation of the key's organization, opened over v1 on its web channel."""
    from sqlalchemy import select

    from models import ApiKey, Channel

    async with factory.services.db.read() as conn:
        org_id = (
            await conn.execute(select(ApiKey.organization_id).where(ApiKey.key_prefix == key[:9]))
        ).scalar_one()
        channel_id = (
            (await conn.execute(select(Channel.id).where(Channel.organization_id == org_id)))
            .scalars()
            .first()
        )
    status, conv, headers = await call(
        factory,
        "POST",
        "/api/v1/conversations",
        key,
        json={"channel_id": channel_id, "external_id": uid("player-")},
    )
    assert status == 201, conv
    return status, conv, headers


# A minute in the embedded pass; the PostgreSQL pass proves the same path over a shorter
# outage, to keep CI's time in bounds.
DOWNTIME = float(
    os.environ.get("CHATD_TEST_WEBHOOK_DOWNTIME", "15" if os.environ.get("DATABASE_URL") else "60")
)


@pytest.mark.parametrize("settings", [{"webhook_backoff_cap_seconds": 5.0}], indirect=True)
async def test_a_receiver_down_for_a_minute_gets_everything_afterwards_in_order(factory, receiver):
    """Down for a minute (refused connections), while chat goes on; then up: every event
    arrives, in order per conversation, and chat never waited for it."""
    _, _, key, endpoint = await _setup(factory, receiver, types=["message.created"])
    await receiver.stop()
    _, conv, _ = await _v1_conversation(factory, key)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < DOWNTIME:
        t0 = time.monotonic()
        status, _, _ = await call(
            factory,
            "POST",
            f"/api/v1/conversations/{conv['id']}/messages",
            key,
            json={"content": f"m{sent}", "content_type": "text"},
        )
        assert status == 201
        assert time.monotonic() - t0 < 1.0  # the live path does not wait for webhooks
        sent += 1
        await asyncio.sleep(DOWNTIME / 20)
    status, log, _ = await call(
        factory, "GET", f"/api/v1/webhooks/{endpoint['id']}/deliveries", key
    )
    first = log["deliveries"][-1]
    assert first["status"] == "pending" and first["attempts"] >= 3
    assert first["response_code"] is None and "Connect" in first["last_error"]
    await receiver.start()
    got = await receiver.wait_accepted(sent, timeout=30)
    assert [p["data"]["message"]["content"] for p in got] == [f"m{i}" for i in range(sent)]
    status, endpoint_now, _ = await call(factory, "GET", f"/api/v1/webhooks/{endpoint['id']}", key)
    assert endpoint_now["enabled"] and endpoint_now["failing_since"] is None


@pytest.mark.parametrize("settings", [{"webhook_timeout_seconds": 5.0}], indirect=True)
async def test_a_hanging_receiver_does_not_slow_live_chat(factory, receiver):
    """Every webhook request hangs until its 5 s timeout; a visitor's messages still reach the
    agent's socket as fast as ever (bounded well below the timeout), and another endpoint of
    the same organization gets its deliveries meanwhile."""
    org, owner, key, endpoint = await _setup(factory, receiver)
    receiver.mode = "hang"
    healthy = Receiver()
    await healthy.start()
    try:
        status, other, _ = await call(
            factory,
            "POST",
            "/api/v1/webhooks",
            key,
            json={"url": healthy.url, "event_types": ["message.created"]},
        )
        assert status == 201
        healthy.secret = other["secret"]
        agent = await factory.agent(org)
        agent_rec = await factory.client(agent)
        conv = await factory.conversation(org)
        joined = await agent_rec.call("join_conversation", {"conversation_id": conv["id"]})
        assert "error" not in joined, joined
        visitor = await factory.visitor(conv)
        # The first message reaches the hanging endpoint, which holds its request from then on.
        ack = await factory.visitor_send(visitor, conv, "first")
        assert "error" not in ack
        deadline = time.monotonic() + 5
        while not receiver.requests:
            assert time.monotonic() < deadline, "the hanging endpoint was never called"
            await asyncio.sleep(0.02)
        latencies = []
        for i in range(19):  # with the first: the visitor's 20 per window
            agent_rec.clear()
            t0 = time.monotonic()
            ack = await factory.visitor_send(visitor, conv, f"hello {i}")
            assert "error" not in ack
            await agent_rec.wait_for(
                "message_received", lambda m, i=i: m["content"] == f"hello {i}", timeout=5
            )
            latencies.append(time.monotonic() - t0)
        assert max(latencies) < 1.0, latencies
        got = await healthy.wait_accepted(20)
        assert [p["data"]["message"]["content"] for p in got] == ["first"] + [
            f"hello {i}" for i in range(19)
        ]
    finally:
        await healthy.stop()


@pytest.mark.parametrize(
    "settings",
    [{"webhook_disable_after_seconds": 1.0, "webhook_backoff_cap_seconds": 0.3}],
    indirect=True,
)
async def test_an_endpoint_failing_without_a_success_is_disabled_with_a_reason(factory, receiver):
    org, owner, key, endpoint = await _setup(factory, receiver, types=["message.created"])
    receiver.mode = "fail"
    _, conv, _ = await _v1_conversation(factory, key)
    await call(
        factory,
        "POST",
        f"/api/v1/conversations/{conv['id']}/messages",
        key,
        json={"content": "first", "content_type": "text"},
    )
    deadline = time.monotonic() + 20
    while True:
        status, now, _ = await call(factory, "GET", f"/api/v1/webhooks/{endpoint['id']}", key)
        if not now["enabled"]:
            break
        assert time.monotonic() < deadline, now
        await asyncio.sleep(0.2)
    assert "HTTP 500" in now["disabled_reason"] and now["failing_since"]
    tried = len(receiver.requests)
    await asyncio.sleep(1.0)
    assert len(receiver.requests) == tried  # disabled: nothing more is sent
    # Events meanwhile are not queued for a disabled endpoint; turning it on resumes what was.
    receiver.mode = "ok"
    status, back, _ = await call(
        factory, "PATCH", f"/api/v1/webhooks/{endpoint['id']}", key, json={"enabled": True}
    )
    assert status == 200 and back["enabled"] and back["disabled_reason"] is None
    got = await receiver.wait_accepted(1)
    assert got[0]["data"]["message"]["content"] == "first"
    status, owner_view = await factory.get(f"/api/admin/webhooks/{endpoint['id']}", owner)
    assert status == 200 and owner_view["enabled"]


async def test_test_events_redelivery_and_secret_rotation(factory, receiver):
    org, owner, key, endpoint = await _setup(factory, receiver)
    base = f"/api/v1/webhooks/{endpoint['id']}"
    status, queued, _ = await call(factory, "POST", base + "/test", key)
    assert status == 202 and queued["event"] == "webhook.test"
    (test_event,) = await receiver.wait_accepted(1)
    assert test_event["type"] == "webhook.test" and test_event["id"] == queued["webhook_id"]

    log = await _settled_log(factory, key, endpoint["id"])
    (entry,) = log["deliveries"]
    status, again, _ = await call(
        factory, "POST", base + f"/deliveries/{entry['id']}/redeliver", key
    )
    assert status == 202 and again["redelivery_of"] == entry["id"]
    await receiver.wait_accepted(2)
    assert receiver.accepted[1]["id"] == test_event["id"]  # the same webhook-id: dedupe on it

    # A rotation keeps the previous secret signing too, a day by default: each request then
    # carries both signatures, and a receiver holding either secret accepts it.
    old_secret = receiver.secret
    status, rotated, _ = await call(factory, "POST", base + "/rotate-secret", key)
    assert status == 200 and rotated["secret"] != old_secret
    until = datetime.fromisoformat(rotated["previous_secret_expires_at"]).replace(tzinfo=UTC)
    assert abs((until - datetime.now(UTC)).total_seconds() - 86_400) < 60
    assert receiver.bad_signatures == 0
    receiver.secret = rotated["secret"]
    await call(factory, "POST", base + "/test", key)
    # Within a second every process signs with the new secret (a request signed with the old
    # one alone meanwhile is refused by this receiver and retried).
    await receiver.wait_accepted(3)
    raw = json.dumps(receiver.accepted[2], separators=(",", ":"))
    headers = receiver.requests[-1]["headers"]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old_secret).verify(raw, headers) == receiver.accepted[2]
    status, shown, _ = await call(factory, "GET", base, key)
    assert shown["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]

    # Bad input is refused and changes nothing.
    for body in (
        {"expire_previous_after_seconds": -1},
        {"expire_previous_after_seconds": 7 * 86_400 + 1},
        {"expire_previous_after_seconds": "soon"},
        {"expire_previous_after_seconds": 1.5},
        {"keep": 1},
    ):
        status, refused, _ = await call(factory, "POST", base + "/rotate-secret", key, json=body)
        assert status == 400 and refused["error"]["code"] == "invalid_input", (body, refused)
    status, shown, _ = await call(factory, "GET", base, key)
    assert shown["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    assert shown["updated_at"] == rotated["updated_at"]

    # 0: the secret being replaced stops signing at once (and the one before it is gone).
    second_secret = receiver.secret
    status, again, _ = await call(
        factory,
        "POST",
        base + "/rotate-secret",
        key,
        json={"expire_previous_after_seconds": 0},
    )
    assert status == 200 and again["previous_secret_expires_at"] is None
    receiver.secret = again["secret"]
    await call(factory, "POST", base + "/test", key)
    await receiver.wait_accepted(4)
    raw = json.dumps(receiver.accepted[3], separators=(",", ":"))
    headers = receiver.requests[-1]["headers"]
    assert len(headers["webhook-signature"].split(" ")) == 1
    for gone in (old_secret, second_secret):
        with pytest.raises(WebhookVerificationError):
            Webhook(gone).verify(raw, headers)

    # Unknown ids answer 404, malformed ones too.
    for path in (base + "/deliveries/999999999/redeliver", base + "/deliveries/x/redeliver"):
        status, body, _ = await call(factory, "POST", path, key)
        assert status == 404, body


async def test_webhooks_need_the_scope_or_an_admin_and_stay_in_their_organization(
    factory, receiver
):
    org, owner, key, endpoint = await _setup(factory, receiver)
    status, reader = await factory.post(
        "/api/admin/api-keys", owner, json={"name": "r", "scopes": ["conversations:read"]}
    )
    status, body, _ = await call(factory, "GET", "/api/v1/webhooks", reader["key"])
    assert status == 403 and body["error"]["code"] == "forbidden"
    agent = await factory.agent(org)
    status, body = await factory.get("/api/admin/webhooks", agent)
    assert status == 403
    status, body = await factory.post(
        "/api/admin/webhooks", agent, json={"url": receiver.url, "event_types": ALL_TYPES}
    )
    assert status == 403

    other_org = await factory.org()
    other_owner = await factory.owner(other_org)
    status, other_key = await factory.post(
        "/api/admin/api-keys", other_owner, json={"name": "o", "scopes": ["webhooks:manage"]}
    )
    base = f"/api/v1/webhooks/{endpoint['id']}"
    for method, path in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("GET", base + "/deliveries"),
        ("POST", base + "/test"),
        ("POST", base + "/rotate-secret"),
    ]:
        status, body, _ = await call(
            factory, method, path, other_key["key"], json={} if method == "PATCH" else None
        )
        assert status == 404, (method, path, body)
    status, listed, _ = await call(factory, "GET", "/api/v1/webhooks", other_key["key"])
    assert listed == []
    # The owner's console sees the endpoint (never its secret).
    status, listed = await factory.get("/api/admin/webhooks", owner)
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in listed[0] and endpoint["secret"] not in json.dumps(listed)
    # Bad input changes nothing.
    for bad in (
        {"url": receiver.url, "event_types": ["message.deleted"]},
        {"url": receiver.url, "event_types": []},
        {"url": "ftp://example.com/x", "event_types": ALL_TYPES},
        {"url": "http://user:pw@example.com/x", "event_types": ALL_TYPES},
        {"event_types": ALL_TYPES},
    ):
        status, body, _ = await call(factory, "POST", "/api/v1/webhooks", key, json=bad)
        assert status == 400 and body["error"]["code"] == "invalid_input", (bad, body)
    status, listed, _ = await call(factory, "GET", "/api/v1/webhooks", key)
    assert len(listed) == 1
    status, _, _ = await call(factory, "DELETE", base, key)
    assert status == 204
    status, listed, _ = await call(factory, "GET", "/api/v1/webhooks", key)
    assert listed == []


@pytest.mark.parametrize("settings", [{"webhook_allow_private_targets": False}], indirect=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
async def test_ssrf_endpoints_on_this_machine_private_or_metadata_addresses_are_refused(
    factory, url
):
    org = await factory.org()
    owner = await factory.owner(org)
    status, body = await factory.post(
        "/api/admin/webhooks", owner, json={"url": url, "event_types": ALL_TYPES}
    )
    assert status == 400 and body["error"]["code"] == "invalid_input", body
    assert "url" in body["error"]["fields"]
    status, listed = await factory.get("/api/admin/webhooks", owner)
    assert listed == []


@pytest.mark.parametrize("settings", [{"webhook_allow_private_targets": False}], indirect=True)
async def test_ssrf_a_public_address_is_accepted_and_the_resolver_refuses_private_answers(
    factory,
):
    from server.webhook_sender import GuardedResolver

    org = await factory.org()
    owner = await factory.owner(org)
    status, body = await factory.post(
        "/api/admin/webhooks",
        owner,
        json={"url": "https://93.184.215.14/hook", "event_types": ["message.created"]},
    )
    assert status == 201, body
    # At connect time: a name that resolves to this machine is refused (DNS rebinding).
    resolver = GuardedResolver()
    try:
        with pytest.raises(OSError, match="loopback"):
            await resolver.resolve("localhost", 80, socket.AF_INET)
    finally:
        await resolver.close()
