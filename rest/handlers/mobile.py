"""The native apps' endpoints (mobile channels): no session; app users are known by
external_id, proven when the channel verifies identity."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import load_json
from rest.schemas import MobileConversationSchema
from server.actors import EndUserActor, IdentityProof
from server.schemas import DeviceRefSchema, DeviceSchema

_open = MobileConversationSchema()
_device = DeviceSchema()
_device_ref = DeviceRefSchema()


async def open_conversation(request: web.Request) -> web.Response:
    body = await load_json(request, _open)
    conversation, created = await request.app[SERVICES].mobile.open_conversation(
        body["channel_id"],
        body["channel_key"],
        body["external_id"],
        body["display_name"],
        proof=IdentityProof.of(body),
        client_address=request.remote,
    )
    return web.json_response(conversation, status=201 if created else 200)


async def register_device(request: web.Request) -> web.Response:
    body = await load_json(request, _device)
    actor = EndUserActor(body["external_id"], proof=IdentityProof.of(body))
    device, created = await request.app[SERVICES].push.register_device(
        actor,
        body["conversation_id"],
        body["platform"],
        body["token"],
        body["app_version"],
        body["locale"],
    )
    return web.json_response(device, status=201 if created else 200)


async def unregister_device(request: web.Request) -> web.Response:
    body = await load_json(request, _device_ref)
    actor = EndUserActor(body["external_id"], proof=IdentityProof.of(body))
    removed = await request.app[SERVICES].push.unregister_device(
        actor, body["conversation_id"], body["platform"], body["token"]
    )
    return web.json_response({"removed": removed})
