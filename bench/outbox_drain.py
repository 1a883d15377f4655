"""`python bench/outbox_drain.py DATABASE_URL [ROWS] [CONVERSATIONS]`: how fast one dispatcher
drains a backlog (a subscriber that was down): ROWS pending outbox rows spread over
CONVERSATIONS conversations, a no-op subscriber, and the rate and mean round time printed.
Use a scratch database: the outbox table is emptied first."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, insert  # noqa: E402

from models import OutboxEvent  # noqa: E402
from models.base import utcnow  # noqa: E402
from server import migrate  # noqa: E402
from server.bus import DurableSubscriber, EventBus  # noqa: E402
from server.db import Database, create_engine  # noqa: E402
from server.outbox import OutboxConfig, OutboxDispatcher  # noqa: E402


async def drain(url: str, rows: int, conversations: int) -> None:
    bus = EventBus()
    db = Database(create_engine(url), bus)
    convs = [str(uuid.uuid4()) for _ in range(conversations)]
    now = utcnow()
    async with db.engine.begin() as conn:
        await conn.execute(delete(OutboxEvent))
        await conn.execute(
            insert(OutboxEvent),
            [
                {
                    "subscriber": "drain",
                    "event": "message.created",
                    "organization_id": convs[0],
                    "conversation_id": convs[i % conversations],
                    "payload": {
                        "organization_id": convs[0],
                        "conversation_id": convs[i % conversations],
                        "message": {"seq": i},
                    },
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for i in range(rows)
            ],
        )
    delivered = 0
    all_in = asyncio.Event()

    async def noop(_delivery) -> None:
        nonlocal delivered
        delivered += 1
        if delivered >= rows:
            all_in.set()

    bus.subscribe_durable(DurableSubscriber("drain", noop))
    dispatcher = OutboxDispatcher(db, bus, OutboxConfig(poll_seconds=0.2))
    rounds, spent = 0, 0.0
    plain = dispatcher._round

    async def timed(claim: bool = True) -> bool:
        nonlocal rounds, spent
        t = time.perf_counter()
        try:
            return await plain(claim)
        finally:
            spent += time.perf_counter() - t
            rounds += 1

    dispatcher._round = timed
    started = time.perf_counter()
    await dispatcher.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 120)
    elapsed = time.perf_counter() - started
    await dispatcher.stop()
    await db.dispose()
    print(
        f"delivered {delivered} of {rows} in {elapsed:.2f} s = {delivered / elapsed:.0f} rows/s;"
        f" {rounds} rounds, {spent / max(rounds, 1) * 1000:.1f} ms per round"
    )


if __name__ == "__main__":
    url = sys.argv[1]
    migrate.upgrade(url)
    asyncio.run(
        drain(
            url,
            int(sys.argv[2]) if len(sys.argv) > 2 else 20_000,
            int(sys.argv[3]) if len(sys.argv) > 3 else 500,
        )
    )
