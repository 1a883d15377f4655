"""Typed application and request keys."""

from __future__ import annotations

import socketio
from aiohttp import web

from server.app_services import Services

SERVICES = web.AppKey("services", Services)
SIO = web.AppKey("sio", socketio.AsyncServer)

# The integration API's message body schema, with this server's content limits.
MESSAGE_BODY = web.AppKey("message_body", object)
# The OpenAPI document, built once when the routes are set up.
OPENAPI = web.AppKey("openapi", dict)

AGENT = web.RequestKey("agent", object)
SESSION_TOKEN = web.RequestKey("session_token", object)
# The IntegrationActor of the API key a /api/v1/ request presented.
INTEGRATION = web.RequestKey("integration", object)
