"""Throttles on the widget's public endpoints: new conversations per client address and per
embed token, visitor uploads per client address and per visitor. Over the limit: 429
rate_limited with retry_after_ms and Retry-After, and nothing created.

Every test speaks from a fresh loopback address (helpers.elsewhere) and sets its visitors up
through the services: with Redis the counts outlive the test server, and must not throttle
other tests."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import EndUser
from server.settings import Settings, SettingsError
from tests.factories import uid
from tests.rest.helpers import assert_error, elsewhere, fetch
from tests.uploads import png

OPEN = "/chat-widget/conversations"
UPLOAD = "/chat-widget/uploads"


LIMITS = {
    "new_conversations_per_address": 3,
    "new_conversations_per_token": 1000,
    "new_conversations_window_seconds": 60.0,
    "visitor_uploads_per_address": 1000,
    "visitor_uploads_per_visitor": 1000,
    "visitor_uploads_window_seconds": 60.0,
}


@pytest.fixture
def settings(base_settings, request):
    """The limits on (the suite's base settings turn them off), low enough to reach."""
    return base_settings.with_overrides(**{**LIMITS, **getattr(request, "param", {})})


def assert_rate_limited(reply) -> None:
    assert reply.status == 429, reply.body
    assert_error(reply.body, "rate_limited")
    retry_ms = reply.body["error"]["retry_after_ms"]
    assert isinstance(retry_ms, int) and 0 < retry_ms <= 60_000
    assert 1 <= int(reply.headers["Retry-After"]) <= 60


async def end_users(factory, org) -> int:
    async with factory.services.db.read() as s:
        stmt = (
            select(func.count()).select_from(EndUser).where(EndUser.organization_id == org.org_id)
        )
        return (await s.execute(stmt)).scalar_one()


async def open_as(factory, http, org, external_id: str, **extra):
    body = {"embed_token": org.embed_token, "external_id": external_id, **extra}
    return await fetch(factory, "POST", OPEN, json=body, http=http)


async def visitor_conversation(factory, org) -> dict:
    """A visitor's conversation, opened through the service (no address is counted)."""
    conv, _ = await factory.services.conversations.create_or_get_conversation(
        org.embed_token, uid("visitor-")
    )
    return conv


def upload_form(org, conv) -> dict:
    import aiohttp

    fd = aiohttp.FormData()
    fd.add_field("embed_token", org.embed_token)
    fd.add_field("external_id", conv["end_user"]["external_id"])
    fd.add_field("conversation_id", conv["id"])
    fd.add_field("file", png(), filename="photo.png", content_type="image/png")
    return {"data": fd}


def stored_files(factory) -> set[str]:
    root = factory.services.settings.uploads_path
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---- new conversations ----------------------------------------------------------------------


async def test_new_conversations_from_one_address_are_throttled_and_nothing_is_created(factory):
    org = await factory.org()
    async with elsewhere() as http:
        opened = [await open_as(factory, http, org, uid("v-")) for _ in range(3)]
        refused = await open_as(factory, http, org, uid("v-"))
        # A visitor who already has a conversation is not opening a new one.
        returning = await open_as(
            factory, http, org, opened[0].body["end_user"]["external_id"], customer_name="Jo"
        )
    async with elsewhere() as other:
        from_elsewhere = await open_as(factory, other, org, uid("v-"))

    assert [r.status for r in opened] == [201, 201, 201]
    assert_rate_limited(refused)
    assert returning.status == 200, returning.body
    assert returning.body["end_user"]["display_name"] == "Jo"
    assert from_elsewhere.status == 201
    assert await end_users(factory, org) == 4


@pytest.mark.parametrize(
    "settings",
    [{"new_conversations_per_address": 1000, "new_conversations_per_token": 2}],
    indirect=True,
)
async def test_new_conversations_per_embed_token_are_throttled_across_addresses(factory):
    org = await factory.org()
    other_org = await factory.org()
    replies = []
    for _ in range(3):
        async with elsewhere() as http:
            replies.append(await open_as(factory, http, org, uid("v-")))
    async with elsewhere() as http:
        other = await open_as(factory, http, other_org, uid("v-"))

    assert [r.status for r in replies[:2]] == [201, 201]
    assert_rate_limited(replies[2])
    assert other.status == 201
    assert await end_users(factory, org) == 2


async def test_the_widget_page_opening_a_new_conversation_is_throttled_too(factory):
    org = await factory.org()
    async with elsewhere() as http:
        pages = [
            await fetch(
                factory,
                "GET",
                f"/chat-widget?embed_token={org.embed_token}&session_id={uid('s-')}",
                http=http,
            )
            for _ in range(4)
        ]

    assert [p.status for p in pages] == [200, 200, 200, 429]
    assert "text/html" in pages[3].headers["Content-Type"]
    assert await end_users(factory, org) == 3


async def test_refused_opens_from_bad_input_are_not_throttled_into_success(factory):
    # A request refused before any conversation would be created (bad body) gives 400, and
    # the address can still open its allowance afterwards.
    org = await factory.org()
    async with elsewhere() as http:
        bad = [
            await fetch(factory, "POST", OPEN, json={"embed_token": org.embed_token}, http=http)
            for _ in range(5)
        ]
        good = [await open_as(factory, http, org, uid("v-")) for _ in range(3)]

    assert {r.status for r in bad} == {400}
    assert [r.status for r in good] == [201, 201, 201]


# ---- visitor uploads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"visitor_uploads_per_address": 2, "visitor_uploads_per_visitor": 1000}],
    indirect=True,
)
async def test_visitor_uploads_from_one_address_are_throttled_and_nothing_is_kept(factory):
    org = await factory.org()
    convs = [await visitor_conversation(factory, org) for _ in range(3)]
    async with elsewhere() as http:
        accepted = [
            await fetch(factory, "POST", UPLOAD, http=http, **upload_form(org, c))
            for c in convs[:2]
        ]
        before = stored_files(factory)
        refused = await fetch(factory, "POST", UPLOAD, http=http, **upload_form(org, convs[2]))
    after_refusal = stored_files(factory)
    async with elsewhere() as other:
        from_elsewhere = await fetch(
            factory, "POST", UPLOAD, http=other, **upload_form(org, convs[2])
        )

    assert [r.status for r in accepted] == [201, 201]
    assert_rate_limited(refused)
    assert after_refusal == before
    assert from_elsewhere.status == 201


