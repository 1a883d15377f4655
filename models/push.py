"""Push notifications: a mobile channel's provider credentials, its users' devices, and the
delivery log.

Credentials are sealed (server/push/sealed.py: encrypted with a key derived from
CHATD_SECRET_KEY) and never returned; what the console shows of them is `summary` (project,
team, key id, bundle id, environment). A device belongs to one conversation's end user: the
same token registered by another user of the channel moves to that user (one phone, one
signed-in user at a time).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow

PUSH_PLATFORMS = ("fcm", "apns")
# What a push says of the message: all of it, "New message", or nothing (a silent badge).
PUSH_PREVIEWS = ("full", "generic", "none")
PUSH_OUTCOMES = ("delivered", "unregistered", "retry", "rejected", "no_credentials")


class PushCredentials(Base):
    __tablename__ = "push_credentials"
    __table_args__ = (
        CheckConstraint("platform IN ('fcm', 'apns')", name="platform"),
        UniqueConstraint("channel_id", "platform"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(8))
    # The provider's credentials, encrypted (server/push/sealed.py).
    sealed: Mapped[str] = mapped_column(Text)
    # What may be shown: the non-secret fields.
    summary: Mapped[dict] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class PushDevice(Base):
    __tablename__ = "push_devices"
    __table_args__ = (
        CheckConstraint("platform IN ('fcm', 'apns')", name="platform"),
        UniqueConstraint("channel_id", "platform", "token_hash"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    conversation_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(8))
    token: Mapped[str] = mapped_column(Text)
    # SHA-256 of the token: tokens are long, and unique per channel and platform.
    token_hash: Mapped[str] = mapped_column(String(64))
    app_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locale: Mapped[str | None] = mapped_column(String(35), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class PushDelivery(Base):
    """One attempt to push one message to one device: the channel's delivery log, and what
    makes a redelivered outbox row skip the devices it already reached."""

    __tablename__ = "push_deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel_id: Mapped[str] = mapped_column(IdType, ForeignKey("channels.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(IdType)
    # The device (None once it was pruned or unregistered).
    device_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("push_devices.id", ondelete="SET NULL"), nullable=True
    )
    platform: Mapped[str] = mapped_column(String(8))
    message_id: Mapped[str] = mapped_column(IdType)
    seq: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


Index("ix_push_deliveries_channel_id_id", PushDelivery.channel_id, PushDelivery.id)
Index("ix_push_deliveries_message_id", PushDelivery.message_id)
