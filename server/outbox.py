"""The outbox dispatcher: hands each outbox row to its durable subscriber.

Rows are written in the same transaction as the change (server/db.py, the message writer);
this module reads them. Its promises (docs/reliability.md, "The outbox"):

- **At least once.** A row is marked `done` only after its subscriber's `handle(delivery)`
  returned. A process that dies mid-delivery leaves the row claimed under a lease
  (`locked_until`); when the lease expires any dispatcher claims it again. Subscribers dedupe
  on `Delivery.outbox_id`.
- **In order per (subscriber, conversation).** Only the oldest pending row of a subscriber's
  conversation can be claimed: a row waits while an earlier one of the same subscriber and
  conversation is pending (being delivered, or waiting for a retry). Rows without a
  conversation are not ordered (no durable event has none today).
- **Retries** with exponential backoff and jitter; after `max_attempts` the row is `dead`
  (kept, with its last error, and logged), and the conversation's later rows proceed.
- **Several processes on PostgreSQL.** Rows are claimed with `FOR UPDATE SKIP LOCKED` and a
  lease: two dispatchers never hold the same row at once, and a delivery that outlives its
  lease is cancelled (and retried), so no row is delivered twice while its lease holds. On
  SQLite there is one process and one writer.
- **Never on the live path.** The dispatcher is a background task with its own connections;
  each subscriber has its own share of in-flight deliveries, so a slow or failing subscriber
  delays only its own rows.

Delivered rows are marked `done` and pruned after `outbox_retention_seconds`: the row is
updated either way (to release its lease), and keeping it a while tells an operator what was
delivered and when. Rows of a subscriber that is not registered in this process are left
alone: another process (or a later deploy) delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, exists, select, update

from models import OutboxEvent
from models.base import utcnow
from server.domain_events import DomainEvent

if TYPE_CHECKING:
    from server.bus import DurableSubscriber, EventBus
    from server.db import Database
    from server.settings import Settings

log = logging.getLogger(__name__)

_O = OutboxEvent.__table__
_EARLIER = _O.alias("earlier")

# How often delivered rows older than the retention are deleted (at most).
PRUNE_EVERY_SECONDS = 60.0
# Rounds (one transaction each) start at most this often: on a busy process the commits and
# the finished deliveries of 20 ms share one round instead of one round each, which keeps
# the dispatcher's share of the event loop small (docs/benchmarks.md, "The outbox's cost").
MIN_ROUND_INTERVAL_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row handed to a durable subscriber."""

    outbox_id: int  # increasing; the same row redelivered keeps its id: dedupe on it
    event: DomainEvent
    attempt: int  # 1 for the first delivery
    created_at: datetime  # when the change committed (naive UTC)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    poll_seconds: float = 1.0
    batch_size: int = 100
    lease_seconds: float = 30.0
    max_attempts: int = 10
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    retention_seconds: float = 86_400.0

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

    def backoff(self, attempt: int) -> float:
        """The wait before the next attempt after `attempt` failed: exponential, capped, with
        jitter (between half and all of it), so failing rows do not retry in lockstep."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


def _claimable(subscriber: str, now: datetime, limit: int):
    """The ids a dispatcher may claim for `subscriber`: due, not leased, and the oldest pending
    row of their conversation. Locked rows (another dispatcher's claim in progress) are
    skipped; SQLite has no row locks and one process."""
    earlier = exists().where(
        and_(
            _EARLIER.c.status == "pending",
            _EARLIER.c.subscriber == _O.c.subscriber,
            _EARLIER.c.conversation_id == _O.c.conversation_id,
            _EARLIER.c.id < _O.c.id,
        )
    )
    return (
        select(_O.c.id)
        .where(
            _O.c.status == "pending",
            _O.c.subscriber == subscriber,
            _O.c.next_attempt_at <= now,
            (_O.c.locked_until.is_(None)) | (_O.c.locked_until < now),
            ~earlier,
        )
        .order_by(_O.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=_O)
    )


class OutboxDispatcher:
    def __init__(self, db: Database, bus: EventBus, config: OutboxConfig | None = None) -> None:
        self.db = db
        self.bus = bus
        self.config = config or OutboxConfig()
        # Who holds a lease: this dispatcher's rows, and only them, are finished by it.
        self.token = uuid.uuid4().hex
        self._subscribers: dict[str, DurableSubscriber] = {}
        self._wake = asyncio.Event()
        self._inflight: dict[str, set[asyncio.Task]] = {}
        # Outcomes of finished deliveries, recorded by the next round: done ids, and
        # (id, attempt, values) of failures.
        self._done: list[int] = []
        self._failed: list[tuple] = []
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_prune = 0.0

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Start delivering, if this process has durable subscribers (else do nothing)."""
        if not self.bus.durable or self._task is not None:
            return
        self._subscribers = {s.name: s for s in self.bus.durable}
        self._inflight = {name: set() for name in self._subscribers}
        self._stopping = False
        self._wake = asyncio.Event()
        self.db.on_outbox_commit = self.wake
        self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; let in-flight deliveries finish for at most `timeout` seconds, then
        cancel the rest and release their leases, so another process takes them at once."""
        if self._task is None:
            return
        self._stopping = True
        self.db.on_outbox_commit = None
        self._wake.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        tasks = [t for ts in self._inflight.values() for t in ts]
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=timeout)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still)
        try:
            await self._round(claim=False)  # the outcomes of what finished
        except Exception:
            log.warning("outbox: recording outcomes failed; the rows are delivered again")
        await self._release()

    def wake(self) -> None:
        """A commit wrote outbox rows: claim them now rather than at the next poll."""
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -MIN_ROUND_INTERVAL_SECONDS
        while not self._stopping:
            gap = last + MIN_ROUND_INTERVAL_SECONDS - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            last = loop.time()
            self._wake.clear()
            try:
                full = await self._round()
                if loop.time() - self._last_prune >= min(
                    PRUNE_EVERY_SECONDS, self.config.retention_seconds
                ):
                    self._last_prune = loop.time()
                    await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is down or restarting: try again at the next poll.
                log.warning("outbox: a dispatch round failed", exc_info=True)
                full = False
            if full:
                continue  # more rows may be due: claim again before waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)

    async def _round(self, claim: bool = True) -> bool:
        """One transaction: record the outcomes of finished deliveries, then claim what is
        due for every subscriber with free slots. True if a subscriber's slots were filled
        (more may be due)."""
        done, failed = self._done, self._failed
        self._done, self._failed = [], []
        claimed: dict[str, tuple[list, int]] = {}
        try:
            async with self.db.engine.begin() as conn:
                if done:
                    await conn.execute(
                        update(_O)
                        .where(
                            _O.c.id.in_(done),
                            _O.c.locked_by == self.token,
                            _O.c.status == "pending",
                        )
                        .values(status="done", finished_at=utcnow(), locked_until=None)
                    )
                for row_id, attempt, values in failed:
                    await conn.execute(
                        update(_O)
                        .where(
                            _O.c.id == row_id,
                            _O.c.locked_by == self.token,
                            _O.c.attempts == attempt,
                            _O.c.status == "pending",
                        )
                        .values(**values)
                    )
                for name in self._subscribers if claim else ():
                    free = self.config.batch_size - len(self._inflight[name])
                    if free > 0:
                        claimed[name] = (await self._claim(conn, name, free), free)
        except BaseException:
            # Not recorded: kept for the next round (if the process dies instead, the
            # leases expire and the rows are delivered again: at least once).
            self._done[:0] = done
            self._failed[:0] = failed
            raise
        full = False
        for name, (rows, free) in claimed.items():
            for row in rows:
                self._spawn(name, row)
            full = full or len(rows) == free
        return full

    async def _claim(self, conn, subscriber: str, limit: int) -> list:
        """Claim up to `limit` due rows of `subscriber` under a lease, in one statement."""
        now = utcnow()
        lease = now + timedelta(seconds=self.config.lease_seconds)
        stmt = (
            update(_O)
            .where(_O.c.id.in_(_claimable(subscriber, now, limit)))
            .values(locked_until=lease, locked_by=self.token, attempts=_O.c.attempts + 1)
            .returning(_O.c.id, _O.c.event, _O.c.payload, _O.c.attempts, _O.c.created_at)
        )
        return sorted((await conn.execute(stmt)).all(), key=lambda r: r.id)

    def _spawn(self, subscriber: str, row) -> None:
        task = asyncio.create_task(self._deliver(subscriber, row), name=f"outbox-{row.id}")
        tasks = self._inflight[subscriber]
        tasks.add(task)

        def _done(t: asyncio.Task) -> None:
            tasks.discard(t)
            self._wake.set()  # an outcome to record, a free slot, maybe the next row is due

        task.add_done_callback(_done)

    async def _deliver(self, subscriber: str, row) -> None:
        sub = self._subscribers[subscriber]
        try:
            event = DomainEvent.from_dict(row.event, row.payload)
            delivery = Delivery(row.id, event, row.attempts, row.created_at)
            # Cancelled before its lease ends: no other dispatcher can hold the row meanwhile.
            await asyncio.wait_for(sub.handle(delivery), self.config.lease_seconds * 0.9)
        except asyncio.CancelledError:
            raise  # stopping: the lease is released by stop()
        except Exception as exc:  # noqa: BLE001 - any failure of a subscriber is a retry
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"not handled within {self.config.lease_seconds * 0.9:.1f}s")
            self._failed.append(self._failure(subscriber, row, exc))
            return
        self._done.append(row.id)

    def _failure(self, subscriber: str, row, exc: BaseException) -> tuple:
        """The outcome of a failed delivery: a retry after a backoff, or dead."""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if row.attempts >= self.config.max_attempts:
            log.error(
                "outbox: row %s (%s) for %s is dead after %d attempts: %s",
                row.id,
                row.event,
                subscriber,
                row.attempts,
                error,
            )
            values = {
                "status": "dead",
                "finished_at": utcnow(),
                "locked_until": None,
                "last_error": error,
            }
            return row.id, row.attempts, values
        delay = self.config.backoff(row.attempts)
        log.warning(
            "outbox: row %s (%s) for %s failed (attempt %d), retrying in %.2fs: %s",
            row.id,
            row.event,
            subscriber,
            row.attempts,
            delay,
            error,
        )
        asyncio.get_running_loop().call_later(delay, self._wake.set)
        values = {
            "locked_until": None,
            "last_error": error,
            "next_attempt_at": utcnow() + timedelta(seconds=delay),
        }
        return row.id, row.attempts, values

    async def _release(self) -> None:
        """Give back the leases of rows claimed but not finished (a graceful stop)."""
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(_O)
                    .where(_O.c.locked_by == self.token, _O.c.status == "pending")
                    .where(_O.c.locked_until.is_not(None))
                    .values(locked_until=None, attempts=_O.c.attempts - 1)
                )
        except Exception:
            log.warning("outbox: releasing leases failed; they expire instead", exc_info=True)

    async def _prune(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.config.retention_seconds)
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(_O).where(_O.c.status == "done", _O.c.finished_at < cutoff))


__all__ = ["Delivery", "OutboxConfig", "OutboxDispatcher"]
