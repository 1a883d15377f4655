"""Sliding-window rate limits: in the process for the embedded run, in Redis when scaled out.

A sliding log (not a fixed window) so that a burst across a window edge cannot double the
allowance. Redis keys expire with the window, so a dead process leaves nothing behind.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> int:
        """Record one event; return 0 if allowed, else milliseconds until one more is allowed."""

    async def blocked_for(self, key: str, limit: int, window_s: float) -> int:
        """Like hit, without recording: 0 if one more would be allowed."""

    async def reset(self, key: str) -> None: ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._log: dict[str, deque[float]] = {}
        self._calls = 0

    def _prune(self, key: str, window_s: float, now: float) -> deque[float]:
        log = self._log.get(key)
        if log is None:
            log = self._log[key] = deque()
        while log and log[0] <= now - window_s:
            log.popleft()
        return log

    def _gc(self, now: float) -> None:
        # Drop idle keys now and then so that one-off visitors do not accumulate.
        self._calls += 1
        if self._calls % 1024 == 0:
            for key in [k for k, v in self._log.items() if not v or v[-1] < now - 3600]:
                del self._log[key]

    async def hit(self, key: str, limit: int, window_s: float) -> int:
        now = time.monotonic()
        self._gc(now)
        log = self._prune(key, window_s, now)
        if len(log) >= limit:
            return max(1, math.ceil((log[0] + window_s - now) * 1000))
        log.append(now)
        return 0

    async def blocked_for(self, key: str, limit: int, window_s: float) -> int:
        now = time.monotonic()
        log = self._prune(key, window_s, now)
        if len(log) >= limit:
            return max(1, math.ceil((log[0] + window_s - now) * 1000))
        return 0

    async def reset(self, key: str) -> None:
        self._log.pop(key, None)


# KEYS[1] = log key; ARGV = window_ms, limit, member, record(0/1)
# Redis' clock (TIME), not the callers': every process then agrees on the window, and the
# limiter costs one round trip.
_SLIDING_LOG = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local retry = tonumber(oldest[2]) + window - now
  if retry < 1 then retry = 1 end
  return retry
end
if ARGV[4] == '1' then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
end
return 0
"""


class RedisRateLimiter:
    def __init__(self, redis, prefix: str = "chatd:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_LOG)

    async def _run(self, key: str, limit: int, window_s: float, record: bool) -> int:
        result = await self._script(
            keys=[self._prefix + key],
            args=[int(window_s * 1000), limit, uuid.uuid4().hex, "1" if record else "0"],
        )
        return int(result)

    async def hit(self, key: str, limit: int, window_s: float) -> int:
        return await self._run(key, limit, window_s, True)

    async def blocked_for(self, key: str, limit: int, window_s: float) -> int:
        return await self._run(key, limit, window_s, False)

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
