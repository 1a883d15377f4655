"""Presence through a Redis restart: Redis runs without persistence, so a restart loses the
shared view of who is online. The agents still connected must be shown online again, without
reconnecting, and the outage is logged once, not as a traceback every heartbeat."""

from __future__ import annotations

import asyncio
import logging
import time

from chatd.app import create_app
from server.settings import Settings
from tests.factories import Factory


async def test_agents_online_again_after_redis_restarts_empty(
    single_pass, base_settings: Settings, private_redis, aiohttp_server, caplog
):
    settings = base_settings.with_overrides(redis_url=private_redis.url, presence_ttl_seconds=1.5)
    srv = await aiohttp_server(create_app(settings), host="127.0.0.1")
    srv.base_url = str(srv.make_url("")).rstrip("/")
    factory = Factory(srv)
    try:
        org = await factory.org()
        agent = await factory.agent(org)
        sock = await factory.client(agent)
        watcher = await factory.client(await factory.agent(org))
        ack = await watcher.call("join_org_presence", {})
        assert agent.user_id in ack["online"], ack

        caplog.set_level(logging.INFO, logger="server.services.presence")
        private_redis.stop()
        await asyncio.sleep(2.5)  # a few heartbeats fail meanwhile
        private_redis.start()  # empty: nobody is online in Redis any more

        deadline = time.monotonic() + 10
        online: list[str] = []
        while time.monotonic() < deadline:
            try:
                online = (await watcher.call("join_org_presence", {}))["online"]
            except Exception:  # noqa: BLE001 - Redis may still be reconnecting
                online = []
            if agent.user_id in online:
                break
            await asyncio.sleep(0.25)
        assert agent.user_id in online, f"agent not shown online again after the restart: {online}"
        assert sock.client.connected

        failures = [r for r in caplog.records if "heartbeat" in r.getMessage()]
        assert not any(r.exc_info for r in failures), "a traceback per failed heartbeat"
        # Once per outage for each store: the agents' and the end users' (push).
        unavailable = sorted(r.getMessage() for r in failures if "unavailable" in r.getMessage())
        assert [m.split(" heartbeat")[0] for m in unavailable] == [
            "end-user presence",
            "presence",
        ], unavailable
    finally:
        await factory.close()
