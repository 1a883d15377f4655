"""Agent presence: online on an agent's first socket, offline when the last one closes,
counted across every tab and every process.

In the process for the embedded run. With Redis, each process registers itself with a
heartbeat; every process reaps the entries of processes whose heartbeat stopped, so killing
a process marks its agents offline within presence_ttl_seconds.

Each process also keeps its own count of the agent sockets it holds. Redis is the shared
view, not the only copy: when Redis comes back empty after a restart (it runs without
persistence), or another process reaped this one during an outage longer than the TTL, the
next heartbeat finds this process's set missing and registers its agents again, so the team
sees them online without anyone reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from server.bus import EventBus
from server.domain_events import AgentStatusChanged
from server.errors import infrastructure_error

log = logging.getLogger(__name__)


class MemoryPresenceStore:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    async def start(self, on_offline, on_online=None) -> None:
        return None

    async def stop(self) -> list[tuple[str, str]]:
        gone = list(self._counts)
        self._counts.clear()
        return gone

    async def connected(self, org_id: str, agent_id: str) -> bool:
        key = (org_id, agent_id)
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key] == 1

    async def disconnected(self, org_id: str, agent_id: str) -> bool:
        key = (org_id, agent_id)
        count = self._counts.get(key, 0) - 1
        if count <= 0:
            self._counts.pop(key, None)
            return True
        self._counts[key] = count
        return False

    async def online(self, org_id: str) -> list[str]:
        return sorted(agent for (org, agent) in self._counts if org == org_id)


_P = "chatd:presence:"

# KEYS: agent hash, org set, proc set. ARGV: proc id, agent id, member, ttl seconds
_CONNECT = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]) * 4)
local added = redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], 86400)
return added
"""

_DISCONNECT = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[3])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  return redis.call('SREM', KEYS[2], ARGV[2])
end
return 0
"""

# KEYS: agent hash, org set, proc set. ARGV: proc id, agent id, member, ttl seconds, count
# Puts back what this process holds after Redis lost it; returns 1 if the agent was offline.
_RESTORE = """
redis.call('HSET', KEYS[1], ARGV[1], tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]) * 4)
local added = redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], 86400)
return added
"""

# KEYS: procs zset. ARGV: dead proc id, stale-before (ms), prefix, force ('1' reaps regardless)
# Returns a flat list org, agent, org, agent ... of agents that went offline.
_REAP = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[4] ~= '1' and score and tonumber(score) >= tonumber(ARGV[2]) then
  return {}
end
redis.call('ZREM', KEYS[1], ARGV[1])
local prefix = ARGV[3]
local procset = prefix .. 'proc:' .. ARGV[1]
local members = redis.call('SMEMBERS', procset)
local out = {}
for _, m in ipairs(members) do
  local sep = string.find(m, '|', 1, true)
  local org = string.sub(m, 1, sep - 1)
  local agent = string.sub(m, sep + 1)
  local akey = prefix .. 'agent:' .. agent
  redis.call('HDEL', akey, ARGV[1])
  if redis.call('HLEN', akey) == 0 then
    if redis.call('SREM', prefix .. 'org:' .. org, agent) == 1 then
      table.insert(out, org)
      table.insert(out, agent)
    end
  end
end
redis.call('DEL', procset)
return out
"""


