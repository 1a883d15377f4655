"""Webhooks: an organization's endpoints, and one delivery row per event and endpoint.

A delivery row is both the sender's queue (the leased queue of server/queue.py, like the
outbox's rows: status, attempts, lease) and the endpoint's delivery log (the last attempt's
response code, latency and error). Rows are written by the "webhooks" durable subscriber when
an outbox row reaches it (server/services/webhooks.py) and sent by server/webhook_sender.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow
from models.outbox import OutboxIdType, QueueColumns

WEBHOOK_EVENT_TYPES = (
    "conversation.created",
    "message.created",
    "conversation.assigned",
    "conversation.resolved",
    "messages.read",
    # Bots (docs/bots.md).
    "conversation.handed_off",
    "conversation.handed_to_bot",
    "message.flagged",
)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list] = mapped_column(JsonType, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the platform disabled it (sustained failure); None when enabled or turned off by a
    # person.
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The first failure since the last success (None: the last attempt succeeded).
    failing_since: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    # The signing secret is derived from CHATD_SECRET_KEY and this random salt (nothing
    # stored is enough to sign); rotating the secret draws a new salt.
    secret_salt: Mapped[str] = mapped_column(String(64))
    # After a rotation, the previous secret's salt and until when requests are signed with
    # it too (receivers switch at their pace); None: one secret.
    previous_secret_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    created_by: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class WebhookDelivery(QueueColumns, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'dead')", name="status"),
        # The sender's claim and order check (as the outbox's).
        Index(
            "ix_webhook_deliveries_pending",
            "endpoint_id",
            "conversation_id",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        # One row per event and endpoint (redeliveries are rows of their own).
        Index(
            "ux_webhook_deliveries_event",
            "endpoint_id",
            "outbox_id",
            unique=True,
            sqlite_where=text("redelivery_of IS NULL"),
            postgresql_where=text("redelivery_of IS NULL"),
        ),
        Index(
            "ix_webhook_deliveries_done",
            "finished_at",
            sqlite_where=text("status = 'done'"),
            postgresql_where=text("status = 'done'"),
        ),
        # Ids are never reused (SQLite would take max(id) + 1): subscribers dedupe on them.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(OutboxIdType, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    organization_id: Mapped[str] = mapped_column(IdType)
    # The outbox row the event came from (the webhook-id is derived from it); None for a test
    # event.
    outbox_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A manual redelivery: the delivery it repeats.
    redelivery_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event: Mapped[str] = mapped_column(String(100))
    conversation_id: Mapped[str | None] = mapped_column(IdType, nullable=True)
    # The body as sent (JSON).
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # The last attempt: the receiver's HTTP status (None: no answer) and how long it took.
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
