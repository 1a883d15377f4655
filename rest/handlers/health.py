"""GET /healthz: 200 when the database (and Redis, when configured) answer."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rest.keys import SERVICES


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = {"database": "ok", "redis": "not configured"}
    healthy = True
    try:
        await asyncio.wait_for(services.db.ping(), 5)
    except Exception:
        status["database"] = "unavailable"
        healthy = False
    if services.redis is not None:
        try:
            await asyncio.wait_for(services.redis.ping(), 5)
            status["redis"] = "ok"
        except Exception:
            status["redis"] = "unavailable"
            healthy = False
    status["status"] = "ok" if healthy else "unavailable"
    return web.json_response(status, status=200 if healthy else 503)
