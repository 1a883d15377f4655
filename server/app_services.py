"""The service container the composition root builds; edges receive it, never globals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from server.db import Database, create_engine
from server.publisher import Publisher
from server.services.auth import AuthService
from server.services.conversations import ConversationService
from server.services.orgs import OrgService
from server.services.presence import MemoryPresenceStore, PresenceService, RedisPresenceStore
from server.services.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from server.services.typing import TypingService
from server.services.uploads import UploadService
from server.services.widget import VisitorLimits, WidgetService
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    publisher: Publisher
    redis: Any
    limiter: RateLimiter
    presence: PresenceService
    typing: TypingService
    conversations: ConversationService
    auth: AuthService
    orgs: OrgService
    widget: WidgetService
    uploads: UploadService
    # Loops the edges run for as long as the services do (the socket layer's access sweep).
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def run_in_background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` from start() until close(); it must catch its own errors."""
        self.background.append(loop)

    async def start(self) -> None:
        await self.publisher.start()
        await self.conversations.start()
        await self.presence.start()
        self._tasks = [asyncio.create_task(loop()) for loop in self.background]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            await self.presence.stop()
            await self.conversations.stop()
            await self.publisher.stop()
        finally:
            await self.db.dispose()
            if self.redis is not None:
                await self.redis.aclose()


def build_services(settings: Settings) -> Services:
    publisher = Publisher()
    db = Database(create_engine(settings.database_url), publisher)
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
    else:
        limiter = MemoryRateLimiter()
        presence_store = MemoryPresenceStore()
    conversations = ConversationService(db)
    limits = VisitorLimits(limiter, settings)
    widget = WidgetService(db, conversations, limits=limits)
    return Services(
        settings=settings,
        db=db,
        publisher=publisher,
        redis=redis,
        limiter=limiter,
        presence=PresenceService(presence_store, publisher),
        typing=TypingService(publisher, settings.typing_timeout_seconds),
        conversations=conversations,
        auth=AuthService(db, limiter, settings),
        orgs=OrgService(db),
        widget=widget,
        uploads=UploadService(
            settings.uploads_path, settings.upload_max_bytes, widget, limits=limits
        ),
    )
