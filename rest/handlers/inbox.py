"""The agent app (inbox and console): its page, its static files, the vendored Socket.IO
client, and the team listing the app shows next to presence.

The page is a server-rendered template (rest/templates/inbox.html, autoescaped) around the
app's ES modules (widget_static/inbox/, served from memory with versioned imports by
rest.widget_assets). The Socket.IO client is the official browser build from npm
(node_modules, installed by `npm ci`), served as is.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from rest.keys import AGENT, SERVICES, SESSION_TOKEN
from rest.middlewares import agent_of
from rest.pages import render
from rest.widget_assets import WIDGET_ASSETS, versioned_response
from server.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]
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


ENTRY = "inbox/main.js"


def render_page(request: web.Request, csrf: str, user: dict) -> str:
    files = request.app[WIDGET_ASSETS].inbox
    values = {
        "csrf": csrf,
        "user_id": user["id"],
        "user_name": user["display_name"],
        "user_email": user["email"],
        "user_role": user["role"],
        "org_id": user["organization_id"],
        "render_css": files.url("shared/render.css"),
        "inbox_css": files.url("inbox/inbox.css"),
        "inbox_js": files.url(ENTRY),
        # The modules main.js imports, fetched in parallel with it.
        "modules": [files.url(name) for name in files.module_graph(ENTRY)[1:]],
        "socket_io_js": "/inbox/vendor/socket.io.min.js",
    }
    return render(request, "inbox.html", values)


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


async def static(request: web.Request) -> web.StreamResponse:
    """GET /inbox/static/{path}: a module or stylesheet of the agent app."""
    files = request.app[WIDGET_ASSETS].inbox
    return versioned_response(request, files, request.match_info["path"], cross_origin=False)


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
