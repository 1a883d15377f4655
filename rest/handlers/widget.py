"""The widget's public endpoints: no session; end users are known by external_id."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import load_json, load_query, path_id
from rest.schemas import WidgetConversationSchema, WidgetHistoryQuerySchema
from server.actors import IdentityProof

_open = WidgetConversationSchema()
_history = WidgetHistoryQuerySchema()


async def open_conversation(request: web.Request) -> web.Response:
    body = await load_json(request, _open)
    conversation, created = await request.app[SERVICES].widget.open_conversation(
        body["embed_token"],
        body["external_id"],
        body["customer_name"],
        origin=request.headers.get("Origin"),
        own_origin=f"{request.scheme}://{request.host}",
        client_address=request.remote,
        proof=IdentityProof.of(body),
    )
    return web.json_response(conversation, status=201 if created else 200)


async def history(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    q = load_query(request, _history)
    origin = request.headers.get("Origin")
    if origin == f"{request.scheme}://{request.host}":
        origin = None  # the widget page itself: the token's allowed origins do not apply
    result = await request.app[SERVICES].conversations.widget_history(
        q["external_id"], conversation_id, q["after_seq"], origin=origin, proof=IdentityProof.of(q)
    )
    return web.json_response(result)
