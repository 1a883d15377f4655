"""End users, conversations, their sessions and messages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow

SENDER_TYPES = ("end_user", "agent", "bot")
CONTENT_TYPES = ("text", "image", "file", "quick_button", "carousel", "dropdown")
SESSION_STATUSES = ("open", "resolved")


class EndUser(Base):
    __tablename__ = "end_users"
    __table_args__ = (UniqueConstraint("channel_id", "external_id", name="uq_end_users_channel"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(IdType, ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What a bot collected from the end user (an email, a phone number): {field: value}.
    attributes: Mapped[dict | None] = mapped_column(JsonType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("channel_id", "end_user_id", name="uq_conversations_end_user"),
        Index("ix_conversations_org_updated", "organization_id", "updated_at"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel_id: Mapped[str] = mapped_column(IdType, ForeignKey("channels.id", ondelete="CASCADE"))
    end_user_id: Mapped[str] = mapped_column(IdType, ForeignKey("end_users.id", ondelete="CASCADE"))
    # The embed token that created or last opened the conversation: a client that presents no
    # token (native apps) is a visitor under this one, and loses the conversation when it is
    # revoked. NULL for conversations older than the column (no token to hold them to).
    embed_token_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("embed_tokens.id", ondelete="SET NULL"), nullable=True
    )
    # The last message's seq. The message writer locks the row (SELECT ... FOR UPDATE, in id
    # order; SQLite has one writer instead), computes the batch's seqs from it and sets it in
    # the same transaction as the inserts, so seq is gap-free and concurrent senders queue.
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # An integration's own data about the conversation (a JSON object; the integration API).
    # "metadata" is reserved on declarative classes: the attribute is `meta`.
    meta: Mapped[dict | None] = mapped_column("metadata", JsonType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class ConversationSession(Base):
    __tablename__ = "conversation_sessions"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        # At most one open session per conversation, enforced by the database.
        Index(
            "uq_conversation_sessions_one_open",
            "conversation_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_conversation_sessions_org_status", "organization_id", "status"),
        Index("ix_conversation_sessions_conversation", "conversation_id"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="open")
    assigned_agent_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    tags: Mapped[list] = mapped_column(JsonType, default=list)
    first_message_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    # While the session is unassigned and its channel has an enabled bot, the bot answers,
    # until it hands the session to people (handed_off_at set; an agent handing it back to
    # the bot clears it).
    handed_off_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    # The bot's memory of the session (a flow bot's greeting, misunderstandings, the field
    # it is collecting).
    bot_state: Mapped[dict | None] = mapped_column(JsonType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        # A retried send with the same client_message_id finds the original (NULLs never clash).
        UniqueConstraint(
            "conversation_id",
            "sender_type",
            "sender_id",
            "client_message_id",
            name="uq_messages_client_message_id",
        ),
        CheckConstraint("sender_type IN ('end_user', 'agent', 'bot')", name="sender_type"),
        CheckConstraint(
            "content_type IN ('text', 'image', 'file', 'quick_button', 'carousel', 'dropdown')",
            name="content_type",
        ),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    session_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("conversation_sessions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    sender_type: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[str] = mapped_column(String(255))
    client_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_type: Mapped[str] = mapped_column(String(16), default="text")
    content: Mapped[str] = mapped_column(Text, default="")
    rich_media: Mapped[dict | None] = mapped_column(JsonType, nullable=True)
    read_by: Mapped[dict] = mapped_column(JsonType, default=dict)
    # Marked by moderation (a bot or a rule): kept, shown to agents as flagged, not answered
    # by the bot and not shown to end users other than its sender.
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
