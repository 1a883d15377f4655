"""Sends while Redis or PostgreSQL is down: a Redis outage does not stop the chat (the rate
limit falls back to one per process), and an unreachable database answers the retryable
`unavailable` with retry_after_ms, never `internal_error`.

Each test runs an application of its own against a private Redis or PostgreSQL that it
stops and starts (never the machine's shared servers)."""

from __future__ import annotations

import asyncio

import pytest

from chatd.app import create_app
from server import migrate
from server.settings import Settings
from tests.factories import Factory
from tests.realtime.helpers import expect_refusal


@pytest.fixture
async def app_server(aiohttp_server):
    """Start the whole application with the given settings; closes what it opened."""
    factories: list[Factory] = []

    async def start(settings: Settings) -> Factory:
        srv = await aiohttp_server(create_app(settings), host="127.0.0.1")
        srv.base_url = str(srv.make_url("")).rstrip("/")
        factory = Factory(srv)
        factories.append(factory)
        return factory

    yield start
    for factory in factories:
        await factory.close()


async def test_sends_keep_working_through_a_redis_outage_with_a_local_rate_limit(
    single_pass, base_settings: Settings, private_redis, app_server
):
    settings = base_settings.with_overrides(
        redis_url=private_redis.url, rate_limit_messages=5, rate_limit_window_seconds=30.0
    )
    factory = await app_server(settings)
    org = await factory.org()
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    ok = await factory.visitor_send(visitor, conv, "before")
    assert "error" not in ok, ok

    private_redis.stop()
    acks = [await factory.visitor_send(visitor, conv, f"during {i}") for i in range(5)]

    # Stored and acked: the limiter counts in the process while Redis is away...
    assert all("error" not in a for a in acks), acks
    assert [a["seq"] for a in acks] == [2, 3, 4, 5, 6]
    # ...and still limits.
    refused = await factory.visitor_send(visitor, conv, "one too many")
    err = await expect_refusal(visitor, refused, "rate_limited")
    assert err["retry_after_ms"] > 0
    assert await factory.message_count(conv["id"]) == 6

    private_redis.start()
    other = await factory.conversation(org)
    other_visitor = await factory.visitor(other)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        again = await factory.visitor_send(other_visitor, other, "after")
        if "error" not in again or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "error" not in again, again


async def test_a_send_while_the_database_is_down_answers_unavailable_and_works_again_after(
    single_pass, base_settings: Settings, private_pg, app_server
):
    url = private_pg.create_database()
    settings = base_settings.with_overrides(
        database_url="postgresql+psycopg://" + url.split("://", 1)[1], redis_url=None
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    factory = await app_server(settings)
    org = await factory.org()
    conv = await factory.conversation(org)
    visitor = await factory.visitor(conv)
    assert "error" not in await factory.visitor_send(visitor, conv, "before")

    private_pg.stop()
    try:
        # The first send may meet a pooled connection that died; later ones find none.
        for attempt in range(3):
            visitor.clear()
            ack = await factory.visitor_send(visitor, conv, f"during {attempt}")
            err = await expect_refusal(visitor, ack, "unavailable")
            assert err["retry_after_ms"] > 0
    finally:
        private_pg.start()

    # Back: the same client's next sends are stored (the pool drops its dead connections).
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        ack = await factory.visitor_send(visitor, conv, "after")
        if "error" not in ack:
            break
        assert ack["error"]["code"] == "unavailable", ack
        assert asyncio.get_running_loop().time() < deadline, ack
        await asyncio.sleep(0.3)
    # Nothing of the refused sends was stored. (The private cluster runs without fsync and
    # synchronous_commit, so its crash may also lose "before": counted, not assumed.)
    assert await factory.message_count(conv["id"]) == ack["seq"]
