"""marshmallow schemas for REST bodies and query strings (unknown fields refused).

Every schema here derives from Strict, which refuses what no backend can store (NUL, lone
surrogates) anywhere in the input before any field sees it, and every integer is a Count,
bounded by what the database's columns hold. So a new field or schema is covered without
remembering to be.
"""

from __future__ import annotations

from datetime import UTC
from functools import partial

import orjson
from marshmallow import ValidationError, fields, validate, validates_schema

from models.bots import BOT_KINDS
from models.orgs import API_KEY_SCOPES
from models.push import PUSH_PLATFORMS, PUSH_PREVIEWS
from models.webhooks import WEBHOOK_EVENT_TYPES
from server.schemas import (
    PUSH_TOKEN,
    UUID_RE,
    Count,
    IdentityProofSchema,
    Strict,
    Url,
    Uuid,
)

Tag = fields.String(validate=validate.Length(min=1, max=50))


class ConversationListQuerySchema(Strict):
    filter = fields.String(
        load_default="unassigned", validate=validate.OneOf(("unassigned", "mine", "bot", "all"))
    )
    limit = Count(1, 500, load_default=100)
    offset = Count(load_default=0)


class HistoryQuerySchema(Strict):
    limit = Count(1, 200, load_default=50)
    offset = Count(load_default=0)
    after_seq = Count(load_default=None)


class WidgetHistoryQuerySchema(IdentityProofSchema):
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    after_seq = Count(load_default=None)


class ResolveSchema(Strict):
    tags = fields.List(Tag, load_default=list, validate=validate.Length(max=50))


class TagsSchema(Strict):
    tags = fields.List(Tag, required=True, validate=validate.Length(max=50))


class LoginSchema(Strict):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class LoginFormSchema(LoginSchema):
    csrf_token = fields.String(load_default=None)
    next = fields.String(load_default=None)


class WidgetConversationSchema(IdentityProofSchema):
    embed_token = fields.String(required=True, validate=validate.Length(min=4, max=200))
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    customer_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )


class CreateUserSchema(Strict):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=8, max=1024))
    role = fields.String(load_default="agent", validate=validate.OneOf(("owner", "admin", "agent")))
    display_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=200)
    )


class CreateChannelSchema(Strict):
    type = fields.String(required=True, validate=validate.OneOf(("webchat", "mobile_sdk")))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    # The bot that answers the channel's conversations (docs/bots.md).
    bot_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(UUID_RE))


class ChannelIdentitySchema(Strict):
    """PUT /api/admin/channels/{id}/identity."""

    mode = fields.String(required=True, validate=validate.OneOf(("off", "hmac", "jwt")))
    jwt_algorithm = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(("HS256", "RS256", "ES256"))
    )
    jwks_url = fields.String(
        load_default=None,
        allow_none=True,
        validate=[
            validate.Length(max=2000),
            validate.URL(schemes={"http", "https"}, require_tld=False),
        ],
    )


class MobileConversationSchema(IdentityProofSchema):
    """POST /api/mobile/conversations: a native app opens its user's conversation."""

    channel_id = Uuid(load_default=None, allow_none=True)
    channel_key = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=4, max=64)
    )
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    display_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )

    @validates_schema(skip_on_field_errors=True)
    def _one_channel(self, data, **_kwargs):
        if bool(data["channel_id"]) == bool(data["channel_key"]):
            raise ValidationError("Give channel_id or channel_key (one of them).", "channel_id")


class FcmCredentialsSchema(Strict):
    """PUT /api/admin/channels/{id}/push/fcm: the Firebase service-account JSON (HTTP v1)."""

    service_account = fields.Dict(required=True)


class ApnsCredentialsSchema(Strict):
    """PUT /api/admin/channels/{id}/push/apns: token-based authentication (.p8 key)."""

    team_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    key_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    private_key = fields.String(required=True, validate=validate.Length(min=1, max=8192))
    bundle_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    environment = fields.String(required=True, validate=validate.OneOf(("sandbox", "production")))


class PushSettingsSchema(Strict):
    """PATCH /api/admin/channels/{id}/push."""

    preview = fields.String(required=True, validate=validate.OneOf(PUSH_PREVIEWS))


class PushTestSchema(Strict):
    """POST /api/admin/channels/{id}/push/test."""

    platform = fields.String(required=True, validate=validate.OneOf(PUSH_PLATFORMS))
    token = fields.String(required=True, validate=PUSH_TOKEN)


class PushDeliveriesQuerySchema(Strict):
    limit = Count(1, 200, load_default=50)
    before = Count(load_default=None)


class CreateEmbedTokenSchema(Strict):
    channel_id = fields.String(required=True, validate=validate.Regexp(UUID_RE))
    name = fields.String(load_default="Web chat", validate=validate.Length(min=1, max=200))
    # The bot of the conversations opened under the token (null: the channel's).
    bot_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(UUID_RE))
    allowed_origins = fields.List(
        fields.String(validate=validate.Length(max=300)),
        load_default=list,
        validate=validate.Length(max=50),
    )


class WidgetPageQuerySchema(IdentityProofSchema):
    """GET /chat-widget: the guide's iframe parameters."""

    embed_token = fields.String(required=True, validate=validate.Length(min=4, max=200))
    session_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    customer_name = fields.String(load_default=None, validate=validate.Length(max=200))
    title = fields.String(load_default="Chat with us", validate=validate.Length(min=1, max=100))


