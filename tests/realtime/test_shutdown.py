"""A stopping server closes its Socket.IO connections at once (aiohttp on_shutdown), so that
clients reconnect elsewhere instead of the shutdown waiting out Engine.IO's ping timeout."""

from __future__ import annotations

import asyncio

import pytest

# Far below ping_interval + ping_timeout (45 s), which is what a stop waited before.
PROMPTLY = 10


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_stopping_the_server_disconnects_its_clients_promptly(server, factory, transport):
    org = await factory.org()
    conv = await factory.conversation(org)
    agent = await factory.agent(org)
    visitor = await factory.visitor(conv, transport=transport)
    inbox = await factory.client(agent, transport=transport)
    gone = [asyncio.Event(), asyncio.Event()]
    visitor.client.on("disconnect", lambda *_: gone[0].set())
    inbox.client.on("disconnect", lambda *_: gone[1].set())

    await asyncio.wait_for(server.close(), PROMPTLY)

    await asyncio.wait_for(asyncio.gather(*(g.wait() for g in gone)), PROMPTLY)
    assert not visitor.client.connected and not inbox.client.connected
