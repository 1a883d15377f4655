"""The outbox: one row per durable domain event and durable subscriber that wants it.

Rows are written in the same transaction as the change they describe (server/db.py, and the
message writer's own statements), and read by the dispatcher (server/outbox.py), which hands
each row to its subscriber at least once, in order per (subscriber, conversation).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, utcnow

OUTBOX_STATUSES = ("pending", "done", "dead")

# SQLite gives an autoincrementing key only to INTEGER PRIMARY KEY.
OutboxIdType = BigInteger().with_variant(Integer(), "sqlite")


class QueueColumns:
    """The columns of a leased queue's row (server/queue.py), shared by the outbox and the
    webhook deliveries."""

    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    status: Mapped[str] = mapped_column(
        String(10), default="pending", server_default=text("'pending'")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    # The lease: a process that claimed the row owns it until then; after that (a crash,
    # a stall) another process may claim it again.
    locked_until: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When it was delivered (done) or given up (dead).
    finished_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)


class OutboxEvent(QueueColumns, Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'dead')", name="status"),
        # The dispatcher's claim: the pending rows of one subscriber that are due.
        Index(
            "ix_outbox_pending_due",
            "subscriber",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # The order check: is an earlier row of this subscriber and conversation pending?
        Index(
            "ix_outbox_pending_conversation",
            "subscriber",
            "conversation_id",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # Pruning of delivered rows after the retention.
        Index(
            "ix_outbox_done",
            "finished_at",
            sqlite_where=text("status = 'done'"),
            postgresql_where=text("status = 'done'"),
        ),
        # Ids are never reused (SQLite would take max(id) + 1): subscribers dedupe on them.
        {"sqlite_autoincrement": True},
    )

    # Monotonically increasing: the delivery order of a (subscriber, conversation) and the id
    # a subscriber dedupes on.
    id: Mapped[int] = mapped_column(OutboxIdType, primary_key=True, autoincrement=True)
    subscriber: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(100))
    organization_id: Mapped[str] = mapped_column(IdType)
    conversation_id: Mapped[str | None] = mapped_column(IdType, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
