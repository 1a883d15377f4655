"""The API's description, without authentication: the OpenAPI document (rest/openapi.py) at
/api/openapi.json and a reference page at /api/docs (Swagger UI from npm's swagger-ui-dist,
installed by `npm ci` and served from node_modules: no CDN)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from rest.keys import OPENAPI
from rest.pages import render
from server.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]
SWAGGER_UI = ROOT / "node_modules" / "swagger-ui-dist"
ASSETS = {
    "swagger-ui-bundle.js": SWAGGER_UI / "swagger-ui-bundle.js",
    "swagger-ui.css": SWAGGER_UI / "swagger-ui.css",
    "init.js": ROOT / "widget_static" / "apidocs" / "init.js",
}
# Swagger UI sets inline styles; it runs no inline script and reaches only this server.
PAGE_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
    )
)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI], headers={"Cache-Control": "no-cache"})


async def reference_page(request: web.Request) -> web.Response:
    return web.Response(
        text=render(request, "api_docs.html", {}),
        content_type="text/html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


async def asset(request: web.Request) -> web.StreamResponse:
    path = ASSETS.get(request.match_info["name"])
    if path is None or not path.is_file():
        raise NotFound("Not found.")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
