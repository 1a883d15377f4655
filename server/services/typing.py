"""Typing indicators: shown to the other side, cleared when the typist sends a message or
after typing_timeout_seconds of silence. State lives with the typist's socket, in its process.

Not transactional: TypingStarted / TypingStopped go on the bus directly (never the outbox).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from server.bus import EventBus
from server.domain_events import TypingStarted, TypingStopped


@dataclass(frozen=True, slots=True)
class _Typist:
    organization_id: str
    sender_type: str
    sender_id: str


class TypingService:
    def __init__(self, bus: EventBus, timeout_s: float) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        # (connection, conversation_id) -> (timer, typist)
        self._timers: dict[tuple[str, str], tuple[asyncio.TimerHandle, _Typist]] = {}
        # asyncio keeps only weak references to tasks: an expiry's publish held nowhere else
        # could be collected before it runs.
        self._tasks: set[asyncio.Task] = set()

    async def typing(
        self,
        connection: str,
        organization_id: str,
        conversation_id: str,
        sender_type: str,
        sender_id: str,
    ) -> None:
        """`connection` is the typist's client connection: its typing ends when it sends,
        leaves or disconnects."""
        key = (connection, conversation_id)
        held = self._timers.pop(key, None)
        if held:
            held[0].cancel()
        typist = _Typist(organization_id, sender_type, sender_id)
        loop = asyncio.get_running_loop()
        self._timers[key] = (loop.call_later(self.timeout_s, self._expire, key), typist)
        await self.bus.publish_one(
            TypingStarted(organization_id, conversation_id, sender_type, sender_id)
        )

    @staticmethod
    def _stopped_event(conversation_id: str, typist: _Typist) -> TypingStopped:
        return TypingStopped(
            typist.organization_id, conversation_id, typist.sender_type, typist.sender_id
        )

    def _expire(self, key: tuple[str, str]) -> None:
        held = self._timers.pop(key, None)
        if held is not None:
            ev = self._stopped_event(key[1], held[1])
            task = asyncio.ensure_future(self.bus.publish_one(ev))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stopped(self, connection: str, conversation_id: str) -> None:
        held = self._timers.pop((connection, conversation_id), None)
        if held:
            held[0].cancel()
            await self.bus.publish_one(self._stopped_event(conversation_id, held[1]))

    async def disconnected(self, connection: str) -> None:
        for key in [k for k in self._timers if k[0] == connection]:
            await self.stopped(*key)
