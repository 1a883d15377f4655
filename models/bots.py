"""Bots: an organization's automatic first responders on its channels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, String, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdType, JsonType, TimeType, new_id, utcnow

# "flow": answers from a JSON definition (server/bots/flow.py); "webhook": the organization's
# own service answers, called over HTTPS (server/bots/webhook.py).
BOT_KINDS = ("flow", "webhook")


class Bot(Base):
    __tablename__ = "bots"
    __table_args__ = (CheckConstraint("kind IN ('flow', 'webhook')", name="kind"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    avatar_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # A flow bot's definition (validated by server/bots/flow.validate_flow).
    flow: Mapped[dict | None] = mapped_column(JsonType, nullable=True)
    # The bot's own commands, [{command, description, intent}] (besides /help and /agent).
    commands: Mapped[list] = mapped_column(JsonType, default=list)
    # A webhook bot's address; its signing secret is derived from CHATD_SECRET_KEY and this
    # salt (never stored), like a webhook endpoint's.
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    webhook_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # How long a webhook bot has to answer before the conversation goes to people.
    timeout_seconds: Mapped[float] = mapped_column(Float, default=10.0, server_default="10")
    created_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TimeType, default=utcnow)
