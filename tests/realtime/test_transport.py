"""Transport-level behaviour of the Socket.IO endpoint."""

from __future__ import annotations

import aiohttp


async def test_websocket_declines_permessage_deflate_offered_by_the_client(server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            server.base_url + "/socket.io/?EIO=4&transport=websocket", compress=15
        ) as ws:
            assert ws.compress == 0
            assert "Sec-WebSocket-Extensions" not in ws._response.headers
            opened = await ws.receive_str()
            assert opened.startswith("0{")  # engine.io "open" packet: the socket works


async def test_websocket_without_compression_offer_still_opens(server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.base_url + "/socket.io/?EIO=4&transport=websocket") as ws:
            assert (await ws.receive_str()).startswith("0{")
