"""Bots: the console's management of them (owner and admin sessions), an agent handing a
conversation back to its bot, and what the widget and apps show of the bot that answers."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_json, load_query, path_id
from rest.schemas import (
    AttachBotSchema,
    BotCreateSchema,
    BotQuerySchema,
    BotTestSchema,
    BotUpdateSchema,
)
from server.errors import InvalidInput

_create = BotCreateSchema()
_update = BotUpdateSchema()
_test = BotTestSchema()
_attach = AttachBotSchema()
_query = BotQuerySchema()


def _bot_id(request: web.Request) -> str:
    return path_id(request, "bot_id")


async def list_bots(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].bots.list(agent_of(request)))


async def create_bot(request: web.Request) -> web.Response:
    """201 with the bot; a webhook bot's carries, this once, "secret" and "api_key"."""
    actor = agent_of(request)
    body = await load_json(request, _create)
    return web.json_response(await request.app[SERVICES].bots.create(actor, body), status=201)


async def get_bot(request: web.Request) -> web.Response:
    bot = await request.app[SERVICES].bots.get(agent_of(request), _bot_id(request))
    return web.json_response(bot)


async def update_bot(request: web.Request) -> web.Response:
    actor = agent_of(request)
    body = await load_json(request, _update)
    bot = await request.app[SERVICES].bots.update(actor, _bot_id(request), body)
    return web.json_response(bot)


async def delete_bot(request: web.Request) -> web.Response:
    await request.app[SERVICES].bots.delete(agent_of(request), _bot_id(request))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    bot = await request.app[SERVICES].bots.rotate_secret(agent_of(request), _bot_id(request))
    return web.json_response(bot)


async def test_flow(request: web.Request) -> web.Response:
    """A dry run of a flow on one message (the console's live test chat): nothing stored."""
    actor = agent_of(request)
    body = await load_json(request, _test)
    result = await request.app[SERVICES].bots.test_flow(
        actor, body["flow"], body["commands"], body["state"], body["text"]
    )
    return web.json_response(result)


async def attach_to_channel(request: web.Request) -> web.Response:
    actor = agent_of(request)
    body = await load_json(request, _attach)
    channel = await request.app[SERVICES].bots.attach(
        actor, "channel", path_id(request, "channel_id"), _lower(body["bot_id"])
    )
    return web.json_response(channel)


async def attach_to_embed_token(request: web.Request) -> web.Response:
    actor = agent_of(request)
    body = await load_json(request, _attach)
    token = await request.app[SERVICES].bots.attach(
        actor, "embed_token", path_id(request, "token_id"), _lower(body["bot_id"])
    )
    return web.json_response(token)


def _lower(bot_id: str | None) -> str | None:
    return bot_id.lower() if bot_id else None


async def hand_to_bot(request: web.Request) -> web.Response:
    """POST /api/conversations/{id}/hand-to-bot: the agent hands the conversation back to its
    bot. 200 with the conversation."""
    conversation = await request.app[SERVICES].bots.hand_to_bot(agent_of(request), path_id(request))
    return web.json_response(conversation)


async def widget_bot(request: web.Request) -> web.Response:
    """GET /chat-widget/bot?embed_token=: the bot answering under the token ({"bot": null}
    when none): its name, avatar and commands."""
    query = load_query(request, _query)
    if not query["embed_token"]:
        raise InvalidInput("embed_token: Missing data for required field.")
    bot = await request.app[SERVICES].bots.for_embed_token(query["embed_token"])
    return web.json_response({"bot": bot})


async def mobile_bot(request: web.Request) -> web.Response:
    """GET /api/mobile/bot?channel_key= (or channel_id=): the mobile channel's bot."""
    query = load_query(request, _query)
    bot = await request.app[SERVICES].bots.for_mobile_channel(
        query["channel_id"], query["channel_key"]
    )
    return web.json_response({"bot": bot})
