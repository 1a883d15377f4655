"""The database goes away: REST answers 503 unavailable with Retry-After (retryable, nothing
changed), never 500 internal_error, and serves again once the database is back."""

from __future__ import annotations

import asyncio

import pytest

from chatd.app import create_app
from server import migrate
from server.settings import normalize_database_url
from tests.factories import Factory
from tests.rest.helpers import assert_error, current, fetch, waiting_conversation


@pytest.fixture
def pg_settings(private_pg, single_pass, base_settings, tmp_path):
    """The suite's settings on a fresh database of a private PostgreSQL, no Redis."""
    url = normalize_database_url(private_pg.create_database())
    migrate.upgrade(url)
    return base_settings.with_overrides(database_url=url, redis_url=None, data_dir=tmp_path)


@pytest.fixture
async def pg_app(pg_settings, private_pg, aiohttp_server):
    """The whole application, in this process, on a private PostgreSQL the test may stop."""
    srv = await aiohttp_server(create_app(pg_settings), host="127.0.0.1")
    srv.base_url = str(srv.make_url("")).rstrip("/")
    factory = Factory(srv)
    try:
        yield factory
    finally:
        private_pg.start_if_stopped()
        await factory.close()


def assert_unavailable(reply) -> None:
    assert reply.status == 503, reply.body
    assert_error(reply.body, "unavailable")
    retry_ms = reply.body["error"]["retry_after_ms"]
    assert isinstance(retry_ms, int) and retry_ms > 0
    assert int(reply.headers["Retry-After"]) >= 1


async def test_requests_during_a_database_outage_answer_503_unavailable_then_work_again(
    pg_app, private_pg
):
    factory = pg_app
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await waiting_conversation(factory, org)
    ext = conv["end_user"]["external_id"]
    requests = [
        ("GET", "/api/conversations/", {"headers": owner.headers}),
        ("GET", f"/api/conversations/{conv['id']}/messages", {"headers": owner.headers}),
        (
            "POST",
            f"/api/conversations/{conv['id']}/tags",
            {"headers": owner.headers, "json": {"tags": ["vip"]}},
        ),
        ("GET", f"/chat-widget/history/{conv['id']}?external_id={ext}", {}),
        (
            "POST",
            "/chat-widget/conversations",
            {"json": {"embed_token": org.embed_token, "external_id": "someone-new"}},
        ),
        ("POST", "/auth/login", {"json": {"email": org.owner_email, "password": "whatever"}}),
    ]

    # The private cluster runs with synchronous_commit=off: let its WAL writer (every
    # 200 ms) flush the set-up above, which the crash below would otherwise lose.
    await asyncio.sleep(1)
    private_pg.stop()
    try:
        for method, path, kwargs in requests:
            assert_unavailable(await fetch(factory, method, path, **kwargs))
        page = await fetch(
            factory, "GET", f"/chat-widget?embed_token={org.embed_token}&session_id={ext}"
        )
        assert page.status == 503 and "text/html" in page.headers["Content-Type"]
        assert int(page.headers["Retry-After"]) >= 1
    finally:
        private_pg.start()

    listed = await fetch(factory, "GET", "/api/conversations/?filter=all", headers=owner.headers)
    assert listed.status == 200, listed.body
    assert [c["id"] for c in listed.body] == [conv["id"]], listed.body
    # The tags sent during the outage were not stored.
    assert (await current(factory, owner, conv))["active_session"]["tags"] == []
