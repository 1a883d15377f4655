"""Agent authentication over HTTP: the login form and JSON login, the session cookie, login
throttling, logout, and how /api/* answers without a session or without the CSRF token."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import PASSWORD
from tests.rest.helpers import (
    USER_KEYS,
    assert_error,
    csrf_meta,
    current,
    elsewhere,
    fetch,
    waiting_conversation,
)


async def login_form(factory, path: str = "/auth/login") -> tuple[str, str]:
    """GET the login form: (login_csrf cookie value, csrf token of the page)."""
    page = await fetch(factory, "GET", path)
    assert page.status == 200, page.body
    return page.cookies["login_csrf"].value, csrf_meta(page.body)


# ---- the login form -----------------------------------------------------------------------


async def test_login_page_is_an_html_form_with_a_csrf_meta_token(factory):
    page = await fetch(factory, "GET", "/auth/login")

    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    token = csrf_meta(page.body)
    assert token
    assert '<form method="post" action="/auth/login">' in page.body
    assert f'name="csrf_token" value="{token}"' in page.body
    seed = page.cookies["login_csrf"]
    assert seed.value and seed["httponly"]


async def test_form_login_redirects_to_the_inbox_with_a_session(factory):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    seed, token = await login_form(factory)

    reply = await fetch(
        factory,
        "POST",
        "/auth/login",
        cookies={"login_csrf": seed},
        data={"email": agent.email, "password": PASSWORD, "csrf_token": token},
    )

    assert reply.status == 302
    assert reply.headers["Location"] == "/inbox"
    session = reply.cookies["session"].value
    inbox = await fetch(factory, "GET", "/inbox", cookies={"session": session})
    assert inbox.status == 200
    me = await fetch(factory, "GET", "/api/me", cookies={"session": session})
    assert me.status == 200 and me.body["user"]["id"] == agent.user_id
    assert csrf_meta(inbox.body) == me.body["csrf_token"]


async def test_form_login_follows_a_local_next_path_only(factory):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    seed, token = await login_form(factory)
    fields = {"email": agent.email, "password": PASSWORD, "csrf_token": token}

    local = await fetch(
        factory,
        "POST",
        "/auth/login",
        cookies={"login_csrf": seed},
        data={**fields, "next": "/inbox?filter=mine"},
    )
    offsite = await fetch(
        factory,
        "POST",
        "/auth/login",
        cookies={"login_csrf": seed},
        data={**fields, "next": "//evil.example/phish"},
    )

    assert (local.status, local.headers["Location"]) == (302, "/inbox?filter=mine")
    assert (offsite.status, offsite.headers["Location"]) == (302, "/inbox")


@pytest.mark.parametrize(
    "tamper",
    ["no_token", "wrong_token", "no_cookie", "another_forms_token"],
)
async def test_form_login_without_its_csrf_token_is_refused(factory, tamper):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    seed, token = await login_form(factory)
    other_seed, other_token = await login_form(factory)
    assert other_seed != seed
    fields = {"email": agent.email, "password": PASSWORD, "csrf_token": token}
    cookies = {"login_csrf": seed}
    if tamper == "no_token":
        del fields["csrf_token"]
    elif tamper == "wrong_token":
        fields["csrf_token"] = "0" * 64
    elif tamper == "no_cookie":
        cookies = {}
    else:
        fields["csrf_token"] = other_token

    reply = await fetch(factory, "POST", "/auth/login", cookies=cookies, data=fields)

    assert reply.status == 403
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.set_cookie_header("session") is None
    # The refused page offers a fresh form to try again.
    assert csrf_meta(reply.body)


async def test_form_login_with_a_wrong_password_shows_the_form_again(factory):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    async with elsewhere() as http:
        page = await fetch(factory, "GET", "/auth/login", http=http)
        seed, token = page.cookies["login_csrf"].value, csrf_meta(page.body)
        reply = await fetch(
            factory,
            "POST",
            "/auth/login",
            http=http,
            cookies={"login_csrf": seed},
            data={"email": agent.email, "password": "not-the-password", "csrf_token": token},
        )

    assert reply.status == 401
    assert 'role="alert"' in reply.body and f'value="{agent.email}"' in reply.body
    assert reply.set_cookie_header("session") is None


# ---- the JSON login -----------------------------------------------------------------------


async def test_json_login_answers_the_user_and_a_csrf_token_and_sets_the_session_cookie(factory):
    org = await factory.org()
    agent = await factory.agent(org, role="admin", login=False)

    reply = await fetch(
        factory, "POST", "/auth/login", json={"email": agent.email, "password": PASSWORD}
    )

    assert reply.status == 200
    assert set(reply.body) == {"user", "csrf_token"}
    assert set(reply.body["user"]) == USER_KEYS
    assert reply.body["user"]["id"] == agent.user_id
    assert reply.body["user"]["organization_id"] == org.org_id
    assert reply.body["user"]["role"] == "admin"
    assert reply.body["csrf_token"]
    line = reply.set_cookie_header("session")
    assert line is not None
    attributes = [a.strip().lower() for a in line.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    session = reply.cookies["session"].value
    me = await fetch(factory, "GET", "/api/me", cookies={"session": session})
    assert me.status == 200 and me.body["csrf_token"] == reply.body["csrf_token"]


async def test_json_login_accepts_the_email_in_any_case(factory):
    org = await factory.org()
    agent = await factory.agent(org, login=False)

    reply = await fetch(
        factory, "POST", "/auth/login", json={"email": agent.email.upper(), "password": PASSWORD}
    )

    assert reply.status == 200 and reply.body["user"]["id"] == agent.user_id


@pytest.mark.parametrize("who", ["wrong_password", "unknown_email"])
async def test_json_login_with_bad_credentials_is_unauthorized(factory, who):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    if who == "wrong_password":
        credentials = {"email": agent.email, "password": "not-the-password"}
    else:
        credentials = {"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": PASSWORD}

    async with elsewhere() as http:
        reply = await fetch(factory, "POST", "/auth/login", http=http, json=credentials)

    assert reply.status == 401
    assert_error(reply.body, "not_authenticated")
    # The same words for both: the answer does not tell which addresses have accounts.
    assert reply.body["error"]["message"] == "Invalid email or password."
    assert reply.set_cookie_header("session") is None


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"email": "a@example.com"}',
        b'{"email": "a@example.com", "password": 12345678}',
        b'{"email": "a@example.com", "password": "x", "remember": true}',
    ],
    ids=["not_json", "not_an_object", "no_password", "password_not_a_string", "unknown_field"],
)
async def test_json_login_with_a_malformed_body_is_a_bad_request(factory, body):
    reply = await fetch(
        factory,
        "POST",
        "/auth/login",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert_error(reply.body, "invalid_input")


async def test_repeated_failed_logins_for_one_email_are_throttled(factory):
    org = await factory.org()
    agent = await factory.agent(org, login=False)
    colleague = await factory.agent(org, login=False)
    settings = factory.services.settings
    assert (settings.login_attempts, settings.login_window_seconds) == (10, 300.0)

    async with elsewhere() as http:
        for attempt in range(settings.login_attempts):
            # The count is per address, whatever case the address is typed in.
            email = agent.email.upper() if attempt % 2 else agent.email
            failed = await fetch(
                factory,
                "POST",
                "/auth/login",
                http=http,
                json={"email": email, "password": f"guess-{attempt}"},
            )
            assert failed.status == 401, (attempt, failed.body)

        # Now even the right password is refused until the window moves on.
        blocked = await fetch(
            factory,
            "POST",
            "/auth/login",
            http=http,
            json={"email": agent.email, "password": PASSWORD},
        )
        # The form login is throttled by the same count.
        page = await fetch(factory, "GET", "/auth/login", http=http)
        form = await fetch(
            factory,
            "POST",
            "/auth/login",
            http=http,
            cookies={"login_csrf": page.cookies["login_csrf"].value},
            data={"email": agent.email, "password": PASSWORD, "csrf_token": csrf_meta(page.body)},
        )
        # Counted per email: a colleague on the same address still gets in.
        other = await fetch(
            factory,
            "POST",
            "/auth/login",
            http=http,
            json={"email": colleague.email, "password": PASSWORD},
        )

    assert blocked.status == 429
    assert_error(blocked.body, "rate_limited")
    retry_after_ms = blocked.body["error"]["retry_after_ms"]
    assert isinstance(retry_after_ms, int)
    assert 0 < retry_after_ms <= 300_000
    assert int(blocked.headers["Retry-After"]) == -(-retry_after_ms // 1000)
    assert blocked.set_cookie_header("session") is None
    assert form.status == 429 and form.set_cookie_header("session") is None
    assert other.status == 200 and other.body["user"]["id"] == colleague.user_id


# ---- the session: /api/me, /inbox, logout -------------------------------------------------


async def test_me_answers_the_signed_in_user_and_the_csrf_token(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    status, body = await factory.get("/api/me", agent)

    assert status == 200
    assert body == {
        "user": {
            "id": agent.user_id,
            "organization_id": org.org_id,
            "email": agent.email,
            "display_name": agent.email.split("@")[0],
            "role": "agent",
        },
        "csrf_token": agent.csrf,
    }


async def test_inbox_without_a_session_redirects_to_the_login_form(factory):
    reply = await fetch(factory, "GET", "/inbox")

    assert reply.status == 302
    assert reply.headers["Location"] == "/auth/login?next=/inbox"
    assert reply.set_cookie_header("session") is None


async def test_inbox_with_a_session_carries_the_sessions_csrf_meta_token(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    reply = await fetch(factory, "GET", "/inbox", cookies={"session": agent.cookie})

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert csrf_meta(reply.body) == agent.csrf


async def test_logout_requires_the_csrf_token_and_then_ends_the_session(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    session = {"session": agent.cookie}

    refused = await fetch(factory, "POST", "/auth/logout", cookies=session)
    still_in = await fetch(factory, "GET", "/api/me", cookies=session)
    done = await fetch(
        factory, "POST", "/auth/logout", cookies=session, headers={"X-CSRFToken": agent.csrf}
    )
    me = await fetch(factory, "GET", "/api/me", cookies=session)
    listing = await fetch(factory, "GET", "/api/conversations/", cookies=session)

    assert refused.status == 403
    assert_error(refused.body, "forbidden")
    assert still_in.status == 200
    assert done.status == 200 and done.body == {"ok": True}
    cleared = done.set_cookie_header("session")
    assert cleared is not None and "max-age=0" in cleared.lower()
    assert me.status == 401
    assert_error(me.body, "not_authenticated")
    assert listing.status == 401


async def test_logout_from_the_signed_in_page_form_redirects_to_the_login_form(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    page = await fetch(factory, "GET", "/inbox", cookies={"session": agent.cookie})

    reply = await fetch(
        factory,
        "POST",
        "/auth/logout",
        cookies={"session": agent.cookie},
        data={"csrf_token": csrf_meta(page.body)},
    )

    assert reply.status == 302 and reply.headers["Location"] == "/auth/login"
    me = await fetch(factory, "GET", "/api/me", cookies={"session": agent.cookie})
    assert me.status == 401


# ---- /api/* guards ------------------------------------------------------------------------

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/me"),
        ("GET", "/api/conversations/"),
        ("GET", "/api/conversations?filter=all"),
        ("GET", f"/api/conversations/{UNKNOWN_ID}"),
        ("GET", f"/api/conversations/{UNKNOWN_ID}/messages"),
        ("POST", f"/api/conversations/{UNKNOWN_ID}/assign"),
        ("POST", f"/api/conversations/{UNKNOWN_ID}/resolve"),
        ("GET", "/api/admin/users"),
    ],
)
@pytest.mark.parametrize("cookie", [None, "forged-session-token"], ids=["no_cookie", "forged"])
async def test_api_without_a_valid_session_is_unauthorized_json(factory, method, path, cookie):
    reply = await fetch(factory, method, path, cookies={"session": cookie} if cookie else None)

    assert reply.status == 401
    assert reply.headers["Content-Type"].startswith("application/json")
    assert_error(reply.body, "not_authenticated")
    assert set(reply.body["error"]) == {"code", "message"}


async def test_unsafe_api_request_without_the_right_csrf_token_is_forbidden_and_changes_nothing(
    factory,
):
    org = await factory.org()
    # An admin, so that only the CSRF check stands between the request and each change.
    agent = await factory.agent(org, role="admin")
    colleague = await factory.agent(org)
    conv = await waiting_conversation(factory, org)
    bad_tokens = {
        "missing": {},
        "empty": {"X-CSRFToken": ""},
        "wrong": {"X-CSRFToken": "f" * 64},
        "another_sessions": {"X-CSRFToken": colleague.csrf},
        "the_session_itself": {"X-CSRFToken": agent.cookie},
    }
    cookies = {"session": agent.cookie}
    base = f"/api/conversations/{conv['id']}"

    for name, headers in bad_tokens.items():
        replies = [
            await fetch(factory, "POST", base + "/assign", cookies=cookies, headers=headers),
            await fetch(
                factory,
                "POST",
                base + "/tags",
                cookies=cookies,
                headers=headers,
                json={"tags": ["x"]},
            ),
            await fetch(
                factory,
                "POST",
                base + "/resolve",
                cookies=cookies,
                headers=headers,
                json={"tags": ["x"]},
            ),
            await fetch(
                factory,
                "POST",
                "/api/admin/users",
                cookies=cookies,
                headers=headers,
                json={"email": f"new-{uuid.uuid4().hex}@example.com", "password": PASSWORD},
            ),
        ]

        for reply in replies:
            assert reply.status == 403, (name, reply.body)
            assert_error(reply.body, "forbidden")
        after = await current(factory, agent, conv)
        assert after["active_session"]["status"] == "open", name
        assert after["active_session"]["assigned_agent_id"] is None, name
        assert after["active_session"]["tags"] == [], name
    status, users = await factory.get("/api/admin/users", agent)
    assert status == 200 and len(users) == 3


async def test_unsafe_api_request_with_the_sessions_csrf_token_is_accepted(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    conv = await waiting_conversation(factory, org)

    reply = await fetch(
        factory,
        "POST",
        f"/api/conversations/{conv['id']}/assign",
        cookies={"session": agent.cookie},
        headers={"X-CSRFToken": agent.csrf},
    )

    assert reply.status == 200 and reply.body["assigned_agent_id"] == agent.user_id
