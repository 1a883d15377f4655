"""Agent REST endpoints for conversations (session cookie + CSRF, scoped to the agent's org)."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_json, load_query, path_id
from rest.schemas import ConversationListQuerySchema, HistoryQuerySchema, ResolveSchema, TagsSchema

_list_query = ConversationListQuerySchema()
_history_query = HistoryQuerySchema()
_resolve = ResolveSchema()
_tags = TagsSchema()


async def list_conversations(request: web.Request) -> web.Response:
    q = load_query(request, _list_query)
    result = await request.app[SERVICES].conversations.list_conversations(
        agent_of(request), q["filter"], q["limit"], q["offset"]
    )
    return web.json_response(result)


async def get_conversation(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].conversations.get_conversation(
        agent_of(request), path_id(request)
    )
    return web.json_response(result)


async def list_messages(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    q = load_query(request, _history_query)
    result = await request.app[SERVICES].conversations.history(
        agent_of(request), conversation_id, q["limit"], q["offset"], q["after_seq"]
    )
    return web.json_response(result)


async def assign(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    result = await request.app[SERVICES].conversations.assign_conversation(
        agent_of(request), conversation_id
    )
    return web.json_response(result)


async def resolve(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    body = await load_json(request, _resolve, optional=True)
    result = await request.app[SERVICES].conversations.resolve(
        agent_of(request), conversation_id, body["tags"]
    )
    return web.json_response(result)


async def set_tags(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    body = await load_json(request, _tags)
    result = await request.app[SERVICES].conversations.set_tags(
        agent_of(request), conversation_id, body["tags"]
    )
    return web.json_response(result)
