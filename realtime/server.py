"""The AsyncServer and its client managers.

The managers add a replay gate to python-socketio's own managers. While a socket that
reconnected is being replayed what it missed (join_conversation with last_seq), live
events for it are held and then delivered after the replay, so the client sees every message
once and in seq order. The gate sits below the Redis manager's local delivery, so it works the
same on one process and on many.
"""

from __future__ import annotations

import asyncio
import weakref

import orjson
import socketio
from aiohttp import WSCloseCode, web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket as EngineIOWebSocket
from socketio.async_manager import AsyncManager

from server.events import MESSAGE_RECEIVED
from server.settings import Settings

# How long after a replay late live copies of replayed messages are still filtered out.
WATERMARK_SECONDS = 10.0


class _OrjsonModule:
    """python-socketio takes a json module with dumps/loads; orjson returns bytes."""

    @staticmethod
    def dumps(obj, **_kwargs):
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data, **_kwargs):
        return orjson.loads(data)


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
        open_websockets = request.app.get(OPEN_WEBSOCKETS)
        if open_websockets is not None:
            open_websockets.add(self._sock)
        self.environ = environ
        await self.handler(self)
        return self._sock


# The websockets a server holds open, for closing them when it stops.
OPEN_WEBSOCKETS = web.AppKey("open_websockets", weakref.WeakSet)


async def close_connections(app: web.Application, sio: socketio.AsyncServer) -> None:
    """Close every Socket.IO connection as the server stops (aiohttp's on_shutdown).

    An open websocket is a request still running, and Engine.IO's close packet does not make
    a browser close it: without this, a stopping server waited for ping_interval +
    ping_timeout (45 s). Websockets get 1001 Going Away, long-polls their close packet; the
    clients reconnect (to another process, or to this one restarted) and catch up with
    last_seq.
    """
    for ws in list(app.get(OPEN_WEBSOCKETS, ())):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")
    # Not eio.disconnect(): it waits for each socket's writer to send the close packet, and
    # the writer of a websocket closed above is gone.
    reason = sio.eio.reason.SERVER_DISCONNECT
    for socket in list(sio.eio.sockets.values()):
        await socket.close(wait=False, reason=reason)
    await sio.shutdown()


class ReplayGateMixin(AsyncManager):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: dict[str, list[tuple[str, object, str]]] = {}
        self._watermarks: dict[str, dict[str, int]] = {}

    def hold(self, sid: str) -> None:
        self._held.setdefault(sid, [])

    async def release(self, sid: str, conversation_id: str, replayed_up_to: int) -> None:
        """Deliver what was held, without messages the replay already sent."""
        self._set_watermark(sid, conversation_id, replayed_up_to)
        while True:
            held = self._held.get(sid)
            if not held:
                self._held.pop(sid, None)
                return
            self._held[sid] = []
            for event, data, namespace in held:
                if not self._already_sent(sid, event, data):
                    await self.send_direct(sid, event, data, namespace)

    def _set_watermark(self, sid: str, conversation_id: str, seq: int) -> None:
        marks = self._watermarks.setdefault(sid, {})
        marks[conversation_id] = max(seq, marks.get(conversation_id, 0))
        asyncio.get_running_loop().call_later(
            WATERMARK_SECONDS, self._drop_watermark, sid, conversation_id, marks[conversation_id]
        )

    def _drop_watermark(self, sid: str, conversation_id: str, seq: int) -> None:
        marks = self._watermarks.get(sid)
        if marks and marks.get(conversation_id) == seq:
            del marks[conversation_id]
            if not marks:
                del self._watermarks[sid]

    def forget(self, sid: str) -> None:
        self._held.pop(sid, None)
        self._watermarks.pop(sid, None)

    def _already_sent(self, sid: str, event: str, data) -> bool:
        if event != MESSAGE_RECEIVED or not isinstance(data, dict):
            return False
        marks = self._watermarks.get(sid)
        if not marks:
            return False
        mark = marks.get(data.get("conversation_id"))
        return mark is not None and data.get("seq", 0) <= mark

    async def send_direct(self, sid: str, event: str, data, namespace: str = "/") -> None:
        """Send to one local socket, bypassing the gate and the message queue."""
        await AsyncManager.emit(self, event, data, namespace, to=sid)

    async def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        if (self._held or self._watermarks) and room is not None and callback is None:
            skips = (
                []
                if skip_sid is None
                else (list(skip_sid) if isinstance(skip_sid, list) else [skip_sid])
            )
            for sid, _eio_sid in self.get_participants(namespace or "/", room):
                if sid in skips:
                    continue
                held = self._held.get(sid)
                if held is not None:
                    held.append((event, data, namespace or "/"))
                    skips.append(sid)
                elif self._already_sent(sid, event, data):
                    skips.append(sid)
            skip_sid = skips
        return await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )


class GatedManager(ReplayGateMixin):
    pass


class GatedRedisManager(socketio.AsyncRedisManager, ReplayGateMixin):
    pass


def create_sio(settings: Settings) -> socketio.AsyncServer:
    if settings.redis_url:
        manager = GatedRedisManager(settings.redis_url, channel="chatd", json=_OrjsonModule)
    else:
        manager = GatedManager()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        json=_OrjsonModule,
        # End users connect from any site (widget iframes, apps); agent handshakes that carry
        # the session cookie are checked against allowed origins in the connect handler.
        cors_allowed_origins="*",
        max_http_buffer_size=settings.max_http_buffer_size,
        ping_interval=25,
        ping_timeout=20,
    )
    # A copy: the driver table is module-level and shared by every server in the process.
    sio.eio._async = {**sio.eio._async, "websocket": UncompressedWebSocket}
    return sio
