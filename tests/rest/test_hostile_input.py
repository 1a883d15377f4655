"""Hostile input at the REST edge: what no backend can store, numbers no database column
holds, JSON nested to exhaust the parser, broken multipart bodies and allowed origins that
are not origins. Each one answers 400 invalid_input on every backend and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from models import EmbedToken, EndUser, Organization, User
from server.errors import InvalidInput
from server.validation import MAX_INT
from tests.e2e.procs import ROOT
from tests.factories import PASSWORD, uid
from tests.rest.helpers import actor, assert_error, current, fetch, waiting_conversation

# What PostgreSQL refuses (NUL) and what no UTF-8 encoder takes (a lone surrogate). Written
# as JSON escapes, as a client would send them.
UNSTORABLE = {"nul": "\\u0000", "lone_surrogate": "\\ud800"}


def raw_json(template: str, bad: str) -> bytes:
    """A JSON body with `bad` (a JSON escape) spliced into `template` at {bad}."""
    return template.replace("{bad}", bad).encode()


async def count(factory, model, *where) -> int:
    async with factory.services.db.read() as s:
        stmt = select(func.count()).select_from(model)
        for clause in where:
            stmt = stmt.where(clause)
        return (await s.execute(stmt)).scalar_one()


# ---- integers no column holds -------------------------------------------------------------


TOO_BIG = [MAX_INT + 1, 2**53, 2**63, 10**30]


@pytest.mark.parametrize("value", TOO_BIG)
async def test_conversation_list_refuses_an_offset_beyond_the_database_range(factory, value):
    org = await factory.org()
    agent = await factory.owner(org)

    reply = await fetch(
        factory, "GET", f"/api/conversations/?offset={value}", headers=agent.headers
    )
    largest = await fetch(
        factory, "GET", f"/api/conversations/?offset={MAX_INT}", headers=agent.headers
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert (largest.status, largest.body) == (200, [])


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("param", ["offset", "after_seq"])
async def test_agent_history_refuses_integers_beyond_the_database_range(factory, param, value):
    org = await factory.org()
    agent = await factory.owner(org)
    conv = await waiting_conversation(factory, org)
    path = f"/api/conversations/{conv['id']}/messages"

    reply = await fetch(factory, "GET", f"{path}?{param}={value}", headers=agent.headers)
    largest = await fetch(factory, "GET", f"{path}?{param}={MAX_INT}", headers=agent.headers)

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert (largest.status, largest.body) == (200, [])


@pytest.mark.parametrize("value", TOO_BIG)
async def test_widget_history_refuses_an_after_seq_beyond_the_database_range(factory, value):
    org = await factory.org()
    conv = await waiting_conversation(factory, org)
    path = f"/chat-widget/history/{conv['id']}?external_id={conv['end_user']['external_id']}"

    reply = await fetch(factory, "GET", f"{path}&after_seq={value}")
    largest = await fetch(factory, "GET", f"{path}&after_seq={MAX_INT}")

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert (largest.status, largest.body) == (200, [])


# ---- JSON nested to exhaust the parser ------------------------------------------------------

DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(
    "endpoint", ["resolve", "tags", "open_conversation", "login", "embed_token"]
)
async def test_deeply_nested_json_is_refused_as_invalid_input(factory, endpoint, deep):
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await waiting_conversation(factory, org)
    await factory.services.conversations.assign_conversation(actor(owner), conv["id"])
    path, headers, template = {
        "resolve": (f"/api/conversations/{conv['id']}/resolve", owner.headers, '{"tags": %s}'),
        "tags": (f"/api/conversations/{conv['id']}/tags", owner.headers, '{"tags": %s}'),
        "open_conversation": ("/chat-widget/conversations", {}, '{"external_id": %s}'),
        "login": ("/auth/login", {}, '{"email": %s, "password": "x"}'),
        "embed_token": ("/api/admin/embed-tokens", owner.headers, '{"allowed_origins": %s}'),
    }[endpoint]
    before = await current(factory, owner, conv)

    for body in (deep, template % deep):
        reply = await fetch(
            factory,
            "POST",
            path,
            headers={**headers, "Content-Type": "application/json"},
            data=body.encode(),
        )
        assert reply.status == 400, (body[:40], reply.body)
        assert_error(reply.body, "invalid_input")

    assert await current(factory, owner, conv) == before


# ---- strings no backend can store -----------------------------------------------------------


@pytest.mark.parametrize("bad", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize("endpoint", ["tags", "resolve"])
async def test_unstorable_tags_are_refused_and_change_nothing(factory, endpoint, bad):
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await waiting_conversation(factory, org)
    before = await current(factory, owner, conv)

    reply = await fetch(
        factory,
        "POST",
        f"/api/conversations/{conv['id']}/{endpoint}",
        headers={**owner.headers, "Content-Type": "application/json"},
        data=raw_json('{"tags": ["vip", "a{bad}b"]}', bad),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert await current(factory, owner, conv) == before


@pytest.mark.parametrize("bad", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize(
    "template",
    [
        '{"embed_token": "%s", "external_id": "v{bad}x"}',
        '{"embed_token": "%s", "external_id": "v-ok", "customer_name": "Jo{bad}"}',
        '{"embed_token": "%s{bad}", "external_id": "v-ok"}',
    ],
    ids=["external_id", "customer_name", "embed_token"],
)
async def test_opening_a_conversation_with_unstorable_text_is_refused_and_creates_nothing(
    factory, template, bad
):
    org = await factory.org()

    reply = await fetch(
        factory,
        "POST",
        "/chat-widget/conversations",
        headers={"Content-Type": "application/json"},
        data=raw_json(template % org.embed_token, bad),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert await count(factory, EndUser, EndUser.organization_id == org.org_id) == 0


@pytest.mark.parametrize("bad", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_login_with_an_unstorable_email_is_invalid_input(factory, bad):
    reply = await fetch(
        factory,
        "POST",
        "/auth/login",
        headers={"Content-Type": "application/json"},
        data=raw_json('{"email": "a{bad}@example.com", "password": "x"}', bad),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")


async def test_login_form_with_a_nul_in_the_email_is_a_400_page(factory):
    reply = await fetch(
        factory,
        "POST",
        "/auth/login",
        data={"email": "a\x00@example.com", "password": "x", "csrf_token": "t"},
    )

    assert reply.status == 400, reply.body


@pytest.mark.parametrize("bad", ["%00", "a%00b"])
async def test_widget_history_with_a_nul_in_the_external_id_is_invalid_input(factory, bad):
    org = await factory.org()
    conv = await waiting_conversation(factory, org)

    reply = await fetch(factory, "GET", f"/chat-widget/history/{conv['id']}?external_id={bad}")

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")


async def test_widget_page_with_a_nul_in_the_session_id_is_refused_and_creates_nothing(factory):
    org = await factory.org()

    reply = await fetch(
        factory, "GET", f"/chat-widget?embed_token={org.embed_token}&session_id=visitor%00x"
    )

    assert reply.status == 400, reply.body
    assert await count(factory, EndUser, EndUser.organization_id == org.org_id) == 0


@pytest.mark.parametrize("bad", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize(
    "path,template,model",
    [
        (
            "/api/admin/users",
            '{"email": "%s@example.com", "password": "long-enough-1", "display_name": "A{bad}"}',
            User,
        ),
        ("/api/admin/channels", '{"type": "webchat", "name": "Chan{bad}%s"}', None),
        (
            "/api/admin/embed-tokens",
            '{"channel_id": "%s", "name": "Token{bad}"}',
            EmbedToken,
        ),
    ],
    ids=["user", "channel", "embed_token"],
)
async def test_admin_bodies_with_unstorable_text_are_refused_and_store_nothing(
    factory, path, template, model, bad
):
    org = await factory.org()
    owner = await factory.owner(org)
    fill = org.channel_id if "channel_id" in template else uid("x")
    users = await count(factory, User, User.organization_id == org.org_id)
    tokens = await count(factory, EmbedToken, EmbedToken.organization_id == org.org_id)
    channels = (await fetch(factory, "GET", "/api/admin/channels", headers=owner.headers)).body

    reply = await fetch(
        factory,
        "POST",
        path,
        headers={**owner.headers, "Content-Type": "application/json"},
        data=raw_json(template % fill, bad),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert await count(factory, User, User.organization_id == org.org_id) == users
    assert await count(factory, EmbedToken, EmbedToken.organization_id == org.org_id) == tokens
    after = (await fetch(factory, "GET", "/api/admin/channels", headers=owner.headers)).body
    assert after == channels


async def test_a_session_cookie_that_is_not_ascii_is_no_session(factory):
    # aiohttp decodes header bytes with surrogateescape: \xff arrives as a lone surrogate.
    reply = await raw_request(
        factory, b"GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: session=ab\xffcd\r\n"
    )

    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]


async def test_a_csrf_header_that_is_not_ascii_is_forbidden(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await waiting_conversation(factory, org)

    reply = await raw_request(
        factory,
        f"POST /api/conversations/{conv['id']}/tags HTTP/1.1\r\nHost: x\r\n"
        f"Cookie: session={owner.cookie}\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n".encode()
        + b"X-CSRFToken: \xff\xfe\r\n",
        b'{"tags":[]}'[:10],
    )

    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]


async def raw_request(factory, head: bytes, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request written byte for byte (clients refuse to send non-ASCII
    headers); returns the raw response."""
    import asyncio

    host, port = factory.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


