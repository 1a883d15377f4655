"""The event bus: the one seam through which anything reacts to what the domain did.

Two kinds of subscriber, both registered by the composition root (chatd/wiring.py), never by
a service:

- *After-commit subscribers* (`subscribe`) get every domain event, in the order the use cases
  raised them, once their transaction has committed. The Socket.IO projection is one. Events
  go through one FIFO drained by one task: a use case (the message writer above all) does not
  wait for the fan-out to every recipient before it acks and takes the next batch. The queue is
  bounded: when subscribers fall behind, publishers wait (back-pressure) instead of memory
  growing, and the message writer's acks slow down to the pace of delivery. The bound is small
  on purpose: a deep queue only lets acks run seconds ahead of what recipients have seen. They
  run in memory: a crash loses what was queued (clients catch up with last_seq / after_seq).
- *Durable subscribers* (`subscribe_durable`) get the durable events (`DomainEvent.durable`)
  from the outbox: a row per event and subscriber, written in the same transaction as the
  change, delivered at least once, in order per conversation, from any process, by the outbox
  dispatcher (server/outbox.py). They never delay the live path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from server.domain_events import DomainEvent

log = logging.getLogger(__name__)

AfterCommit = Callable[[DomainEvent], Awaitable[Any]]
MAX_PENDING = 2_000
# Events handed to subscribers between two yields to the event loop, so that the sockets'
# writers get to send while a long backlog is drained.
YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class DurableSubscriber:
    """A subscriber fed from the outbox. `name` is stored in its outbox rows: keep it stable.

    `handle(delivery)` receives a server.outbox.Delivery (the event, its outbox id, the
    attempt); it returns to acknowledge and raises to have the delivery retried later.
    `kinds` limits it to these event names (None: every durable event). `accepts(event)`, if
    given, narrows it further, in the write path (no I/O): the webhooks subscriber takes only
    the events of organizations that have an endpoint for them, so the others write no row.
    """

    name: str
    handle: Callable[[Any], Awaitable[Any]]
    kinds: frozenset[str] | None = None
    accepts: Callable[[DomainEvent], bool] | None = None

    def wants(self, event: DomainEvent) -> bool:
        return (
            event.durable
            and (self.kinds is None or event.name in self.kinds)
            and (self.accepts is None or self.accepts(event))
        )


class EventBus:
    def __init__(self) -> None:
        self._after: list[AfterCommit] = []
        self._flushers: list[Callable[[], Awaitable[Any]]] = []
        self.durable: list[DurableSubscriber] = []
        self._queue: asyncio.Queue[DomainEvent] | None = None
        self._task: asyncio.Task | None = None

    # ---- registration (the composition root) ---------------------------------------------

    def subscribe(
        self, handler: AfterCommit, flush: Callable[[], Awaitable[Any]] | None = None
    ) -> None:
        """Call `handler(event)` after commit, for every event, in order. `flush` (optional)
        waits until what the handler accepted has left the process; it runs at shutdown."""
        self._after.append(handler)
        if flush is not None:
            self._flushers.append(flush)

    def subscribe_durable(self, subscriber: DurableSubscriber) -> None:
        if any(s.name == subscriber.name for s in self.durable):
            raise ValueError(f"durable subscriber {subscriber.name!r} is registered twice")
        self.durable.append(subscriber)

    def durable_names(self, event: DomainEvent) -> list[str]:
        """The durable subscribers that want this event: one outbox row each."""
        return [s.name for s in self.durable if s.wants(event)]

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue(MAX_PENDING)
        self._task = asyncio.create_task(self._drain(), name="event-bus")

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (for at most `timeout` seconds), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("stopping with %d undelivered events", self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = self._queue = None
        for flush in self._flushers:
            await flush()

    # ---- publishing -------------------------------------------------------------------------

    async def publish(self, events: Iterable[DomainEvent]) -> None:
        """Hand committed (or non-transactional) events to the after-commit subscribers."""
        if not self._after:
            return
        if self._queue is None:
            for ev in events:
                await self._deliver(ev)
            return
        for ev in events:
            await self._queue.put(ev)

    async def publish_one(self, ev: DomainEvent) -> None:
        await self.publish((ev,))

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            ev = await queue.get()
            sent = 0
            while True:
                try:
                    await self._deliver(ev)
                finally:
                    queue.task_done()
                sent += 1
                if sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                try:
                    ev = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    async def _deliver(self, ev: DomainEvent) -> None:
        for handler in self._after:
            try:
                await handler(ev)
            except Exception:
                # The data is committed; a failed subscriber must not fail the request nor
                # starve the next subscriber. Socket clients that missed it catch up with
                # last_seq / after_seq.
                log.exception("after-commit subscriber %r failed on %s", handler, ev.name)
