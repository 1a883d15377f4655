"""Webhook endpoints and their delivery logs, for API keys with the `webhooks:manage` scope
(/api/v1/webhooks) and for owners' and admins' sessions (the console, /api/admin/webhooks).
The same service answers both; it checks the role or the scope."""

from __future__ import annotations

from aiohttp import web

from rest.keys import SERVICES
from rest.middlewares import (
    API_V1_PREFIX,
    agent_of,
    integration_of,
    load_json,
    load_query,
    path_id,
)
from rest.schemas import (
    WebhookCreateSchema,
    WebhookDeliveriesQuerySchema,
    WebhookRotateSchema,
    WebhookUpdateSchema,
)
from server.errors import NotFound
from server.services.webhooks import MANAGE_SCOPE

_create = WebhookCreateSchema()
_update = WebhookUpdateSchema()
_deliveries_query = WebhookDeliveriesQuerySchema()
_rotate = WebhookRotateSchema()


def _actor(request: web.Request):
    if request.path.startswith(API_V1_PREFIX):
        return integration_of(request, MANAGE_SCOPE)
    return agent_of(request)


def _endpoint_id(request: web.Request) -> str:
    return path_id(request, "endpoint_id")


def _delivery_id(request: web.Request) -> int:
    value = request.match_info["delivery_id"]
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise NotFound("Delivery not found.")
    return int(value)


async def list_endpoints(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SERVICES].webhooks.list(_actor(request)))


async def create_endpoint(request: web.Request) -> web.Response:
    """201 with the endpoint and, this once, its signing secret ("secret")."""
    actor = _actor(request)
    body = await load_json(request, _create)
    created = await request.app[SERVICES].webhooks.create(
        actor, body["url"], body["event_types"], body["description"], body["enabled"]
    )
    return web.json_response(created, status=201)


async def get_endpoint(request: web.Request) -> web.Response:
    actor = _actor(request)
    return web.json_response(await request.app[SERVICES].webhooks.get(actor, _endpoint_id(request)))


async def update_endpoint(request: web.Request) -> web.Response:
    actor = _actor(request)
    endpoint_id = _endpoint_id(request)
    body = await load_json(request, _update)
    return web.json_response(await request.app[SERVICES].webhooks.update(actor, endpoint_id, body))


async def delete_endpoint(request: web.Request) -> web.Response:
    actor = _actor(request)
    await request.app[SERVICES].webhooks.delete(actor, _endpoint_id(request))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    """200 with the endpoint and its new secret; the body is optional:
    {"expire_previous_after_seconds": 0..604800} (default a day)."""
    actor = _actor(request)
    endpoint_id = _endpoint_id(request)
    body = await load_json(request, _rotate, optional=True)
    rotated = await request.app[SERVICES].webhooks.rotate_secret(
        actor, endpoint_id, body["expire_previous_after_seconds"]
    )
    return web.json_response(rotated)


async def send_test(request: web.Request) -> web.Response:
    """202: a webhook.test delivery is queued (see the delivery log)."""
    actor = _actor(request)
    queued = await request.app[SERVICES].webhooks.send_test(actor, _endpoint_id(request))
    return web.json_response(queued, status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    """The delivery log, newest first: ?status=pending|delivered|failed&limit=&before="""
    actor = _actor(request)
    endpoint_id = _endpoint_id(request)
    q = load_query(request, _deliveries_query)
    page = await request.app[SERVICES].webhooks.deliveries(
        actor, endpoint_id, q["status"], q["limit"], q["before"]
    )
    return web.json_response(page)


async def redeliver(request: web.Request) -> web.Response:
    """202: the delivery is queued again (a new log entry, the same webhook-id)."""
    actor = _actor(request)
    endpoint_id = _endpoint_id(request)
    queued = await request.app[SERVICES].webhooks.redeliver(
        actor, endpoint_id, _delivery_id(request)
    )
    return web.json_response(queued, status=202)
