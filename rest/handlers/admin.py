"""Admin endpoints: team members, channels and embed tokens (owner/admin roles)."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_json, path_id
from rest.schemas import (
    ChannelIdentitySchema,
    CreateChannelSchema,
    CreateEmbedTokenSchema,
    CreateUserSchema,
)

_user = CreateUserSchema()
_channel = CreateChannelSchema()
_token = CreateEmbedTokenSchema()
_identity = ChannelIdentitySchema()


async def list_users(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].orgs.list_users(agent_of(request)))


async def create_user(request: web.Request) -> web.Response:
    body = await load_json(request, _user)
    user = await request.app[SERVICES].orgs.create_user(
        agent_of(request), body["email"], body["password"], body["role"], body["display_name"]
    )
    return web.json_response(user, status=201)


async def list_channels(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].orgs.list_channels(agent_of(request)))


async def create_channel(request: web.Request) -> web.Response:
    body = await load_json(request, _channel)
    channel = await request.app[SERVICES].orgs.create_channel(
        agent_of(request), body["type"], body["name"], _lower(body["bot_id"])
    )
    return web.json_response(channel, status=201)


async def channel_identity(request: web.Request) -> web.Response:
    settings = await request.app[SERVICES].orgs.channel_identity(
        agent_of(request), path_id(request, "channel_id")
    )
    return web.json_response(settings)


async def set_channel_identity(request: web.Request) -> web.Response:
    body = await load_json(request, _identity)
    settings = await request.app[SERVICES].orgs.set_channel_identity(
        agent_of(request),
        path_id(request, "channel_id"),
        body["mode"],
        body["jwt_algorithm"],
        body["jwks_url"],
    )
    return web.json_response(settings)


async def rotate_identity_secret(request: web.Request) -> web.Response:
    settings = await request.app[SERVICES].orgs.rotate_identity_secret(
        agent_of(request), path_id(request, "channel_id")
    )
    return web.json_response(settings)


async def list_embed_tokens(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].orgs.list_embed_tokens(agent_of(request)))


async def create_embed_token(request: web.Request) -> web.Response:
    body = await load_json(request, _token)
    token = await request.app[SERVICES].orgs.create_embed_token(
        agent_of(request),
        body["channel_id"].lower(),
        body["name"],
        body["allowed_origins"],
        _lower(body["bot_id"]),
    )
    return web.json_response(token, status=201)


async def revoke_embed_token(request: web.Request) -> web.Response:
    token = await request.app[SERVICES].orgs.revoke_embed_token(
        agent_of(request), path_id(request, "token_id")
    )
    return web.json_response(token)


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None
