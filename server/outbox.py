"""The outbox dispatcher: hands each outbox row to its durable subscriber.

Rows are written in the same transaction as the change (server/db.py, the message writer);
this module reads them, through the leased queue of server/queue.py: at least once, in order
per (subscriber, conversation), with retries, a dead letter, leases shared by several
processes on PostgreSQL, and never on the live path (docs/reliability.md, "The outbox").

Delivered rows are marked `done` and pruned after `outbox_retention_seconds`: the row is
updated either way (to release its lease), and keeping it a while tells an operator what was
delivered and when. Rows of a subscriber that is not registered in this process are left
alone: another process (or a later deploy) delivers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from models import OutboxEvent
from server.db import OutboxLease
from server.domain_events import DomainEvent
from server.queue import MIN_ROUND_INTERVAL_SECONDS, LeasedQueue, QueueConfig

if TYPE_CHECKING:
    from server.bus import DurableSubscriber, EventBus
    from server.db import Database
    from server.settings import Settings


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row handed to a durable subscriber."""

    outbox_id: int  # increasing; the same row redelivered keeps its id: dedupe on it
    event: DomainEvent
    attempt: int  # 1 for the first delivery
    created_at: datetime  # when the change committed (naive UTC)


class OutboxConfig(QueueConfig):
    __slots__ = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxConfig:
        return cls(
            poll_seconds=settings.outbox_poll_seconds,
            batch_size=settings.outbox_batch_size,
            lease_seconds=settings.outbox_lease_seconds,
            max_attempts=settings.outbox_max_attempts,
            backoff_base_seconds=settings.outbox_backoff_base_seconds,
            backoff_cap_seconds=settings.outbox_backoff_cap_seconds,
            retention_seconds=settings.outbox_retention_seconds,
        )


class OutboxDispatcher(LeasedQueue):
    table = OutboxEvent.__table__
    key_column = "subscriber"
    label = "outbox"

    def __init__(self, db: Database, bus: EventBus, config: QueueConfig | None = None) -> None:
        super().__init__(db, config)
        self.bus = bus
        self._subscribers: dict[str, DurableSubscriber] = {}

    async def start(self) -> None:
        """Start delivering, if this process has durable subscribers (else do nothing)."""
        if not self.bus.durable or self._task is not None:
            return
        self._subscribers = {s.name: s for s in self.bus.durable}
        self._begin()
        # From now on this process's rows for its subscribers are written leased to it and
        # handed over after their commit (server/queue.py, "Rows born leased").
        self.db.outbox_lease = OutboxLease(
            self.token, self.config.lease_seconds, frozenset(self._subscribers)
        )
        self.db.on_outbox_commit = self.adopt

    async def stop(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            self.db.outbox_lease = None
            self.db.on_outbox_commit = None
        await super().stop(timeout)

    async def keys(self) -> list[str]:
        return list(self._subscribers)

    async def handle(self, key: str, row) -> None:
        event = DomainEvent.from_dict(row.event, row.payload)
        await self._subscribers[key].handle(Delivery(row.id, event, row.attempts, row.created_at))

    # The claim of one subscriber (tests drive a "crashed" dispatcher with it).
    async def claim(self, conn, subscriber: str, limit: int) -> list:
        return await self._claim(conn, {subscriber: limit})


__all__ = ["MIN_ROUND_INTERVAL_SECONDS", "Delivery", "OutboxConfig", "OutboxDispatcher"]
