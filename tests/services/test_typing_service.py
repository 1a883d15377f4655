"""TypingService: the expiry of a typing indicator publishes typing_cleared from a timer."""

from __future__ import annotations

import asyncio
import gc

from server.publisher import Publisher
from server.services.typing import TypingService


async def test_typing_expiry_keeps_its_publish_task_until_the_event_is_sent():
    sent: list[str] = []
    release = asyncio.Event()

    async def emit(name, payload, room=None, skip_sid=None):
        if name == "typing_cleared":
            await release.wait()
        sent.append(name)

    service = TypingService(Publisher(emit), timeout_s=0.01)
    await service.typing("sid-1", "conv-1", "end_user")
    await asyncio.sleep(0.05)

    # The expiry's publish is waiting on the emitter; only the service holds it.
    assert len(service._tasks) == 1
    gc.collect()
    release.set()
    await asyncio.sleep(0.01)

    assert sent.count("typing_cleared") == 1
    assert not service._tasks