# ---- multipart bodies that do not parse -----------------------------------------------------

BOUNDARY = "chatdBoundary7"
PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def multipart(*parts: bytes) -> bytes:
    body = b""
    for part in parts:
        body += f"--{BOUNDARY}\r\n".encode() + part + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def file_part(disposition: bytes) -> bytes:
    return (
        b"Content-Disposition: " + disposition + b"\r\nContent-Type: image/png\r\n\r\n" + PNG_HEAD
    )


BROKEN_PARTS = {
    "raw_nul_in_filename": file_part(b'form-data; name="file"; filename="a\x00.png"'),
    "encoded_nul_in_filename": file_part(b'form-data; name="file"; filename="a%00.png"'),
    "filename_star_not_utf8": file_part(b"form-data; name=\"file\"; filename*=utf-8''%ff%fe.png"),
    "header_line_without_colon": b"Content-Disposition form-data\r\n\r\nxyz",
    "nul_in_field_name": b'Content-Disposition: form-data; name="a\x00"\r\n\r\nxyz',
}


def stored_files(factory) -> set[str]:
    root = factory.services.settings.uploads_path
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("broken", BROKEN_PARTS.values(), ids=BROKEN_PARTS.keys())
@pytest.mark.parametrize("who", ["agent", "visitor"])
async def test_a_malformed_multipart_part_is_invalid_input_and_stores_nothing(factory, who, broken):
    org = await factory.org()
    owner = await factory.owner(org)
    conv = await waiting_conversation(factory, org)
    if who == "agent":
        path, headers, fields = "/api/uploads", owner.headers, []
    else:
        path, headers = "/chat-widget/uploads", {}
        fields = [
            f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
            for name, value in (
                ("embed_token", org.embed_token),
                ("external_id", conv["end_user"]["external_id"]),
                ("conversation_id", conv["id"]),
            )
        ]
    before = stored_files(factory)

    reply = await fetch(
        factory,
        "POST",
        path,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        data=multipart(*fields, broken),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert stored_files(factory) == before


async def test_visitor_upload_fields_with_a_nul_are_invalid_input(factory):
    # (A lone surrogate cannot arrive here: form fields must be strict UTF-8.)
    org = await factory.org()
    conv = await waiting_conversation(factory, org)
    before = stored_files(factory)
    ext = conv["end_user"]["external_id"] + "\x00"
    field = b'Content-Disposition: form-data; name="external_id"\r\n\r\n' + ext.encode()

    reply = await fetch(
        factory,
        "POST",
        "/chat-widget/uploads",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        data=multipart(
            f'Content-Disposition: form-data; name="embed_token"\r\n\r\n{org.embed_token}'.encode(),
            field,
            f'Content-Disposition: form-data; name="conversation_id"\r\n\r\n{conv["id"]}'.encode(),
            file_part(b'form-data; name="file"; filename="a.png"'),
        ),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert stored_files(factory) == before


# ---- allowed origins: scheme://host[:port] and nothing else -------------------------------

# Values that were stored before (the old check only wanted http(s):// and no "/" after the
# host). Paths, other schemes and bare hosts were already refused (tests/rest/test_admin_api).
NOT_ORIGINS = [
    "https://a.test; script-src *",
    "https://a.test?q=1",
    "https://a.test#frag",
    "https://user@a.test",
    "https://user:pw@a.test",
    "https://a .test",
    "https://a.test\n",
    "https://:443",
    "https://a.test:",
    "https://a.test:99999",
    "https://a.test:0",
    "https://a..test",
    "https://-a.test",
    "https://a_b.test",
    "https://*.a.test",
    "https://a.test\x00",
    "https://\u0430.test",
    "https://a.test\ud800",
]


@pytest.mark.parametrize("origin", NOT_ORIGINS)
async def test_embed_token_with_an_origin_that_is_not_scheme_host_port_is_refused(factory, origin):
    org = await factory.org()
    owner = await factory.owner(org)
    tokens = await count(factory, EmbedToken, EmbedToken.organization_id == org.org_id)

    reply = await fetch(
        factory,
        "POST",
        "/api/admin/embed-tokens",
        headers={**owner.headers, "Content-Type": "application/json"},
        data=json.dumps(
            {"channel_id": org.channel_id, "allowed_origins": ["https://ok.test", origin]}
        ),
    )

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert await count(factory, EmbedToken, EmbedToken.organization_id == org.org_id) == tokens


async def test_embed_token_origins_are_stored_as_browsers_send_them(factory):
    org = await factory.org()
    owner = await factory.owner(org)
    given_and_stored = [
        ("https://shop.example", "https://shop.example"),
        ("https://shop.example/", "https://shop.example"),
        ("HTTPS://Shop.Example", "https://shop.example"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://shop.example:80", "http://shop.example"),
        ("https://shop.example:8443", "https://shop.example:8443"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("https://xn--80ak6aa92e.example", "https://xn--80ak6aa92e.example"),
    ]

    reply = await fetch(
        factory,
        "POST",
        "/api/admin/embed-tokens",
        headers=owner.headers,
        json={"channel_id": org.channel_id, "allowed_origins": [g for g, _ in given_and_stored]},
    )

    assert reply.status == 201, reply.body
    assert reply.body["allowed_origins"] == [s for _, s in given_and_stored]


@pytest.mark.parametrize("origin", ["https://a.test; script-src *", "https://user@a.test"])
async def test_bootstrap_service_refuses_an_origin_and_creates_nothing(factory, origin):
    name = uid("Org ")

    with pytest.raises(InvalidInput):
        await factory.services.orgs.bootstrap(name, f"{uid('o-')}@example.com", PASSWORD, [origin])

    assert await count(factory, Organization, Organization.name == name) == 0


def test_cli_bootstrap_refuses_a_bad_allowed_origin_with_exit_2_and_creates_nothing(
    tmp_path, single_pass
):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CHATD_DATA_DIR"] = str(tmp_path / "data")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "chatd", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = cli(
        "bootstrap",
        "--org",
        "Acme",
        "--email",
        "boss@example.com",
        "--password",
        PASSWORD,
        "--allowed-origin",
        "https://shop.example",
        "--allowed-origin",
        "https://a.test; script-src *",
        "--json",
    )
    accepted = cli(
        "bootstrap",
        "--org",
        "Acme",
        "--email",
        "boss@example.com",
        "--password",
        PASSWORD,
        "--allowed-origin",
        "https://shop.example",
        "--json",
    )

    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr.startswith("chatd: "), refused.stderr
    assert "a.test" in refused.stderr and refused.stdout == ""
    # Nothing was stored: the accepted run creates the organization (and its owner) afresh.
    assert accepted.returncode == 0, accepted.stderr
    out = json.loads(accepted.stdout.strip().splitlines()[-1])
    assert set(out) == {"org_id", "user_id", "channel_id", "embed_token"}
    db = tmp_path / "data" / "chatd.sqlite3"
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from organizations").fetchone() == (1,)
        assert conn.execute("select count(*) from embed_tokens").fetchone() == (1,)
        origins = conn.execute("select allowed_origins from embed_tokens").fetchone()[0]
    assert json.loads(origins) == ["https://shop.example"]
