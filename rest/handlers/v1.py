"""The integration API, version 1 (/api/v1/): servers and bots, with an API key.

The same services and rules as the agents' API and the sockets: a key reaches its
organization's conversations only (another organization's answer 404), and a message sent
here gets its seq, its idempotency and its live fan-out exactly as a socket's does.
"""

from __future__ import annotations

from datetime import UTC

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import integration_of, load_json, load_query, path_id
from rest.schemas import (
    ResolveSchema,
    V1MessagesQuerySchema,
    V1OpenConversationSchema,
)
from server.schemas import MessageBodySchema
from server.services.conversations import NewMessage

READ = "conversations:read"
WRITE = "conversations:write"

_open = V1OpenConversationSchema()
_messages_query = V1MessagesQuerySchema()
_resolve = ResolveSchema()


def _message_body(request: web.Request) -> MessageBodySchema:
    """The message body's schema, with this server's content limits."""
    s = request.app[SERVICES].settings
    return MessageBodySchema(
        max_content_length=s.max_content_length, max_rich_media_bytes=s.max_rich_media_bytes
    )


async def open_conversation(request: web.Request) -> web.Response:
    """POST /api/v1/conversations: create or get the conversation of channel_id + external_id
    (201 when created, 200 when it existed)."""
    actor = integration_of(request, WRITE)
    body = await load_json(request, _open)
    conversation, created = await request.app[SERVICES].conversations.open_for_integration(
        actor, body["channel_id"], body["external_id"], body["display_name"]
    )
    return web.json_response(conversation, status=201 if created else 200)


async def get_conversation(request: web.Request) -> web.Response:
    actor = integration_of(request, READ)
    result = await request.app[SERVICES].conversations.get_conversation(actor, path_id(request))
    return web.json_response(result)


async def list_messages(request: web.Request) -> web.Response:
    """GET /api/v1/conversations/{id}/messages?after_seq=&since=&sender_type=&limit="""
    actor = integration_of(request, READ)
    conversation_id = path_id(request)
    q = load_query(request, _messages_query)
    since = q["since"].astimezone(UTC).replace(tzinfo=None) if q["since"] else None
    page = await request.app[SERVICES].conversations.messages_page(
        actor, conversation_id, q["after_seq"], since, q["sender_type"], q["limit"]
    )
    return web.json_response(page)


async def send_message(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/messages: send as the integration (sender_type bot).
    201 with the stored message; 200 with the original for a retried client_message_id."""
    actor = integration_of(request, WRITE)
    conversation_id = path_id(request)
    body = await load_json(request, _message_body(request))
    message, created = await request.app[SERVICES].conversations.send_message(
        actor,
        NewMessage(
            conversation_id=conversation_id,
            content=body["content"],
            content_type=body["content_type"],
            rich_media=body["rich_media"],
            client_message_id=body["client_message_id"],
        ),
    )
    return web.json_response(message, status=201 if created else 200)


async def resolve(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/resolve ("finish"): close the open session."""
    actor = integration_of(request, WRITE)
    conversation_id = path_id(request)
    body = await load_json(request, _resolve, optional=True)
    result = await request.app[SERVICES].conversations.resolve(
        actor, conversation_id, body["tags"]
    )
    return web.json_response(result)
