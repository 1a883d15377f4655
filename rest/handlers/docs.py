"""GET /api/openapi.json: the OpenAPI document (rest/openapi.py), without authentication."""

from __future__ import annotations

from aiohttp import web

from rest.keys import OPENAPI


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI], headers={"Cache-Control": "no-cache"})
