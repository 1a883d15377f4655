"""Sliding-window rate limits: in the process for the embedded run, in Redis when scaled out.

A sliding log (not a fixed window) so that a burst across a window edge cannot double the
allowance. Redis keys expire with the window, so a dead process leaves nothing behind.

Without Redis the limits still hold, per process. While Redis does not answer,
RedisRateLimiter counts in a MemoryRateLimiter of its own process instead of failing the
request: sends and logins keep working through a Redis outage, each process enforcing the
configured limit on what it sees. With N processes a client could get up to N times the
limit for as long as the outage lasts (a sticky balancer keeps a client on one process, so
in practice it is about the same limit). Counts do not carry over in either direction
when Redis comes back. Failing closed (refusing every send) would turn a Redis outage into
a chat outage; failing open (no limit) would make the outage the moment to abuse. The
outage is logged once when it starts and once when it ends, and Redis is probed again at
most every PROBE_INTERVAL_S, so an unreachable Redis does not cost every call a connect
attempt.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from typing import Protocol

from server.errors import infrastructure_error

log = logging.getLogger(__name__)


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
    PROBE_INTERVAL_S = 1.0

    def __init__(self, redis, prefix: str = "chatd:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_LOG)
        self._fallback = MemoryRateLimiter()
        # monotonic time before which Redis is not asked again; None while Redis answers
        self._down_until: float | None = None

    async def _run(self, key: str, limit: int, window_s: float, record: bool) -> int:
        if self._down_until is not None and time.monotonic() < self._down_until:
            return await self._local(key, limit, window_s, record)
        try:
            result = await self._script(
                keys=[self._prefix + key],
                args=[int(window_s * 1000), limit, uuid.uuid4().hex, "1" if record else "0"],
            )
        except Exception as exc:
            if infrastructure_error(exc) is None:
                raise
            if self._down_until is None:
                log.warning("redis unavailable (%r): rate limits are per process until it "
                            "answers again", exc)
            self._down_until = time.monotonic() + self.PROBE_INTERVAL_S
            return await self._local(key, limit, window_s, record)
        if self._down_until is not None:
            log.warning("redis answers again: rate limits are shared again")
            self._down_until = None
        return int(result)

    async def _local(self, key: str, limit: int, window_s: float, record: bool) -> int:
        if record:
            return await self._fallback.hit(key, limit, window_s)
        return await self._fallback.blocked_for(key, limit, window_s)

    async def hit(self, key: str, limit: int, window_s: float) -> int:
        return await self._run(key, limit, window_s, True)

    async def blocked_for(self, key: str, limit: int, window_s: float) -> int:
        return await self._run(key, limit, window_s, False)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        try:
            await self._redis.delete(self._prefix + key)
        except Exception as exc:
            if infrastructure_error(exc) is None:
                raise
            # Nothing to reset in a Redis that is down; its key expires with its window.
