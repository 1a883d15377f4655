"""Hands committed events to the real-time layer; it is given its emitter when built."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.events import Event

log = logging.getLogger(__name__)

Emitter = Callable[..., Awaitable[Any]]


class Publisher:
    def __init__(self, emit: Emitter | None = None) -> None:
        self._emit = emit

    def bind(self, emit: Emitter) -> None:
        self._emit = emit

    async def publish(self, events: Iterable[Event]) -> None:
        if self._emit is None:
            return
        for ev in events:
            try:
                await self._emit(ev.name, ev.payload, room=ev.room, skip_sid=ev.skip_sid)
            except Exception:
                # The data is committed; a failed fan-out must not turn into a failed request.
                # Clients that missed it catch up with last_seq / after_seq.
                log.exception("failed to publish %s to %s", ev.name, ev.room)

    async def publish_one(self, ev: Event) -> None:
        await self.publish((ev,))
