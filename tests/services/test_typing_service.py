"""TypingService: the expiry of a typing indicator publishes TypingStopped from a timer."""

from __future__ import annotations

import asyncio
import gc

from server.bus import EventBus
from server.domain_events import TypingStarted, TypingStopped
from server.services.typing import TypingService


async def test_typing_expiry_keeps_its_publish_task_until_the_event_is_sent():
    sent: list[object] = []
    release = asyncio.Event()

    async def subscriber(ev):
        if isinstance(ev, TypingStopped):
            await release.wait()
        sent.append(ev)

    bus = EventBus()
    bus.subscribe(subscriber)
    service = TypingService(bus, timeout_s=0.01)
    await service.typing("sid-1", "org-1", "conv-1", "end_user", "v-1")
    await asyncio.sleep(0.05)

    # The expiry's publish is waiting on the subscriber; only the service holds it.
    assert len(service._tasks) == 1
    gc.collect()
    release.set()
    await asyncio.sleep(0.01)

    assert [type(ev) for ev in sent] == [TypingStarted, TypingStopped]
    assert sent[1] == TypingStopped("org-1", "conv-1", "end_user", "v-1")
    assert not service._tasks
