"""marshmallow schemas for every client-to-server Socket.IO event.

Unknown fields are refused; every string and list has a size limit; rich_media is checked
against the shape its content_type calls for. The shared rules (storable input, ids, rich
media) are server/schemas.py's.
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from server.schemas import (
    DeviceRefSchema,
    DeviceSchema,
    IdentityProofSchema,
    MessageBodySchema,
    Strict,
    Uuid,
)
from server.validation import MAX_INT


class IdentityFields(IdentityProofSchema):
    """The proof of identity an end user's event may carry (server/identity.py). A socket
    may instead present it once, in its handshake's `auth`."""


class SendMessageSchema(MessageBodySchema, IdentityFields):
    conversation_id = Uuid(required=True)
    sender_type = fields.String(required=True, validate=validate.OneOf(("end_user", "agent")))
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_sender(self, data, **_kwargs):
        if data["sender_type"] == "end_user" and not data["external_id"]:
            raise ValidationError("Required for end_user messages.", "external_id")


class ConversationRefSchema(Strict):
    conversation_id = Uuid(required=True)


class JoinConversationSchema(IdentityFields):
    conversation_id = Uuid(required=True)
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )
    # Seqs are 32-bit in the database: a larger last_seq is a client bug, not a query.
    last_seq = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=MAX_INT)
    )


class TypingSchema(IdentityFields):
    conversation_id = Uuid(required=True)
    sender_type = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(("end_user", "agent"))
    )
    external_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=255)
    )


class MarkReadSchema(IdentityFields):
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


__all__ = ["DeviceRefSchema", "DeviceSchema"]  # register_device / unregister_device
