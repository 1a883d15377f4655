"""Every HTTP route of the platform, in one table."""

from __future__ import annotations

from aiohttp import web

from rest.handlers import (
    admin,
    api_keys,
    auth,
    bots,
    conversations,
    docs,
    health,
    mobile,
    push_admin,
    uploads,
    v1,
    webhooks,
    widget,
    widget_page,
)
from rest.handlers import inbox as inbox_app
from rest.keys import MESSAGE_BODY, OPENAPI, SERVICES
from rest.observability import metrics_handler, readyz
from rest.openapi import build_spec
from rest.pages import setup_templates
from rest.widget_assets import WIDGET_ASSETS, WidgetAssets
from server.schemas import MessageBodySchema

CONV = "/api/conversations/{conversation_id}"
V1_CONV = "/api/v1/conversations/{conversation_id}"
HOOK = "/{endpoint_id}"


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/inbox")


def setup_routes(app: web.Application) -> None:
    setup_templates(app)
    r = app.router
    r.add_get("/", _root)
    r.add_get("/healthz", health.healthz)
    app[OPENAPI] = build_spec()
    limits = app[SERVICES].settings
    app[MESSAGE_BODY] = MessageBodySchema(
        max_content_length=limits.max_content_length,
        max_rich_media_bytes=limits.max_rich_media_bytes,
    )
    r.add_get("/api/openapi.json", docs.openapi_json)
    r.add_get("/api/docs", docs.reference_page)
    r.add_get("/api/docs/assets/{name}", docs.asset)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_handler)
    r.add_get("/auth/login", auth.login_form)
    r.add_post("/auth/login", auth.login)
    r.add_post("/auth/logout", auth.logout)
    r.add_get("/inbox", auth.inbox)
    r.add_get("/api/me", auth.me)
    r.add_get("/api/team", inbox_app.team)
    r.add_get("/inbox/static/{path:.+}", inbox_app.static)
    r.add_get("/inbox/vendor/{name}", inbox_app.vendor)

    r.add_get("/api/conversations/", conversations.list_conversations)
    r.add_get("/api/conversations", conversations.list_conversations)
    r.add_get(CONV, conversations.get_conversation)
    r.add_get(CONV + "/messages", conversations.list_messages)
    r.add_post(CONV + "/assign", conversations.assign)
    r.add_post(CONV + "/resolve", conversations.resolve)
    r.add_post(CONV + "/tags", conversations.set_tags)
    r.add_post(CONV + "/hand-to-bot", bots.hand_to_bot)

    r.add_get("/api/admin/users", admin.list_users)
    r.add_post("/api/admin/users", admin.create_user)
    r.add_get("/api/admin/channels", admin.list_channels)
    r.add_post("/api/admin/channels", admin.create_channel)
    channel_identity = "/api/admin/channels/{channel_id}/identity"
    r.add_get(channel_identity, admin.channel_identity)
    r.add_put(channel_identity, admin.set_channel_identity)
    r.add_post(channel_identity + "/rotate-secret", admin.rotate_identity_secret)
    push = "/api/admin/channels/{channel_id}/push"
    r.add_get(push, push_admin.get_settings)
    r.add_patch(push, push_admin.update_settings)
    r.add_put(push + "/fcm", push_admin.set_fcm)
    r.add_put(push + "/apns", push_admin.set_apns)
    r.add_delete(push + "/{platform}", push_admin.delete_credentials)
    r.add_post(push + "/test", push_admin.send_test)
    r.add_get(push + "/deliveries", push_admin.deliveries)
    r.add_get("/api/admin/embed-tokens", admin.list_embed_tokens)
    r.add_post("/api/admin/embed-tokens", admin.create_embed_token)
    r.add_post("/api/admin/embed-tokens/{token_id}/revoke", admin.revoke_embed_token)
    r.add_put("/api/admin/channels/{channel_id}/bot", bots.attach_to_channel)
    r.add_put("/api/admin/embed-tokens/{token_id}/bot", bots.attach_to_embed_token)
    r.add_get("/api/admin/bots", bots.list_bots)
    r.add_post("/api/admin/bots", bots.create_bot)
    r.add_post("/api/admin/bots/test", bots.test_flow)
    r.add_get("/api/admin/bots/{bot_id}", bots.get_bot)
    r.add_patch("/api/admin/bots/{bot_id}", bots.update_bot)
    r.add_delete("/api/admin/bots/{bot_id}", bots.delete_bot)
    r.add_post("/api/admin/bots/{bot_id}/rotate-secret", bots.rotate_secret)
    r.add_get("/api/admin/api-keys", api_keys.list_api_keys)
    r.add_post("/api/admin/api-keys", api_keys.create_api_key)
    r.add_post("/api/admin/api-keys/{key_id}/revoke", api_keys.revoke_api_key)

    # The integration API (API keys).
    r.add_post("/api/v1/conversations", v1.open_conversation)
    r.add_get("/api/v1/conversations", v1.list_conversations)
    r.add_get(V1_CONV, v1.get_conversation)
    r.add_patch(V1_CONV, v1.update_conversation)
    r.add_post(V1_CONV + "/assign", v1.assign)
    r.add_post(V1_CONV + "/unassign", v1.unassign)
    r.add_get(V1_CONV + "/messages", v1.list_messages)
    r.add_post(V1_CONV + "/messages", v1.send_message)
    r.add_post(V1_CONV + "/resolve", v1.resolve)

    # Webhooks: API keys with webhooks:manage (v1), and the console (owner/admin sessions).
    for base in ("/api/v1/webhooks", "/api/admin/webhooks"):
        r.add_get(base, webhooks.list_endpoints)
        r.add_post(base, webhooks.create_endpoint)
        r.add_get(base + HOOK, webhooks.get_endpoint)
        r.add_patch(base + HOOK, webhooks.update_endpoint)
        r.add_delete(base + HOOK, webhooks.delete_endpoint)
        r.add_post(base + HOOK + "/rotate-secret", webhooks.rotate_secret)
        r.add_post(base + HOOK + "/test", webhooks.send_test)
        r.add_get(base + HOOK + "/deliveries", webhooks.list_deliveries)
        r.add_post(base + HOOK + "/deliveries/{delivery_id}/redeliver", webhooks.redeliver)

    r.add_post("/chat-widget/conversations", widget.open_conversation)
    r.add_post("/api/mobile/conversations", mobile.open_conversation)
    r.add_post("/api/mobile/devices", mobile.register_device)
    r.add_post("/api/mobile/devices/unregister", mobile.unregister_device)
    r.add_get("/api/mobile/bot", bots.mobile_bot)
    r.add_get("/chat-widget/bot", bots.widget_bot)
    r.add_get("/chat-widget/history/{conversation_id}", widget.history)

    app[WIDGET_ASSETS] = WidgetAssets.load()
    r.add_get("/chat-widget", widget_page.page)
    r.add_get("/chat-widget/embed.js", widget_page.loader)
    r.add_get("/chat-widget/assets/{name:.+}", widget_page.asset)
    r.add_post("/chat-widget/uploads", uploads.visitor_upload)
    r.add_post("/api/uploads", uploads.agent_upload)
    r.add_get("/uploads/{upload_id}/{filename}", uploads.serve_upload)
