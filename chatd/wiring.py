"""The wiring of the services: which store, limiter and presence each configuration gets.

The subscribers of the bus are registered by create_app (chatd/app.py), which also knows the
edges; the CLI builds services without them.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from server.app_services import Services
from server.bus import EventBus
from server.db import Database, create_engine
from server.identity import IdentityVerifier
from server.outbox import OutboxConfig, OutboxDispatcher
from server.services.api_keys import ApiKeyService
from server.services.auth import AuthService
from server.services.bots import BotService
from server.services.conversations import ConversationService
from server.services.mobile import MobileService
from server.services.orgs import OrgService
from server.services.presence import (
    EndUserPresence,
    MemoryPresenceStore,
    PresenceService,
    RedisPresenceStore,
)
from server.services.push import PushService
from server.services.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from server.services.typing import TypingService
from server.services.uploads import UploadService
from server.services.webhooks import WebhookService
from server.services.widget import VisitorLimits, WidgetService
from server.settings import Settings
from server.webhook_sender import WebhookSender

# The end users' connections (push goes to those without one), apart from the agents'.
END_USER_PRESENCE_PREFIX = "chatd:eu-presence:"


def build_services(settings: Settings, metrics=None) -> Services:
    """`metrics` (rest/observability.Metrics): counts rate-limit refusals, failed logins and
    the message writer's batches; None for the CLI."""
    bus = EventBus()
    db = Database(create_engine(settings.database_url), bus)
    redis = None
    if settings.redis_url:
        # A blocking pool: a burst of concurrent sends (each one rate-limit call) queues for a
        # connection instead of failing with "Too many connections".
        redis = aioredis.Redis.from_pool(  # from_pool: closing the client closes the pool
            aioredis.BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=settings.redis_max_connections, timeout=10
            )
        )
        limiter: RateLimiter = RedisRateLimiter(redis)
        presence_store = RedisPresenceStore(redis, settings.presence_ttl_seconds)
        end_user_store = RedisPresenceStore(
            redis,
            settings.presence_ttl_seconds,
            prefix=END_USER_PRESENCE_PREFIX,
            name="end-user presence",
        )
    else:
        limiter = MemoryRateLimiter()
        presence_store = MemoryPresenceStore()
        end_user_store = MemoryPresenceStore()
    if metrics is not None:
        from rest.observability import CountingLimiter

        limiter = CountingLimiter(limiter, metrics)
    identity = IdentityVerifier(settings.secret_key)
    conversations = ConversationService(db, identity)
    conversations.writer.observer = metrics
    limits = VisitorLimits(limiter, settings)
    widget = WidgetService(db, conversations, limits=limits)
    webhooks = WebhookService(db, settings)
    api_keys = ApiKeyService(db)
    return Services(
        settings=settings,
        db=db,
        bus=bus,
        redis=redis,
        limiter=limiter,
        presence=PresenceService(presence_store, bus),
        typing=TypingService(bus, settings.typing_timeout_seconds),
        conversations=conversations,
        auth=AuthService(db, limiter, settings),
        orgs=OrgService(db, identity),
        widget=widget,
        mobile=MobileService(conversations, limits=limits),
        # Started when create_app registers the "push" durable subscriber.
        push=PushService(db, settings, conversations, EndUserPresence(end_user_store)),
        uploads=UploadService(
            settings.uploads_path, settings.upload_max_bytes, widget, limits=limits
        ),
        # Idle unless durable subscribers are registered on the bus before start().
        outbox=OutboxDispatcher(db, bus, OutboxConfig.from_settings(settings)),
        api_keys=api_keys,
        webhooks=webhooks,
        # Started when create_app registers the "bots" durable subscriber.
        bots=BotService(db, settings, conversations, bus, api_keys),
        # Sends the deliveries the "webhooks" durable subscriber writes (create_app
        # registers it; the CLI's services never start).
        webhook_sender=WebhookSender(db, settings, webhooks),
    )