@pytest.mark.parametrize(
    "settings",
    [{"visitor_uploads_per_address": 1000, "visitor_uploads_per_visitor": 2}],
    indirect=True,
)
async def test_visitor_uploads_per_visitor_are_throttled_across_addresses(factory):
    org = await factory.org()
    conv = await visitor_conversation(factory, org)
    other = await visitor_conversation(factory, org)
    replies = []
    for _ in range(3):
        async with elsewhere() as http:
            replies.append(
                await fetch(factory, "POST", UPLOAD, http=http, **upload_form(org, conv))
            )
    before = stored_files(factory)
    async with elsewhere() as http:
        again = await fetch(factory, "POST", UPLOAD, http=http, **upload_form(org, conv))
        other_visitor = await fetch(factory, "POST", UPLOAD, http=http, **upload_form(org, other))

    assert [r.status for r in replies[:2]] == [201, 201]
    assert_rate_limited(replies[2])
    assert_rate_limited(again)
    assert other_visitor.status == 201
    assert len(stored_files(factory) - before) == 2  # the other visitor's file and its meta


# ---- settings -------------------------------------------------------------------------------


def test_abuse_limits_are_settings_from_the_environment():
    defaults = Settings.from_env({})
    tuned = Settings.from_env(
        {
            "CHATD_NEW_CONVERSATIONS_PER_ADDRESS": "5",
            "CHATD_NEW_CONVERSATIONS_PER_TOKEN": "50",
            "CHATD_NEW_CONVERSATIONS_WINDOW_SECONDS": "30",
            "CHATD_VISITOR_UPLOADS_PER_ADDRESS": "7",
            "CHATD_VISITOR_UPLOADS_PER_VISITOR": "3",
            "CHATD_VISITOR_UPLOADS_WINDOW_SECONDS": "120",
        }
    )

    assert defaults.new_conversations_per_address == 10
    assert defaults.new_conversations_per_token > defaults.new_conversations_per_address
    assert defaults.visitor_uploads_per_visitor >= 1
    assert defaults.visitor_uploads_per_address >= defaults.visitor_uploads_per_visitor
    assert (
        tuned.new_conversations_per_address,
        tuned.new_conversations_per_token,
        tuned.new_conversations_window_seconds,
        tuned.visitor_uploads_per_address,
        tuned.visitor_uploads_per_visitor,
        tuned.visitor_uploads_window_seconds,
    ) == (5, 50, 30.0, 7, 3, 120.0)
    with pytest.raises(SettingsError):
        Settings.from_env({"CHATD_NEW_CONVERSATIONS_PER_ADDRESS": "-1"})
    with pytest.raises(SettingsError):
        Settings.from_env({"CHATD_VISITOR_UPLOADS_WINDOW_SECONDS": "0"})
