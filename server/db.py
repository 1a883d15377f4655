"""The database engine and the unit of work: one connection and one transaction per use case.

Services speak SQLAlchemy Core (no ORM identity map on the hot path), so the unit of work
holds an AsyncConnection: the same execute()/Result API as a session, with less overhead.
The domain events a use case raises are collected on the unit of work and handed to the bus
only after the commit succeeds; on rollback they are dropped. The durable ones are also written
to the outbox, one row per durable subscriber that wants them, in the same transaction, just
before the commit (server/outbox.py delivers them). A row for a subscriber of this process's
running dispatcher is written already leased to it (`OutboxLease`) and handed to it after the
commit: delivered from memory, without being claimed (docs/reliability.md, "The outbox").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from models import OutboxEvent
from models.base import utcnow

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
    return create_async_engine(
        database_url,
        pool_size=20,
        max_overflow=20,
        pool_recycle=1800,
        json_deserializer=_loads_json,
    )


def _loads_json(data: str | bytes):
    """jsonb columns read with orjson (several times faster than the json module psycopg uses
    by default: the outbox reads a whole message per row). Numbers orjson refuses (integers
    beyond 64 bits, which jsonb stores) go to the json module, which reads them."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_OUTBOX = OutboxEvent.__table__
# The ids in the order of the rows (subscribers dedupe on them; the dispatcher deletes by them).
_INSERT_OUTBOX = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)


@dataclass(frozen=True, slots=True)
class OutboxLease:
    """The running dispatcher of this process: rows for its subscribers (`keys`) are written
    leased to it (`token`) for `seconds`, as if it had claimed them at the commit."""

    token: str
    seconds: float
    keys: frozenset[str]


@dataclass
class UnitOfWork:
    conn: AsyncConnection
    events: list[DomainEvent] = field(default_factory=list)
    # Set by a use case that wrote its own outbox rows in its statements (the message
    # writer on PostgreSQL), with their ids.
    outbox_written: bool = False
    # The outbox rows written (with their ids): handed to the dispatcher after the commit.
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def raise_event(self, ev: DomainEvent) -> None:
        """Record a fact of this transaction: published if, and only if, it commits."""
        self.events.append(ev)


def outbox_rows(
    bus: EventBus | None, events: list[DomainEvent], now, lease: OutboxLease | None = None
) -> list[dict]:
    """The outbox rows of these events, in order: one per durable subscriber that wants each.
    Rows for the subscribers of `lease` are leased to it (their first attempt has begun)."""
    if bus is None or not bus.durable:
        return []
    rows = []
    until = now + timedelta(seconds=lease.seconds) if lease is not None else None
    for ev in events:
        for name in bus.durable_names(ev):
            leased = lease is not None and name in lease.keys
            rows.append(
                {
                    "subscriber": name,
                    "event": ev.name,
                    "organization_id": ev.organization_id,
                    "conversation_id": ev.conversation_id,
                    "payload": ev.to_dict(),
                    "created_at": now,
                    "status": "pending",
                    "attempts": 1 if leased else 0,
                    "next_attempt_at": now,
                    "locked_by": lease.token if leased else None,
                    "locked_until": until if leased else None,
                }
            )
    return rows


class Database:
    def __init__(self, engine: AsyncEngine, bus: EventBus | None = None) -> None:
        self.engine = engine
        self.bus = bus
        # Set by this process's running dispatcher: rows for its subscribers are written
        # leased to it, and every committed row (with its id) is handed to on_outbox_commit.
        self.outbox_lease: OutboxLease | None = None
        self.on_outbox_commit: Callable[[list[dict[str, Any]]], None] | None = None

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction; its durable events go to the outbox before the commit, and its
        events are published after a successful commit."""
        async with self.engine.begin() as conn:
            uow = UnitOfWork(conn)
            yield uow
            if uow.events and not uow.outbox_written:
                rows = outbox_rows(self.bus, uow.events, utcnow(), self.outbox_lease)
                if rows:
                    ids = (await conn.execute(_INSERT_OUTBOX, rows)).scalars().all()
                    for row, row_id in zip(rows, ids, strict=True):
                        row["id"] = row_id
                    uow.outbox = rows
        if uow.outbox and self.on_outbox_commit is not None:
            self.on_outbox_commit(uow.outbox)
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
