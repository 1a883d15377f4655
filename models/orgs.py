"""Organizations, their agents, channels, embed tokens, API keys and agents' login sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow

ROLES = ("owner", "admin", "agent")
CHANNEL_TYPES = ("webchat", "mobile_sdk")


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('owner', 'admin', 'agent')", name="role"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Stored lower-cased: one login per address across the platform.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (CheckConstraint("type IN ('webchat', 'mobile_sdk')", name="type"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


class EmbedToken(Base):
    __tablename__ = "embed_tokens"

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the token; the token itself is shown once at creation.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    allowed_origins: Mapped[list] = mapped_column(JsonType, default=list)
    revoked_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)


API_KEY_SCOPES = ("conversations:read", "conversations:write", "webhooks:manage")


class ApiKey(Base):
    """A server's credential for the integration API (/api/v1/), of one organization."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the key (keys are 256-bit random, so a fast hash is enough); the key itself
    # is shown once at creation.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list] = mapped_column(JsonType, default=list)
    # The agent who created it (None: the operator CLI).
    created_by: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(TimeType, nullable=True)


class AuthSession(Base):
    """An agent's browser login; the cookie holds the secret, the row its SHA-256."""

    __tablename__ = "auth_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TimeType)


Index("ix_auth_sessions_expires_at", AuthSession.expires_at)
