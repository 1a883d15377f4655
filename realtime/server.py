"""The AsyncServer and its client managers.

The managers add a replay gate to python-socketio's own managers. While a socket that
reconnected is being replayed what it missed (join_conversation with last_seq), live
events for it are held and then delivered after the replay, so the client sees every message
once and in seq order. The gate sits below the Redis manager's local delivery, so it works the
same on one process and on many.

The server (ChatServer, with its ChatPacket) stands between the wire and the handlers: what
is not a well-formed client event (undecodable frames, lying binary placeholders, event
names that are not strings or are reserved) is answered or dropped there, before any
handler runs. Upstream symbols overridden here: socketio.AsyncServer._handle_eio_message and
._handle_event, socketio.packet.Packet.decode and .add_attachment (python-socketio 5.18.1).

The Redis manager also repairs live delivery after a fan-out outage: whenever its subscription
is (re)established it announces, to its own sockets, the head seq of every conversation room
they are in (`conversation_head`), and clients fetch what they lack. Upstream symbols
overridden (python-socketio 5.18.1): AsyncRedisManager._publish, _redis_listen_with_retries,
_listen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable

import orjson
import socketio
from aiohttp import WSCloseCode, web
from aiohttp.web import WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EngineIOWebSocket
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from realtime.engine import EncodedPacket, use_lean_sockets
from server import events, rooms
from server.errors import InvalidInput
from server.events import ERROR, MESSAGE_RECEIVED
from server.settings import Settings
from server.validation import MAX_JSON_DEPTH, json_depth_exceeds

log = logging.getLogger(__name__)

# How long after a replay late live copies of replayed messages are still filtered out.
WATERMARK_SECONDS = 10.0
# The subscriber retries a lost Redis at this pace (python-socketio backs off to 60 s, which
# left other processes' messages undelivered for that long after Redis was back).
RESUBSCRIBE_FIRST_SLEEP = 0.25
RESUBSCRIBE_MAX_SLEEP = 1.0
# A head announcement that cannot read the database retries this often, this many times.
ANNOUNCE_RETRY_SECONDS = 1.0
ANNOUNCE_ATTEMPTS = 60
# How often the head of conversations whose messages could not be published is offered again.
REANNOUNCE_SECONDS = 1.0
# Events handed to local sockets between two yields to the event loop while announcing.
ANNOUNCE_YIELD_EVERY = 256
_CONV_ROOM = rooms.conversation("")

HeadLookup = Callable[[list[str]], Awaitable[dict[str, int]]]


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


class _OrjsonModule:
    """python-socketio takes a json module with dumps/loads; orjson returns bytes.

    orjson refuses a lone surrogate escape ("\\ud800"), which JSON allows and every JSON
    encoder of the clients' languages produces: refusing the frame left its sender without
    an answer. Such a frame is decoded by the standard library instead, so the event schema
    can refuse the value with invalid_input (server/validation.py). The fallback keeps what
    orjson refuses for good reasons refused: NaN and infinities, and deep nesting (the
    standard parser recurses).
    """

    @staticmethod
    def dumps(obj, **_kwargs):
        try:
            return orjson.dumps(obj).decode()
        except TypeError:
            # A lone surrogate in an outgoing string: escaped rather than losing the packet.
            return json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(data, **_kwargs):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            if json_depth_exceeds(data):
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
            return json.loads(
                data, parse_constant=_refuse_constant, parse_float=_finite_float
            )


class MalformedPacket(ValueError):
    """A client frame that is not a Socket.IO packet we can dispatch."""

    def __init__(self, reason: str, pkt: sio_packet.Packet | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.packet_type = getattr(pkt, "packet_type", None)
        self.namespace = getattr(pkt, "namespace", None)
        self.id = getattr(pkt, "id", None)


class ChatPacket(sio_packet.Packet):
    """python-socketio's packet, whose decoding fails only with MalformedPacket.

    Upstream raises whatever the bytes provoke (ValueError, TypeError, IndexError, KeyError,
    RecursionError) from places where a caller cannot tell a client's garbage from a bug.
    """

    json = _OrjsonModule
    MAX_ATTACHMENTS = 10

    def decode(self, encoded_packet):
        try:
            count = super().decode(encoded_packet)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            raise MalformedPacket(f"undecodable packet ({exc})", self) from None
        if self.packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK) and not (
            0 < count <= self.MAX_ATTACHMENTS
        ):
            raise MalformedPacket(f"a binary packet announcing {count} attachments", self)
        return count

    def add_attachment(self, attachment):
        if not isinstance(attachment, bytes | bytearray):
            raise MalformedPacket("a text frame where a binary attachment was due", self)
        try:
            return super().add_attachment(attachment)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            raise MalformedPacket(f"binary placeholders that do not match ({exc})", self) from None


# Names the Socket.IO protocol or python-socketio give a meaning of their own: a client event
# by one of these names would run the server's connect/disconnect handling ("disconnect"
# announced an agent offline while its socket stayed up) or a catch-all handler.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener",
     "removeListener", "message", "*"}
)


class ChatServer(socketio.AsyncServer):
    """The AsyncServer, answering or dropping what is not a well-formed client event.

    Overrides python-socketio 5.x (5.18.1 when written) AsyncServer._handle_eio_message (the
    same dispatch, with every decoding failure caught as MalformedPacket) and
    AsyncServer._handle_event (the event must be a non-empty list named by a string that is
    not reserved). Upstream let such frames raise from the Engine.IO message handler, which
    logs a traceback; the client never got an answer.

    A refused event is answered like any refused event (the `error` event, and an ack
    {"error": {"code": "invalid_input", ...}} when the client asked for one); a frame with
    nothing to answer (a stray attachment, an ack of nothing) is dropped with a log line.
    The socket stays connected either way.
    """

    async def _handle_eio_message(self, eio_sid, data):
        pending = self._binary_packet.get(eio_sid)
        if pending is not None and isinstance(data, str):
            # The client moved on without the attachments it announced: refuse the
            # incomplete event, then read this frame as the new packet it is (otherwise
            # the socket would wait for the attachments forever and answer nothing more).
            del self._binary_packet[eio_sid]
            log.info("refused a binary packet from %s: attachments missing", eio_sid)
            if pending.packet_type == sio_packet.BINARY_EVENT:
                await self._refuse(
                    eio_sid, pending.namespace, pending.id, "Binary attachments missing."
                )
        try:
            pkt = self._complete_packet(eio_sid, data)
        except MalformedPacket as exc:
            self._binary_packet.pop(eio_sid, None)
            log.info("refused a malformed packet from %s: %s", eio_sid, exc.reason)
            if exc.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                await self._refuse(eio_sid, exc.namespace, exc.id, "Malformed packet.")
            return
        if pkt is None:
            return
        kind = pkt.packet_type
        if kind == sio_packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == sio_packet.DISCONNECT:
            await self._handle_disconnect(
                eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT
            )
        elif kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            await self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)

    def _complete_packet(self, eio_sid, data) -> sio_packet.Packet | None:
        """The packet `data` completes, None while a binary packet awaits attachments."""
        pending = self._binary_packet.get(eio_sid)
        if pending is not None:
            if not pending.add_attachment(data):
                return None
            del self._binary_packet[eio_sid]
            return pending
        if not isinstance(data, str):
            raise MalformedPacket("a binary frame nobody announced")
        pkt = self.packet_class(encoded_packet=data)
        kind = pkt.packet_type
        if kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
            if not self.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/"):
                raise MalformedPacket("a binary packet before connecting", pkt)
            self._binary_packet[eio_sid] = pkt
            return None
        if kind not in (sio_packet.CONNECT, sio_packet.DISCONNECT, sio_packet.EVENT,
                        sio_packet.ACK):
            raise MalformedPacket(f"unexpected packet type {kind!r}", pkt)
        return pkt

    async def _handle_event(self, eio_sid, namespace, id, data):
        if not isinstance(data, list) or not data:
            reason = "An event is a JSON array: its name, then its arguments."
        elif not isinstance(data[0], str):
            reason = "The event name must be a string."
        elif data[0] in RESERVED_EVENTS:
            reason = f"{data[0]!r} is a reserved event name."
        else:
            return await super()._handle_event(eio_sid, namespace, id, data)
        log.info("refused an event from %s: %s", eio_sid, reason)
        await self._refuse(eio_sid, namespace, id, reason)

    async def _refuse(self, eio_sid, namespace, id, message: str) -> None:
        """Answer a refused event as ChatNamespace.trigger_event answers one."""
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        err = InvalidInput(message)
        await self._send_packet(
            eio_sid,
            self.packet_class(sio_packet.EVENT, [ERROR, {"message": err.message}], namespace),
        )
        if id is not None:
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    sio_packet.ACK, [{"error": err.to_dict()}], namespace=namespace, id=id
                ),
            )


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


class ReplayGateMixin(AsyncManager):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: dict[str, list[tuple[str, object, str]]] = {}
        self._watermarks: dict[str, dict[str, int]] = {}
        # (namespace, sid) -> the rooms it is in, kept beside python-socketio's room table.
        self._rooms_of: dict[tuple[str, str], set] = {}

    # ---- room index ------------------------------------------------------------------------
    # python-socketio finds a socket's rooms by testing every room of the namespace, so each
    # disconnect costs O(all rooms): with thousands of visitors reconnecting at once that was
    # the largest item in the profile (a quadratic storm). The index makes it O(own rooms).

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        key = (namespace, sid)
        rooms = self._rooms_of.get(key)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[key]

    def basic_disconnect(self, sid, namespace, **kwargs):
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        # What python-socketio's basic_disconnect does after leaving the rooms.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):
        return [r for r in self._rooms_of.get((namespace, sid), ()) if r is not None]

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
        await self._deliver(event, data, namespace, sid, None)

    async def _deliver(self, event, data, namespace, room, skip_sid) -> None:
        """Local delivery of one event to a room's sockets on this process.

        python-socketio's AsyncManager.emit encodes once but then starts one asyncio task per
        recipient and waits for them all. Handing a packet to a socket is a put on its
        unbounded outgoing queue, which never suspends, so we hand it over in a plain loop:
        the same packets, in the same order, without a task per delivery (which the profile
        showed as the largest share of fan-out cost). A socket that closed meanwhile is
        skipped, as the task version skipped it by losing the task's exception.
        """
        namespace = namespace or "/"
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            data = list(data)
        elif data is not None:
            data = [data]
        else:
            data = []
        recipients = [
            eio_sid
            for sid, eio_sid in self.get_participants(namespace, room)
            if skip_sid is None or sid not in skip_sid
        ]
        if not recipients:
            return
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *data]
        ).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        eio_pkts = [EncodedPacket(eio_packet.MESSAGE, p) for p in encoded]
        eio = self.server.eio
        for eio_sid in recipients:
            socket = eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            try:
                for pkt in eio_pkts:
                    await socket.send(pkt)
            except Exception:  # noqa: BLE001 - one gone socket must not stop the others
                log.debug("dropped %s for closed socket %s", event, eio_sid)

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
        if callback is None and not kwargs:
            if skip_sid is not None and not isinstance(skip_sid, list):
                skip_sid = [skip_sid]
            return await self._deliver(event, data, namespace, room, skip_sid)
        return await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )


class GatedManager(ReplayGateMixin):
    pass


class GatedRedisManager(socketio.AsyncRedisManager, ReplayGateMixin):
    """The Redis manager, publishing in pipelined batches.

    The stock manager awaits one PUBLISH round trip per emit, so a busy process spends its
    fan-out waiting on Redis one event at a time. Here emits append to an ordered buffer that
    one task writes out with a pipeline: one round trip for everything published meanwhile,
    in the same order (other processes see events in publish order, as before). The local
    delivery still happens inside emit, before the publish, as in the stock manager.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outbox: list[str] = []
        self._flusher: asyncio.Task | None = None
        # conversation ids -> their last_seq; set by the composition root.
        self.head_lookup: HeadLookup | None = None
        self._announcer: asyncio.Task | None = None
        self._announce_again = False
        # conversation id -> the highest seq whose message_received never reached Redis.
        self._unpublished: dict[str, int] = {}
        self._reannouncer: asyncio.Task | None = None

    async def _publish(self, data):
        self._outbox.append(self.json.dumps(data))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_outbox())

    async def _flush_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            for attempt in (1, 2):
                try:
                    if not self.connected:
                        self._redis_connect()
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for message in batch:
                            pipe.publish(self.channel, message)
                        await pipe.execute()
                    break
                except Exception as exc:  # noqa: BLE001 - logged; Redis may come back
                    self.connected = False
                    if attempt == 2:
                        log.error("cannot publish %d events to redis: %s", len(batch), exc)
                        self._dropped(batch)

    async def flush_published(self, timeout: float = 5.0) -> None:
        """Wait until everything emitted so far has been written to Redis."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(flusher), timeout)
            except TimeoutError:
                log.warning("redis publish still pending after %.0f s", timeout)

    # ---- live-delivery repair after a fan-out outage ---------------------------------------
    # While Redis is down, what other processes commit reaches none of our sockets, and our
    # own publishes are dropped (other processes' sockets miss them). When our subscription
    # is back, we read every conversation room's head seq and tell the room's local sockets.
    # The order closes the window between Redis returning and the resubscribe: a message
    # committed before the read is covered by the head; one committed after it is published
    # after that commit, so after our SUBSCRIBE was confirmed, and arrives live. Every
    # process resubscribes, so each one's head covers the publishes others dropped.

    async def _redis_listen_with_retries(self):
        """Like python-socketio's, with a subscriber client of its own (a publish that
        reconnects must not swap the connection under the listener), subscribe
        confirmations passed through (they mark the moment live delivery resumed, also
        after redis-py reconnected by itself), and a short retry pace."""
        retry_sleep = RESUBSCRIBE_FIRST_SLEEP
        while True:
            client = self._get_redis_module().Redis.from_url(self.redis_url, **self.redis_options)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                retry_sleep = RESUBSCRIBE_FIRST_SLEEP
                async for message in pubsub.listen():
                    yield message
            except Exception as exc:  # noqa: BLE001 - Redis is down or the link broke
                log.warning("redis subscription lost (%s); retrying in %.2f s", exc, retry_sleep)
            finally:
                await _close_quietly(pubsub, client)
            await asyncio.sleep(retry_sleep)
            retry_sleep = min(retry_sleep * 2, RESUBSCRIBE_MAX_SLEEP)

    async def _listen(self):
        channel = self.channel.encode("utf-8")
        async for message in self._redis_listen_with_retries():
            if message.get("channel") != channel:
                continue
            if message.get("type") == "subscribe":
                self.announce_heads()
            elif message.get("type") == "message" and "data" in message:
                yield message["data"]

    def announce_heads(self) -> None:
        """Announce (soon, once) every local conversation room's head seq to its sockets."""
        if self._announcer is not None and not self._announcer.done():
            self._announce_again = True
            return
        self._announcer = asyncio.get_running_loop().create_task(self._announce_loop())

    async def _announce_loop(self) -> None:
        while True:
            self._announce_again = False
            await self._announce_once()
            if not self._announce_again:
                return

    async def _announce_once(self) -> None:
        lookup = self.head_lookup
        if lookup is None:
            return
        for attempt in range(1, ANNOUNCE_ATTEMPTS + 1):
            ids = [
                room[len(_CONV_ROOM) :]
                for room in self.rooms.get("/", {})
                if isinstance(room, str) and room.startswith(_CONV_ROOM)
            ]
            if not ids:
                return
            try:
                heads = await lookup(ids)
                break
            except Exception as exc:  # noqa: BLE001 - the database may be down too
                if attempt == ANNOUNCE_ATTEMPTS:
                    log.error("cannot read conversation heads to announce: %s", exc)
                    return
                await asyncio.sleep(ANNOUNCE_RETRY_SECONDS)
        for n, (conversation_id, last_seq) in enumerate(heads.items(), 1):
            ev = events.conversation_head(conversation_id, last_seq)
            # Local sockets only (each process announces to its own), through the replay gate.
            await ReplayGateMixin.emit(self, ev.name, ev.payload, "/", room=ev.room)
            if n % ANNOUNCE_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        log.info("announced the head of %d conversations after (re)subscribing", len(heads))

    # A publish can fail while the other processes' subscriptions stay up (they then have no
    # reason to announce anything): the heads of the conversations whose messages were
    # dropped are published instead, once Redis takes publishes again.

    def _dropped(self, batch: list[str]) -> None:
        for raw in batch:
            try:
                message = self.json.loads(raw)
                if message.get("method") != "emit" or message.get("event") not in (
                    MESSAGE_RECEIVED,
                    events.CONVERSATION_HEAD,
                ):
                    continue
                payload = message["data"][0]
                conversation_id = payload["conversation_id"]
                seq = int(payload.get("seq", payload.get("last_seq")))
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                continue
            if seq > self._unpublished.get(conversation_id, -1):
                self._unpublished[conversation_id] = seq
        if self._unpublished and (self._reannouncer is None or self._reannouncer.done()):
            self._reannouncer = asyncio.get_running_loop().create_task(self._reannounce())

    async def _reannounce(self) -> None:
        while self._unpublished:
            await asyncio.sleep(REANNOUNCE_SECONDS)
            heads, self._unpublished = self._unpublished, {}
            for conversation_id, last_seq in heads.items():
                ev = events.conversation_head(conversation_id, last_seq)
                # Other processes only: our own sockets had the messages. A drop comes back
                # through _dropped, and is offered again.
                await self._publish(
                    {
                        "method": "emit",
                        "event": ev.name,
                        "data": [ev.payload],
                        "binary": False,
                        "namespace": "/",
                        "room": ev.room,
                        "skip_sid": None,
                        "callback": None,
                        "host_id": self.host_id,
                    }
                )


async def _close_quietly(pubsub, client) -> None:
    for closing in (pubsub.aclose, client.aclose):
        try:
            await closing()
        except Exception:  # noqa: BLE001, S110 - the connection is already gone
            pass


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
        ping_interval=25,
        ping_timeout=20,
    )
    # A copy: the driver table is module-level and shared by every server in the process.
    sio.eio._async = {**sio.eio._async, "websocket": UncompressedWebSocket}
    use_lean_sockets()
    return sio
