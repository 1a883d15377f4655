"""SQLAlchemy 2 declarative models; Alembic migrations live in models/migrations."""

from models.base import Base
from models.bots import Bot
from models.conversations import Conversation, ConversationSession, EndUser, Message
from models.orgs import ApiKey, AuthSession, Channel, EmbedToken, Organization, User
from models.outbox import OutboxEvent
from models.push import PushCredentials, PushDelivery, PushDevice
from models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "AuthSession",
    "Base",
    "Bot",
    "Channel",
    "Conversation",
    "ConversationSession",
    "EmbedToken",
    "EndUser",
    "Message",
    "Organization",
    "OutboxEvent",
    "PushCredentials",
    "PushDelivery",
    "PushDevice",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
