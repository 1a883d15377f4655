"""Typing indicators: shown to the other side, cleared when the typist sends a message or
after typing_timeout_seconds of silence. State lives with the typist's socket, in its process."""

from __future__ import annotations

import asyncio

from server import events
from server.publisher import Publisher


class TypingService:
    def __init__(self, publisher: Publisher, timeout_s: float) -> None:
        self.publisher = publisher
        self.timeout_s = timeout_s
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # asyncio keeps only weak references to tasks: an expiry's publish held nowhere else
        # could be collected before it runs.
        self._tasks: set[asyncio.Task] = set()

    async def typing(self, sid: str, conversation_id: str, sender_type: str) -> None:
        key = (sid, conversation_id)
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.timeout_s, self._expire, key)
        await self.publisher.publish_one(
            events.typing_indicator(conversation_id, sender_type, skip_sid=sid)
        )

    def _expire(self, key: tuple[str, str]) -> None:
        if self._timers.pop(key, None) is not None:
            task = asyncio.ensure_future(self.publisher.publish_one(events.typing_cleared(key[1])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stopped(self, sid: str, conversation_id: str) -> None:
        timer = self._timers.pop((sid, conversation_id), None)
        if timer:
            timer.cancel()
            await self.publisher.publish_one(events.typing_cleared(conversation_id))

    async def disconnected(self, sid: str) -> None:
        for key in [k for k in self._timers if k[0] == sid]:
            await self.stopped(*key)
