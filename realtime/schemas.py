"""marshmallow schemas for every client-to-server Socket.IO event.

Unknown fields are refused; every string and list has a size limit; rich_media is checked
against the shape its content_type calls for (integration guide, Rich Media Types). Before
any field is looked at, the whole payload must be something every backend can store
(server/validation.py): no NUL or lone surrogate in any key or string, no binary
attachment, no integer beyond 2^53, no deep nesting. One check for every event, field and
nested key, so a new field cannot forget it.
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
from server.validation import MAX_INT, first_unstorable, unstorable_reason

# \Z, not $: "$" also matches before a trailing newline, letting "<uuid>\n" through.
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


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


class LimitedSchema(Strict):
    def __init__(
        self, *, max_content_length: int = 10_000, max_rich_media_bytes: int = 16_384, **kwargs
    ):
        super().__init__(**kwargs)
        self.max_content_length = max_content_length
        self.max_rich_media_bytes = max_rich_media_bytes


class SendMessageSchema(LimitedSchema):
    conversation_id = Uuid(required=True)
    content = fields.String(load_default="", allow_none=True)
    content_type = fields.String(load_default="text", validate=validate.OneOf(CONTENT_TYPES))
    rich_media = fields.Dict(load_default=None, allow_none=True)
    sender_type = fields.String(required=True, validate=validate.OneOf(("end_user", "agent")))
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )
    client_message_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=64)
    )

    @validates_schema(skip_on_field_errors=True)
    def _check(self, data, **_kwargs):
        if data["content"] is None:
            data["content"] = ""
        if len(data["content"]) > self.max_content_length:
            raise ValidationError(f"Longer than {self.max_content_length} characters.", "content")
        if data["sender_type"] == "end_user" and not data["external_id"]:
            raise ValidationError("Required for end_user messages.", "external_id")
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


class ConversationRefSchema(Strict):
    conversation_id = Uuid(required=True)


class JoinConversationSchema(Strict):
    conversation_id = Uuid(required=True)
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )
    # Seqs are 32-bit in the database: a larger last_seq is a client bug, not a query.
    last_seq = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=MAX_INT)
    )


class TypingSchema(Strict):
    conversation_id = Uuid(required=True)
    sender_type = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(("end_user", "agent"))
    )
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )


class MarkReadSchema(Strict):
    conversation_id = Uuid(required=True)
    message_ids = fields.List(Uuid(), required=True, validate=validate.Length(min=1, max=100))
    sender_type = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(("end_user", "agent"))
    )
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )


class EmptySchema(Strict):
    pass
