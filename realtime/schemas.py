"""marshmallow schemas for every client-to-server Socket.IO event.

Unknown fields are refused; every string and list has a size limit; rich_media is checked
against the shape its content_type calls for. The shared rules (storable input, ids, rich
media) are server/schemas.py's.
"""

from __future__ import annotations

import orjson
from marshmallow import ValidationError, fields, validate, validates_schema

from models.conversations import CONTENT_TYPES
from server.schemas import RICH_MEDIA_SCHEMAS, Strict, Uuid
from server.validation import MAX_INT


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
