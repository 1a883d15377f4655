"""/metrics, /readyz, request ids and the client address behind a trusted proxy."""

from __future__ import annotations

import asyncio
import random
import re

import aiohttp
import pytest

from chatd.app import create_app
from rest.keys import SIO


def random_address() -> str:
    return "10." + ".".join(str(random.randint(1, 254)) for _ in range(3))


async def scrape(factory, headers=None) -> str:
    async with factory.http.get(factory.url + "/metrics", headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        return await resp.text()


def sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name}{labels} not in metrics"
    return float(m.group(1))


async def test_metrics_count_a_sent_message(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    rec = await factory.visitor(conv)
    before = await scrape(factory)

    ack = await factory.visitor_send(rec, conv, "counted")
    assert "error" not in ack, ack

    after = await scrape(factory)
    persisted = "chatd_messages_persisted_total"
    assert sample(after, persisted) == sample(before, persisted) + 1
    batches = "chatd_writer_batch_size_count"
    assert sample(after, batches) >= sample(before, batches) + 1
    assert sample(after, "chatd_writer_commit_seconds_count") >= 1
    assert sample(after, "chatd_sockets_connected", '{kind="end_user"}') == 1
    assert sample(after, "chatd_sockets_connected", '{kind="agent"}') == 0
    assert sample(after, "chatd_bus_queue_depth") == 0
    assert sample(after, "chatd_fanout_publish_errors_total") == 0


async def test_each_app_counts_its_own(factory, settings):
    other = create_app(settings)
    from rest.observability import METRICS

    org = await factory.org()
    conv = await factory.conversation(org)
    rec = await factory.visitor(conv)
    await factory.visitor_send(rec, conv, "one")
    text = (await scrape(factory))
    assert sample(text, "chatd_messages_persisted_total") >= 1
    assert other[METRICS].messages_persisted._value.get() == 0


class TestRateLimitMetrics:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(
            rate_limit_messages=1, login_attempts=1, trusted_proxies=("127.0.0.1",)
        )

    async def test_refusals_and_login_failures_are_counted(self, factory):
        org = await factory.org()
        conv = await factory.conversation(org)
        rec = await factory.visitor(conv)
        before = await scrape(factory)
        assert "error" not in await factory.visitor_send(rec, conv, "first")
        ack = await factory.visitor_send(rec, conv, "second")
        assert ack["error"]["code"] == "rate_limited"
        status, _ = await factory.post(
            "/auth/login",
            json={"email": org.owner_email, "password": "wrong password"},
            headers={"X-Forwarded-For": random_address()},
        )
        assert status == 401

        after = await scrape(factory)
        refused = 'chatd_rate_limited_total'
        assert sample(after, refused, '{limit="send"}') == 1
        failures = "chatd_login_failures_total"
        assert sample(after, failures) == sample(before, failures) + 1


class TestMetricsToken:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(metrics_token="scrape-secret")

    async def test_metrics_need_the_bearer_token(self, factory):
        async with factory.http.get(factory.url + "/metrics") as resp:
            assert resp.status == 401
        wrong = {"Authorization": "Bearer nope"}
        async with factory.http.get(factory.url + "/metrics", headers=wrong) as resp:
            assert resp.status == 401
        text = await scrape(factory, {"Authorization": "Bearer scrape-secret"})
        assert "chatd_messages_persisted_total" in text


async def test_readyz_is_ready_then_not_while_shutting_down(server, factory):
    status, body = await factory.get("/readyz")
    assert status == 200, body
    assert body["checks"]["database"] == "ok"
    expected = "ok" if server.app[SIO].manager.__class__.__name__ == "GatedRedisManager" else (
        "not configured"
    )
    assert body["checks"]["fanout"] == expected

    await server.app.shutdown()

    status, body = await factory.get("/readyz")
    assert status == 503
    assert body["failed"] == ["shutdown"]


async def _readiness(factory) -> tuple[int, dict]:
    return await factory.get("/readyz")


async def _until(factory, want: int, timeout: float = 20.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await _readiness(factory)
            if status == want:
                return body
            await asyncio.sleep(0.2)


class TestReadinessWithRedis:
    @pytest.fixture(autouse=True)
    def _redis_first(self, single_pass, private_redis):
        """Set up before the server (and so torn down after it): its cleanup needs Redis."""

    @pytest.fixture
    def settings(self, base_settings, private_redis):
        return base_settings.with_overrides(redis_url=private_redis.url)

    async def test_readyz_follows_the_fanout_subscription(self, server, factory, private_redis):
        body = await _until(factory, 200)
        assert body["checks"] == {"database": "ok", "redis": "ok", "fanout": "ok"}

        private_redis.stop()
        body = await _until(factory, 503)
        assert "redis" in body["failed"] and "fanout" in body["failed"]
        assert body["checks"]["database"] == "ok"

        private_redis.start()
        body = await _until(factory, 200)
        assert body["failed"] == []

    async def test_a_dead_subscriber_alone_makes_the_process_not_ready(self, server, factory):
        await _until(factory, 200)
        manager = server.app[SIO].manager
        manager.thread.cancel()  # the subscription's task: Redis itself still answers

        status, body = await _readiness(factory)

        assert status == 503
        assert body["failed"] == ["fanout"]
        assert body["checks"]["redis"] == "ok"


async def test_request_ids_are_generated_and_untrusted_ones_ignored(factory):
    async with factory.http.get(factory.url + "/healthz") as resp:
        generated = resp.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    hdrs = {"X-Request-Id": "from-the-client"}
    async with factory.http.get(factory.url + "/healthz", headers=hdrs) as resp:
        assert resp.headers["X-Request-Id"] != "from-the-client"


class TestTrustedProxy:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(trusted_proxies=("127.0.0.1/32",), login_attempts=1)

    async def test_a_trusted_proxys_request_id_is_kept(self, factory):
        hdrs = {"X-Request-Id": "edge-1234"}
        async with factory.http.get(factory.url + "/healthz", headers=hdrs) as resp:
            assert resp.headers["X-Request-Id"] == "edge-1234"

    async def test_the_login_throttle_keys_on_the_forwarded_client(self, factory):
        org = await factory.org()
        attacker, colleague = random_address(), random_address()
        # The per-address allowance is 5 x CHATD_LOGIN_ATTEMPTS (1): five wrong passwords for
        # five different accounts lock the attacker's address out.
        for i in range(5):
            status, _ = await factory.post(
                "/auth/login",
                json={"email": f"nobody{i}-{attacker}@example.com", "password": "x"},
                headers={"X-Forwarded-For": attacker},
            )
            assert status == 401
        status, _ = await factory.post(
            "/auth/login",
            json={"email": org.owner_email, "password": "whatever"},
            headers={"X-Forwarded-For": attacker},
        )
        assert status == 429

        from tests.factories import PASSWORD

        status, body = await factory.post(
            "/auth/login",
            json={"email": org.owner_email, "password": PASSWORD},
            headers={"X-Forwarded-For": colleague},
        )
        assert status == 200, body


class TestUntrustedPeer:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(trusted_proxies=("192.0.2.0/24",), login_attempts=1)

    async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(self, factory):
        org = await factory.org()
        for i in range(5):
            status, _ = await factory.post(
                "/auth/login",
                json={"email": f"nobody{i}-{random_address()}@example.com", "password": "x"},
                headers={"X-Forwarded-For": random_address()},  # a new "address" each time
            )
            assert status in (401, 429)
        status, _ = await factory.post(
            "/auth/login",
            json={"email": org.owner_email, "password": "x"},
            headers={"X-Forwarded-For": random_address()},
        )
        assert status == 429  # all of them were 127.0.0.1


async def test_forwarded_helper_picks_the_first_untrusted_hop():
    from rest.forwarded import ForwardedHeaders

    fwd = ForwardedHeaders(["127.0.0.1", "10.0.0.0/8"])
    assert fwd.client_address("127.0.0.1", ["203.0.113.9, 10.1.2.3"]) == "203.0.113.9"
    assert fwd.client_address("127.0.0.1", ["198.51.100.1, 203.0.113.9, 10.1.2.3"]) == (
        "203.0.113.9"
    )
    assert fwd.client_address("127.0.0.1", ["garbage, 10.1.2.3"]) == "10.1.2.3"
    assert not fwd.trusts("203.0.113.9")
    assert ForwardedHeaders([]).trusts("127.0.0.1") is False
    _ = aiohttp  # the module is used by the fixtures' clients
