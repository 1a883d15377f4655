"""The web embed: the loader (GET /chat-widget/embed.js), the widget page inside the iframe
(GET /chat-widget) and the page's assets.

The page is a server-rendered template (rest/templates/widget.html, autoescaped) around the
widget's ES modules. Its errors are HTML pages too: it lives in an iframe,
where a JSON error would be a blank box.
"""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import load_query
from rest.pages import render
from rest.schemas import WidgetPageQuerySchema
from rest.widget_assets import WIDGET_ASSETS, asset_response, versioned_response
from server.actors import IdentityProof
from server.errors import DomainError, IdentityRefused, IdentityRequired, infrastructure_error

_page_query = WidgetPageQuerySchema()

# The loader's URL is in every customer's pages and cannot carry a version: short freshness,
# then a cheap revalidation (ETag).
LOADER_CACHE = "public, max-age=300, stale-while-revalidate=86400"
ENTRY = "widget/widget.js"


def page_csp(frame_ancestors: tuple[str, ...]) -> str:
    """Only the page's own scripts and styles run (a message that slipped past textContent
    still could not execute); images of rich messages may be on any http(s) host."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' https: http: data: blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors " + " ".join(frame_ancestors),
        )
    )


async def loader(request: web.Request) -> web.Response:
    return asset_response(request, request.app[WIDGET_ASSETS].loader, LOADER_CACHE)


async def asset(request: web.Request) -> web.Response:
    return versioned_response(
        request, request.app[WIDGET_ASSETS].widget, request.match_info["name"]
    )


async def page(request: web.Request) -> web.Response:
    assets = request.app[WIDGET_ASSETS]
    if assets.missing:
        return _error_page(request, 503, "The chat is not installed completely (run `npm ci`).")
    try:
        q = load_query(request, _page_query)
        opened = await request.app[SERVICES].widget.open_page(
            q["embed_token"],
            q["session_id"],
            (q["customer_name"] or "").strip() or None,
            client_address=request.remote,
            proof=IdentityProof.of(q),
        )
    except DomainError as err:
        if isinstance(err, IdentityRequired | IdentityRefused):
            message = "This chat could not verify who you are. Sign in again, or contact the site."
        elif err.status == 403:
            message = "This chat is not available."
        else:
            message = err.message
        return _error_page(request, err.status, message, err.extra.get("retry_after_ms"))
    except Exception as exc:
        # The database or Redis is down: the iframe says so instead of showing JSON.
        unavailable = infrastructure_error(exc)
        if unavailable is None:
            raise
        return _error_page(request, 503, unavailable.message, unavailable.retry_after_ms)
    conversation = opened.conversation
    files = assets.widget
    values = {
        "title": q["title"],
        "conversation_id": conversation["id"],
        "external_id": conversation["end_user"]["external_id"],
        "customer_name": conversation["end_user"]["display_name"] or "",
        "embed_token": q["embed_token"],
        # The proof of identity, for the widget's history, uploads and socket (verified above).
        "user_hash": q["user_hash"] or "",
        "identity_token": q["identity_token"] or "",
        "upload_max_bytes": str(request.app[SERVICES].settings.upload_max_bytes),
        "render_css": files.url("shared/render.css"),
        "widget_css": files.url("widget/widget.css"),
        "widget_js": files.url(ENTRY),
        # The modules widget.js imports, fetched in parallel with it.
        "modules": [files.url(name) for name in files.module_graph(ENTRY)[1:]],
        "socket_io_js": files.url("socket.io.min.js"),
    }
    html = render(request, "widget.html", values)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Content-Security-Policy": page_csp(opened.frame_ancestors),
            "Cache-Control": "no-store",
        },
    )


def _error_page(
    request: web.Request, status: int, message: str, retry_after_ms: int | None = None
) -> web.Response:
    html = render(request, "widget_error.html", {"message": message})
    # Framable anywhere: the site owner sees the reason in the widget's box instead of a
    # browser error; the page holds nothing and does nothing.
    csp = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors *"
    headers = {"Content-Security-Policy": csp, "Cache-Control": "no-store"}
    if retry_after_ms:
        headers["Retry-After"] = str(max(1, -(-int(retry_after_ms) // 1000)))
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)
