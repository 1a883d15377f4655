"""The service container: the composition root (chatd/) builds it, edges receive it, never
globals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.bus import EventBus
from server.db import Database
from server.outbox import OutboxDispatcher
from server.services.api_keys import ApiKeyService
from server.services.auth import AuthService
from server.services.bots import SUBSCRIBER_NAME as BOTS_SUBSCRIBER
from server.services.bots import BotService
from server.services.conversations import ConversationService
from server.services.mobile import MobileService
from server.services.orgs import OrgService
from server.services.presence import PresenceService
from server.services.push import SUBSCRIBER_NAME as PUSH_SUBSCRIBER
from server.services.push import PushService
from server.services.ratelimit import RateLimiter
from server.services.typing import TypingService
from server.services.uploads import UploadService
from server.services.webhooks import SUBSCRIBER_NAME as WEBHOOKS_SUBSCRIBER
from server.services.webhooks import WebhookService
from server.services.widget import WidgetService
from server.settings import Settings
from server.webhook_sender import WebhookSender


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    redis: Any
    limiter: RateLimiter
    presence: PresenceService
    typing: TypingService
    conversations: ConversationService
    auth: AuthService
    orgs: OrgService
    widget: WidgetService
    mobile: MobileService
    push: PushService
    uploads: UploadService
    api_keys: ApiKeyService
    webhooks: WebhookService
    bots: BotService
    # Loops the edges run for as long as the services do (the socket layer's access sweep).
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Delivers the outbox to the durable subscribers registered on the bus (if any).
    outbox: OutboxDispatcher | None = None
    # Sends webhook deliveries; started when the "webhooks" durable subscriber is registered.
    webhook_sender: WebhookSender | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def webhooks_registered(self) -> bool:
        return any(s.name == WEBHOOKS_SUBSCRIBER for s in self.bus.durable)

    @property
    def push_registered(self) -> bool:
        return any(s.name == PUSH_SUBSCRIBER for s in self.bus.durable)

    @property
    def bots_registered(self) -> bool:
        return any(s.name == BOTS_SUBSCRIBER for s in self.bus.durable)

    def run_in_background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` from start() until close(); it must catch its own errors."""
        self.background.append(loop)

    async def start(self) -> None:
        await self.bus.start()
        await self.conversations.start()
        await self.presence.start()
        if self.outbox is not None:
            await self.outbox.start()
        if self.webhook_sender is not None and self.webhooks_registered:
            await self.webhooks.start()
            await self.webhook_sender.start()
        if self.push_registered:
            await self.push.start()
        if self.bots_registered:
            await self.bots.start()
        self._tasks = [asyncio.create_task(loop()) for loop in self.background]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            if self.webhook_sender is not None:
                await self.webhook_sender.stop()
            await self.webhooks.stop()
            if self.outbox is not None:
                await self.outbox.stop()
            if self.push_registered:
                # After the outbox: its in-flight pushes finish with the providers' client.
                await self.push.stop()
            if self.bots_registered:
                await self.bots.stop()
            await self.presence.stop()
            await self.conversations.stop()
            await self.bus.stop()
        finally:
            await self.db.dispose()
            if self.redis is not None:
                await self.redis.aclose()