class RedisPresenceStore:
    def __init__(self, redis, ttl_seconds: float, prefix: str = _P, name: str = "presence") -> None:
        # Each store has its own keys (agents, end users): a store reaps only its own.
        self._p = prefix
        # What its log lines say it is ("presence": the agents').
        self._name = name
        self._redis = redis
        self._ttl = ttl_seconds
        self.proc_id = uuid.uuid4().hex
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._reap = redis.register_script(_REAP)
        self._restore = redis.register_script(_RESTORE)
        # (org, agent) -> sockets this process holds: what to register again after a loss.
        self._local: dict[tuple[str, str], int] = {}
        self._failing = False
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._on_offline: Callable[[str, str], Awaitable[None]] | None = None
        self._on_online: Callable[[str, str], Awaitable[None]] | None = None

    def _keys(self, org_id: str, agent_id: str) -> list[str]:
        return [
            self._p + "agent:" + agent_id,
            self._p + "org:" + org_id,
            self._p + "proc:" + self.proc_id,
        ]

    async def start(
        self,
        on_offline: Callable[[str, str], Awaitable[None]],
        on_online: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._on_offline = on_offline
        self._on_online = on_online
        await self._heartbeat()
        self._task = asyncio.create_task(self._loop(), name="presence-heartbeat")

    async def stop(self) -> list[tuple[str, str]]:
        if self._task:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return await self._reap_proc(self.proc_id, force=True)

    async def _heartbeat(self) -> list[tuple[str, str]]:
        """Mark this process alive; returns the agents it registered again (see the module
        docstring), who are to be announced online."""
        await self._redis.zadd(self._p + "procs", {self.proc_id: int(time.time() * 1000)})
        procset = self._p + "proc:" + self.proc_id
        await self._redis.expire(procset, int(self._ttl * 4))
        if not self._local or await self._redis.exists(procset):
            return []
        back = []
        for (org_id, agent_id), count in list(self._local.items()):
            added = await self._restore(
                keys=self._keys(org_id, agent_id),
                args=[self.proc_id, agent_id, f"{org_id}|{agent_id}", int(self._ttl), count],
            )
            if int(added) == 1:
                back.append((org_id, agent_id))
        log.info(
            "%s: registered %d entries again after Redis lost them", self._name, len(self._local)
        )
        return back

    async def _reap_proc(self, proc_id: str, force: bool = False) -> list[tuple[str, str]]:
        stale_before = int((time.time() - self._ttl) * 1000)
        flat = await self._reap(
            keys=[self._p + "procs"], args=[proc_id, stale_before, self._p, "1" if force else "0"]
        )
        flat = [x.decode() if isinstance(x, bytes) else x for x in flat]
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def _loop(self) -> None:
        # Not `while True`: a cancel can be lost. redis-py sends commands under
        # asyncio.wait_for, which on Python 3.11 returns the result and drops a cancel that
        # lands as the send completes; the loop then slept on forever and stop() never returned.
        while not self._stopping:
            await asyncio.sleep(self._ttl / 3)
            try:
                for org_id, agent_id in await self._heartbeat():
                    if self._on_online:
                        await self._on_online(org_id, agent_id)
                stale_before = (time.time() - self._ttl) * 1000
                dead = await self._redis.zrangebyscore(self._p + "procs", "-inf", stale_before)
                for proc in dead:
                    proc = proc.decode() if isinstance(proc, bytes) else proc
                    for org_id, agent_id in await self._reap_proc(proc):
                        if self._on_offline:
                            await self._on_offline(org_id, agent_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if infrastructure_error(exc) is None:
                    log.exception("%s heartbeat failed; retrying", self._name)
                elif not self._failing:
                    # Once per outage, not a traceback every heartbeat.
                    log.warning("%s heartbeat: Redis unavailable (%r); retrying", self._name, exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("%s heartbeat: Redis answers again", self._name)
                self._failing = False

    async def connected(self, org_id: str, agent_id: str) -> bool:
        res = await self._connect(
            keys=self._keys(org_id, agent_id),
            args=[self.proc_id, agent_id, f"{org_id}|{agent_id}", int(self._ttl)],
        )
        key = (org_id, agent_id)
        self._local[key] = self._local.get(key, 0) + 1
        return int(res) == 1

    async def disconnected(self, org_id: str, agent_id: str) -> bool:
        # The local count first: the socket is gone whether or not Redis hears of it.
        key = (org_id, agent_id)
        count = self._local.get(key, 0) - 1
        if count <= 0:
            self._local.pop(key, None)
        else:
            self._local[key] = count
        res = await self._disconnect(
            keys=self._keys(org_id, agent_id), args=[self.proc_id, agent_id, f"{org_id}|{agent_id}"]
        )
        return int(res) == 1

    async def online(self, org_id: str) -> list[str]:
        members = await self._redis.smembers(self._p + "org:" + org_id)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)


class PresenceService:
    """Agent sockets come and go; this decides when the team sees a status change."""

    def __init__(self, store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    async def start(self) -> None:
        await self.store.start(self._went_offline, self._came_back)

    async def _came_back(self, org_id: str, agent_id: str) -> None:
        await self.bus.publish_one(AgentStatusChanged(org_id, None, agent_id, "online"))

    async def stop(self) -> None:
        for org_id, agent_id in await self.store.stop():
            await self._went_offline(org_id, agent_id)

    async def _went_offline(self, org_id: str, agent_id: str) -> None:
        await self.bus.publish_one(AgentStatusChanged(org_id, None, agent_id, "offline"))

    async def agent_connected(self, org_id: str, agent_id: str) -> None:
        if await self.store.connected(org_id, agent_id):
            await self._came_back(org_id, agent_id)

    async def agent_disconnected(self, org_id: str, agent_id: str) -> None:
        if await self.store.disconnected(org_id, agent_id):
            await self._went_offline(org_id, agent_id)

    async def online_agents(self, org_id: str) -> list[str]:
        return await self.store.online(org_id)


class EndUserPresence:
    """Which end users have a socket joined to their conversation, on any process: a push
    goes only to those who have none. The agents' store kept apart (its own keys, its own
    reaping). In the store's terms `org` is the conversation and `agent` is
    "<conversation>|<external_id>": an agent entry counts sockets across all of an agent's
    organizations, and one external_id may be the user of several conversations."""

    def __init__(self, store) -> None:
        self.store = store

    async def start(self) -> None:
        await self.store.start(self._nothing)

    async def stop(self) -> None:
        await self.store.stop()

    @staticmethod
    async def _nothing(*_args) -> None:
        return None

    async def joined(self, conversation_id: str, external_id: str) -> None:
        await self.store.connected(conversation_id, f"{conversation_id}|{external_id}")

    async def left(self, conversation_id: str, external_id: str) -> None:
        await self.store.disconnected(conversation_id, f"{conversation_id}|{external_id}")

    async def connected(self, conversation_id: str, external_id: str) -> bool:
        return f"{conversation_id}|{external_id}" in await self.store.online(conversation_id)
