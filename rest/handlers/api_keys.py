"""Admin endpoints for API keys (owner and admin sessions): list, create (the key is in the
answer, this once), revoke."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_json, path_id
from rest.schemas import CreateApiKeySchema

_create = CreateApiKeySchema()


async def list_api_keys(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].api_keys.list(agent_of(request)))


async def create_api_key(request: web.Request) -> web.Response:
    body = await load_json(request, _create)
    created = await request.app[SERVICES].api_keys.create(
        agent_of(request), body["name"], body["scopes"]
    )
    return web.json_response(created, status=201)


async def revoke_api_key(request: web.Request) -> web.Response:
    revoked = await request.app[SERVICES].api_keys.revoke(
        agent_of(request), path_id(request, "key_id")
    )
    return web.json_response(revoked)
