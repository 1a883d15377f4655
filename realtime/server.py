"""create_sio: the AsyncServer built from the parts in realtime/upstream/.

Everything that reaches into python-socketio or python-engineio internals lives in
realtime/upstream/ (its __init__ lists each upstream symbol copied or overridden); this
module only assembles them.
"""

from __future__ import annotations

import socketio

from realtime.upstream.engine import use_lean_sockets
from realtime.upstream.managers import GatedManager, GatedRedisManager
from realtime.upstream.server import ChatPacket, ChatServer, _OrjsonModule
from realtime.upstream.transport import UncompressedWebSocket
from server.settings import Settings


def create_sio(settings: Settings) -> socketio.AsyncServer:
    if settings.redis_url:
        manager = GatedRedisManager(settings.redis_url, channel="chatd", json=_OrjsonModule)
    else:
        manager = GatedManager()
    sio = ChatServer(
        async_mode="aiohttp",
        client_manager=manager,
        # With our packet class, json= reaches ChatPacket and Engine.IO's packets (which try
        # to parse every message), not python-socketio's Packet shared with clients.
        serializer=ChatPacket,
        json=_OrjsonModule,
        # End users connect from any site (widget iframes, apps); agent handshakes that carry
        # the session cookie are checked against allowed origins in the connect handler.
        cors_allowed_origins="*",
        max_http_buffer_size=settings.max_http_buffer_size,
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
    )
    # A copy: the driver table is module-level and shared by every server in the process.
    sio.eio._async = {**sio.eio._async, "websocket": UncompressedWebSocket}
    use_lean_sockets()
    return sio
