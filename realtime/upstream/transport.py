"""The Engine.IO websocket wrapper and the shutdown that reaches into Engine.IO's sockets.

Upstream symbols overridden or used (python-engineio 4.15.1): engineio.async_drivers.aiohttp
.WebSocket.__call__ (UncompressedWebSocket), AsyncServer.sockets and AsyncSocket.close
(close_connections).
"""

from __future__ import annotations

import socketio
from aiohttp import WSCloseCode, web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket as EngineIOWebSocket


class UncompressedWebSocket(EngineIOWebSocket):
    """python-engineio's aiohttp websocket wrapper, declining permessage-deflate.

    Browsers and Node's `ws` offer compression on every connection and the stock wrapper
    accepts it: every frame is then deflated (~40% less throughput, ~130 KiB instead of
    ~30 KiB per idle socket, docs/benchmarks.md). Chat frames are small; we decline.
    The wrapper has no option for this, so we build the response ourselves.
    """

    async def __call__(self, environ):
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        # Kept on the Engine.IO socket (the handler's owner), for closing it when the server
        # stops: an attribute costs less per idle connection than a WeakSet entry.
        self.handler.__self__.aiohttp_ws = self._sock
        self.environ = environ
        await self.handler(self)
        return self._sock


async def close_connections(app: web.Application, sio: socketio.AsyncServer) -> None:
    """Close every Socket.IO connection as the server stops (aiohttp's on_shutdown).

    An open websocket is a request still running, and Engine.IO's close packet does not make
    a browser close it: without this, a stopping server waited for ping_interval +
    ping_timeout (45 s). Websockets get 1001 Going Away, long-polls their close packet; the
    clients reconnect (to another process, or to this one restarted) and catch up with
    last_seq.
    """
    for socket in list(sio.eio.sockets.values()):
        ws = getattr(socket, "aiohttp_ws", None)
        if ws is not None and not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")
    # Not eio.disconnect(): it waits for each socket's writer to send the close packet, and
    # the writer of a websocket closed above is gone.
    reason = sio.eio.reason.SERVER_DISCONNECT
    for socket in list(sio.eio.sockets.values()):
        await socket.close(wait=False, reason=reason)
    await sio.shutdown()
