"""The OpenAPI 3.1 document of the HTTP API, generated with apispec from the marshmallow
schemas the handlers validate with (request bodies and query strings), so what is documented
is what is enforced. Responses are described by the output schemas below, which mirror
server/serializers.py; tests check live answers against them.

Served at /api/openapi.json without authentication (rest/handlers/docs.py).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from rest import schemas as rs
from server.schemas import DeviceRefSchema, DeviceSchema, MessageBodySchema

VERSION = "1.0.0"


# ---- output shapes (documentation only; built by server/serializers.py) ----------------------


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"description": "A stable error code."})
    message = fields.String(required=True)
    field_errors = fields.Dict(
        data_key="fields", metadata={"description": "Per-field problems (invalid_input)."}
    )
    retry_after_ms = fields.Integer(metadata={"description": "rate_limited, unavailable"})


class Error(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class EndUser(Schema):
    id = fields.String(required=True)
    display_name = fields.String(allow_none=True, required=True)
    external_id = fields.String(required=True)
    attributes = fields.Dict(
        metadata={"description": "What a bot collected from the end user (field -> value)."}
    )


class ActiveSession(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["open"]})
    assigned_agent_id = fields.String(allow_none=True, required=True)
    tags = fields.List(fields.String(), required=True)
    handled_by = fields.String(
        metadata={
            "enum": ["agent", "bot", "queue"],
            "description": "Who answers: an agent holds it, the conversation's bot, or it "
            "waits for a person (the unassigned filter).",
        }
    )
    bot_id = fields.String(
        allow_none=True, metadata={"description": "The conversation's enabled bot, if any."}
    )
    handed_off_at = fields.String(
        allow_none=True, metadata={"description": "When the bot handed it to people."}
    )


class Conversation(Schema):
    id = fields.String(required=True)
    end_user = fields.Nested(EndUser, required=True)
    channel_id = fields.String(required=True)
    active_session = fields.Nested(ActiveSession, allow_none=True, required=True)
    created_at = fields.String(required=True, metadata={"description": "UTC, ISO 8601"})
    updated_at = fields.String(required=True)


class IntegrationConversation(Conversation):
    metadata = fields.Dict(allow_none=True, required=True)
    last_seq = fields.Integer(required=True)


class Message(Schema):
    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    session_id = fields.String(required=True)
    seq = fields.Integer(required=True, metadata={"description": "Gap-free per conversation."})
    sender_type = fields.String(required=True, metadata={"enum": ["end_user", "agent", "bot"]})
    sender_id = fields.String(required=True)
    content_type = fields.String(required=True)
    content = fields.String(required=True)
    rich_media = fields.Dict(allow_none=True, required=True)
    read_by = fields.Dict(
        required=True, metadata={"description": "reader id -> first read time (UTC)"}
    )
    flagged = fields.Boolean(
        metadata={
            "description": "Moderation flagged it (end users other than its sender never see it)."
        }
    )
    created_at = fields.String(required=True)


class WidgetMessage(Schema):
    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    seq = fields.Integer(required=True)
    sender_type = fields.String(required=True)
    sender_id = fields.String(required=True)
    content_type = fields.String(required=True)
    content = fields.String(required=True)
    rich_media = fields.Dict(allow_none=True, required=True)
    created_at = fields.String(required=True)


class MessagePage(Schema):
    messages = fields.List(fields.Nested(Message), required=True)
    next_after_seq = fields.Integer(
        allow_none=True, required=True, metadata={"description": "after_seq of the next page"}
    )


class ConversationPage(Schema):
    conversations = fields.List(fields.Nested(IntegrationConversation), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class Assignment(Schema):
    id = fields.String(required=True)
    assigned_agent_id = fields.String(required=True)
    assigned_at = fields.String(required=True)


class Resolution(Schema):
    id = fields.String(required=True)
    session_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["resolved"]})
    tags = fields.List(fields.String(), required=True)
    resolved_at = fields.String(required=True)


class User(Schema):
    id = fields.String(required=True)
    organization_id = fields.String(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": ["owner", "admin", "agent"]})


class Me(Schema):
    user = fields.Nested(User, required=True)
    csrf_token = fields.String(required=True)


class ChannelIdentityPublic(Schema):
    mode = fields.String(required=True, metadata={"enum": ["off", "hmac", "jwt"]})
    jwt_algorithm = fields.String(allow_none=True, metadata={"enum": ["HS256", "RS256", "ES256"]})
    jwks_url = fields.String(allow_none=True)


class Channel(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, metadata={"enum": ["webchat", "mobile_sdk"]})
    name = fields.String(required=True)
    created_at = fields.String(required=True)
    public_key = fields.String(
        allow_none=True, metadata={"description": "Mobile channels: what apps open with."}
    )
    bot_id = fields.String(allow_none=True, metadata={"description": "The channel's bot."})
    identity = fields.Nested(ChannelIdentityPublic, required=True)


class ChannelIdentity(Schema):
    channel_id = fields.String(required=True)
    mode = fields.String(required=True, metadata={"enum": ["off", "hmac", "jwt"]})
    jwt_algorithm = fields.String(allow_none=True, metadata={"enum": ["HS256", "RS256", "ES256"]})
    jwks_url = fields.String(allow_none=True)
    secret = fields.String(
        allow_none=True,
        metadata={
            "description": "The identity secret your server signs user ids with (hmac, and "
            "jwt with HS256); null otherwise. Keep it on your server."
        },
    )


class PushCredentialsSummary(Schema):
    project_id = fields.String()
    client_email = fields.String()
    team_id = fields.String()
    key_id = fields.String()
    bundle_id = fields.String()
    environment = fields.String()
    updated_at = fields.String()


class PushDeviceCounts(Schema):
    fcm = fields.Integer(required=True)
    apns = fields.Integer(required=True)


class PushSettings(Schema):
    channel_id = fields.String(required=True)
    preview = fields.String(required=True, metadata={"enum": ["full", "generic", "none"]})
    fcm = fields.Nested(PushCredentialsSummary, allow_none=True, required=True)
    apns = fields.Nested(PushCredentialsSummary, allow_none=True, required=True)
    devices = fields.Nested(PushDeviceCounts, required=True)


class PushTestResult(Schema):
    outcome = fields.String(
        required=True, metadata={"enum": ["delivered", "unregistered", "retry", "rejected"]}
    )
    status_code = fields.Integer(allow_none=True)
    detail = fields.String(required=True)


class PushDeliveryItem(Schema):
    id = fields.Integer(required=True)
    conversation_id = fields.String(required=True)
    device_id = fields.String(allow_none=True)
    platform = fields.String(required=True)
    message_id = fields.String(required=True)
    seq = fields.Integer(required=True)
    outcome = fields.String(required=True)
    status_code = fields.Integer(allow_none=True)
    detail = fields.String(required=True)
    attempt = fields.Integer(required=True)
    created_at = fields.String(required=True)


class PushDeliveryPage(Schema):
    deliveries = fields.List(fields.Nested(PushDeliveryItem), required=True)
    next_before = fields.Integer(allow_none=True)


class Device(Schema):
    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    platform = fields.String(required=True, metadata={"enum": ["fcm", "apns"]})
    app_version = fields.String(allow_none=True)
    locale = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class DeviceRemoved(Schema):
    removed = fields.Boolean(required=True)


class EmbedToken(Schema):
    id = fields.String(required=True)
    channel_id = fields.String(required=True)
    name = fields.String(required=True)
    token_prefix = fields.String(required=True)
    allowed_origins = fields.List(fields.String(), required=True)
    bot_id = fields.String(
        allow_none=True, metadata={"description": "Its own bot (null: the channel's)."}
    )
    revoked_at = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)
    token = fields.String(metadata={"description": "Only in the creation's answer."})


class BotCommand(Schema):
    command = fields.String(required=True)
    description = fields.String(required=True)


class BotView(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True, required=True)
    kind = fields.String(required=True, metadata={"enum": ["flow", "webhook"]})
    enabled = fields.Boolean(required=True)
    flow = fields.Dict(allow_none=True, required=True, metadata={"description": "docs/bots.md"})
    commands = fields.List(fields.Dict(), required=True)
    all_commands = fields.List(fields.Nested(BotCommand), required=True)
    webhook_url = fields.String(allow_none=True, required=True)
    timeout_seconds = fields.Float(required=True)
    channel_ids = fields.List(fields.String(), required=True)
    embed_token_ids = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    secret = fields.String(
        metadata={"description": "Webhook bots: the signing secret, only when created or rotated."}
    )
    api_key = fields.String(
        metadata={"description": "Webhook bots: the bot's API key, only when created."}
    )


class BotForClients(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True, required=True)
    commands = fields.List(fields.Nested(BotCommand), required=True)


class ClientBot(Schema):
    bot = fields.Nested(BotForClients, allow_none=True, required=True)


class BotTestResult(Schema):
    replies = fields.List(fields.Dict(), required=True)
    state = fields.Dict(required=True)
    handoff = fields.String(
        allow_none=True, required=True, metadata={"enum": ["requested", "intent", "fallback"]}
    )
    collected = fields.Dict(required=True)
    flagged = fields.Boolean(required=True)


class ApiKey(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    key_prefix = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    created_by = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)
    last_used_at = fields.String(allow_none=True, required=True)
    revoked_at = fields.String(allow_none=True, required=True)
    key = fields.String(metadata={"description": "Only in the creation's answer: keep it."})


class WebhookEndpoint(Schema):
    id = fields.String(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Why the platform turned it off (sustained failure)."},
    )
    failing_since = fields.String(allow_none=True, required=True)
    previous_secret_expires_at = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "Until then requests carry a second signature, made with the "
            "secret before the last rotation."
        },
    )
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    secret = fields.String(
        metadata={"description": "whsec_...: only when created or rotated. Keep it."}
    )


class WebhookDelivery(Schema):
    id = fields.Integer(required=True)
    endpoint_id = fields.String(required=True)
    webhook_id = fields.String(required=True, metadata={"description": "The webhook-id header."})
    event = fields.String(required=True)
    conversation_id = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, metadata={"enum": ["pending", "delivered", "failed"]})
    attempts = fields.Integer(required=True)
    response_code = fields.Integer(allow_none=True, required=True)
    latency_ms = fields.Integer(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)
    last_attempt_at = fields.String(allow_none=True, required=True)
    next_attempt_at = fields.String(allow_none=True, required=True)
    redelivery_of = fields.Integer(allow_none=True, required=True)
    payload = fields.Dict(required=True, metadata={"description": "The body as sent."})


class WebhookDeliveryPage(Schema):
    deliveries = fields.List(fields.Nested(WebhookDelivery), required=True)
    next_before = fields.Integer(
        allow_none=True, required=True, metadata={"description": "before= of the next page"}
    )


class Upload(Schema):
    url = fields.String(required=True)
    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    mime_type = fields.String(required=True)


# ---- the document -----------------------------------------------------------------------------

SESSION = [{"session": [], "csrf": []}]
SESSION_READ = [{"session": []}]
API_KEY_READ = [{"apiKey": ["conversations:read"]}]
API_KEY_WRITE = [{"apiKey": ["conversations:write"]}]
API_KEY_HOOKS = [{"apiKey": ["webhooks:manage"]}]
CONV_ID = {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string"}}
CHANNEL_ID = {**CONV_ID, "name": "channel_id"}


def _json(schema: Any, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _multipart(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": sorted(properties)}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "Invalid input (invalid_input).",
        401: "No valid credentials (not_authenticated).",
        403: "Not allowed (forbidden).",
        404: "Not found, or not yours (not_found).",
        409: "The state does not allow it (conflict).",
        429: "Too many requests (rate_limited); see Retry-After.",
        503: "A service is down (unavailable); retry after Retry-After.",
    }
    return {str(s): _json("Error", names[s]) for s in statuses}


def _op(
    summary: str,
    tags: list[str],
    security: list | None,
    responses: dict[str, Any],
    body: Any = None,
    query: Any = None,
    path_params: list[dict] | None = None,
    description: str | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": tags, "responses": responses}
    if description:
        op["description"] = description
    op["security"] = security if security is not None else []
    params = list(path_params or [])
    if query is not None:
        params.append({"in": "query", "schema": query})
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return op


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="chatd HTTP API",
        version=VERSION,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "The agent API (browser session), the widget's public endpoints, and the "
                "integration API (/api/v1/, API keys). Real-time events are Socket.IO's: see "
                "the README. Times are UTC, ISO 8601."
            )
        },
    )
    comp = spec.components
    comp.security_scheme("session", {"type": "apiKey", "in": "cookie", "name": "session"})
    comp.security_scheme("csrf", {"type": "apiKey", "in": "header", "name": "X-CSRFToken"})
    comp.security_scheme(
        "apiKey",
        {"type": "http", "scheme": "bearer", "description": "An API key (ck_...)."},
    )
    for name, schema in [
        ("Error", Error),
        ("Conversation", Conversation),
        ("IntegrationConversation", IntegrationConversation),
        ("Message", Message),
        ("WidgetMessage", WidgetMessage),
        ("MessagePage", MessagePage),
        ("ConversationPage", ConversationPage),
        ("Assignment", Assignment),
        ("Resolution", Resolution),
        ("User", User),
        ("Me", Me),
        ("Channel", Channel),
        ("ChannelIdentitySettings", ChannelIdentity),
        ("PushSettingsView", PushSettings),
        ("PushTestResult", PushTestResult),
        ("PushDeliveryPage", PushDeliveryPage),
        ("PushDevice", Device),
        ("DeviceRemoved", DeviceRemoved),
        ("EmbedToken", EmbedToken),
        ("Bot", BotView),
        ("ClientBot", ClientBot),
        ("BotTestResult", BotTestResult),
        ("ApiKey", ApiKey),
        ("Upload", Upload),
        ("WebhookEndpoint", WebhookEndpoint),
        ("WebhookDelivery", WebhookDelivery),
        ("WebhookDeliveryPage", WebhookDeliveryPage),
    ]:
        comp.schema(name, schema=schema)

    def many(name: str) -> dict[str, Any]:
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}

    agent, admin, widget, v1 = ["Agent API"], ["Administration"], ["Widget"], ["Integration API"]
    mobile = ["Mobile apps"]
    conv = "/api/conversations/{conversation_id}"
    v1conv = "/api/v1/conversations/{conversation_id}"
    paths: dict[str, dict[str, Any]] = {
        "/healthz": {"get": _op("Liveness", ["Operations"], [], {"200": {"description": "OK"}})},
        "/readyz": {
            "get": _op(
                "Readiness: database, Redis and a fan-out round trip; 503 while shutting down",
                ["Operations"],
                [],
                {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            )
        },
        "/metrics": {
            "get": {
                **_op(
                    "Prometheus metrics (bearer CHATD_METRICS_TOKEN when it is set)",
                    ["Operations"],
                    [],
                    {"401": {"description": "A metrics token is set and was not given"}},
                ),
                "responses": {
                    "200": {
                        "description": "The Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "A metrics token is set and was not given"},
                },
            }
        },
        "/auth/login": {
            "post": _op(
                "Sign in (JSON; the login page posts a form)",
                agent,
                [],
                {"200": _json("Me"), **_errors(400, 401, 429)},
                body=rs.LoginSchema,
                description="Sets the session cookie; answers the CSRF token for unsafe calls.",
            )
        },
        "/auth/logout": {"post": _op("Sign out", agent, SESSION, {"200": {"description": "OK"}})},
        "/api/me": {"get": _op("Who is signed in", agent, SESSION_READ, {"200": _json("Me")})},
        "/api/team": {"get": _op("The team", agent, SESSION_READ, {"200": _json(many("User"))})},
        "/api/conversations/": {
            "get": _op(
                "List conversations (unassigned, mine, all)",
                agent,
                SESSION_READ,
                {"200": _json(many("Conversation")), **_errors(400, 401)},
                query=rs.ConversationListQuerySchema,
            )
        },
        conv: {
            "get": _op(
                "Get a conversation",
                agent,
                SESSION_READ,
                {"200": _json("Conversation"), **_errors(401, 404)},
                path_params=[CONV_ID],
            )
        },
        conv + "/messages": {
            "get": _op(
                "Message history (newest page, or after_seq)",
                agent,
                SESSION_READ,
                {"200": _json(many("Message")), **_errors(400, 401, 404)},
                query=rs.HistoryQuerySchema,
                path_params=[CONV_ID],
            )
        },
        conv + "/assign": {
            "post": _op(
                "Claim the open session",
                agent,
                SESSION,
                {"200": _json("Assignment"), **_errors(401, 403, 404, 409)},
                path_params=[CONV_ID],
            )
        },
        conv + "/resolve": {
            "post": _op(
                "Resolve the open session, adding tags",
                agent,
                SESSION,
                {"200": _json("Resolution"), **_errors(400, 401, 403, 404, 409)},
                body=rs.ResolveSchema,
                path_params=[CONV_ID],
            )
        },
        conv + "/hand-to-bot": {
            "post": _op(
                "Hand the conversation back to its bot",
                agent,
                SESSION,
                {"200": _json("Conversation"), **_errors(401, 403, 404, 409)},
                path_params=[CONV_ID],
            )
        },
        conv + "/tags": {
            "post": _op(
                "Replace the open session's tags",
                agent,
                SESSION,
                {"200": _json("Conversation"), **_errors(400, 401, 403, 404, 409)},
                body=rs.TagsSchema,
                path_params=[CONV_ID],
            )
        },
        "/api/admin/users": {
            "get": _op("Team members", admin, SESSION_READ, {"200": _json(many("User"))}),
            "post": _op(
                "Add a team member",
                admin,
                SESSION,
                {"201": _json("User"), **_errors(400, 401, 403, 409)},
                body=rs.CreateUserSchema,
            ),
        },
        "/api/admin/channels": {
            "get": _op("Channels", admin, SESSION_READ, {"200": _json(many("Channel"))}),
            "post": _op(
                "Add a channel",
                admin,
                SESSION,
                {"201": _json("Channel"), **_errors(400, 401, 403)},
                body=rs.CreateChannelSchema,
            ),
        },
        "/api/admin/channels/{channel_id}/identity": {
            "get": _op(
                "A channel's identity verification settings, with its secret",
                admin,
                SESSION_READ,
                {"200": _json("ChannelIdentitySettings"), **_errors(401, 403, 404)},
                path_params=[CHANNEL_ID],
            ),
            "put": _op(
                "Set how a channel verifies its end users (off, hmac, jwt)",
                admin,
                SESSION,
                {"200": _json("ChannelIdentitySettings"), **_errors(400, 401, 403, 404)},
                body=rs.ChannelIdentitySchema,
                path_params=[CHANNEL_ID],
            ),
        },
        "/api/admin/channels/{channel_id}/identity/rotate-secret": {
            "post": _op(
                "A new identity secret (proofs made with the old one are refused)",
                admin,
                SESSION,
                {"200": _json("ChannelIdentitySettings"), **_errors(401, 403, 404)},
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/channels/{channel_id}/push": {
            "get": _op(
                "A mobile channel's push settings (credentials are never returned)",
                admin,
                SESSION_READ,
                {"200": _json("PushSettingsView"), **_errors(400, 401, 403, 404)},
                path_params=[CHANNEL_ID],
            ),
            "patch": _op(
                "What a push says of a message: full, generic or none",
                admin,
                SESSION,
                {"200": _json("PushSettingsView"), **_errors(400, 401, 403, 404)},
                body=rs.PushSettingsSchema,
                path_params=[CHANNEL_ID],
            ),
        },
        "/api/admin/channels/{channel_id}/push/fcm": {
            "put": _op(
                "Store the channel's FCM service account (HTTP v1)",
                admin,
                SESSION,
                {"200": _json("PushSettingsView"), **_errors(400, 401, 403, 404)},
                body=rs.FcmCredentialsSchema,
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/channels/{channel_id}/push/apns": {
            "put": _op(
                "Store the channel's APNs auth key (token-based)",
                admin,
                SESSION,
                {"200": _json("PushSettingsView"), **_errors(400, 401, 403, 404)},
                body=rs.ApnsCredentialsSchema,
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/channels/{channel_id}/push/{platform}": {
            "delete": _op(
                "Remove the channel's credentials of a provider",
                admin,
                SESSION,
                {"200": _json("PushSettingsView"), **_errors(400, 401, 403, 404)},
                path_params=[
                    CHANNEL_ID,
                    {
                        "name": "platform",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["fcm", "apns"]},
                    },
                ],
            )
        },
        "/api/admin/channels/{channel_id}/push/test": {
            "post": _op(
                "Send a test push to a device token; the provider's answer",
                admin,
                SESSION,
                {"200": _json("PushTestResult"), **_errors(400, 401, 403, 404)},
                body=rs.PushTestSchema,
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/channels/{channel_id}/push/deliveries": {
            "get": _op(
                "The channel's push delivery log, newest first",
                admin,
                SESSION_READ,
                {"200": _json("PushDeliveryPage"), **_errors(400, 401, 403, 404)},
                query=rs.PushDeliveriesQuerySchema,
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/embed-tokens": {
            "get": _op("Embed tokens", admin, SESSION_READ, {"200": _json(many("EmbedToken"))}),
            "post": _op(
                "Issue an embed token (shown once)",
                admin,
                SESSION,
                {"201": _json("EmbedToken"), **_errors(400, 401, 403, 404)},
                body=rs.CreateEmbedTokenSchema,
            ),
        },
        "/api/admin/embed-tokens/{token_id}/revoke": {
            "post": _op(
                "Revoke an embed token",
                admin,
                SESSION,
                {"200": _json("EmbedToken"), **_errors(401, 403, 404)},
                path_params=[{**CONV_ID, "name": "token_id"}],
            )
        },
        "/api/admin/channels/{channel_id}/bot": {
            "put": _op(
                "Attach a bot to a channel (bot_id null: none)",
                admin,
                SESSION,
                {"200": _json("Channel"), **_errors(400, 401, 403, 404)},
                body=rs.AttachBotSchema,
                path_params=[CHANNEL_ID],
            )
        },
        "/api/admin/embed-tokens/{token_id}/bot": {
            "put": _op(
                "Attach a bot to an embed token (bot_id null: the channel's)",
                admin,
                SESSION,
                {"200": _json("EmbedToken"), **_errors(400, 401, 403, 404)},
                body=rs.AttachBotSchema,
                path_params=[{**CONV_ID, "name": "token_id"}],
            )
        },
        "/api/admin/bots": {
            "get": _op("Bots", admin, SESSION_READ, {"200": _json(many("Bot"))}),
            "post": _op(
                "Create a bot (a webhook bot's secret and API key are shown once)",
                admin,
                SESSION,
                {"201": _json("Bot"), **_errors(400, 401, 403)},
                body=rs.BotCreateSchema,
            ),
        },
        "/api/admin/bots/test": {
            "post": _op(
                "Try a flow on one message (nothing is stored)",
                admin,
                SESSION,
                {"200": _json("BotTestResult"), **_errors(400, 401, 403)},
                body=rs.BotTestSchema,
            )
        },
        "/api/admin/bots/{bot_id}": {
            "get": _op(
                "A bot",
                admin,
                SESSION_READ,
                {"200": _json("Bot"), **_errors(401, 404)},
                path_params=[{**CONV_ID, "name": "bot_id"}],
            ),
            "patch": _op(
                "Change a bot",
                admin,
                SESSION,
                {"200": _json("Bot"), **_errors(400, 401, 403, 404)},
                body=rs.BotUpdateSchema,
                path_params=[{**CONV_ID, "name": "bot_id"}],
            ),
            "delete": _op(
                "Delete a bot (its conversations wait for people)",
                admin,
                SESSION,
                {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
                path_params=[{**CONV_ID, "name": "bot_id"}],
            ),
        },
        "/api/admin/bots/{bot_id}/rotate-secret": {
            "post": _op(
                "A new signing secret for a webhook bot",
                admin,
                SESSION,
                {"200": _json("Bot"), **_errors(401, 403, 404, 409)},
                path_params=[{**CONV_ID, "name": "bot_id"}],
            )
        },
        "/chat-widget/bot": {
            "get": _op(
                "The bot answering under an embed token: name, avatar, commands",
                widget,
                [],
                {"200": _json("ClientBot"), **_errors(400, 403)},
                query=rs.BotQuerySchema,
            )
        },
        "/api/mobile/bot": {
            "get": _op(
                "The bot of a mobile channel: name, avatar, commands",
                mobile,
                [],
                {"200": _json("ClientBot"), **_errors(400, 404)},
                query=rs.BotQuerySchema,
            )
        },
        "/api/admin/api-keys": {
            "get": _op("API keys", admin, SESSION_READ, {"200": _json(many("ApiKey"))}),
            "post": _op(
                "Create an API key (the key is shown once)",
                admin,
                SESSION,
                {"201": _json("ApiKey"), **_errors(400, 401, 403)},
                body=rs.CreateApiKeySchema,
            ),
        },
        "/api/admin/api-keys/{key_id}/revoke": {
            "post": _op(
                "Revoke an API key (from the next request, on every process)",
                admin,
                SESSION,
                {"200": _json("ApiKey"), **_errors(401, 403, 404)},
                path_params=[{**CONV_ID, "name": "key_id"}],
            )
        },
        "/chat-widget/conversations": {
            "post": _op(
                "Open (or find) a visitor's conversation",
                widget,
                [],
                {
                    "200": _json("Conversation", "It existed"),
                    "201": _json("Conversation", "Created"),
                    **_errors(400, 401, 403, 429),
                },
                body=rs.WidgetConversationSchema,
            )
        },
        "/api/mobile/conversations": {
            "post": _op(
                "Open (or find) a native app user's conversation on a mobile channel",
                mobile,
                [],
                {
                    "200": _json("Conversation", "It existed"),
                    "201": _json("Conversation", "Created"),
                    **_errors(400, 401, 403, 404, 429),
                },
                body=rs.MobileConversationSchema,
                description=(
                    "Name the channel by channel_id or channel_key. On a channel that "
                    "verifies identity, give user_hash or identity_token: missing is 401 "
                    "identity_required, wrong is 403 identity_invalid."
                ),
            )
        },
        "/api/mobile/devices": {
            "post": _op(
                "Register an app user's push token for its conversation",
                mobile,
                [],
                {
                    "200": _json("PushDevice", "It was registered: refreshed"),
                    "201": _json("PushDevice", "Registered"),
                    **_errors(400, 401, 403, 404),
                },
                body=DeviceSchema,
            )
        },
        "/api/mobile/devices/unregister": {
            "post": _op(
                "Forget an app user's push token",
                mobile,
                [],
                {"200": _json("DeviceRemoved"), **_errors(400, 401, 403, 404)},
                body=DeviceRefSchema,
            )
        },
        "/chat-widget/history/{conversation_id}": {
            "get": _op(
                "A visitor's history",
                widget,
                [],
                {"200": _json(many("WidgetMessage")), **_errors(400, 401, 403, 404)},
                query=rs.WidgetHistoryQuerySchema,
                path_params=[CONV_ID],
            )
        },
        "/api/uploads": {
            "post": {
                **_op(
                    "Upload a file an agent sends (then send it as an image or file message)",
                    agent,
                    SESSION,
                    {"201": _json("Upload"), **_errors(400, 401, 403)},
                ),
                "requestBody": _multipart({"file": {"type": "string", "format": "binary"}}),
            }
        },
        "/chat-widget/uploads": {
            "post": {
                **_op(
                    "Upload a file a visitor sends",
                    widget,
                    [],
                    {"201": _json("Upload"), **_errors(400, 403, 404, 429)},
                ),
                "requestBody": _multipart(
                    {
                        "file": {"type": "string", "format": "binary"},
                        "embed_token": {"type": "string"},
                        "external_id": {"type": "string"},
                        "conversation_id": {"type": "string"},
                    }
                ),
            }
        },
        "/api/v1/conversations": {
            "get": _op(
                "List conversations (filters, cursor)",
                v1,
                API_KEY_READ,
                {"200": _json("ConversationPage"), **_errors(400, 401, 403, 429)},
                query=rs.V1ConversationListQuerySchema,
            ),
            "post": _op(
                "Create or get the conversation of channel_id + external_id",
                v1,
                API_KEY_WRITE,
                {
                    "200": _json("IntegrationConversation", "It existed"),
                    "201": _json("IntegrationConversation", "Created"),
                    **_errors(400, 401, 403, 404, 429),
                },
                body=rs.V1OpenConversationSchema,
            ),
        },
        v1conv: {
            "get": _op(
                "Get a conversation",
                v1,
                API_KEY_READ,
                {"200": _json("IntegrationConversation"), **_errors(401, 403, 404, 429)},
                path_params=[CONV_ID],
            ),
            "patch": _op(
                "Update display name, metadata, tags",
                v1,
                API_KEY_WRITE,
                {"200": _json("IntegrationConversation"), **_errors(400, 401, 403, 404, 409)},
                body=rs.V1UpdateConversationSchema,
                path_params=[CONV_ID],
            ),
        },
        v1conv + "/messages": {
            "get": _op(
                "Messages after a seq, since a time, of a sender type",
                v1,
                API_KEY_READ,
                {"200": _json("MessagePage"), **_errors(400, 401, 403, 404, 429)},
                query=rs.V1MessagesQuerySchema,
                path_params=[CONV_ID],
            ),
            "post": _op(
                "Send a message as the integration (sender_type bot)",
                v1,
                API_KEY_WRITE,
                {
                    "200": _json("Message", "A retry: the original"),
                    "201": _json("Message", "Stored and delivered live"),
                    **_errors(400, 401, 403, 404, 429),
                },
                body=MessageBodySchema,
                path_params=[CONV_ID],
            ),
        },
        v1conv + "/assign": {
            "post": _op(
                "Hand the open session to an agent",
                v1,
                API_KEY_WRITE,
                {"200": _json("IntegrationConversation"), **_errors(400, 401, 403, 404, 409)},
                body=rs.V1AssignSchema,
                path_params=[CONV_ID],
            )
        },
        v1conv + "/resolve": {
            "post": _op(
                "Resolve (finish) the open session",
                v1,
                API_KEY_WRITE,
                {"200": _json("Resolution"), **_errors(400, 401, 403, 404, 409)},
                body=rs.ResolveSchema,
                path_params=[CONV_ID],
            )
        },
    }
    paths[v1conv + "/unassign"] = {
        "post": _op(
            "Put the open session back in the queue (no agent holds it)",
            v1,
            API_KEY_WRITE,
            {"200": _json("IntegrationConversation"), **_errors(401, 403, 404, 409)},
            path_params=[CONV_ID],
        )
    }
    paths.update(_webhook_paths(many))
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return _ecma_patterns(spec.to_dict())


def _webhook_paths(many) -> dict[str, dict[str, Any]]:
    """The same operations for API keys with webhooks:manage (/api/v1/webhooks) and for
    owners' and admins' sessions (/api/admin/webhooks, the console)."""
    paths: dict[str, dict[str, Any]] = {}
    hook = {**CONV_ID, "name": "endpoint_id"}
    delivery = {**CONV_ID, "name": "delivery_id", "schema": {"type": "integer"}}
    for base, tags, read, write in (
        ("/api/v1/webhooks", ["Integration API"], API_KEY_HOOKS, API_KEY_HOOKS),
        ("/api/admin/webhooks", ["Administration"], SESSION_READ, SESSION),
    ):
        one = base + "/{endpoint_id}"
        paths[base] = {
            "get": _op("Webhook endpoints", tags, read, {"200": _json(many("WebhookEndpoint"))}),
            "post": _op(
                "Add a webhook endpoint (its signing secret is in the answer, this once)",
                tags,
                write,
                {"201": _json("WebhookEndpoint"), **_errors(400, 401, 403)},
                body=rs.WebhookCreateSchema,
            ),
        }
        paths[one] = {
            "get": _op(
                "A webhook endpoint",
                tags,
                read,
                {"200": _json("WebhookEndpoint"), **_errors(401, 403, 404)},
                path_params=[hook],
            ),
            "patch": _op(
                "Change url, event types, description or enabled",
                tags,
                write,
                {"200": _json("WebhookEndpoint"), **_errors(400, 401, 403, 404)},
                body=rs.WebhookUpdateSchema,
                path_params=[hook],
            ),
            "delete": _op(
                "Delete an endpoint and its delivery log",
                tags,
                write,
                {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
                path_params=[hook],
            ),
        }
        paths[one + "/rotate-secret"] = {
            "post": _op(
                "A new signing secret (in the answer); the previous one keeps signing too "
                "for expire_previous_after_seconds",
                tags,
                write,
                {"200": _json("WebhookEndpoint"), **_errors(400, 401, 403, 404)},
                body=rs.WebhookRotateSchema,
                body_required=False,
                path_params=[hook],
            )
        }
        paths[one + "/test"] = {
            "post": _op(
                "Queue a webhook.test event",
                tags,
                write,
                {"202": _json("WebhookDelivery"), **_errors(401, 403, 404)},
                path_params=[hook],
            )
        }
        paths[one + "/deliveries"] = {
            "get": _op(
                "The delivery log, newest first",
                tags,
                read,
                {"200": _json("WebhookDeliveryPage"), **_errors(400, 401, 403, 404)},
                query=rs.WebhookDeliveriesQuerySchema,
                path_params=[hook],
            )
        }
        paths[one + "/deliveries/{delivery_id}/redeliver"] = {
            "post": _op(
                "Send a delivery again (same body and webhook-id)",
                tags,
                write,
                {"202": _json("WebhookDelivery"), **_errors(401, 403, 404)},
                path_params=[hook, delivery],
            )
        }
    return paths


def _ecma_patterns(node: Any) -> Any:
    """JSON Schema patterns are ECMA-262 regular expressions: Python's end anchor \\Z (used so
    that "$" cannot match before a trailing newline) is written $ there."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str):
                out[k] = v.replace("\\Z", "$")
            else:
                out[k] = _ecma_patterns(v)
        return out
    if isinstance(node, list):
        return [_ecma_patterns(v) for v in node]
    return node
