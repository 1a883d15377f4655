"""Organizations, their agents, channels, embed tokens, API keys and agents' login sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow

ROLES = ("owner", "admin", "agent")
CHANNEL_TYPES = ("webchat", "mobile_sdk")
# How a channel knows its end users: "off" (anonymous ids, whoever holds one is its user),
# "hmac" (the customer's server signs the id: user_hash) or "jwt" (a signed token, sub = id).
IDENTITY_MODES = ("off", "hmac", "jwt")
IDENTITY_JWT_ALGORITHMS = ("HS256", "RS256", "ES256")


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
    __table_args__ = (
        CheckConstraint("type IN ('webchat', 'mobile_sdk')", name="type"),
        CheckConstraint("identity_mode IN ('off', 'hmac', 'jwt')", name="identity_mode"),
    )

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    # A mobile channel's public key, which apps present to open conversations (None for web
    # chat, whose visitors present an embed token).
    public_key: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    identity_mode: Mapped[str] = mapped_column(String(8), default="off", server_default="off")
    # The identity secret is derived from CHATD_SECRET_KEY and this salt (never stored):
    # a new salt is a new secret.
    identity_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity_jwt_algorithm: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # RS256/ES256: the identity provider's keys (JWKS); HS256 signs with the identity secret.
    identity_jwks_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # What a push says of an agent's or bot's message (models.push.PUSH_PREVIEWS).
    push_preview: Mapped[str] = mapped_column(String(8), default="full", server_default="full")
    # The bot that answers the channel's conversations while no person holds them (None:
    # people only). A web chat embed token may name its own bot instead.
    bot_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("bots.id", ondelete="SET NULL"), nullable=True
    )


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
    # The bot of the conversations opened under this token (None: the channel's, if any).
    bot_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("bots.id", ondelete="SET NULL"), nullable=True
    )
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
    # A webhook bot's own key: its messages are the bot's (None: an integration's key).
    bot_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("bots.id", ondelete="CASCADE"), nullable=True
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
