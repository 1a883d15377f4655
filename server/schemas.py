"""Input rules shared by every edge (Socket.IO events, REST, the integration API): ids, URLs,
what a backend can store, and the rich media of each content type (integration guide, Rich
Media Types). marshmallow schemas; the edges build their event and body schemas on these.

Before any field is looked at, the whole payload must be something every backend can store
(server/validation.py): no NUL or lone surrogate in any key or string, no binary attachment,
no integer beyond 2^53, no deep nesting. One check for every event, body, field and nested
key, so a new field cannot forget it.
"""

from __future__ import annotations

import re

import orjson
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from models.conversations import CONTENT_TYPES
from models.push import PUSH_PLATFORMS
from server.validation import MAX_INT, first_unstorable, unstorable_reason

# \Z, not $: "$" also matches before a trailing newline, letting "<uuid>\n" through.
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


# A device's push token (FCM tokens are about 160 characters, APNs 64 hex digits; room for
# what providers may issue later), and what an app says of itself.
PUSH_TOKEN = validate.Length(min=8, max=4096)
APP_VERSION = validate.Length(min=1, max=64)
LOCALE = validate.Regexp(r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,3}\Z", error="Not a locale.")
# A proof of identity (server/identity.py): a hex HMAC-SHA256, or a JWT.
USER_HASH = validate.Length(min=1, max=128)
IDENTITY_TOKEN = validate.Length(min=1, max=8192)


def _url(value: str) -> None:
    # Absolute http(s) links or our own root-relative upload paths; never javascript: or data:.
    if value.startswith("/") and not value.startswith("//"):
        return
    if re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
        return
    raise ValidationError("Must be an http(s) URL or a path starting with '/'.")


class _UuidString(fields.String):
    """Ids are stored lowercase, and room names are built from them: the REST path does the
    same (rest.middlewares.path_id), so "3A2B..." names the conversation "3a2b..." names."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()


def Uuid(**kwargs):  # noqa: N802 - a field factory, read like a field class
    return _UuidString(validate=validate.Regexp(UUID_RE, error="Must be a UUID."), **kwargs)


def Url(**kwargs):  # noqa: N802
    return fields.String(validate=[validate.Length(min=1, max=2048), _url], **kwargs)


class StorableInput(Schema):
    """Refuses, per top-level field, what no backend can store, wherever it sits in the
    payload. Runs before the fields, so no field, nested schema or error message ever sees
    such a value (an error message that echoed a lone surrogate could not even be sent)."""

    @pre_load
    def _refuse_unstorable(self, data, **_kwargs):
        if not isinstance(data, dict):
            return data
        errors: dict[str, list[str]] = {}
        for key, value in data.items():
            if not isinstance(key, str) or unstorable_reason(key):
                errors.setdefault("_schema", []).append(
                    "Field names must be valid Unicode without NUL characters."
                )
                continue
            reason = first_unstorable(value, depth=1)
            if reason:
                errors[key] = [reason]
        if errors:
            raise ValidationError(errors)
        return data


class Strict(StorableInput):
    class Meta:
        unknown = RAISE


class IdentityProofSchema(Strict):
    """The two ways an end user proves its external_id, for every body and query that opens
    or reads an end user's conversation."""

    user_hash = fields.String(load_default=None, allow_none=True, validate=USER_HASH)
    identity_token = fields.String(load_default=None, allow_none=True, validate=IDENTITY_TOKEN)


class DeviceRefSchema(IdentityProofSchema):
    """An app user's push token (unregister_device, POST /api/mobile/devices/unregister)."""

    conversation_id = Uuid(required=True)
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    platform = fields.String(required=True, validate=validate.OneOf(PUSH_PLATFORMS))
    token = fields.String(required=True, validate=PUSH_TOKEN)


class DeviceSchema(DeviceRefSchema):
    """The token to register, and what the app says of itself (register_device,
    POST /api/mobile/devices)."""

    app_version = fields.String(load_default=None, allow_none=True, validate=APP_VERSION)
    locale = fields.String(load_default=None, allow_none=True, validate=LOCALE)


