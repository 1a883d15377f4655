"""The agent inbox: its page, its static files, the vendored Socket.IO client, and the team
listing the inbox shows next to presence.

The page is a server-rendered shell (widget_static/inbox/index.html) around inbox.js; every
value put into it is HTML-escaped. The Socket.IO client is the official browser build from
npm (node_modules, installed by `npm ci`), served as is.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from aiohttp import web

from rest.keys import AGENT, SERVICES, SESSION_TOKEN
from rest.middlewares import agent_of
from rest.widget_assets import WIDGET_ASSETS
from server.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]
INBOX_DIR = ROOT / "widget_static" / "inbox"
STATIC_ROUTE = "inbox_static"
SOCKET_IO_DIST = ROOT / "node_modules" / "socket.io-client" / "dist"
VENDOR_FILES = frozenset({"socket.io.min.js", "socket.io.min.js.map"})

# The page loads only its own scripts and styles: a message that slipped past the
# textContent rendering still could not run a script. Images in rich messages may live on
# any http(s) host (carousel cards, image links), so img-src is wide.
PAGE_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: http: data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)


def _asset_url(request: web.Request, filename: str) -> str:
    resource = request.app.router[STATIC_ROUTE]
    return str(resource.url_for(filename=filename, append_version=True))


def render_page(request: web.Request, csrf: str, user: dict) -> str:
    values = {
        "csrf": csrf,
        "user_id": user["id"],
        "user_name": user["display_name"],
        "user_email": user["email"],
        "user_role": user["role"],
        "org_id": user["organization_id"],
        "inbox_css": _asset_url(request, "inbox.css"),
        "inbox_js": _asset_url(request, "inbox.js"),
        "socket_io_js": "/inbox/vendor/socket.io.min.js",
        "seqgap_js": request.app[WIDGET_ASSETS].url("seqgap.js"),
    }
    html = (INBOX_DIR / "index.html").read_text(encoding="utf-8")
    for key, value in values.items():
        html = html.replace("{{" + key + "}}", escape(value, quote=True))
    return html


async def page(request: web.Request) -> web.StreamResponse:
    """GET /inbox: the single-page app for a signed-in agent, else the login form."""
    services = request.app[SERVICES]
    agent = request.get(AGENT)
    if agent is None:
        return web.Response(status=302, headers={"Location": "/auth/login?next=/inbox"})
    user = await services.auth.user(agent)
    html = render_page(request, services.auth.csrf_token(request[SESSION_TOKEN]), user)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"},
    )


async def vendor(request: web.Request) -> web.StreamResponse:
    """The official socket.io-client browser build, straight from node_modules."""
    name = request.match_info["name"]
    path = SOCKET_IO_DIST / name
    if name not in VENDOR_FILES or not path.is_file():
        # Missing only when `npm ci` was not run.
        raise NotFound("Not found.")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


async def team(request: web.Request) -> web.Response:
    """GET /api/team: id, display_name and role of every user of the caller's org."""
    return web.json_response(await request.app[SERVICES].orgs.team(agent_of(request)))
