"""Hands committed events to the real-time layer; it is given its emitter when built.

Once started, events go through one FIFO drained by one task: the order in which use cases
publish is the order clients receive, and a use case (the message writer above all) does not
wait for the fan-out to every recipient before it acks and takes the next batch. The queue is
bounded: when fan-out falls behind, publishers wait (back-pressure) instead of memory growing,
and the message writer's acks slow down to the pace of delivery. The bound is small on
purpose: a deep queue only lets acks run seconds ahead of what recipients have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.events import Event

log = logging.getLogger(__name__)

Emitter = Callable[..., Awaitable[Any]]
MAX_PENDING = 2_000
# Events handed to the emitter between two yields to the event loop, so that the sockets'
# writers get to send while a long backlog is drained.
YIELD_EVERY = 64


class Publisher:
    def __init__(self, emit: Emitter | None = None) -> None:
        self._emit = emit
        self._flush_emitter: Callable[[], Awaitable[Any]] | None = None
        self._queue: asyncio.Queue[Event] | None = None
        self._task: asyncio.Task | None = None

    def bind(self, emit: Emitter, flush: Callable[[], Awaitable[Any]] | None = None) -> None:
        """`flush` waits until what the emitter accepted has left the process (e.g. Redis)."""
        self._emit = emit
        self._flush_emitter = flush

    async def start(self) -> None:
        self._queue = asyncio.Queue(MAX_PENDING)
        self._task = asyncio.create_task(self._drain(), name="event-publisher")

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
        if self._flush_emitter is not None:
            await self._flush_emitter()

    async def publish(self, events: Iterable[Event]) -> None:
        if self._emit is None:
            return
        if self._queue is None:
            for ev in events:
                await self._send(ev)
            return
        for ev in events:
            await self._queue.put(ev)

    async def publish_one(self, ev: Event) -> None:
        await self.publish((ev,))

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            ev = await queue.get()
            sent = 0
            while True:
                try:
                    await self._send(ev)
                finally:
                    queue.task_done()
                sent += 1
                if sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                try:
                    ev = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    async def _send(self, ev: Event) -> None:
        try:
            await self._emit(ev.name, ev.payload, room=ev.room, skip_sid=ev.skip_sid)
        except Exception:
            # The data is committed; a failed fan-out must not turn into a failed request.
            # Clients that missed it catch up with last_seq / after_seq.
            log.exception("failed to publish %s to %s", ev.name, ev.room)
