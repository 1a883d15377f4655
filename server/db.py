"""The database engine and the unit of work: one connection and one transaction per use case.

Services speak SQLAlchemy Core (no ORM identity map on the hot path), so the unit of work
holds an AsyncConnection: the same execute()/Result API as a session, with less overhead.
The domain events a use case raises are collected on the unit of work and handed to the bus
only after the commit succeeds; on rollback they are dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from server.bus import EventBus
    from server.domain_events import DomainEvent


def create_engine(database_url: str) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        # SQLite allows one writer; one pooled connection serialises transactions in the
        # process instead of failing them with "database is locked".
        engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine
    return create_async_engine(database_url, pool_size=20, max_overflow=20, pool_recycle=1800)


@dataclass
class UnitOfWork:
    conn: AsyncConnection
    events: list[DomainEvent] = field(default_factory=list)

    def raise_event(self, ev: DomainEvent) -> None:
        """Record a fact of this transaction: published if, and only if, it commits."""
        self.events.append(ev)


class Database:
    def __init__(self, engine: AsyncEngine, bus: EventBus | None = None) -> None:
        self.engine = engine
        self.bus = bus

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction; its events are published after a successful commit."""
        async with self.engine.begin() as conn:
            uow = UnitOfWork(conn)
            yield uow
        if uow.events and self.bus is not None:
            await self.bus.publish(uow.events)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