class VisitorUploadSchema(IdentityProofSchema):
    """The text fields of POST /chat-widget/uploads (the file comes in the field `file`)."""

    embed_token = fields.String(required=True, validate=validate.Length(min=4, max=200))
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    conversation_id = Uuid(required=True)


class AgentUploadSchema(Strict):
    """POST /api/uploads carries only the field `file`."""


# ---- the integration API (/api/v1/) -----------------------------------------------------------


class CreateApiKeySchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scopes = fields.List(
        fields.String(validate=validate.OneOf(API_KEY_SCOPES)),
        load_default=lambda: ["conversations:read", "conversations:write"],
        validate=validate.Length(min=1, max=len(API_KEY_SCOPES)),
    )


def _small_object(value: dict) -> None:
    if len(orjson.dumps(value)) > METADATA_MAX_BYTES:
        raise ValidationError(f"Larger than {METADATA_MAX_BYTES} bytes.")


METADATA_MAX_BYTES = 16_384
Metadata = partial(
    fields.Dict,
    keys=fields.String(validate=validate.Length(min=1, max=100)),
    validate=_small_object,
)


class V1OpenConversationSchema(Strict):
    channel_id = Uuid(required=True)
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    display_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=200)
    )
    metadata = Metadata(load_default=None, allow_none=True)


class V1UpdateConversationSchema(Strict):
    display_name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    metadata = Metadata(load_default=None)
    tags = fields.List(Tag, load_default=None, validate=validate.Length(max=50))


class V1AssignSchema(Strict):
    agent_id = Uuid(required=True)


class V1ConversationListQuerySchema(Strict):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "resolved")))
    # An agent's id, or "none": open and unassigned.
    assignee = fields.String(
        load_default=None, validate=validate.Regexp(rf"(?:none|{UUID_RE.pattern[1:-2]})\Z")
    )
    channel_id = Uuid(load_default=None)
    updated_since = fields.AwareDateTime(load_default=None, format="iso", default_timezone=UTC)
    limit = Count(1, 500, load_default=100)
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200))


class V1MessagesQuerySchema(Strict):
    after_seq = Count(load_default=0)
    # The guide's times are UTC without an offset; one with an offset is converted.
    since = fields.AwareDateTime(load_default=None, format="iso", default_timezone=UTC)
    sender_type = fields.String(
        load_default=None, validate=validate.OneOf(("end_user", "agent", "bot"))
    )
    limit = Count(1, 500, load_default=100)


# ---- webhooks (/api/v1/webhooks and the console's /api/admin/webhooks) --------------------

_EventType = fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES))


class WebhookCreateSchema(Strict):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    event_types = fields.List(
        _EventType, required=True, validate=validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES))
    )
    description = fields.String(load_default="", validate=validate.Length(max=200))
    enabled = fields.Boolean(load_default=True)


class WebhookUpdateSchema(Strict):
    url = fields.String(load_default=None, validate=validate.Length(min=1, max=2048))
    event_types = fields.List(
        _EventType,
        load_default=None,
        validate=validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES)),
    )
    description = fields.String(load_default=None, validate=validate.Length(max=200))
    enabled = fields.Boolean(load_default=None)


class WebhookRotateSchema(Strict):
    # How long the secret being replaced keeps signing too (0: not at all); at most 7 days.
    expire_previous_after_seconds = Count(0, 7 * 86_400, load_default=86_400)


class WebhookDeliveriesQuerySchema(Strict):
    status = fields.String(
        load_default=None, validate=validate.OneOf(("pending", "delivered", "failed"))
    )
    limit = Count(1, 200, load_default=50)
    before = Count(1, load_default=None)


# ---- bots (the console's /api/admin/bots) --------------------------------------------------


class _BotFields(Strict):
    name = fields.String(validate=validate.Length(min=1, max=200))
    avatar_url = Url(allow_none=True)
    enabled = fields.Boolean()
    # Checked in depth by server/bots/flow.py (its errors name the path).
    flow = fields.Dict(allow_none=True)
    commands = fields.List(fields.Dict(), validate=validate.Length(max=20))
    webhook_url = fields.String(validate=validate.Length(min=1, max=2048))
    timeout_seconds = fields.Float(validate=validate.Range(min=1, max=10))


class BotCreateSchema(_BotFields):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(BOT_KINDS))


class BotUpdateSchema(_BotFields):
    pass


class BotTestSchema(Strict):
    flow = fields.Dict(required=True)
    commands = fields.List(fields.Dict(), load_default=None, validate=validate.Length(max=20))
    state = fields.Dict(load_default=None, allow_none=True)
    text = fields.String(required=True, validate=validate.Length(min=1, max=10_000))


class AttachBotSchema(Strict):
    bot_id = fields.String(required=True, allow_none=True, validate=validate.Length(max=36))


class BotQuerySchema(Strict):
    """GET /chat-widget/bot and /api/mobile/bot: where the client is."""

    embed_token = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    channel_id = fields.String(load_default=None, validate=validate.Length(min=1, max=36))
    channel_key = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
