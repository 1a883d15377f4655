"""The Redis rate limiter through a Redis outage: it limits per process while Redis is away,
says so once per outage, and shares the limit in Redis again when it is back."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from server.services.ratelimit import RedisRateLimiter


async def test_the_limiter_counts_locally_while_redis_is_down_and_logs_once_per_outage(
    single_pass, private_redis, caplog
):
    client = aioredis.Redis.from_url(private_redis.url)
    limiter = RedisRateLimiter(client)
    limiter.PROBE_INTERVAL_S = 0.05
    try:
        assert await limiter.hit("k", 2, 30) == 0
        private_redis.stop()
        caplog.set_level(logging.WARNING, logger="server.services.ratelimit")

        results = []
        for _ in range(4):
            results.append(await limiter.hit("k", 2, 30))
            await asyncio.sleep(0.06)  # past the probe interval: Redis is asked again

        assert results[:2] == [0, 0] and all(r > 0 for r in results[2:]), results
        assert await limiter.blocked_for("k", 2, 30) > 0
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1, caplog.records

        private_redis.start()
        await asyncio.sleep(0.06)
        # Redis again (restarted empty): its count decides, not the local one.
        assert [await limiter.hit("k", 2, 30) for _ in range(3)][:2] == [0, 0]
        assert await limiter.blocked_for("k", 2, 30) > 0
        assert await client.exists("chatd:rl:k")
        assert [r for r in caplog.records if "again" in r.getMessage()]
    finally:
        await client.aclose()
