"""A mobile channel's push notifications in the console: credentials (FCM, APNs), the
preview setting, a test push and the delivery log (owner/admin sessions)."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_json, load_query, path_id
from rest.schemas import (
    ApnsCredentialsSchema,
    FcmCredentialsSchema,
    PushDeliveriesQuerySchema,
    PushSettingsSchema,
    PushTestSchema,
)
from server.errors import NotFound

_fcm = FcmCredentialsSchema()
_apns = ApnsCredentialsSchema()
_settings = PushSettingsSchema()
_test = PushTestSchema()
_deliveries = PushDeliveriesQuerySchema()


def _channel(request: web.Request) -> str:
    return path_id(request, "channel_id")


async def get_settings(request: web.Request) -> web.Response:
    push = request.app[SERVICES].push
    return web.json_response(await push.settings_of(agent_of(request), _channel(request)))


async def update_settings(request: web.Request) -> web.Response:
    body = await load_json(request, _settings)
    push = request.app[SERVICES].push
    result = await push.set_preview(agent_of(request), _channel(request), body["preview"])
    return web.json_response(result)


async def set_fcm(request: web.Request) -> web.Response:
    body = await load_json(request, _fcm)
    push = request.app[SERVICES].push
    result = await push.set_fcm(agent_of(request), _channel(request), body["service_account"])
    return web.json_response(result)


async def set_apns(request: web.Request) -> web.Response:
    body = await load_json(request, _apns)
    result = await request.app[SERVICES].push.set_apns(
        agent_of(request),
        _channel(request),
        body["team_id"],
        body["key_id"],
        body["private_key"],
        body["bundle_id"],
        body["environment"],
    )
    return web.json_response(result)


async def delete_credentials(request: web.Request) -> web.Response:
    platform = request.match_info["platform"]
    if platform not in ("fcm", "apns"):
        raise NotFound("Not found.")
    push = request.app[SERVICES].push
    result = await push.delete_credentials(agent_of(request), _channel(request), platform)
    return web.json_response(result)


async def send_test(request: web.Request) -> web.Response:
    body = await load_json(request, _test)
    result = await request.app[SERVICES].push.send_test(
        agent_of(request), _channel(request), body["platform"], body["token"]
    )
    return web.json_response(result)


async def deliveries(request: web.Request) -> web.Response:
    q = load_query(request, _deliveries)
    result = await request.app[SERVICES].push.deliveries(
        agent_of(request), _channel(request), q["limit"], q["before"]
    )
    return web.json_response(result)
