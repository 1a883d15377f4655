"""SQLAlchemy 2 declarative models; Alembic migrations live in models/migrations."""

from models.base import Base
from models.conversations import Conversation, ConversationSession, EndUser, Message
from models.outbox import OutboxEvent
from models.orgs import AuthSession, Channel, EmbedToken, Organization, User

__all__ = [
    "AuthSession",
    "Base",
    "Channel",
    "Conversation",
    "ConversationSession",
    "EmbedToken",
    "EndUser",
    "Message",
    "Organization",
    "OutboxEvent",
    "User",
]