class ButtonSchema(Strict):
    label = fields.String(required=True, validate=validate.Length(min=1, max=100))
    value = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ImageSchema(Strict):
    url = Url(required=True)
    alt = fields.String(validate=validate.Length(max=500), allow_none=True)


class FileSchema(Strict):
    url = Url(required=True)
    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    size = fields.Integer(strict=True, validate=validate.Range(min=0, max=10**11), allow_none=True)
    mime_type = fields.String(validate=validate.Length(max=255), allow_none=True)


class QuickButtonSchema(Strict):
    buttons = fields.List(
        fields.Nested(ButtonSchema), required=True, validate=validate.Length(min=1, max=20)
    )


class CardSchema(Strict):
    image_url = Url(allow_none=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    subtitle = fields.String(validate=validate.Length(max=500), allow_none=True)
    buttons = fields.List(fields.Nested(ButtonSchema), validate=validate.Length(max=5))


class CarouselSchema(Strict):
    cards = fields.List(
        fields.Nested(CardSchema), required=True, validate=validate.Length(min=1, max=10)
    )


class DropdownSchema(Strict):
    placeholder = fields.String(validate=validate.Length(max=200), allow_none=True)
    options = fields.List(
        fields.Nested(ButtonSchema), required=True, validate=validate.Length(min=1, max=100)
    )


RICH_MEDIA_SCHEMAS = {
    "image": ImageSchema(),
    "file": FileSchema(),
    "quick_button": QuickButtonSchema(),
    "carousel": CarouselSchema(),
    "dropdown": DropdownSchema(),
}


class MessageBodySchema(Strict):
    """What a message says, as every sender gives it (a socket's send_message, the
    integration API): content, its type, the rich media that type calls for, and the
    client's id for retries. Limits are the settings' (max_content_length,
    max_rich_media_bytes)."""

    content = fields.String(load_default="", allow_none=True)
    content_type = fields.String(load_default="text", validate=validate.OneOf(CONTENT_TYPES))
    rich_media = fields.Dict(load_default=None, allow_none=True)
    client_message_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=64)
    )

    def __init__(
        self, *, max_content_length: int = 10_000, max_rich_media_bytes: int = 16_384, **kwargs
    ):
        super().__init__(**kwargs)
        self.max_content_length = max_content_length
        self.max_rich_media_bytes = max_rich_media_bytes

    @validates_schema(skip_on_field_errors=True)
    def _check(self, data, **_kwargs):
        if data["content"] is None:
            data["content"] = ""
        if len(data["content"]) > self.max_content_length:
            raise ValidationError(f"Longer than {self.max_content_length} characters.", "content")
        ctype, media = data["content_type"], data["rich_media"]
        if ctype == "text":
            if media is not None:
                raise ValidationError("Text messages carry no rich_media.", "rich_media")
            if not data["content"].strip():
                raise ValidationError("A text message needs content.", "content")
            return
        if media is None:
            raise ValidationError(f"Required for content_type {ctype}.", "rich_media")
        if len(orjson.dumps(media)) > self.max_rich_media_bytes:
            raise ValidationError(f"Larger than {self.max_rich_media_bytes} bytes.", "rich_media")
        try:
            data["rich_media"] = RICH_MEDIA_SCHEMAS[ctype].load(media)
        except ValidationError as exc:
            raise ValidationError({"rich_media": exc.messages}) from None


class _WholeNumber(fields.Integer):
    """marshmallow's Integer, which also reads query strings ("50"), but refuses a JSON number
    with a fraction (1.5) instead of truncating it."""

    def _validated(self, value):
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._validated(value)


def Count(minimum: int = 0, maximum: int = MAX_INT, **kwargs):  # noqa: N802 - a field factory
    """A non-negative integer (offset, limit, seq) no larger than the database's INTEGER."""
    return _WholeNumber(validate=validate.Range(min=minimum, max=min(maximum, MAX_INT)), **kwargs)
