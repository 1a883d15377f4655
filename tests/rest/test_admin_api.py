"""Admin endpoints (team members, channels, embed tokens) for owners and admins, and the
operator's health check."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import PASSWORD, uid
from tests.rest.helpers import USER_KEYS, assert_error, assert_iso, fetch

TOKEN_KEYS = {
    "id",
    "channel_id",
    "name",
    "token_prefix",
    "allowed_origins",
    "bot_id",
    "revoked_at",
    "created_at",
}


def new_email() -> str:
    return f"{uid('new-')}@example.com"


async def widget_opens(factory, token: str, origin: str | None = None) -> int:
    """The status /chat-widget/conversations answers for a new visitor with this token."""
    reply = await fetch(
        factory,
        "POST",
        "/chat-widget/conversations",
        headers={"Origin": origin} if origin else None,
        json={"embed_token": token, "external_id": uid("visitor-")},
    )
    return reply.status


async def token_id_of(factory, owner, token: str) -> str:
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200, tokens
    (match,) = [t for t in tokens if token.startswith(t["token_prefix"])]
    return match["id"]


# ---- roles --------------------------------------------------------------------------------


async def test_agent_role_is_forbidden_the_user_and_embed_token_endpoints(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    agent = await factory.agent(org)
    token_id = await token_id_of(factory, owner, org.embed_token)
    email = new_email()

    replies = {
        "list users": await factory.get("/api/admin/users", agent),
        "create user": await factory.post(
            "/api/admin/users", agent, json={"email": email, "password": PASSWORD}
        ),
        "list tokens": await factory.get("/api/admin/embed-tokens", agent),
        "create token": await factory.post(
            "/api/admin/embed-tokens", agent, json={"channel_id": org.channel_id}
        ),
        "revoke token": await factory.post(f"/api/admin/embed-tokens/{token_id}/revoke", agent),
    }

    for name, (status, body) in replies.items():
        assert status == 403, (name, body)
        assert_error(body, "forbidden")
    status, users = await factory.get("/api/admin/users", owner)
    assert status == 200 and email not in {u["email"] for u in users}
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200 and len(tokens) == 1 and tokens[0]["revoked_at"] is None
    assert await widget_opens(factory, org.embed_token) == 201


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_admins_list_the_users_of_their_own_organization(factory, role):
    org = await factory.org()
    admin = await factory.owner(org) if role == "owner" else await factory.agent(org, role=role)
    agent = await factory.agent(org, login=False)
    await factory.agent(await factory.org(), login=False)

    status, users = await factory.get("/api/admin/users", admin)

    assert status == 200
    for user in users:
        assert set(user) == USER_KEYS
        assert user["organization_id"] == org.org_id
    expected = {org.owner_id, admin.user_id, agent.user_id}
    assert {u["id"] for u in users} == expected


# ---- users --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_admin_creates_a_user_who_can_then_sign_in(factory, role):
    org = await factory.org()
    admin = await factory.owner(org) if role == "owner" else await factory.agent(org, role=role)
    email = new_email()

    status, user = await factory.post(
        "/api/admin/users",
        admin,
        json={"email": email.upper(), "password": "a-long-password", "display_name": "Sam"},
    )

    assert status == 201
    assert set(user) == USER_KEYS
    assert user["email"] == email
    assert (user["role"], user["display_name"], user["organization_id"]) == (
        "agent",
        "Sam",
        org.org_id,
    )
    login = await fetch(
        factory, "POST", "/auth/login", json={"email": email, "password": "a-long-password"}
    )
    assert login.status == 200 and login.body["user"] == user


async def test_only_an_owner_can_add_an_owner(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    admin = await factory.agent(org, role="admin")
    refused_email, accepted_email = new_email(), new_email()

    status, refused = await factory.post(
        "/api/admin/users",
        admin,
        json={"email": refused_email, "password": PASSWORD, "role": "owner"},
    )
    accepted_status, accepted = await factory.post(
        "/api/admin/users",
        owner,
        json={"email": accepted_email, "password": PASSWORD, "role": "owner"},
    )

    assert status == 403
    assert_error(refused, "forbidden")
    assert accepted_status == 201 and accepted["role"] == "owner"
    _, users = await factory.get("/api/admin/users", owner)
    assert refused_email not in {u["email"] for u in users}


async def test_create_user_with_a_taken_email_conflicts(factory):
    org = await factory.org()
    admin = await factory.agent(org, role="admin")
    colleague = await factory.agent(org, login=False)
    stranger = await factory.agent(await factory.org(), login=False)

    for email in (colleague.email, colleague.email.upper(), stranger.email):
        status, body = await factory.post(
            "/api/admin/users", admin, json={"email": email, "password": PASSWORD}
        )

        assert status == 409, (email, body)
        assert_error(body, "conflict")


async def test_create_user_with_invalid_fields_is_a_bad_request_and_creates_nothing(factory):
    org = await factory.org()
    admin = await factory.agent(org, role="admin")
    _, users_before = await factory.get("/api/admin/users", admin)
    bodies = {
        "no_password": {"email": new_email()},
        "short_password": {"email": new_email(), "password": "short"},
        "not_an_email": {"email": "not-an-email", "password": PASSWORD},
        "unknown_role": {"email": new_email(), "password": PASSWORD, "role": "superuser"},
        "unknown_field": {"email": new_email(), "password": PASSWORD, "is_staff": True},
        "email_not_a_string": {"email": 7, "password": PASSWORD},
    }

    for name, body in bodies.items():
        status, reply = await factory.post("/api/admin/users", admin, json=body)

        assert status == 400, (name, reply)
        assert_error(reply, "invalid_input")
    _, users_after = await factory.get("/api/admin/users", admin)
    assert users_after == users_before


# ---- embed tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_created_embed_token_is_shown_once_and_opens_widget_conversations(factory, role):
    org = await factory.org()
    admin = await factory.owner(org) if role == "owner" else await factory.agent(org, role=role)

    status, created = await factory.post(
        "/api/admin/embed-tokens", admin, json={"channel_id": org.channel_id, "name": "Shop"}
    )

    assert status == 201
    assert set(created) == TOKEN_KEYS | {"token"}
    token = created["token"]
    assert token.startswith("ew_") and len(token) > 20
    assert created["token_prefix"] == token[:8]
    assert (created["channel_id"], created["name"]) == (org.channel_id, "Shop")
    assert (created["allowed_origins"], created["revoked_at"]) == ([], None)
    assert_iso(created["created_at"])
    status, listed = await factory.get("/api/admin/embed-tokens", admin)
    assert status == 200
    for item in listed:
        assert set(item) == TOKEN_KEYS
        assert token not in item.values()
    assert created["id"] in {t["id"] for t in listed}
    opened = await fetch(
        factory,
        "POST",
        "/chat-widget/conversations",
        json={"embed_token": token, "external_id": uid("visitor-")},
    )
    assert opened.status == 201 and opened.body["channel_id"] == org.channel_id


async def test_created_embed_token_keeps_to_its_allowed_origins(factory):
    org = await factory.org()
    owner = await factory.owner(org)

    status, created = await factory.post(
        "/api/admin/embed-tokens",
        owner,
        json={"channel_id": org.channel_id, "allowed_origins": ["https://shop.example/"]},
    )

    assert status == 201 and created["allowed_origins"] == ["https://shop.example"]
    assert await widget_opens(factory, created["token"], "https://shop.example") == 201
    assert await widget_opens(factory, created["token"], "https://evil.example") == 403


async def test_create_embed_token_with_invalid_fields_is_refused_and_creates_nothing(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    status, mobile = await factory.post(
        "/api/admin/channels", owner, json={"type": "mobile_sdk", "name": "App"}
    )
    assert status == 201
    other_org = await factory.org()
    cases = {
        "no_channel": ({}, 400),
        "malformed_channel": ({"channel_id": "not-a-uuid"}, 400),
        "bare_host_origin": ({"channel_id": org.channel_id, "allowed_origins": ["shop.ex"]}, 400),
        "origin_with_path": (
            {"channel_id": org.channel_id, "allowed_origins": ["https://shop.example/cart"]},
            400,
        ),
        "unknown_field": ({"channel_id": org.channel_id, "secret": "mine"}, 400),
        "mobile_channel": ({"channel_id": mobile["id"]}, 400),
        "unknown_channel": ({"channel_id": str(uuid.uuid4())}, 404),
        "another_orgs_channel": ({"channel_id": other_org.channel_id}, 404),
    }

    for name, (body, expected) in cases.items():
        status, reply = await factory.post("/api/admin/embed-tokens", owner, json=body)

        assert status == expected, (name, reply)
        assert_error(reply, "invalid_input" if expected == 400 else "not_found")
    _, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert len(tokens) == 1


async def test_revoked_embed_token_stops_opening_conversations(factory):
    org = await factory.org()
    admin = await factory.agent(org, role="admin")
    _, created = await factory.post(
        "/api/admin/embed-tokens", admin, json={"channel_id": org.channel_id}
    )
    assert await widget_opens(factory, created["token"]) == 201

    status, revoked = await factory.post(f"/api/admin/embed-tokens/{created['id']}/revoke", admin)

    assert status == 200
    assert set(revoked) == TOKEN_KEYS and revoked["id"] == created["id"]
    assert_iso(revoked["revoked_at"])
    assert await widget_opens(factory, created["token"]) == 403
    # The organization's other token is untouched.
    assert await widget_opens(factory, org.embed_token) == 201
    status, again = await factory.post(f"/api/admin/embed-tokens/{created['id']}/revoke", admin)
    assert status == 200 and again["revoked_at"] == revoked["revoked_at"]


async def test_revoking_another_organizations_embed_token_is_not_found(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    token_id = await token_id_of(factory, owner, org.embed_token)
    outsider = await factory.owner(await factory.org())

    for candidate in (token_id, str(uuid.uuid4()), "not-a-uuid"):
        status, body = await factory.post(f"/api/admin/embed-tokens/{candidate}/revoke", outsider)

        assert status == 404, (candidate, body)
        assert_error(body, "not_found")
    assert await widget_opens(factory, org.embed_token) == 201
    _, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert tokens[0]["revoked_at"] is None


# ---- health -------------------------------------------------------------------------------


async def test_healthz_reports_the_database_ok(factory, uses_redis):
    reply = await fetch(factory, "GET", "/healthz")

    assert reply.status == 200
    assert reply.body == {
        "status": "ok",
        "database": "ok",
        "redis": "ok" if uses_redis else "not configured",
    }
