"""The integration API, version 1 (/api/v1/): servers and bots, with an API key.

The same services and rules as the agents' API and the sockets: a key reaches its
organization's conversations only (another organization's answer 404), and a message sent
here gets its seq, its idempotency and its live fan-out exactly as a socket's does.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from aiohttp import web

from rest.keys import MESSAGE_BODY, SERVICES
from rest.middlewares import integration_of, load_json, load_query, path_id
from rest.schemas import (
    ResolveSchema,
    V1AssignSchema,
    V1ConversationListQuerySchema,
    V1MessagesQuerySchema,
    V1OpenConversationSchema,
    V1UpdateConversationSchema,
)
from server.errors import InvalidInput
from server.schemas import UUID_RE, MessageBodySchema
from server.services.conversations import NewMessage

READ = "conversations:read"
WRITE = "conversations:write"

_open = V1OpenConversationSchema()
_update = V1UpdateConversationSchema()
_assign = V1AssignSchema()
_list_query = V1ConversationListQuerySchema()
_messages_query = V1MessagesQuerySchema()
_resolve = ResolveSchema()


def _message_body(request: web.Request) -> MessageBodySchema:
    """The message body's schema with this server's content limits, built once per app."""
    return request.app[MESSAGE_BODY]


async def open_conversation(request: web.Request) -> web.Response:
    """POST /api/v1/conversations: create or get the conversation of channel_id + external_id
    (201 when created, 200 when it existed)."""
    actor = integration_of(request, WRITE)
    body = await load_json(request, _open)
    conversations = request.app[SERVICES].conversations
    opened, created = await conversations.open_for_integration(
        actor, body["channel_id"], body["external_id"], body["display_name"]
    )
    if body["metadata"] is not None:
        result = await conversations.update_for_integration(
            actor, opened["id"], metadata=body["metadata"]
        )
    else:
        result = await conversations.get_for_integration(actor, opened["id"])
    return web.json_response(result, status=201 if created else 200)


async def list_conversations(request: web.Request) -> web.Response:
    """GET /api/v1/conversations?status=&assignee=&channel_id=&updated_since=&limit=&cursor=
    Least recently updated first; `next_cursor` continues (None on the last page)."""
    actor = integration_of(request, READ)
    q = load_query(request, _list_query)
    since = q["updated_since"]
    rows, nxt = await request.app[SERVICES].conversations.list_for_integration(
        actor,
        status=q["status"],
        assignee=q["assignee"].lower() if q["assignee"] else None,
        channel_id=q["channel_id"],
        updated_since=since.astimezone(UTC).replace(tzinfo=None) if since else None,
        limit=q["limit"],
        cursor=_decode_cursor(q["cursor"]) if q["cursor"] else None,
    )
    return web.json_response(
        {"conversations": rows, "next_cursor": _encode_cursor(nxt) if nxt else None}
    )


def _encode_cursor(cursor: tuple[datetime, str]) -> str:
    raw = f"{cursor[0].isoformat()}|{cursor[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> InvalidInput:
    return InvalidInput("cursor: not a cursor this API gave.", fields={"cursor": ["Unknown."]})


def _decode_cursor(value: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        when, conversation_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(when)
    except (ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if parsed.tzinfo is not None or not UUID_RE.match(conversation_id):
        raise _bad_cursor()
    return parsed, conversation_id


async def get_conversation(request: web.Request) -> web.Response:
    actor = integration_of(request, READ)
    result = await request.app[SERVICES].conversations.get_for_integration(actor, path_id(request))
    return web.json_response(result)


async def update_conversation(request: web.Request) -> web.Response:
    """PATCH /api/v1/conversations/{id}: display_name, metadata (replaced), tags (replaced)."""
    actor = integration_of(request, WRITE)
    conversation_id = path_id(request)
    body = await load_json(request, _update)
    result = await request.app[SERVICES].conversations.update_for_integration(
        actor, conversation_id, body["display_name"], body["metadata"], body["tags"]
    )
    return web.json_response(result)


async def assign(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/assign {agent_id}: hand the open session to an agent."""
    actor = integration_of(request, WRITE)
    conversation_id = path_id(request)
    body = await load_json(request, _assign)
    result = await request.app[SERVICES].conversations.assign_to_agent(
        actor, conversation_id, body["agent_id"]
    )
    return web.json_response(result)


async def unassign(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/unassign: put the open session back in the queue."""
    actor = integration_of(request, WRITE)
    result = await request.app[SERVICES].conversations.unassign(actor, path_id(request))
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
    """POST /api/v1/conversations/{id}/messages: send as the integration (sender_type bot),
    or, with a webhook bot's own key, as that bot (under a bot's rules: not once an agent
    holds the conversation, 403).
    201 with the stored message; 200 with the original for a retried client_message_id."""
    actor = integration_of(request, WRITE)
    conversation_id = path_id(request)
    body = await load_json(request, _message_body(request))
    message, created = await request.app[SERVICES].conversations.send_message(
        actor.as_sender(),
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
    result = await request.app[SERVICES].conversations.resolve(actor, conversation_id, body["tags"])
    return web.json_response(result)
