"""The inbox over HTTP: the page shell and its assets, the vendored Socket.IO client, and the
team listing (GET /api/team) the inbox names its presence list with."""

from __future__ import annotations

import re
from pathlib import Path

from tests.factories import PASSWORD, Agent, uid
from tests.rest.helpers import assert_error, csrf_meta, fetch

ROOT = Path(__file__).resolve().parents[2]
SOCKET_IO_BUILD = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
TEAM_KEYS = {"id", "display_name", "role"}
JAVASCRIPT = ("text/javascript", "application/javascript")


# ---- GET /api/team ----------------------------------------------------------------------------


async def test_team_lists_every_member_of_the_callers_organization_for_any_role(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    admin = await factory.agent(org, role="admin", login=False)
    outsider = await factory.agent(await factory.org(), login=False)

    status, team = await factory.get("/api/team", agent)

    assert status == 200
    assert {m["id"] for m in team} == {org.owner_id, agent.user_id, admin.user_id}
    assert outsider.user_id not in {m["id"] for m in team}
    assert all(set(m) == TEAM_KEYS for m in team), team  # no email, nothing admin-only
    roles = {m["id"]: m["role"] for m in team}
    assert (roles[org.owner_id], roles[agent.user_id], roles[admin.user_id]) == (
        "owner",
        "agent",
        "admin",
    )
    names = {m["id"]: m["display_name"] for m in team}
    assert names[agent.user_id] == agent.email.split("@")[0]


async def test_team_is_ordered_by_display_name(factory):
    org = await factory.org()
    for name in ("zoe", "Adam", "mia"):
        await factory.services.orgs.add_user(
            org.org_id, f"{uid(name + '-')}@example.com", PASSWORD, "agent", name
        )
    owner = await factory.owner(org)

    status, team = await factory.get("/api/team", owner)

    assert status == 200
    names = [m["display_name"] for m in team]
    assert names == sorted(names)


async def test_team_requires_a_session(factory):
    reply = await fetch(factory, "GET", "/api/team")

    assert reply.status == 401
    assert_error(reply.body, "not_authenticated")


# ---- the page and its assets ------------------------------------------------------------------


async def inbox_page(factory, agent: Agent):
    reply = await fetch(factory, "GET", "/inbox", cookies={"session": agent.cookie})
    assert reply.status == 200, reply.body
    return reply


async def test_inbox_page_loads_its_own_assets_and_the_official_socket_io_client(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    page = await inbox_page(factory, agent)

    scripts = re.findall(r'<script (?:type="module" )?src="([^"]+)"', page.body)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.body)
    preloads = re.findall(r'<link rel="modulepreload" href="([^"]+)"', page.body)
    assert scripts[0] == "/inbox/vendor/socket.io.min.js"
    assert len(scripts) == 2 and scripts[1].startswith("/inbox/static/inbox/main.js?v="), scripts
    assert [s.split("?")[0] for s in styles] == [
        "/inbox/static/shared/render.css",
        "/inbox/static/inbox/inbox.css",
    ]
    # Every module main.js imports, directly or not, is preloaded: the seq-gap detector and
    # the rich-message renderer the widget uses too, among them.
    names = {p.split("?")[0].removeprefix("/inbox/static/") for p in preloads}
    assert {"seqgap.js", "shared/render.js", "inbox/socket.js", "inbox/console.js"} <= names

    vendor = await fetch(factory, "GET", scripts[0])
    assert vendor.status == 200
    assert vendor.headers["Content-Type"].split(";")[0] in JAVASCRIPT
    assert vendor.body == SOCKET_IO_BUILD.read_text()  # served as npm installed it
    (gaps_url,) = [p for p in preloads if p.startswith("/inbox/static/seqgap.js?v=")]
    gaps = await fetch(factory, "GET", gaps_url)
    assert gaps.status == 200 and "export function ChatSeqGaps" in gaps.body
    assert "immutable" in gaps.headers["Cache-Control"]
    (socket_url,) = [p for p in preloads if p.startswith("/inbox/static/inbox/socket.js?v=")]
    app = await fetch(factory, "GET", socket_url)
    assert app.status == 200 and "emitWithAck" in app.body
    css = await fetch(factory, "GET", styles[1])
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")


async def test_the_vendor_route_serves_only_the_socket_io_build(factory):
    for path in (
        "/inbox/vendor/socket.io.js",
        "/inbox/vendor/package.json",
        "/inbox/vendor/..%2Fpackage.json",
        "/inbox/vendor/%2E%2E%2F%2E%2E%2Fpackage.json",
    ):
        reply = await fetch(factory, "GET", path)
        assert reply.status == 404, path


async def test_inbox_page_runs_only_its_own_scripts_and_escapes_the_agents_name(factory):
    org = await factory.org()
    name = '"><script>alert(1)</script>'
    email = f"{uid('odd-')}@example.com"
    created = await factory.services.orgs.add_user(org.org_id, email, PASSWORD, "agent", name)
    agent = await factory.login(Agent(created["user_id"], email, "agent", org.org_id))

    page = await inbox_page(factory, agent)

    assert "<script>alert(1)</script>" not in page.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    assert csrf_meta(page.body) == agent.csrf
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert page.headers["Cache-Control"] == "no-store"
