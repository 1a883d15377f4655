"""The AsyncServer and its packet class: what is not a well-formed client event is refused here.

The server (ChatServer, with its ChatPacket) stands between the wire and the handlers: what
is not a well-formed client event (undecodable frames, lying binary placeholders, event
names that are not strings or are reserved) is answered or dropped there, before any
handler runs. Upstream symbols overridden here: socketio.AsyncServer._handle_eio_message and
._handle_event, socketio.packet.Packet.decode and .add_attachment (python-socketio 5.18.1).
"""

from __future__ import annotations

import json
import logging
import math

import orjson
import socketio
from socketio import packet as sio_packet

from realtime.events import ERROR
from server.errors import InvalidInput
from server.validation import MAX_JSON_DEPTH, json_depth_exceeds

log = logging.getLogger(__name__)


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

    def start_manager(self) -> None:
        """Start the client manager now; python-socketio starts it at the first connection
        (AsyncServer._handle_eio_connect). With Redis that is the fan-out subscription: up
        from start-up, and there for /readyz to probe before any client connected."""
        if not self.manager_initialized:
            self.manager_initialized = True
            self.manager.initialize()


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
